"""The numba backend's vectorizable sin, cos and tanh (symdiff/backends/numba_kernels.py): the
forms a fused loop inlines so that LLVM vectorizes it, and the loop's fallback to numpy's own
functions where an argument of sin or cos is out of their range.

Oracles: numpy's sin, cos and tanh (the C library's), to 2 ulps over wide random samples and at
the special values; the numpy backend (``sd.evaluate``) for compiled graphs, to 1e-12 relative
(and exactly where the fallback runs numpy's functions).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import installed

pytestmark = pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")


@pytest.fixture(scope="module")
def kernels():
    import numba

    from symdiff.backends import numba_kernels as k

    @numba.njit(error_model="numpy")
    def run(x, out, which):
        for i in range(x.size):
            v = x[i]
            if which == 0:
                out[i] = k.sin_fast(v)
            elif which == 1:
                out[i] = k.cos_fast(v)
            elif which == 2:
                out[i] = k.tanh_fast(v)
            elif which == 3:
                out[i] = k.exp_fast(v)
            else:
                out[i] = k.log_fast(v)

    def apply(which, x):
        out = np.empty_like(x)
        run(x, out, which)
        return out

    return k, apply


def _samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sign = rng.choice([-1.0, 1.0], 200_000)
    return {
        "normal": rng.standard_normal(200_000) * 3,
        "wide": rng.uniform(-8e5, 8e5, 200_000),
        "log-spaced": np.exp(rng.uniform(-700, 13.6, 200_000)) * sign,
        "near multiples of pi/2": np.arange(-4000, 4000) * (np.pi / 2) + rng.choice([0.0, 1e-9, -1e-12], 8000),
        "special": np.array(
            [0.0, -0.0, 5e-324, -1e-310, 1e-300, 0.625, -0.625, np.nextafter(0.625, 0), 1.0, 22.0, 22.5, 44.0, 700.0]
        ),
    }


@pytest.mark.parametrize("which, reference", [(0, np.sin), (1, np.cos), (2, np.tanh)], ids=["sin", "cos", "tanh"])
def test_numba_fast_forms_are_within_two_ulps_of_numpys(kernels, which, reference):
    k, apply = kernels
    for name, x in _samples().items():
        if which < 2:
            x = x[np.abs(x) <= k.TRIG_LIMIT]
        got, want = apply(which, x), reference(x)
        ulp = np.spacing(np.abs(want))
        assert np.all(np.abs(got - want) <= 2 * ulp), (name, x[np.argmax(np.abs(got - want) / ulp)])
        assert np.array_equal(np.signbit(got), np.signbit(want)), name  # sin(-0.0) is -0.0, tanh too


def _exp_log_samples() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(exp's arguments, log's) by kind: overflow, subnormal and zero results of exp; subnormal
    arguments of log, near 1, at sqrt(2) and sqrt(1/2) (where fdlibm's reduction switches)."""
    rng = np.random.default_rng(7)
    return {
        "normal": (rng.standard_normal(200_000) * 5, np.abs(rng.standard_normal(200_000)) * 5),
        "wide": (rng.uniform(-760, 720, 200_000), np.exp(rng.uniform(-744, 709, 200_000))),
        "edges": (rng.uniform(-745.2, -707, 200_000), rng.uniform(0, 3e-308, 200_000)),
        "near zero and one": (rng.standard_normal(100_000) * 1e-10, 1 + rng.standard_normal(100_000) * 1e-3),
        "special": (
            np.array([0.0, -0.0, 1e-320, 709.78, 709.79, 710.0, -745.13, -745.14, -746.0, -708.4, 0.5, 1e308, -1e308]),
            np.array([5e-324, 1e-310, 1.0, np.nextafter(1, 2), np.nextafter(1, 0), np.sqrt(2), np.sqrt(0.5), 1.8e308]),
        ),
    }


@pytest.mark.parametrize("which, reference", [(3, np.exp), (4, np.log)], ids=["exp", "log"])
def test_numba_fast_exp_and_log_are_within_an_ulp_of_numpys(kernels, which, reference):
    k, apply = kernels
    for name, pair in _exp_log_samples().items():
        x = pair[which - 3]
        with np.errstate(over="ignore"):
            got, want = apply(which, x), reference(x)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=name)  # overflow to inf
        ulp = np.spacing(np.abs(want[finite]))
        assert np.all(np.abs(got[finite] - want[finite]) <= ulp), name


def test_numba_fast_exp_and_log_of_nonfinite_zero_and_negative_values(kernels):
    k, apply = kernels
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -1e-300, -5e-324])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(apply(3, x), np.exp(x))
        np.testing.assert_array_equal(apply(4, x), np.log(x))


def test_numba_fast_tanh_of_nonfinite_values_and_the_trig_range(kernels):
    k, apply = kernels
    got = apply(2, np.array([np.nan, np.inf, -np.inf, 1e308, -1e308]))
    np.testing.assert_array_equal(got, [np.nan, 1.0, -1.0, 1.0, -1.0])
    ok = [k.trig_ok(v) for v in (0.0, k.TRIG_LIMIT, np.nextafter(k.TRIG_LIMIT, np.inf), np.inf, np.nan, -1e10)]
    assert ok == [True, True, False, False, False, False]


