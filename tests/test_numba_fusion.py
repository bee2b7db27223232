"""Fused elementwise loops in the numba backend: a chain of elementwise ops over one static
shape (its inputs of that shape, broadcast by size-1 axes, or scalars) runs as one loop over
the elements, storing only the values read outside it; sums over all its elements accumulate
in the same loop.

Oracle: the numpy backend (``sd.evaluate``), to 1e-12 relative in float64 (numba's scalar libm
is numpy's to an ulp) and 1e-6 in float32. Each test compiles its outputs together, in one
module: numba builds native code for seconds.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import installed

pytestmark = pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")


def _agree(outputs, inputs, values, rtol=1e-12):
    """The numba build's results equal the numpy backend's (shape, dtype, ``rtol``); the build."""
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    f = sd.compile(outputs, inputs, backend="numba")
    for k, (a, b) in enumerate(zip(f(*values), expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=f"output {k}")
    return f


def _loops(source: str) -> int:
    """The passes over the elements: a function's top-level loops, not the sum of a tile's stored
    summands. The inner loops of a tiled loop (one a vector-math call) and the copy that runs
    again with numpy's sin and cos where an argument is out of the vectorizable forms' range
    (tests/test_numba_math.py) are inside one."""
    return len(re.findall(r"^    for (?!_u\d+ in s\d+\[)", source, flags=re.M))


def test_a_20_op_chain_and_its_gradient_are_one_loop_storing_only_what_is_returned():
    g = sd.Graph()
    x = g.variable("x", shape=(1000,))
    h = x
    for _ in range(4):  # 5 ops a level, as the ewchain benchmark
        h = 0.5 * sd.sin(h) + 0.3 * sd.tanh(h) + 0.1 * x
    loss = sd.sum(h)
    f = _agree([loss, sd.grad(loss, x)], [x], [np.random.default_rng(0).standard_normal(1000)])
    assert _loops(f.source) == 1
    # of the elements, only the gradient is stored (its copy in the loop run again with numpy's
    # functions too); the values passed between the tile's loops and the sum's terms (an
    # accumulator would keep the vectorized loop scalar) are in buffers of a tile
    assert f.source.count("np.empty((1000,)") == 2
    assert len(re.findall(r"np\.empty\(512, ", f.source)) > 1


def test_scalars_broadcasting_and_values_read_inside_and_outside_the_loop():
    g = sd.Graph()
    x, y = g.variable("x", shape=(4, 3)), g.variable("y", shape=(4, 3))
    row, col, s = g.variable("row", shape=(3,)), g.variable("col", shape=(4, 1)), g.variable("s")
    u = sd.exp(-0.5 * x * x) * s + sd.log1p(sd.abs(y)) - row * col  # size-1 and lower-rank broadcasts: fused
    v = sd.where(x > y, sd.sigmoid(u), sd.softplus(u) / (1.0 + sd.relu(y)))
    w = sd.sqrt(sd.abs(v)) ** 1.5 + sd.maximum(u, 0.1) - sd.clip(y, -0.5, 0.5) * sd.cos(s * row)
    z = sd.sum(w) * w - sd.mean(u)  # reads sums of the loop: a second loop after the first
    t = sd.transpose(u) * 2.0  # u read outside the loop (and inside it)
    views = sd.exp(sd.transpose(x)) * 2.0 + sd.sin(x[::-1, :]).T  # strided views read in a loop
    n = g.variable("n", shape=(None, 3))  # a None dimension: a loop over n's shape, its sizes checked
    m = sd.sin(n) * row + 1.0
    outputs = [u, v, z, t, views, sd.sum(m), *sd.grad(sd.sum(z * x), [x, y, row, col, s])]
    rng = np.random.default_rng(1)
    values = [rng.standard_normal(v.shape) for v in (x, y, row, col)] + [0.7, rng.standard_normal((5, 3))]
    f = _agree(outputs, [x, y, row, col, s, n], values)
    assert "np.sin(np.ascontiguousarray(x5).reshape(-1))" not in f.source  # the None-shaped chain is fused
    assert "for _u" in f.source and "in range(x5.shape[0]):" in f.source
    with pytest.raises(sd.ShapeError):
        f(*values[:-1], rng.standard_normal((5, 1)))  # (5, 1) broadcast against row: refused as evaluate does


def test_int_bool_and_float32_chains():
    g = sd.Graph()
    i, j = g.variable("i", shape=(6,), dtype="int64"), g.variable("j", shape=(6,), dtype="int32")
    a = g.variable("a", shape=(6,), dtype="float32")
    k = j + j * j - sd.abs(-j)  # int32 arithmetic stays int32 (numba's scalars would be int64)
    big = (i * 3 - i) > sd.astype(k, "int64")
    picked = sd.where(big, i, -i) + 1
    flags = sd.where(i > 0, big, sd.equal(i, 2))
    b = sd.sin(a) * a + sd.exp(-a) / (1.0 + a * a)  # float32 throughout
    c = sd.where(big, b, a - 1.0) * sd.astype(k, "float32")
    ints = [np.array([3, -1, 0, 2, 7, -4]), np.array([1, -2, 5, 0, -3, 4], dtype=np.int32)]
    floats = [np.linspace(-1.2, 2.0, 6, dtype=np.float32)]
    _agree([k, big, picked, flags], [i, j], ints)
    _agree([b, c, sd.grad(sd.sum(b * c), a)], [a, i, j], floats + ints, rtol=1e-6)


def test_a_scan_body_is_fused_and_so_is_its_reverse():
    g = sd.Graph()
    x0, p = g.variable("x0", shape=(8,)), g.variable("p")

    def body(c, t):
        th, om = c
        acc = -p * om - sd.sin(th) + 0.4 * sd.cos(t)
        return (th + 0.05 * om, om + 0.05 * acc), th * th

    (th, om), ys = sd.scan(body, (x0, sd.zeros_like(x0)), g.constant(np.arange(5) * 0.05))
    loss = sd.mean(th * om) + sd.sum(ys)
    f = _agree([loss, *sd.grad(loss, [x0, p])], [x0, p], [np.linspace(-1.0, 1.0, 8), 0.5])
    for name in re.findall(r"^def (_body\w+)", f.source, flags=re.M):
        text = f.source.split(f"def {name}(")[1].split("\n\n")[0]
        assert _loops(text) == 1, (name, text)


def test_chains_over_unknown_sizes_are_one_loop_over_their_roots_shape():
    """Sizes known only when the function runs: maps computed from one array through maps of its
    shape (one *extent*) run as one loop over that array's shape, whatever it is, with sums and
    means over it; arrays of two extents (x and r below) meet op by op, where a mismatch raises."""
    g = sd.Graph()
    x, r = g.variable("x", shape=(None,)), g.variable("r", shape=(None,))
    m, row = g.variable("m", shape=(None, 3)), g.variable("row", shape=(3,))
    h = x
    for _ in range(3):
        h = 0.5 * sd.sin(h) + 0.3 * sd.tanh(h) + 0.1 * x
    u = sd.exp(-m * m) * row + sd.log1p(m * m)  # a static row broadcast along the unknown size
    loss = sd.sum(h) + sd.mean(sd.cos(h) * h) + sd.sum(u * sd.tanh(m))
    mixed = sd.sin(x) * r  # two extents: checked, not fused with either
    outputs = [loss, h, mixed, *sd.grad(loss + sd.sum(mixed), [x, m, row, r])]
    inputs = [x, r, m, row]
    f = sd.compile(outputs, inputs, backend="numba")
    rng = np.random.default_rng(3)
    for n in (1, 5, 700):
        values = [rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal((n, 3)), rng.standard_normal(3)]
        for k, (a, b) in enumerate(zip(f(*values), sd.evaluate(outputs, dict(zip(inputs, values))))):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"n={n}, output {k}")
    body = f.source.split("def compiled(")[1]
    # h's chain and the sums: one loop of x's extent (forward) and one of the reverse pass
    assert re.search(r"for _u\d+ in range\(0, x0\.shape\[0\], 512\):", body)
    assert "np.sin(x0)" not in body and "np.tanh(" not in body.split("    if not ")[0]
    with pytest.raises(sd.ShapeError):
        f(rng.standard_normal(4), rng.standard_normal(1), rng.standard_normal((2, 3)), rng.standard_normal(3))


def test_numba_a_compile_that_recurses_too_deep_is_a_backend_error(monkeypatch, tmp_path):
    """numba's passes recurse over a function's blocks: a chain long enough raised RecursionError
    from inside numba (a 40-level ewchain's gradient); it is the backend's error, naming the
    generated source, as numba's own errors are."""
    import numba.core.dispatcher

    def deep(self, sig):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba.core.dispatcher.Dispatcher, "compile", deep)
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    with pytest.raises(sd.BackendError, match="could not compile this graph: maximum recursion depth"):
        sd.compile([sd.sin(x) * x], [x], backend="numba")


