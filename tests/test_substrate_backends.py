"""Nodes with several outputs (eigh, slogdet, a composite returning a tuple) and nodes that run
a body (sd.composite) on every backend: the same numbers as numpy (to 1e-12), the same
ShapeError, and eigh's LAPACK called once per evaluation.

Oracles: numpy.linalg itself (eigh, slogdet), closed forms written with numpy, and finite
differences of those; the backends are compared with the numpy interpreter. The numba cases
build native code for tens of seconds: their ids hold "[numba]", which tests/conftest.py marks slow.
"""

import importlib.util

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import installed

BACKENDS = ["evaluate", "compile", "source", "jax", "numba", "dask"]
A0 = np.array([[2.0, 0.3, -0.4], [0.1, 1.0, 0.2], [-0.2, 0.5, -1.0]])
X0 = np.array([0.3, -1.0, 2.0])
W0 = np.array([1.0, 2.0, -1.0])
C1 = np.array([1.0, 2.0, 3.0])
M = np.arange(9.0).reshape(3, 3)


def _available(backend):
    if backend in ("jax", "numba"):
        return installed(backend)
    if backend == "dask":
        return importlib.util.find_spec("dask") is not None
    return True


def run(backend, outputs, inputs, values):
    """The outputs' values (a list of numpy arrays) computed by ``backend``."""
    if not _available(backend):
        pytest.skip(f"{backend} is not installed (the test extra installs it)")
    if backend == "evaluate":
        got = sd.evaluate(outputs, dict(zip(inputs, values)))
    elif backend == "dask":
        import dask.array as da

        lazy = sd.evaluate(outputs, {n: da.from_array(v, chunks=-1) for n, v in zip(inputs, values)})
        got = da.compute(*lazy, scheduler="sync")
    elif backend == "source":
        namespace = {}
        exec(sd.to_source(outputs, inputs), namespace)
        got = namespace["f"](*values)
    else:
        got = sd.compile(outputs, inputs, backend="numpy" if backend == "compile" else backend)(*values)
    return [np.asarray(r) for r in got]


def agree(backend, outputs, inputs, values):
    """The backend's values, checked against the numpy interpreter's to 1e-12."""
    got = run(backend, outputs, inputs, values)
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == np.shape(b), (k, a.shape, np.shape(b))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{backend}: output {k}")
    return got


# -- the graphs ----------------------------------------------------------------------------


def _matrix_graph():
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, v = sd.eigh(A)
    sign, logabs = sd.slogdet(A)
    return g, A, w, v, sign, logabs


def _eigh_slogdet_cost():
    g, A, w, v, sign, logabs = _matrix_graph()
    return A, sd.sum(w * C1) + sd.sum(v**2 * M) + sign * logabs


def _numpy_eigh_slogdet_cost(a):
    w, v = np.linalg.eigh((a + a.T) / 2)
    sign, logabs = np.linalg.slogdet(a)
    return (w * C1).sum() + (v**2 * M).sum() + sign * logabs


def _composite_graph():
    """softclip (one output, called twice), two (two outputs, captures W), inner (calls softclip)."""
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    W = g.variable("W", shape=(3,))
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    two = sd.composite(lambda x: (sd.sum(x * W), x * x), name="two")
    inner = sd.composite(lambda x: softclip(x, 3.0) * 2.0, name="inner")
    a, b = two(x)
    parts = {
        "one": softclip(x, 2.0) + softclip(2 * x, 2.0),
        "several": (a, b),
        "inner": inner(x),
    }
    cost = sd.sum(parts["one"]) + a * sd.sum(b) + sd.sum(parts["inner"])
    return x, W, parts, cost


def _numpy_composite_cost(x, w):
    one = 2 * np.tanh(x / 2) + 2 * np.tanh(x)
    return one.sum() + (x * w).sum() * (x * x).sum() + (6 * np.tanh(x / 3)).sum()