def _compiled_agrees(outputs, x, values):
    f = sd.compile(outputs, [x], backend="numba")
    for got, want in zip(f(values), sd.evaluate(outputs, {x: values})):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    return f


def test_numba_fused_trig_runs_vectorized_forms_and_agrees_with_numpy():
    g = sd.Graph()
    x = g.variable("x", shape=(3, 1000))
    h = sd.sin(x) * sd.cos(2 * x) + sd.tanh(x)
    loss = sd.sum(h)
    f = _compiled_agrees([loss, h, sd.grad(loss, x)], x, np.random.default_rng(1).standard_normal((3, 1000)) * 4)
    # sin and cos of one argument (x and 2x: the value's and the gradient's) are one call
    assert "_k.sincos_fast(" in f.source and "_k.tanh_fast(" in f.source
    assert "_k.sin_fast(" not in f.source and "_k.cos_fast(" not in f.source


@pytest.mark.parametrize("bad", [1e10, -1e300, np.inf, -np.inf, np.nan, 9e5])
def test_numba_fused_trig_falls_back_to_numpys_functions_out_of_range(bad):
    """One argument of sin or cos out of the fast forms' range: the loop runs again with numpy's
    functions, so every element is numpy's value to an ulp (nan where numpy's is nan; the fast
    form of sin(1e10) would be far off)."""
    g = sd.Graph()
    x = g.variable("x", shape=(500,))
    h = 2 * sd.sin(x) + sd.cos(x) * sd.tanh(x)
    loss = sd.sum(h)
    values = np.random.default_rng(2).standard_normal(500)
    values[123] = bad
    outputs = [loss, h, sd.grad(loss, x)]
    f = sd.compile(outputs, [x], backend="numba")
    with np.errstate(all="ignore"):
        want = sd.evaluate(outputs, {x: values})
    for got, expected in zip(f(values), want):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300, equal_nan=True)


def test_numba_float32_trig_keeps_numpys_float32_functions():
    g = sd.Graph()
    x = g.variable("x", shape=(300,), dtype="float32")
    h = sd.sin(x) + sd.tanh(x)
    f = sd.compile([h], [x], backend="numba")
    values = np.random.default_rng(3).standard_normal(300).astype(np.float32)
    (got,) = f(values)
    assert got.dtype == np.float32 and "_fast(" not in f.source
    np.testing.assert_allclose(got, sd.evaluate(h, {x: values}), rtol=1e-6)


def test_numba_a_loop_with_tanh_alone_has_no_rerun():
    g = sd.Graph()
    x = g.variable("x", shape=(400,))
    y = sd.tanh(x) * x
    f = _compiled_agrees([sd.sum(y), y], x, np.random.default_rng(4).standard_normal(400) * 30)
    assert "_k.tanh_fast(" in f.source and "if not " not in f.source


@pytest.mark.parametrize("shape", [(5, 1), (3, 63), (2, 64), (511,), (2, 513), (1537,)])
def test_numba_tiled_loops_agree_with_numpy_on_every_tile(shape):
    """A loop with vector math runs over tiles of its last axis, one inner loop a call, values
    passed between them in buffers of a tile: lengths below, at and past the tile's bounds (a
    last partial tile), outer axes, inputs broadcast along either axis, sums and means, values
    stored, read after several calls, and sin and cos of one argument read far apart."""
    g = sd.Graph()
    x = g.variable("x", shape=shape)
    row, col = g.variable("row", shape=shape[-1:]), g.variable("col", shape=(*shape[:-1], 1))
    a = sd.sin(x) * row + sd.tanh(x * col)
    b = sd.cos(a) + 0.5 * sd.tanh(a) - sd.sin(2 * x)
    c = sd.sin(a) * b + sd.cos(x) + a * col  # sin(a) and cos(x) read two and three calls later
    loss = sd.sum(c * c) + sd.mean(b)
    rng = np.random.default_rng(5)
    values = [rng.standard_normal(shape) * 3, rng.standard_normal(shape[-1:]), rng.standard_normal((*shape[:-1], 1))]
    outputs = [loss, a, c, *sd.grad(loss, [x, row, col])]
    f = sd.compile(outputs, [x, row, col], backend="numba")
    for got, want in zip(f(*values), sd.evaluate(outputs, dict(zip([x, row, col], values)))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    values[0].reshape(-1)[-1] = 1e10  # out of range in the last tile: the loop runs again as numpy's
    with np.errstate(all="ignore"):
        for got, want in zip(f(*values), sd.evaluate(outputs, dict(zip([x, row, col], values)))):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_numba_a_tiled_loop_has_one_inner_loop_a_vector_math_call():
    g = sd.Graph()
    x = g.variable("x", shape=(2000,))
    h = sd.tanh(sd.sin(x)) + sd.cos(x)  # sin(x) and cos(x): one call
    f = _compiled_agrees([sd.sum(h), h], x, np.random.default_rng(6).standard_normal(2000))
    fast = f.source.split("    if not ")[0]
    assert fast.count("_k.sincos_fast(") == 1 and fast.count("_k.tanh_fast(") == 1
    assert len(re.findall(r"^ +for _u\d+ in range\(_u\d+\):$", fast, flags=re.M)) == 2
    assert "np.empty(512, " in fast and "(2000,)" in fast  # buffers of a tile; h stored whole