def test_a_count_of_a_loops_array_reads_its_roots_shape_and_stores_nothing():
    """A mean's count (in its value and gradient) of an array a loop over unknown sizes computes
    is read from the root's shape: the loop is not split, and stores only what is returned."""
    g = sd.Graph()
    x = g.variable("x", shape=(None,))
    h = sd.exp(x) * 2 + x
    outputs = [sd.sum(h) / sd.count(h), sd.grad(sd.mean(sd.sin(h)), x)]
    f = sd.compile(outputs, [x], backend="numba")
    values = [np.random.default_rng(8).standard_normal(700)]
    for a, b in zip(f(*values), sd.evaluate(outputs, {x: values[0]})):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    fast = f.source.split("def compiled(")[1].split("    if not ")[0]
    assert fast.count("np.empty((x0.shape[0],)") == 1  # the gradient alone


def test_numba_where_broadcasts_a_size_0_against_1_as_numpy():
    g = sd.Graph()
    d, row = g.variable("d", shape=(None, 1)), g.variable("row", shape=(1, 3))
    out = sd.where(d > 0, d, row)
    f = sd.compile([out], [d, row], backend="numba")
    for n in (0, 1, 4):
        values = [np.random.default_rng(n).standard_normal((n, 1)), np.ones((1, 3))]
        (got,) = f(*values)
        np.testing.assert_array_equal(got, sd.evaluate(out, dict(zip([d, row], values))))
        assert got.shape == (n, 3)
