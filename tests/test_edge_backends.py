"""Backends at their edges (issue 19, G2, G4, G5, H9): the same refusal, dtype and precision
from every backend, and numba's reductions of 0-d values and their Hessians.

- Shapes (G2): a dimension declared None is one size wherever it meets another, never
  broadcast. ``sd.evaluate``, every ``sd.compile`` backend and the module ``sd.to_source``
  writes refuse a binding that breaks this with ``sd.ShapeError`` naming the variables (the
  emitted module, which cannot import symdiff, raises its own ``ShapeError``, a
  ``ValueError`` subclass as ``sd.ShapeError`` is). The oracle of the property: the same
  graph replayed op by op on variables of static shapes, whose build-time shape rules
  accept or refuse the sizes.
- Dtypes (G4): every backend returns each output in the dtype ``sd.evaluate`` returns.
- Precision (G5): ``f.jax_function`` of a float64 graph computes in float64 or refuses.
- numba (H9): reductions of 0-d values and Hessians through reductions run natively and
  agree with closed forms and with the numpy backend.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff.backends import installed
from symdiff.graph import ancestors
from symdiff.ops import REGISTRY, apply

from .op_cases import CASES, build_case
from .programs import programs

HAVE_NUMBA = installed("numba")
HAVE_JAX = installed("jax")
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (the test extra installs it)")
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (the test extra installs it)")
seeds = st.integers(0, 2**32 - 1)


def _emitted(outputs, inputs):
    namespace: dict = {}
    exec(sd.to_source(outputs, inputs), namespace)  # our own generated module
    return namespace["f"]


def _runners(outputs, inputs, backends=("numpy", "numba", "jax", "source")):
    """name -> callable(*values), for evaluate, each installed backend and the emitted module;
    a backend that cannot run an op of the graph (BackendError) is left out."""
    runners = {"evaluate": lambda *values: sd.evaluate(outputs, dict(zip(inputs, values)))}
    for backend in backends:
        if backend in ("numba", "jax") and not installed(backend):
            continue
        try:
            if backend == "source":
                runners[backend] = _emitted(outputs, inputs)
            else:
                runners[backend] = sd.compile(outputs, inputs, backend=backend)
        except sd.BackendError:
            pass
    return runners


def _is_shape_error(exc: BaseException, backend: str) -> bool:
    if backend == "source":  # the module's own ShapeError: a ValueError, by the same name
        return isinstance(exc, ValueError) and type(exc).__name__ == "ShapeError"
    return isinstance(exc, sd.ShapeError)


# -- G2: a None dimension bound inconsistently is refused by every backend ------------------


def _regression_graph():
    g = sd.Graph()
    X, y, w = g.variable("X", shape=(None, 5)), g.variable("y", shape=(None,)), g.variable("w", shape=(5,))
    loss = sd.sum((X @ w - y) ** 2)
    return [loss, sd.grad(loss, w)], [X, y, w]


@pytest.mark.parametrize("rows_y", [1, 3])
def test_a_none_dimension_bound_to_other_sizes_is_a_shape_error_naming_the_variables(rows_y):
    outputs, inputs = _regression_graph()
    args = (np.ones((7, 5)), np.ones(rows_y), np.ones(5))
    runners = _runners(outputs, inputs)
    assert {"evaluate", "numpy", "source"} <= set(runners)
    for backend, run in runners.items():
        with pytest.raises(ValueError) as info:
            run(*args)
        assert _is_shape_error(info.value, backend), (backend, type(info.value))
        message = str(info.value)
        assert "'X'" in message and "'y'" in message and "None" in message or "?" in message, (backend, message)
    assert issubclass(sd.ShapeError, ValueError)


def test_consistent_sizes_agree_across_backends():
    outputs, inputs = _regression_graph()
    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((7, 5)), rng.standard_normal(7), rng.standard_normal(5)
    r = X @ w - y
    for backend, run in _runners(outputs, inputs).items():
        value, gw = run(X, y, w)
        np.testing.assert_allclose(float(value), r @ r, rtol=1e-12, err_msg=backend)
        np.testing.assert_allclose(np.asarray(gw), 2 * X.T @ r, rtol=1e-12, err_msg=backend)


def test_a_stack_of_matrices_never_broadcasts_a_none_dimension():
    # matmul broadcasts its stack axes as numpy does; a stack declared None is not broadcast
    g = sd.Graph()
    A, B = g.variable("A", shape=(None, 2, 2)), g.variable("B", shape=(None, 2, 2))
    y = sd.sum(A @ B)
    runners = _runners([y, sd.grad(y, A)], [A, B])
    for backend, run in runners.items():
        value, ga = run(np.ones((1, 2, 2)), np.ones((1, 2, 2)))
        assert float(value) == 8.0 and np.shape(ga) == (1, 2, 2), backend
        for rows in (1, 3):
            with pytest.raises(ValueError) as info:
                run(np.ones((7, 2, 2)), np.ones((rows, 2, 2)))
            assert _is_shape_error(info.value, backend), (backend, info.value)
            assert "'A'" in str(info.value) and "'B'" in str(info.value), (backend, info.value)


def _replay_static(y: sd.Node, shapes: dict[sd.Node, tuple]):
    """``y``'s graph rebuilt op by op on variables of the given static shapes: its build-time
    shape rules refuse (ShapeError) sizes that do not fit together. Returns (variables, y)."""
    g = sd.Graph()
    new = {}
    for n in ancestors([y]):
        if n.op == "variable":
            new[n] = g.variable(n.name, shape=shapes.get(n, n.shape), dtype=n.dtype)
        elif n.op == "constant":
            new[n] = g.constant(n.value)
        else:
            new[n] = apply(REGISTRY[n.op], *(new[u] for u in n.inputs), **dict(n._attrs))
    return new, new[y]


def _perturbed(xs, args, data):
    """One dimension declared None bound to another size: 1 (which numpy could broadcast) or
    one more than the consistent size. Returns (new args, the size, the variable, its axis)."""
    dims = [(k, a) for k, x in enumerate(xs) for a, d in enumerate(x.shape) if d is None]
    k, axis = data.draw(st.sampled_from(dims), label="dimension")
    size = data.draw(st.sampled_from([1, args[k].shape[axis] + 1]), label="size")
    shape = list(args[k].shape)
    shape[axis] = size
    new = list(args)
    new[k] = np.resize(args[k], shape)
    return new, size, k, axis


@given(programs(mode="unknown", max_steps=5), seeds, st.data())
def test_every_backend_refuses_a_none_dimension_bound_inconsistently(program, seed, data):
    g, xs, y, args = program.graph(seed)
    if not any(None in x.shape for x in xs):
        return
    cost = sd.sum(y * y) if y.ndim else y * y
    outputs = [y, sd.grad(cost, xs[0])]
    new, size, k, axis = _perturbed(xs, args, data)
    note(f"graph:\n{y}\nshapes {[x.shape for x in xs]}, bound {[a.shape for a in new]}")
    # the oracle: static shapes, a size nothing else has in place of a bound 1 (a declared 1
    # would broadcast; a None dimension bound to 1 must not)
    static = {x: a.shape for x, a in zip(xs, new)}
    probe = list(new[k].shape)
    probe[axis] = 7 if size == 1 else size
    try:
        _replay_static(outputs[1], {**static, xs[k]: tuple(probe)})
        _replay_static(y, {**static, xs[k]: tuple(probe)})
        fits = True
    except sd.ShapeError:
        fits = False
    runners = _runners(outputs, xs, backends=("numpy", "jax", "source"))
    if fits:
        twin, ty = _replay_static(y, static)
        expected = sd.evaluate(ty, {twin[x]: a for x, a in zip(xs, new) if x in twin})
        for backend, run in runners.items():
            got = run(*new)[0]
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6, err_msg=backend)
        return
    for backend, run in runners.items():
        with pytest.raises(ValueError) as info:
            run(*new)
        assert _is_shape_error(info.value, backend), (backend, type(info.value), info.value)
        assert repr(xs[k].name) in str(info.value), (backend, info.value)


@needs_numba
@settings(max_examples=4)
@given(programs(mode="unknown", max_steps=3), seeds, st.data())
def test_numba_refuses_a_none_dimension_bound_inconsistently_as_evaluate_does(program, seed, data):
    g, xs, y, args = program.graph(seed)
    if not any(None in x.shape for x in xs):
        return
    new, *_ = _perturbed(xs, args, data)
    try:
        f = sd.compile(y, xs, backend="numba")
    except sd.BackendError:
        return
    try:
        expected = sd.evaluate(y, dict(zip(xs, new)))
    except sd.ShapeError as exc:
        with pytest.raises(sd.ShapeError) as info:
            f(*new)
        assert str(info.value) == str(exc)
        return
    np.testing.assert_allclose(np.asarray(f(*new)), expected, rtol=1e-10, atol=1e-12)


# -- G4: every backend returns evaluate's dtype ---------------------------------------------


def _float32_case(case):
    inputs = [np.asarray(a).astype(np.float32) if np.asarray(a).dtype == np.float64 else a for a in case.inputs]
    return dataclasses.replace(case, inputs=inputs)


DTYPE_CASES = [c for c in CASES if c.op in ("sum", "mean", "max", "min", "var", "std", "logsumexp", "count")]


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("case", DTYPE_CASES, ids=lambda c: c.name)
def test_reductions_keep_evaluates_dtype_on_every_backend(case, precision):
    case = _float32_case(case) if precision == "float32" else case
    g, xs, y = build_case(case)
    outputs = [y]
    if y.dtype.kind == "f" and xs[0].dtype.kind == "f":
        outputs.append(sd.grad(sd.sum(y * y), xs[0]))
    expected = sd.evaluate(outputs, dict(zip(xs, case.inputs)))
    # numba's float32 results: test_numba_returns_float32_scalars_for_a_float32_graph (its builds are slow)
    for backend, run in _runners(outputs, xs, backends=("numpy", "jax", "source")).items():
        for k, (got, want) in enumerate(zip(run(*case.inputs), expected)):
            assert np.asarray(got).dtype == np.asarray(want).dtype, (backend, k)
            assert np.shape(got) == np.shape(want), (backend, k)


@settings(max_examples=15)
@given(programs(mode="float32", max_steps=4), seeds)
def test_float32_programs_keep_their_dtype_on_every_backend(program, seed):
    g, xs, y, args = program.graph(seed)
    outputs = [y, sd.grad(sd.sum(y) if y.ndim else y, xs[0])]
    expected = sd.evaluate(outputs, dict(zip(xs, args)))
    for backend, run in _runners(outputs, xs, backends=("numpy", "jax", "source")).items():
        for k, (got, want) in enumerate(zip(run(*args), expected)):
            assert np.asarray(got).dtype == np.asarray(want).dtype == np.float32, (backend, k)


@needs_numba
def test_numba_returns_float32_scalars_for_a_float32_graph():
    g = sd.Graph()
    x, s = g.variable("x", shape=(3,), dtype=np.float32), g.variable("s", dtype=np.float32)
    outputs = [sd.sum(x * s), sd.mean(x), s * s, sd.grad(sd.sum(sd.sin(x) * s), s), sd.var(x) + sd.std(s)]
    values = (np.array([1, 2, 3], np.float32), np.float32(0.5))
    got = sd.compile(outputs, [x, s], backend="numba")(*values)
    expected = sd.evaluate(outputs, dict(zip([x, s], values)))
    for k, (a, b) in enumerate(zip(got, expected)):
        assert type(a) is type(b) is np.float32, (k, type(a), type(b))
    np.testing.assert_allclose(got, [3.0, 2.0, 0.25, np.sin([1, 2, 3]).sum(), 2 / 3], rtol=1e-6)


# -- G5: f.jax_function of a float64 graph computes in float64 or refuses -------------------


@needs_jax
def test_jax_function_of_a_float64_graph_is_float64_or_refused_under_transforms():
    import jax

    g = sd.Graph()
    w, x = g.variable("w", shape=(3,)), g.variable("x", shape=(3,))
    loss = sd.log1p(sd.exp(-(w @ x)))
    f = sd.compile([loss, sd.grad(loss, w)], [w, x], backend="jax")
    rng = np.random.default_rng(3)
    wv, xs = rng.standard_normal(3), rng.standard_normal((4, 3)) * 10.0
    z = xs @ wv  # closed forms: log1p(exp(-z)) and -x * sigmoid(-z)
    values, grads = np.log1p(np.exp(-z)), -xs / (1 + np.exp(z))[:, None]
    was = jax.config.jax_enable_x64
    # called directly on numpy values: 64-bit inside, whatever the global mode
    value, gw = f.jax_function(wv, xs[0])
    assert np.asarray(gw).dtype == np.float64 and jax.config.jax_enable_x64 == was
    np.testing.assert_allclose(np.asarray(gw), grads[0], rtol=1e-14)
    if not was:  # 32-bit mode: a transform has already made the arguments float32
        for transform in (jax.vmap(f.jax_function, in_axes=(None, 0)), jax.jit(f.jax_function)):
            with pytest.raises(sd.BackendError, match=r"jax\.enable_x64\(True\)|jax_enable_x64"):
                transform(wv, xs if transform is not f.jax_function else xs[0])
    with jax.enable_x64(True):
        per_row = jax.jit(jax.vmap(f.jax_function, in_axes=(None, 0)))(wv, xs)
        batched = jax.vmap(f.jax_function, in_axes=(None, 0))(wv, xs)
    for out in (per_row, batched):
        assert np.asarray(out[1]).dtype == np.float64
        np.testing.assert_allclose(np.asarray(out[0]), values, rtol=1e-13)
        np.testing.assert_allclose(np.asarray(out[1]), grads, rtol=1e-13)
    assert jax.config.jax_enable_x64 == was


@needs_jax
def test_jax_function_of_a_float32_graph_runs_under_vmap_in_32_bit_mode():
    import jax

    g = sd.Graph()
    v = g.variable("v", shape=(3,), dtype=np.float32)
    f = sd.compile(sd.sum(sd.sin(v)), [v], backend="jax")
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = jax.vmap(f.jax_function)(rows)
    assert np.asarray(out).dtype == np.float32
    np.testing.assert_allclose(np.asarray(out), np.sin(rows).sum(1), rtol=1e-6)


# -- H9: numba reductions of 0-d values, and Hessians through reductions --------------------


@needs_numba
def test_numba_var_and_std_of_a_0d_value():
    g = sd.Graph()
    s = g.variable("s")
    outputs = [sd.var(s) + sd.std(s), sd.mean(s), sd.sum(s), sd.max(s), sd.logsumexp(s), sd.grad(sd.var(s) * s, s)]
    got = sd.compile(outputs, [s], backend="numba")(np.float64(1.5))
    np.testing.assert_allclose([float(v) for v in got], [0.0, 1.5, 1.5, 1.5, 1.5, 0.0], rtol=1e-15)


@needs_numba
def test_numba_hessian_of_std_is_the_closed_form():
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    v = np.array([1.0, 2.0, 4.0, 7.0])
    n, c = v.size, v - v.mean()
    sigma = np.sqrt(c @ c / n)
    # d2 sigma = (I - 11'/n)/(n sigma) - c c'/(n^2 sigma^3)
    closed = (np.eye(n) - 1.0 / n) / (n * sigma) - np.outer(c, c) / (n**2 * sigma**3)
    outputs = [sd.hessian(sd.std(x), x), sd.hessian(sd.var(x), x), sd.hessian(sd.std(x, ddof=1) ** 2, x)]
    h_std, h_var, h_var1 = sd.compile(outputs, [x], backend="numba")(v)
    np.testing.assert_allclose(h_std, closed, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_var, 2 * (np.eye(n) - 1.0 / n) / n, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_var1, 2 * (np.eye(n) - 1.0 / n) / (n - 1), rtol=1e-12, atol=1e-15)


# one case of each reduction, over all axes: numba's build of a Hessian whose seeds make 4-D
# intermediates (softmax over an axis of a matrix) takes minutes, too long for a test
REDUCTION_CASES = [c for c in CASES if c.name in ("sum-all", "mean-all", "max-all", "logsumexp-all", "var-all-unknown")]


@needs_numba
@pytest.mark.parametrize("case", REDUCTION_CASES, ids=lambda c: c.name)
def test_numba_reductions_value_gradient_and_hessian_agree_with_numpy(case):
    """test_backends.py's second order is a gradient of a gradient; a Hessian pushes a batch of
    seeds through the reductions (broadcast_like of (n, 1) against (n,)), which it missed."""
    g, xs, y = build_case(case)
    x = xs[case.differentiable_inputs()[0]]
    cost = sd.sum(y * sd.sin(y)) if y.ndim else y * sd.sin(y)
    outputs = [y, sd.grad(cost, x), sd.hessian(cost, x)]
    expected = sd.compile(outputs, xs)(*case.inputs)
    from symdiff.backends import numba as numba_backend

    ops = {n.op for n in ancestors(outputs) if n.op in REGISTRY}
    missing = sorted(op for op in ops if numba_backend.unsupported(REGISTRY[op]) is not None)
    if missing:  # the support table says numba does not run it (eye_like: a None-sized seed): refused by name
        with pytest.raises(sd.BackendError, match=f"cannot run op '({'|'.join(missing)})'"):
            sd.compile(outputs, xs, backend="numba")
        return
    got = sd.compile(outputs, xs, backend="numba")(*case.inputs)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype, k
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"output {k}")


# A 0-d value is a scalar in every printed backend's code, however it was made: an array of
# one element reshaped or squeezed to (), a 0-d value broadcast or transposed to (), a product,
# and the consumers that turn a scalar back into an array (np.full in numba), in the forward
# and in the gradient (whose vjps reshape the other way). Each combination against evaluate.
_ZERO_D_MAKERS = {
    "reshape (1,) to ()": lambda v, s, m: sd.reshape(v[:1], ()),
    "reshape () to ()": lambda v, s, m: sd.reshape(s, ()),
    "reshape (1, 1) to ()": lambda v, s, m: sd.reshape(m, ()),
    "squeeze (1, 1)": lambda v, s, m: sd.squeeze(m),
    "broadcast_to ()": lambda v, s, m: sd.broadcast_to(s, ()),
    "transpose ()": lambda v, s, m: sd.transpose(s),
    "sum keepdims reshaped": lambda v, s, m: sd.reshape(sd.sum(v, keepdims=True), ()),
    "v[1]": lambda v, s, m: v[1],
    "m[0, 0]": lambda v, s, m: m[0, 0],
    "prod": lambda v, s, m: sd.prod(v),
    "v @ v": lambda v, s, m: v @ v,
}
_ZERO_D_USERS = {
    "itself": lambda t, v: t,
    "reshape to (-1,)": lambda t, v: sd.reshape(t, (-1,)),
    "expand_dims": lambda t, v: sd.expand_dims(t, 0),
    "broadcast_to (3,)": lambda t, v: sd.broadcast_to(t, (3,)),
    "times v": lambda t, v: t * v,
    "sin": lambda t, v: sd.sin(t),
    "stack": lambda t, v: sd.stack([t, t]),
}


@pytest.mark.parametrize("backend", ["numba", "jax", "c"])
def test_zero_d_values_made_from_arrays_run_on_every_backend(backend):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (the test extra installs it)")
    g = sd.Graph()
    v, s, m = g.variable("v", shape=(3,)), g.variable("s"), g.variable("m", shape=(1, 1))
    outputs = []
    for make in _ZERO_D_MAKERS.values():
        for use in _ZERO_D_USERS.values():
            out = use(make(v, s, m), v)
            outputs += [out, *sd.grad(sd.sum(out * out), [v, s, m])]
    values = (np.array([1.5, -2.0, 0.5]), 0.7, np.array([[0.3]]))
    expected = sd.evaluate(outputs, dict(zip((v, s, m), values)))
    got = sd.compile(outputs, [v, s, m], backend=backend)(*values)
    for node, want, have in zip(outputs, expected, got):
        assert np.shape(have) == np.shape(want), node
        np.testing.assert_allclose(have, want, rtol=1e-12, err_msg=str(node))


def test_numba_hessian_of_a_lagrangian_through_a_0d_reshape():
    """Issue 24's HS71 Lagrangian: l[0] * prod(x) with the product reshaped to (1,) (regression:
    numba was handed np.full((1,), <0-d array>)). Hessian of prod(x): x_1 x_2 x_3 / (x_i x_j) off
    the diagonal, 0 on it."""
    if not HAVE_NUMBA:
        pytest.skip("numba is not installed (the test extra installs it)")
    g = sd.Graph()
    x, lam = g.variable("x", shape=(4,)), g.variable("l", shape=(2,))
    h = sd.hessian(sd.sum(lam[:1] * sd.reshape(sd.prod(x), (-1,))), x)
    xv, lv = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 5.0])
    want = lv[0] * np.prod(xv) / np.outer(xv, xv)
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(sd.compile(h, [x, lam], backend="numba")(xv, lv), want, rtol=1e-12)
