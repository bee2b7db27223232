"""The contracts themselves, as properties over random graphs in every mode.

Each property states one promise of the library and is checked on random programs
(tests/programs.py) in float64, float32, unknown-dimension, integer-valued and deep
modes. The oracles are independent of the code under test: numpy's own shapes,
central finite differences in float64, the same program built with static shapes or in
float64, and bit-for-bit identity where the promise is identity.

``python -m pytest tests/test_contracts.py --hypothesis-profile=long`` runs 1,000 random
graphs per property and mode (the differential fuzz of the closing notes).
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import symdiff as sd
from symdiff.graph import ancestors

from .programs import EXTREME, MODES, Program, programs

seeds = st.integers(0, 2**32 - 1)
TINY = {np.dtype(np.float64): 1e-300, np.dtype(np.float32): 1e-30}
HUGE = {np.dtype(np.float64): 1e300, np.dtype(np.float32): 1e30}


def _graph(program: Program, seed: int):
    g, xs, y, args = program.graph(seed)
    note(f"program: {program}\ngraph:\n{y}\nshapes: {[x.shape for x in xs]} -> {y.shape}")
    return g, xs, y, args


def _scalar_cost(y: sd.Node, seed: int) -> sd.Node:
    """A scalar, well-conditioned function of y that does not depend on y's (maybe unknown) shape."""
    c = 0.25 * (seed % 7) - 0.5
    return sd.sum(0.5 * y * y + c * y) if y.ndim else 0.5 * y * y + c * y


def _static_twin(program: Program) -> Program:
    """The same program in float64 with static shapes: the reference for other modes."""
    return Program(program.shapes, program.steps, "float64" if program.mode != "deep" else "deep", program.constants)


