"""Graphs evaluated on dask arrays: lazy dask arrays out, nothing computed inside symdiff,
the same values as numpy on any scheduler (a two-process dask.distributed cluster too);
every op case runs on dask arrays (value and derivatives equal to numpy's), or is refused
by name before anything runs, as the support table says (issue 19, H8)."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd

da = pytest.importorskip("dask.array", reason="dask is not installed (the test extra installs it)")

from symdiff.backends import dask as dask_backend  # noqa: E402
from symdiff.graph import ancestors  # noqa: E402
from symdiff.ops import REGISTRY  # noqa: E402

from .op_cases import CASES  # noqa: E402
from .test_backends import _build  # noqa: E402


def _logistic():
    g = sd.Graph()
    X, y, w = g.variable("X", shape=(None, 4)), g.variable("y", shape=(None,)), g.variable("w", shape=(4,))
    z = X @ w
    loss = sd.mean(sd.softplus(z) - y * z)
    return (X, y, w), [loss, sd.grad(loss, w), sd.hessian(loss, w)]


def _data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.standard_normal(n) > 0).astype(np.float64)
    return X, y, np.array([0.1, -0.2, 0.3, 0.0])


def test_dask_arrays_in_lazy_dask_arrays_out_and_the_same_values():
    from dask.callbacks import Callback

    (X, y, w), outputs = _logistic()
    Xv, yv, wv = _data()
    expected = sd.evaluate(outputs, {X: Xv, y: yv, w: wv})

    class Counting(Callback):
        ran = 0

        def _pretask(self, key, dask, state):
            Counting.ran += 1

    Xd, yd = da.from_array(Xv, chunks=(500, 4)), da.from_array(yv, chunks=500)
    with Counting():
        lazy = sd.evaluate(outputs, {X: Xd, y: yd, w: wv})
    assert Counting.ran == 0  # nothing was computed inside symdiff
    assert all(isinstance(v, da.Array) for v in lazy)
    assert lazy[1].shape == (4,) and lazy[2].shape == (4, 4)
    for got, want in zip(da.compute(*lazy, scheduler="threads"), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # the mean over the chunked rows is dask's tree reduction over the chunks
    assert len(lazy[0].__dask_graph__()) > len(Xd.__dask_graph__())


def test_a_two_process_distributed_cluster_computes_the_same():
    distributed = pytest.importorskip("distributed", reason="distributed is not installed (the test extra installs it)")
    (X, y, w), outputs = _logistic()
    Xv, yv, wv = _data(4000, seed=1)
    expected = sd.evaluate(outputs, {X: Xv, y: yv, w: wv})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            Xd, yd = da.from_array(Xv, chunks=(1000, 4)), da.from_array(yv, chunks=1000)
            lazy = sd.evaluate(outputs, {X: Xd, y: yd, w: wv})
            got = client.compute(lazy, sync=True)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_an_op_dask_cannot_run_is_refused_by_name_before_anything_runs():
    g = sd.Graph()
    A = g.variable("A", shape=(None,))
    B = sd.astype(sd.arange(sd.count(A)), np.float64) * A  # arange's length is a value
    n = len(g)
    with pytest.raises(sd.BackendError, match="op 'arange' cannot run on dask arrays"):
        sd.evaluate(B, {A: da.from_array(np.ones(3), chunks=3)})
    assert len(g) == n
    np.testing.assert_allclose(sd.evaluate(B, {A: np.ones(3)}), [0.0, 1.0, 2.0])
    # scipy's expm, which dask has not, runs as numpy's forward in one task
    M = g.variable("M", shape=(3, 3))
    np.testing.assert_allclose(sd.evaluate(sd.expm(M), {M: da.zeros((3, 3), chunks=2)}).compute(), np.eye(3))


# -- every op on dask arrays (issue 19, H8) -----------------------------------------------------


def _chunked(value: np.ndarray):
    """A dask array of ``value`` in several chunks (about half of each axis)."""
    return da.from_array(value, chunks=tuple(max(1, d // 2) for d in value.shape))


def _on_dask(case, first_only: bool):
    xs, outputs = _build(case)
    values = [np.asarray(a) for a in case.inputs]
    bound = {x: _chunked(v) if not first_only or k == 0 else v for k, (x, v) in enumerate(zip(xs, values))}
    return xs, outputs, values, bound


@pytest.mark.parametrize("first_only", [False, True], ids=["all-dask", "first-dask"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_op_case_runs_on_dask_as_on_numpy_or_is_refused_by_name(case, first_only):
    """Contract: with dask arrays bound (all inputs, or one beside numpy ones), the value, the
    gradient and a second derivative are lazy and equal numpy's; or an op the support table
    marks "none" is refused by name before anything is built or computed."""
    xs, outputs, values, bound = _on_dask(case, first_only)
    refused = sorted(
        {n.op for n in ancestors(outputs) if n.op in REGISTRY and dask_backend.unsupported(REGISTRY[n.op])}
    )
    if refused:
        g, n = outputs[0].graph, len(outputs[0].graph)
        with pytest.raises(sd.BackendError, match=f"op '({'|'.join(refused)})' cannot run on dask arrays"):
            sd.evaluate(outputs, bound)
        assert len(g) == n
        return
    expected = sd.evaluate(outputs, dict(zip(xs, values)))
    lazy = sd.evaluate(outputs, bound)
    got = da.compute(*lazy, scheduler="sync")
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"output {k}")


def test_the_support_table_says_how_dask_runs_every_op():
    for name, op in REGISTRY.items():
        text = dask_backend.support(op)
        assert text.startswith(("`da.", "forward (xp = dask.array)", "numpy's forward", "none: ")), (name, text)
        assert text.startswith("none: ") == (dask_backend.unsupported(op) is not None), name


def _lazy_equals(outputs, numpy_bindings, dask_bindings):
    from dask.callbacks import Callback

    class Counting(Callback):
        ran = 0

        def _pretask(self, key, dask, state):
            Counting.ran += 1

    with Counting():
        lazy = sd.evaluate(outputs, dask_bindings)
    assert Counting.ran == 0  # nothing computed inside symdiff
    got = da.compute(*lazy)
    for a, b in zip(got, sd.evaluate(outputs, numpy_bindings)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    return got


def test_the_issue_examples_run_on_dask():
    from scipy.special import erf

    rng = np.random.default_rng(0)
    g = sd.Graph()
    v, A = g.variable("v", shape=(6,)), g.variable("A", shape=(3, 3))
    vv, M = rng.standard_normal(6), rng.standard_normal((3, 3))
    S = M @ M.T + 3 * np.eye(3)
    y = sd.erf(v)
    got = _lazy_equals([y, sd.grad(sd.sum(y), v)], {v: vv}, {v: _chunked(vv)})
    np.testing.assert_allclose(got[0], erf(vv), rtol=1e-15)
    np.testing.assert_allclose(got[1], 2 / np.sqrt(np.pi) * np.exp(-(vv**2)), rtol=1e-14)
    w, _ = sd.eigh(A)
    ld = sd.logdet(A)
    got = _lazy_equals([w, ld, sd.grad(ld, A), sd.grad(sd.sum(w * w), A)], {A: S}, {A: _chunked(S)})
    np.testing.assert_allclose(got[0], np.linalg.eigvalsh(S), rtol=1e-12)
    np.testing.assert_allclose(got[2], np.linalg.inv(S).T, rtol=1e-12)  # d logdet = inv(A).T
    np.testing.assert_allclose(got[3], 2 * S, rtol=1e-12)  # d sum(eig**2) = d trace(A @ A) = 2 A.T
    # gradients of trace and of integer indexing: the hand-derived cotangents
    tr = sd.trace(A) if hasattr(sd, "trace") else sd.sum(sd.diagonal(A))
    picked = A[np.array([0, 2, 0]), np.array([1, 1, 1])]
    got = _lazy_equals([sd.grad(tr, A), sd.grad(sd.sum(picked), A)], {A: S}, {A: _chunked(S)})
    np.testing.assert_array_equal(got[0], np.eye(3))
    np.testing.assert_array_equal(got[1], [[0, 2, 0], [0, 0, 0], [0, 1, 0]])


def test_a_dask_input_meeting_numpy_only_values_and_empty_chunks():
    g = sd.Graph()
    x, u = g.variable("x", shape=(3,)), g.variable("u", shape=(3,))
    y = sd.cumsum(u) * x  # cumsum of a numpy-bound variable: numpy computes it
    xv, uv = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    got = _lazy_equals([y, *sd.grad(sd.sum(y * y), [x, u])], {x: xv, u: uv}, {x: _chunked(xv), u: uv})
    np.testing.assert_array_equal(got[0], np.cumsum(uv) * xv)
    # prod over a length-1 axis: its gradient pads an empty array (dask cannot pad one)
    X = g.variable("X", shape=(3, 1))
    Xv = np.array([[1.0], [2.0], [3.0]])
    p = sd.prod(X, axis=1)
    got = _lazy_equals([p, sd.grad(sd.sum(p * p), X)], {X: Xv}, {X: _chunked(Xv)})
    np.testing.assert_array_equal(got[1], 2 * Xv)  # d/dx x**2


def test_arange_is_refused_on_dask_before_anything_runs():
    g = sd.Graph()
    X = g.variable("X", shape=(None,))
    y = sd.sum(X * sd.astype(sd.arange(sd.count(X)), np.float64))
    n = len(g)
    with pytest.raises(sd.BackendError, match="op 'arange' cannot run on dask arrays"):
        sd.evaluate(y, {X: _chunked(np.ones(4))})
    assert len(g) == n


@pytest.mark.parametrize("shape", [(), (3,), (2, 2), (2, 1, 1), (0, 2)], ids=str)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_of_indices_of_any_dimension_is_numpys_on_dask_arrays(shape, axis):
    """dask's take takes one-dimensional indices: 0-d, several dimensions and none at all too."""
    g = sd.Graph()
    x = g.variable("x", shape=(4, 5))
    xv = np.arange(20.0).reshape(4, 5)
    idx = (np.arange(int(np.prod(shape))) % 3 - 1).reshape(shape)  # -1, 0, 1, ...: negative too
    y = sd.take(x, g.constant(idx), axis=axis)
    got = sd.evaluate(y, {x: da.from_array(xv, chunks=(2, 2))})
    np.testing.assert_array_equal(np.asarray(got), np.take(xv, idx, axis=axis))