def _fd_grad(f, x, h=1e-6):
    out = np.zeros(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = h
        out[k] = (f(x + e.reshape(x.shape)) - f(x - e.reshape(x.shape))) / (2 * h)
    return out.reshape(x.shape)


def _fd_hessian(f, x, h=1e-4):
    n = x.size
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ei = np.zeros(n)
            ej = np.zeros(n)
            ei[i] = h
            ej[j] = h
            ei, ej = ei.reshape(x.shape), ej.reshape(x.shape)
            out[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h * h)
    return out


# -- the oracles hold for the numpy interpreter ------------------------------------------------


def test_the_graphs_compute_their_closed_forms():
    g, A, w, v, sign, logabs = _matrix_graph()
    got_w, got_v, got_s, got_l = sd.evaluate([w, v, sign, logabs], {A: A0})
    want_w, want_v = np.linalg.eigh((A0 + A0.T) / 2)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-12)
    np.testing.assert_allclose(got_v**2, want_v**2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((got_s, got_l), np.linalg.slogdet(A0), rtol=1e-12)
    A, cost = _eigh_slogdet_cost()
    np.testing.assert_allclose(sd.evaluate(cost, {A: A0}), _numpy_eigh_slogdet_cost(A0), rtol=1e-12)
    grad = sd.evaluate(sd.grad(cost, A), {A: A0})
    np.testing.assert_allclose(grad, _fd_grad(_numpy_eigh_slogdet_cost, A0), rtol=1e-6, atol=1e-7)
    hessian = sd.evaluate(sd.hessian(cost, A), {A: A0}).reshape(9, 9)
    np.testing.assert_allclose(hessian, _fd_hessian(_numpy_eigh_slogdet_cost, A0), rtol=1e-4, atol=1e-5)
    x, W, parts, cost = _composite_graph()
    one, inner = sd.evaluate([parts["one"], parts["inner"]], {x: X0})
    np.testing.assert_allclose(one, 2 * np.tanh(X0 / 2) + 2 * np.tanh(X0), rtol=1e-12)
    np.testing.assert_allclose(inner, 6 * np.tanh(X0 / 3), rtol=1e-12)
    a, b = sd.evaluate(list(parts["several"]), {x: X0, W: W0})
    np.testing.assert_allclose((a, *b), ((X0 * W0).sum(), *(X0 * X0)), rtol=1e-12)
    values = {x: X0, W: W0}
    np.testing.assert_allclose(sd.evaluate(cost, values), _numpy_composite_cost(X0, W0), rtol=1e-12)
    f = lambda p: _numpy_composite_cost(p, W0)  # noqa: E731
    np.testing.assert_allclose(sd.evaluate(sd.grad(cost, x), values), _fd_grad(f, X0), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(sd.evaluate(sd.hessian(cost, x), values), _fd_hessian(f, X0), rtol=1e-5, atol=1e-6)


# -- every backend agrees with numpy ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_eigh_values_and_vectors(backend):
    g, A, w, v, sign, logabs = _matrix_graph()
    got_w, got_v = run(backend, [w, v], [A], [A0])
    want_w, want_v = np.linalg.eigh((A0 + A0.T) / 2)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-12, atol=1e-12)
    # the vectors up to sign: their squares, and the matrix they rebuild
    np.testing.assert_allclose(got_v**2, want_v**2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_v @ np.diag(got_w) @ got_v.T, (A0 + A0.T) / 2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slogdet_both_outputs(backend):
    g, A, w, v, sign, logabs = _matrix_graph()
    got = agree(backend, [sign, logabs], [A], [A0])
    np.testing.assert_allclose(got, np.linalg.slogdet(A0), rtol=1e-12)


@pytest.mark.parametrize("part", ["one", "several", "inner"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_composites(backend, part):
    """One output, several outputs (capturing the outer W), a composite calling another."""
    x, W, parts, cost = _composite_graph()
    outputs = list(parts[part]) if isinstance(parts[part], tuple) else [parts[part]]
    agree(backend, outputs, [x, W], [X0, W0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_derivatives_through_composites(backend):
    x, W, parts, cost = _composite_graph()
    v = np.array([0.5, -1.0, 2.0])
    outputs = [cost, sd.grad(cost, x), sd.grad(cost, W), sd.hessian(cost, x), sd.hvp(cost, x, v)]
    agree(backend, outputs, [x, W], [X0, W0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_derivatives_through_eigh_and_slogdet(backend):
    A, cost = _eigh_slogdet_cost()
    V = np.linspace(-1.0, 1.0, 9).reshape(3, 3)
    outputs = [cost, sd.grad(cost, A), sd.hessian(cost, A), sd.hvp(cost, A, V)]
    agree(backend, outputs, [A], [A0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_composite_of_eigh(backend):
    """A body with a node of several outputs inside, itself returning several outputs."""
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    spectrum = sd.composite(lambda a: sd.eigh(a), name="spectrum")
    w, v = spectrum(A)
    cost = sd.sum(w * C1) + sd.sum(v**2 * M)
    outputs = [w, v**2, cost, sd.grad(cost, A)]
    agree(backend, outputs, [A], [A0])


# -- bad shapes: the same ShapeError ------------------------------------------------------------


def _unfit_graph():
    g = sd.Graph()
    A = g.variable("A", shape=(None, None))
    x = g.variable("x", shape=(None,))
    mv = sd.composite(lambda x, a: sd.matmul(a, x), name="mv")
    return A, x, sd.sum(mv(x, A)) + sd.sum(sd.slogdet(A)[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_shapes_raise_numpys_shape_error(backend):
    A, x, y = _unfit_graph()
    values = [np.eye(3), np.ones(4)]
    if backend != "numba" and not _available(backend):
        pytest.skip(f"{backend} is not installed")
    with pytest.raises(sd.ShapeError) as expected:
        sd.evaluate(y, dict(zip([A, x], values)))
    if backend == "source":  # the module's own ShapeError (it imports no symdiff), a ValueError naming the op
        namespace = {}
        exec(sd.to_source(y, [A, x]), namespace)
        with pytest.raises(namespace["ShapeError"], match="matmul: the values reaching it have shapes"):
            namespace["f"](*values)
        return
    with pytest.raises(sd.ShapeError) as got:
        run(backend, [y], [A, x], values)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_square_matrix_raises_numpys_shape_error(backend):
    g = sd.Graph()
    A = g.variable("A", shape=(None, None))
    w, v = sd.eigh(A)
    with pytest.raises(sd.ShapeError) as expected:
        sd.evaluate([w, v], {A: np.ones((2, 3))})
    if backend == "source":
        namespace = {}
        exec(sd.to_source([w, v], [A]), namespace)
        with pytest.raises(namespace["ShapeError"], match="eigh"):
            namespace["f"](np.ones((2, 3)))
        return
    with pytest.raises(sd.ShapeError) as got:
        run(backend, [w, v], [A], [np.ones((2, 3))])
    assert str(got.value) == str(expected.value)


# -- eigh calls LAPACK once per evaluation ------------------------------------------------------


@pytest.fixture
def eigh_calls(monkeypatch):
    """How many times numpy's eigh runs (the forwards look it up as xp.linalg.eigh)."""
    calls = []
    original = np.linalg.eigh

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigh", counted)
    return calls


def _values_and_gradient():
    A, cost = _eigh_slogdet_cost()
    return A, [cost, sd.grad(cost, A)]


@pytest.mark.parametrize("backend", ["evaluate", "compile", "source", "dask"])
def test_eigh_runs_lapack_once(backend, eigh_calls):
    g, A, w, v, sign, logabs = _matrix_graph()
    run(backend, [w, v], [A], [A0])
    assert len(eigh_calls) == 1
    A, outputs = _values_and_gradient()
    if backend == "dask":  # eigh_gaps (in the gradient) reads its values while the graph is built
        outputs = outputs[:1]
    eigh_calls.clear()
    run(backend, outputs, [A], [A0])
    assert len(eigh_calls) == 1


def test_the_emitted_source_calls_eigh_once():
    A, outputs = _values_and_gradient()
    source = sd.to_source(outputs, [A])
    assert source.count("linalg.eigh(") == 1  # the one forward, copied once
    main = source[source.index("\ndef compiled(") : source.index("\ndef _compiled_careful(")]
    assert main.count("eigh(") == 1  # one call in the function


def _primitives(jaxpr, name):
    """How many equations of primitive ``name`` a jaxpr holds, inside nested jaxprs too."""
    found = 0
    for eqn in jaxpr.eqns:
        found += eqn.primitive.name == name
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _primitives(inner, name)
    return found


def test_jax_traces_eigh_once():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    A, outputs = _values_and_gradient()
    f = sd.compile(outputs, [A], backend="jax")
    calls = []
    original = jnp.linalg.eigh

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    jnp.linalg.eigh = counted
    try:
        with jax.enable_x64(True):
            jaxpr = jax.make_jaxpr(f.jax_function)(A0)
    finally:
        jnp.linalg.eigh = original
    assert len(calls) == 1
    assert _primitives(jaxpr.jaxpr, "eigh") == 1