def _rounding_spread(outputs: list[sd.Node], xs: list[sd.Node], args: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """How far the outputs move when the inputs, or any one intermediate value, move by a few
    units in the last place.

    A rewrite that changes rounding is such a perturbation of some intermediate value; in an
    ill-conditioned graph (``cos(x**2187)``) that moves the result far more than the
    magnitudes alone suggest, so comparisons of differently rounded graphs allow it. Moving
    the inputs alone underestimates it after a compressing step (``arcsinh``: an input ulp
    barely moves its output, a rounding of that output does), hence each intermediate too.
    An output that a few ulps turn into nan or inf (``log`` of a value rounding can make
    negative) gets an infinite spread: it is at the edge of its domain.
    """
    rng = np.random.default_rng(seed)
    eps = np.finfo(args[0].dtype).eps if args else np.finfo(np.float64).eps
    bind = dict(zip(xs, args))

    def moved(a):
        return (np.asarray(a) * (1 + 4 * eps * rng.choice([-1, 1], np.shape(a)))).astype(np.asarray(a).dtype)

    inner = [n for n in ancestors(outputs) if n.inputs and not n.is_multi and n.dtype.kind == "f"][:80]
    with np.errstate(all="ignore"):
        before = sd.evaluate(outputs, bind)
        values = sd.evaluate(inner, bind) if inner else []
        trials = [sd.evaluate(outputs, dict(zip(xs, [moved(a) for a in args])))]
        trials += [sd.evaluate(outputs, {**bind, n: moved(v)}) for n, v in zip(inner, values)]
    spread = [np.zeros(np.shape(b)) for b in before]
    for after in trials:
        for k, (b, a) in enumerate(zip(before, after)):
            diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
            spread[k] = np.maximum(spread[k], np.where(np.isnan(diff), np.inf, diff))  # nan: at a domain edge
    return spread


def _tolerance(dtype: np.dtype) -> tuple[float, float]:
    return (2e-3, 1e-3) if dtype == np.float32 else (1e-8, 1e-10)


# -- static shapes --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_static_shape_equals_numpys_shape(mode, data):
    """Every node of a graph and of its derivatives has the static shape numpy computes."""
    program, seed = data.draw(programs(mode=mode, algebra=True, constants=EXTREME)), data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    extra = sd.grad(_scalar_cost(y, seed), xs) + [sd.jacobian(y, xs[0])]
    # a node with several outputs has no shape of its own: its output nodes are checked
    nodes = [n for n in ancestors([y, *extra]) if n.inputs and not n.is_multi]
    if not nodes:
        return  # everything folded to constants (x * 1e-300 in float32 is 0)
    values = sd.evaluate(nodes, dict(zip(xs, args)))
    for n, v in zip(nodes, values):
        actual = np.shape(v)
        assert len(n.shape) == len(actual) and all(s is None or s == a for s, a in zip(n.shape, actual)), (
            f"{n!r}: static shape {n.shape}, numpy gives {actual}"
        )
        assert np.asarray(v).dtype == n.dtype, f"{n!r}: dtype {n.dtype}, numpy gives {np.asarray(v).dtype}"


_INDEX_PARTS = st.one_of(
    st.integers(-2, 1),
    st.slices(2),
    st.just(None),
    st.lists(st.integers(-2, 1), min_size=1, max_size=3),
    st.lists(st.lists(st.integers(-2, 1), min_size=2, max_size=2), min_size=1, max_size=2),
)


@given(st.lists(_INDEX_PARTS, min_size=1, max_size=4), st.booleans(), seeds)
def test_index_expressions_have_numpys_shape_and_gradient(parts, unknown, seed):
    """x[index] for random mixes of ints, slices, None and integer arrays (advanced indices
    adjacent or separated): numpy's shape and values, and the scatter-add gradient."""
    shape = (2, 3, 2, 2)
    index = tuple(np.array(p) if isinstance(p, list) else p for p in parts)
    value = np.random.default_rng(seed).standard_normal(shape)
    try:
        expected = value[index]
    except IndexError:
        return  # numpy refuses it too (too many indices, or arrays that do not broadcast)
    g = sd.Graph()
    x = g.variable("x", shape=tuple(None if unknown and d > 2 else d for d in shape))
    try:
        node = x[index]
    except sd.ShapeError as exc:
        assert "too many" in str(exc) or "broadcast" in str(exc) or "out of bounds" in str(exc), exc
        return
    note(f"x{index!r} -> {node}")
    assert len(node.shape) == expected.ndim
    assert all(s is None or s == a for s, a in zip(node.shape, expected.shape)), (node.shape, expected.shape)
    np.testing.assert_array_equal(sd.evaluate(node, {x: value}), expected)
    weights = np.random.default_rng(seed + 1).standard_normal(expected.shape)
    gradient = sd.evaluate(sd.grad(sd.sum(node * weights), x), {x: value})
    reference = np.zeros(shape)
    np.add.at(reference, index, weights)
    np.testing.assert_allclose(gradient, reference, rtol=1e-12, atol=1e-12)


# -- derivatives ----------------------------------------------------------------------------
def _fd_gradient(y_of, args: list[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    """Central differences of a scalar function of float64 arrays, element by element."""
    out = []
    for k, a in enumerate(args):
        grad = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            shifted = []
            for sign in (1, -1):
                point = [b.astype(np.float64) for b in args]
                point[k][idx] += sign * eps
                shifted.append(y_of(point))
            grad[idx] = (shifted[0] - shifted[1]) / (2 * eps)
        out.append(grad)
    return out


def _richardson_gradient(y_of, args: list[np.ndarray]) -> list[np.ndarray]:
    """Central differences at steps h, h/2, h/4 (h = 1e-3), extrapolated to O(h⁶)."""
    d = [_fd_gradient(y_of, args, eps=h) for h in (1e-3, 5e-4, 2.5e-4)]
    out = []
    for a, b, c in zip(*d):
        r1, r2 = (4 * b - a) / 3, (4 * c - b) / 3
        out.append((16 * r2 - r1) / 15)
    return out


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_gradients_jacobians_and_hessians_match_independent_references(mode, data):
    """grad against central differences; in float32 and unknown-dimension modes also against
    the same program built in float64 with static shapes (grad, jacobian, hessian, hvp)."""
    program, seed = data.draw(programs(mode=mode)), data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    cost = _scalar_cost(y, seed)
    grads = sd.grad(cost, xs)
    values = sd.evaluate(grads, dict(zip(xs, args)))
    rtol, atol = _tolerance(program.dtype)
    twin = _static_twin(program)
    tg, txs, ty, _ = twin.graph(seed)
    tcost = _scalar_cost(ty, seed)

    def cost_at(point):
        return float(sd.evaluate(tcost, dict(zip(txs, point))))

    fd = _fd_gradient(cost_at, [a.astype(float) for a in args])
    coarse = _fd_gradient(cost_at, [a.astype(float) for a in args], eps=1e-5)
    scale = max(1.0, *(float(np.max(np.abs(f), initial=0.0)) for f in fd))
    rtol_fd, atol_fd = max(rtol, 1e-5), max(atol, 1e-6) * scale
    if not all(np.allclose(f, c, rtol=rtol_fd, atol=atol_fd) for f, c in zip(fd, coarse)):
        return  # finite differences disagree with themselves (cos(x**27)): no oracle at this point
    close = all(np.allclose(v, f, rtol=rtol_fd, atol=atol_fd) for v, f in zip(values, fd))
    if not close:
        # A deep program's rounding noise (an eigenvalue routine, high powers) divided by a step
        # of 1e-6 can exceed the tolerance: Richardson-extrapolated differences at larger steps
        # are a second, independent oracle with little of that noise.
        fd = _richardson_gradient(cost_at, [a.astype(float) for a in args])
    for k, (v, f) in enumerate(zip(values, fd)):
        assert np.asarray(v).dtype == program.dtype
        np.testing.assert_allclose(v, f, rtol=rtol_fd, atol=atol_fd, err_msg=f"grad x{k}")
    if mode in ("float32", "unknown"):
        bind = dict(zip(xs, args))
        tbind = dict(zip(txs, [a.astype(np.float64) for a in args]))
        x, tx = xs[0], txs[0]
        v = np.random.default_rng(seed).standard_normal(args[0].shape).astype(program.dtype)
        ours = sd.evaluate([sd.jacobian(y, x), sd.hessian(cost, x), sd.hvp(cost, x, v)], bind)
        theirs = sd.evaluate([sd.jacobian(ty, tx), sd.hessian(tcost, tx), sd.hvp(tcost, tx, v.astype(float))], tbind)
        for what, a, b in zip(("jacobian", "hessian", "hvp"), ours, theirs):
            assert np.shape(a) == np.shape(b), what
            big = max(1.0, float(np.max(np.abs(b), initial=0.0)))
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * big, err_msg=what)


@pytest.mark.parametrize("mode", ("float64", "deep"))
@given(data=st.data())
def test_hessians_match_differences_of_the_gradient_and_simplify_keeps_them(mode, data):
    """Hessians (built with the identity-product folds of the rule table) against central
    differences of the gradient, and sd.simplify of a Hessian against the Hessian."""
    program, seed = data.draw(programs(mode=mode)), data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    cost = _scalar_cost(y, seed)
    x = xs[0]
    hess, grad = sd.hessian(cost, x), sd.grad(cost, x)
    bind = dict(zip(xs, args))
    h = np.asarray(sd.evaluate(hess, bind), dtype=np.float64)
    n = args[0].size
    columns = []
    for eps in (1e-5, 1e-4):
        cols = []
        for j in range(n):
            step = np.zeros(n)
            step[j] = eps
            at = [(args[0] + sign * step.reshape(args[0].shape)) for sign in (1, -1)]
            ga, gb = (np.asarray(sd.evaluate(grad, {**bind, x: a}), dtype=np.float64) for a in at)
            cols.append(((ga - gb) / (2 * eps)).reshape(-1))
        columns.append(np.stack(cols, axis=-1) if cols else np.zeros((n, 0)))
    fd, coarse = columns
    scale = max(1.0, float(np.max(np.abs(fd), initial=0.0)))
    if not np.allclose(fd, coarse, rtol=1e-4, atol=1e-5 * scale):
        return  # differences disagree with themselves: no oracle at this point
    np.testing.assert_allclose(h.reshape(n, n), fd, rtol=1e-4, atol=1e-5 * scale)
    simpler = sd.simplify(hess)
    assert simpler.shape == hess.shape and simpler.dtype == hess.dtype
    np.testing.assert_allclose(sd.evaluate(simpler, bind), h, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_reverse_and_forward_mode_agree(mode, data):
    program, seed = data.draw(programs(mode=mode)), data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    rng = np.random.default_rng(seed)
    u = [rng.standard_normal(a.shape).astype(program.dtype) for a in args]
    cost = _scalar_cost(y, seed)
    bind = dict(zip(xs, args))
    outputs = [*sd.grad(cost, xs), sd.jvp(cost, xs, u)]
    *grads, tangent = sd.evaluate(outputs, bind)
    reverse = sum(float(np.sum(gk.astype(float) * uk)) for gk, uk in zip(grads, u))
    spread = float(np.max(_rounding_spread(outputs, xs, args, seed)[-1], initial=0.0))
    rtol, atol = _tolerance(program.dtype)
    if not np.isfinite(spread):  # a few ulps make it nan: at a domain's edge, both modes may say so
        assert np.isnan(reverse) == np.isnan(float(tangent)) or not np.isfinite(reverse * float(tangent))
        return
    allowed = atol * 10 * max(1.0, abs(reverse)) + 100 * spread
    assert reverse == pytest.approx(float(tangent), rel=rtol * 10, abs=allowed)


@given(programs(mode="float32"), seeds)
def test_float32_derivatives_stay_float32(program, seed):
    """No node of a float32 graph's derivatives is float64, so compile and evaluate agree."""
    g, xs, y, args = _graph(program, seed)
    # plus the ops whose derivatives build masks: maximum, minimum, max, min, abs, relu, where
    cost = _scalar_cost(y, seed) + sd.sum(sd.maximum(y, -y) + sd.minimum(y, 0.5) + sd.abs(y) + sd.relu(y))
    cost = cost + sd.max(y) - sd.min(y) + sd.sum(sd.where(y > 0, y, 0.0))
    t = [np.ones(a.shape, np.float32) for a in args]
    derived = [*sd.grad(cost, xs), sd.jvp(cost, xs, t), sd.hessian(cost, xs[0]), sd.jacobian(y, xs[0])]
    wide = [n for n in ancestors(derived) if n.dtype == np.float64]
    assert not wide, f"float64 nodes in a float32 graph's derivatives: {wide[:3]}"


# -- evaluation, simplification, files ----------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_compile_equals_evaluate_bit_for_bit(mode, data):
    program, seed = data.draw(programs(mode=mode)), data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    outputs = [y, *sd.grad(_scalar_cost(y, seed), xs)]
    interpreted = sd.evaluate(outputs, dict(zip(xs, args)))
    for a, b in zip(sd.compile(outputs, inputs=xs)(*args), interpreted):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_simplify_never_changes_a_finite_value(mode, data):
    """Where every intermediate value of the original is finite (and below the overflow
    threshold by a margin, see docs/simplify), the simplified graph gives the same values
    up to rounding; the same shapes and dtypes always."""
    program = data.draw(programs(mode=mode, algebra=True, constants=EXTREME))
    seed = data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    outputs = [y, *sd.grad(_scalar_cost(y, seed), xs)]
    simpler = sd.simplify(outputs)
    bind = dict(zip(xs, args))
    everything = ancestors(outputs)
    with np.errstate(all="ignore"):
        values = sd.evaluate(everything, bind)
    values_of_nodes = [v for v in values if not isinstance(v, tuple)]  # a tuple: outputs, each a node too
    magnitudes = [np.abs(np.asarray(v, dtype=np.float64)) for v in values_of_nodes if np.asarray(v).dtype.kind == "f"]
    if not all(np.all(np.isfinite(m)) for m in magnitudes):
        return  # the promise is about finite values
    scale = max(float(np.max(m, initial=0.0)) for m in magnitudes)
    if scale > HUGE[program.dtype]:
        return  # reassociating sums this close to the overflow threshold may overflow
    eps = float(np.finfo(program.dtype).eps)
    spreads = _rounding_spread(outputs, xs, args, seed)
    for node, original, got, spread in zip(simpler, outputs, sd.evaluate(simpler, bind), spreads):
        assert node.shape == original.shape and node.dtype == original.dtype
        want = values[everything.index(original)]
        robust = np.isfinite(spread)  # where a few ulps anywhere leave the value finite
        assert np.all(np.isfinite(got) | ~robust), f"simplify turned a finite value into {got}: {original} -> {node}"
        got, want, spread = (np.where(robust, v, 0.0) for v in (got, want, spread))
        allowed = 1e4 * eps * max(scale, TINY[program.dtype]) + 100 * spread
        assert np.all(np.abs(np.asarray(got, dtype=float) - np.asarray(want, dtype=float)) <= allowed), (
            f"simplify changed a value: {want} -> {got} (allowed {allowed}): {original} -> {node}"
        )


def _same_node(a: sd.Node, b: sd.Node) -> None:
    assert (a.op, a.name, a.shape, a.dtype, a.is_gradient, a.index) == (
        b.op,
        b.name,
        b.shape,
        b.dtype,
        b.is_gradient,
        b.index,
    )
    assert [u.index for u in a.inputs] == [u.index for u in b.inputs]
    assert dict(a._attrs) == dict(b._attrs)
    if a.op == "constant":
        assert np.array_equal(a.value, b.value, equal_nan=True), (a, b)
        assert np.array_equal(np.signbit(a.value), np.signbit(b.value)), (a, b)  # -0.0 and -nan too
        assert a.uniform == b.uniform or (np.isnan(a.uniform) and np.isnan(b.uniform)), (a, b)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_a_loaded_graph_is_the_same_graph(mode, data):
    """Save, load: the same nodes (op, inputs, attrs, shape, dtype, constants to the bit,
    is_gradient) at the same indices, the named outputs, the same values, and
    differentiating it again appends what differentiating the original appends."""
    program, seed = data.draw(programs(mode=mode, constants=EXTREME)), data.draw(seeds)
    g, xs, y, args = _graph(program, seed)
    cost = _scalar_cost(y, seed)
    named = {"y": y, "grad": sd.grad(cost, xs[0]), "jac": sd.jacobian(y, xs[0]), "hess": sd.hessian(cost, xs[0])}
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "g.json"
        g.save(path, outputs=named)
        h = sd.load(path)
    assert len(h) == len(g)
    for a, b in zip(g.nodes, h.nodes):
        _same_node(a, b)
    assert {k: v.index for k, v in h.outputs.items()} == {k: v.index for k, v in named.items()}
    bind = {x.name: a for x, a in zip(xs, args)}
    for a, b in zip(sd.evaluate(list(named.values()), bind), sd.evaluate(list(h.outputs.values()), bind)):
        np.testing.assert_array_equal(a, b)
    before = (len(g), len(h))
    sd.hessian(cost, xs[0])
    sd.hessian(h.nodes[cost.index], h[xs[0].name])
    assert (len(g), len(h)) == before  # both reuse what is there, seeds included
