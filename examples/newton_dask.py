"""Logistic regression by Newton's method on data that never sits in memory: a dask array
of 10^7 x 16 (1.28 GB) in chunks of 10^5 rows, made chunk by chunk as it is read.

symdiff builds the loss, its gradient and its Hessian once, as graphs; bound to dask arrays
they evaluate to lazy dask arrays, and dask computes each Newton step chunk by chunk (sums
over the rows are tree reductions), holding a few chunks at a time.

Run:  python examples/newton_dask.py            # 10^7 rows (a minute or two on 2 cores)
      python examples/newton_dask.py 1000000    # fewer rows
Needs dask:  python -m pip install ".[dask]"
"""

import resource
import sys
import time

import dask
import dask.array as da
import numpy as np

import symdiff as sd

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
features, chunk = 16, 100_000
true_w = np.linspace(-1.0, 1.0, features)


def data():
    """The same rows every time they are read: X from a seeded generator, y from a logistic model."""
    state = da.random.RandomState(0)
    X = state.standard_normal((rows, features), chunks=(chunk, features))
    noise = state.logistic(size=rows, chunks=chunk)
    y = (X @ true_w + noise > 0).astype(np.float64)
    return X, y


g = sd.Graph()
X, y, w = g.variable("X", shape=(None, features)), g.variable("y", shape=(None,)), g.variable("w", shape=(features,))
z = X @ w
loss = sd.mean(sd.softplus(z) - y * z)
gradient, hessian = sd.grad(loss, w), sd.hessian(loss, w)
print(f"Hessian: {sd.simplify(hessian)}")

Xd, yd = data()
print(f"data: {rows:,} x {features} float64 = {rows * features * 8 / 1e9:.2f} GB in {Xd.numblocks[0]} chunks")
wv = np.zeros(features)
start = time.perf_counter()
with dask.config.set(scheduler="threads"):
    for step in range(1, 9):
        lazy = sd.evaluate([loss, gradient, hessian], {X: Xd, y: yd, w: wv})  # dask arrays: nothing computed yet
        value, gw, H = dask.compute(*lazy)
        wv = wv - np.linalg.solve(H, gw)
        elapsed = time.perf_counter() - start
        print(f"step {step}: loss {value:.6f}, |gradient| {np.linalg.norm(gw):.2e}, {elapsed:.1f} s")
        if np.linalg.norm(gw) < 1e-10:
            break
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
print(f"converged: |w - true w| = {np.linalg.norm(wv - true_w):.3f}; peak memory {peak:.2f} GB")
