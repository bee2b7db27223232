"""Loops on dask arrays: a scan runs its body per step on dask arrays and stays lazy; a
while_loop computes each step's carry for its condition to read.

Oracle: the numpy interpreter (``sd.evaluate`` on numpy values, itself checked against numpy
loops, closed forms and the unrolled loops in test_loops.py), to 1e-12 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd

from .test_loops_jax import changing_carry, checkpointed_scan, counted_scan

da = pytest.importorskip("dask.array", reason="dask is not installed (the test extra installs it)")

RNG = np.random.default_rng(2026_12_02)


def _chunked(value):
    value = np.asarray(value)
    return da.from_array(value, chunks=tuple(max(1, d // 2) for d in value.shape))


def agree(outputs, inputs, values, on_dask):
    """The outputs computed with the inputs ``on_dask`` bound to dask arrays (the others numpy),
    checked against the numpy interpreter's values; returns the number of tasks dask ran while
    symdiff evaluated (0: nothing was computed until the caller asked)."""
    from dask.callbacks import Callback

    class Counting(Callback):
        ran = 0

        def _pretask(self, key, dask, state):
            Counting.ran += 1

    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    bound = {x: _chunked(v) if x in on_dask else v for x, v in zip(inputs, values)}
    with Counting():
        lazy = sd.evaluate(outputs, bound)
    got = da.compute(*lazy, scheduler="sync")
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale, err_msg=f"output {k}")
    return Counting.ran


def test_a_scan_and_its_derivatives_stay_lazy_and_equal_numpys():
    g = sd.Graph()
    h, xs, w = g.variable("h", (4,)), g.variable("xs", (6, 4)), g.variable("w")
    carry, ys = sd.scan(lambda c, x: (sd.tanh(w * c + x), sd.sum(c * c)), h, xs)
    loss = sd.sum(carry * carry) + sd.sum(ys * np.linspace(0.5, 1.5, 6))
    outputs = [carry, ys, sd.grad(loss, h), sd.grad(loss, xs), sd.hessian(loss, w), sd.hvp(loss, h, np.ones(4))]
    values = [RNG.normal(size=4), RNG.normal(size=(6, 4)), 0.8]
    assert agree(outputs, [h, xs, w], values, {h, xs}) == 0
    assert agree(outputs, [h, xs, w], values, {xs}) == 0


def test_reverse_tuples_int_carries_nested_loops_and_zero_steps():
    g = sd.Graph()
    a, xs, w = g.variable("a", (2,)), g.variable("xs", (5, 2)), g.variable("w")
    wave = sd.composite(lambda c, w: sd.sin(c * w), name="wave")

    def body(c, x):
        i, p = c
        inner, _ = sd.scan(lambda d, _: (wave(d, w) + 0.5 * d, None), p, length=2)
        return (i + 1, inner * 0.9 + x * i), (sd.sum(p), i)

    (i, p), (ys, steps) = sd.scan(body, (0, a), xs, reverse=True)
    empty, none = sd.scan(lambda c, x: (c * w + x, sd.sin(c)), a, xs[:0])
    loss = sd.sum(p * p) + sd.sum(ys) + sd.sum(empty)
    outputs = [i, p, ys, steps, empty, none, sd.grad(loss, a), sd.hessian(loss, a), sd.grad(sd.grad(loss, w), w)]
    agree(outputs, [a, xs, w], [RNG.normal(size=2), RNG.normal(size=(5, 2)), 0.7], {a, xs})


@pytest.mark.parametrize("checkpoint", [sd.checkpoint.every(3), sd.checkpoint.revolve(snapshots=2)], ids=str)
def test_checkpointed_scans_differentiate_as_numpy_does(checkpoint):
    (x, xs, w), loss, values = checkpointed_scan(checkpoint, RNG)
    outputs = [loss, sd.grad(loss, x), sd.hessian(loss, x), sd.grad(sd.grad(loss, w), w)]
    assert agree(outputs, [x, xs, w], values, {x, xs}) == 0


def test_fori_and_while_loops_and_the_while_loops_reverse():
    g = sd.Graph()
    x, w = g.variable("x", (4,)), g.variable("w")
    y = sd.fori_loop(0, 5, lambda i, c: sd.sin(c * w) + i * 0.25, x)
    z = sd.while_loop(lambda c: sd.sum(c) < 8.0, lambda c: c * w + 0.25 * sd.sin(c), x, max_steps=40)
    loss = sd.sum(y * y) + sd.sum(z * z)
    outputs = [y, z, sd.grad(loss, x), sd.hessian(loss, w)]
    ran = agree(outputs, [x, w], [np.array([0.3, 0.5, 0.1, 0.2]), 1.3], {x})
    assert ran > 0  # the while_loop's condition read computed carries


def test_a_while_loop_past_max_steps_raises_loop_error_on_dask_arrays():
    g = sd.Graph()
    x = g.variable("x", (2,))
    y = sd.while_loop(lambda c: sd.sum(c) < 100.0, lambda c: c * 2.0, x, max_steps=3)
    with pytest.raises(sd.LoopError, match=r"the condition still holds after max_steps=3 steps"):
        sd.evaluate(y, {x: _chunked(np.array([0.5, 1.0]))})


def test_a_trip_count_outside_0_to_length_raises_the_interpreters_loop_error():
    (x, count), outs = counted_scan(3)
    assert agree(outs, [x, count], [1.5, np.int64(2)], {x}) == 0
    for n in (4, 5, -1):
        with pytest.raises(sd.LoopError, match=rf"counted: a trip count of {n} is outside 0\.\.3"):
            sd.evaluate(outs, {x: _chunked(1.5), count: np.int64(n)})


@pytest.mark.parametrize("loop", ["scan", "while_loop"])
def test_a_carry_whose_none_dimension_changes_raises_the_interpreters_shape_error(loop):
    x, y, message = changing_carry(loop)
    with pytest.raises(sd.ShapeError, match=message):
        sd.evaluate(y, {x: _chunked(np.arange(3.0))})
