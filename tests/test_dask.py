"""Graphs evaluated on dask arrays: lazy dask arrays out, nothing computed inside symdiff,
the same values as numpy on any scheduler (a two-process dask.distributed cluster too)."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd

da = pytest.importorskip("dask.array", reason="dask is not installed (the test extra installs it)")


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
    distributed = pytest.importorskip("distributed")
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
