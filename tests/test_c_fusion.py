"""Fused elementwise loops in the C backend (symdiff.backends.fusion): a chain of elementwise ops
over one shape is one loop nest computing each element into a C local, sums over all its
elements accumulate in the same loop, and only the values read after the loop are stored; a
small group whose arithmetic would be live across a call of the C library gets a loop per level
of calls, with the same bits as one loop.

Oracles: hand-written numpy, bit for bit where every op rounds once as numpy's does (+, -, *, /,
comparisons, where, integer arithmetic with numpy's wrap-around, casts) and to 1e-15 relative
where libm's transcendental functions may differ from numpy's by an ulp; a fused sum adds its
terms in order, as ``np.cumsum`` does (float32 sums of more than 8 terms in double). Gradients:
central differences of the hand-written forward. The generated C is compiled with warnings as
errors under gcc and clang.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import c as c_backend

from .c_support import c_cache, needs_c  # noqa: F401 (c_cache: an autouse fixture)
from .test_c_loops import DT, _rk4_step  # examples/pendulum_rk4.py's step, in symdiff or numpy

pytestmark = needs_c

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fno-strict-aliasing", "-O2", "-c"]


rng = np.random.default_rng(2321)


def _body(source: str, name: str) -> str:
    """The text of the C function ``name`` in ``source``."""
    return source.split(f"\nint {name}(")[1].split("\n}\n")[0]


def _loops(text: str) -> int:
    return len(re.findall(r"\bfor \(", text))


def _work(files: dict[str, str], name: str = "f") -> int:
    return int(re.search(rf"#define {name.upper()}_WORK_BYTES (\d+)", files[f"{name}.h"]).group(1))


def _bits(got, expected) -> None:
    """Equal shapes, dtypes and bits (a float's -0.0 and nan included)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, (got.shape, got.dtype, expected.dtype)
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes(), (got, expected)


def _strict(tmp_path, outputs, inputs, name="f") -> dict[str, str]:
    """``sd.to_c`` of the outputs, compiled with warnings as errors by gcc and clang (those installed)."""
    files = sd.to_c(outputs, inputs, name=name)
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    for compiler in ("gcc", "clang"):
        if shutil.which(compiler) is not None:
            done = subprocess.run(
                [compiler, *STRICT, "-o", str(tmp_path / f"{name}.o"), str(tmp_path / f"{name}.c")],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, (compiler, done.stderr)
    return files


def test_a_chain_over_a_vector_is_one_loop_with_no_work_buffer(tmp_path):
    g = sd.Graph()
    x = g.variable("x", shape=(1000,))
    y = sd.sin(x) * sd.cos(x) + x**2
    files = _strict(tmp_path, y, [x])
    body = _body(files["f.c"], "f")
    assert _loops(body) == 1, body
    assert _work(files) == 0  # the intermediates are C locals; y goes straight to the caller's array
    xv = rng.uniform(-3.0, 3.0, 1000)
    got = sd.compile(y, [x], backend="c")(xv)
    np.testing.assert_allclose(got, np.sin(xv) * np.cos(xv) + xv * xv, rtol=1e-15, atol=0)
    # with its sum and gradient: still one loop, the sum an accumulator in it
    loss = sd.sum(y)
    outputs = [y, loss, sd.grad(loss, x)]
    files = _strict(tmp_path, outputs, [x])
    assert _loops(_body(files["f.c"], "f")) == 1 and _work(files) == 0
    value, total, gradient = sd.compile(outputs, [x], backend="c")(xv)
    _bits(total, np.cumsum(value)[-1])  # the C loop's order of additions, bit for bit
    np.testing.assert_allclose(total, np.sum(np.sin(xv) * np.cos(xv) + xv * xv), rtol=1e-13)
    np.testing.assert_allclose(gradient, np.cos(2 * xv) + 2 * xv, rtol=1e-14, atol=1e-15)


def test_broadcast_inputs_exact_ops_bit_for_bit(tmp_path):
    g = sd.Graph()
    x, row = g.variable("x", shape=(5, 4)), g.variable("row", shape=(4,))
    col, s = g.variable("col", shape=(5, 1)), g.variable("s")
    a = x * row - col / s  # size-1 and lower-rank broadcasts, a scalar
    b = sd.where(a > col, a * a, sd.maximum(row, -a)) + sd.clip(x, -0.5, row)
    c = sd.abs(b - 0.25) * s + sd.minimum(a, b)
    inputs = [x, row, col, s]
    files = _strict(tmp_path, [b, c], inputs)
    body = _body(files["f.c"], "f")
    # col / s, of shape (5, 1), is a loop of its own (5 doubles of the work buffer); the rest one
    # nest of two loops (the broadcast operands keep the axes apart), storing only the outputs
    assert _loops(body) == 3, body
    assert _work(files) == 48
    xv, rv, cv, sv = rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal((5, 1)), 0.7
    av = xv * rv - cv / sv
    bv = np.where(av > cv, av * av, np.maximum(rv, -av)) + np.clip(xv, -0.5, rv)
    got = sd.compile([b, c], inputs, backend="c")(xv, rv, cv, sv)
    _bits(got[0], bv)
    _bits(got[1], np.abs(bv - 0.25) * sv + np.minimum(av, bv))


def test_transcendental_chain_with_broadcasting_to_1e_15(tmp_path):
    g = sd.Graph()
    x, row = g.variable("x", shape=(3, 50)), g.variable("row", shape=(50,))
    h = x
    for _ in range(3):
        h = 0.5 * sd.sin(h) + 0.3 * sd.tanh(h * row) + 0.1 * sd.exp(-x * x)
    total = sd.sum(h)
    with pytest.MonkeyPatch.context() as patch:  # one loop nest (of two loops: the broadcast row)
        patch.setattr(c_backend, "SPLIT_ELEMENTS", 0)
        files = _strict(tmp_path, [h, total], [x, row])
        assert _loops(_body(files["f.c"], "f")) == 2 and _work(files) == 0
        one_loop = sd.compile([h, total], [x, row], backend="c")
    # 0.5 * sin(h) is live across the tanh and exp calls: each call level gets its own loop nest
    files = _strict(tmp_path, [h, total], [x, row])
    assert _loops(_body(files["f.c"], "f")) > 2
    xv, rv = rng.standard_normal((3, 50)), rng.standard_normal(50)
    hv = xv
    for _ in range(3):
        hv = 0.5 * np.sin(hv) + 0.3 * np.tanh(hv * rv) + 0.1 * np.exp(-xv * xv)
    got_h, got_total = sd.compile([h, total], [x, row], backend="c")(xv, rv)
    np.testing.assert_allclose(got_h, hv, rtol=1e-15, atol=1e-16)
    _bits(got_total, np.cumsum(got_h)[-1])
    for a, b in zip(one_loop(xv, rv), [got_h, got_total]):
        _bits(a, b)  # split or not, the same operations in the same order


def test_float32_chains_and_sums(tmp_path):
    g = sd.Graph()
    a, b = g.variable("a", shape=(40,), dtype="float32"), g.variable("b", shape=(40,), dtype="float32")
    short = g.variable("short", shape=(6,), dtype="float32")
    exact = (a * b - a / (b * b + 1.0)) * 0.5  # float32 throughout, every op rounded once
    mixed = sd.sqrt(sd.abs(exact)) + a  # sqrt is correctly rounded too
    outputs = [exact, mixed, sd.sum(mixed), sd.sum(short * short + 1.0)]
    files = _strict(tmp_path, outputs, [a, b, short])
    assert _loops(_body(files["f.c"], "f")) == 2 and _work(files) == 0  # one loop per shape
    av, bv = rng.standard_normal(40).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    sv = rng.standard_normal(6).astype(np.float32)
    got = sd.compile(outputs, [a, b, short], backend="c")(av, bv, sv)
    ev = (av * bv - av / (bv * bv + np.float32(1.0))) * np.float32(0.5)
    mv = np.sqrt(np.abs(ev)) + av
    _bits(got[0], ev)
    _bits(got[1], mv)
    _bits(got[2], np.cumsum(mv.astype(np.float64))[-1].astype(np.float32))  # more than 8 terms: in double
    _bits(got[3], np.cumsum(sv * sv + np.float32(1.0))[-1])  # up to 8 terms: in float32, in order


def test_integer_boolean_and_mixed_dtypes(tmp_path):
    g = sd.Graph()
    i, j = g.variable("i", shape=(7,), dtype="int64"), g.variable("j", shape=(7,), dtype="int32")
    f, flag = g.variable("f", shape=(7,), dtype="float32"), g.variable("flag", shape=(7,), dtype="bool")
    k = j * j * j + j - sd.abs(-j)  # int32, wrapping around as numpy's
    big = (i * 3 - i) > sd.astype(k, "int64")
    picked = sd.where(big, i, -i) + 1
    mixed = i * f + k  # int64 * float32: float64, as numpy
    flags = sd.where(flag, big, sd.equal(i, 2))
    count = sd.sum(sd.astype(flags, "int64") + k)
    outputs = [k, big, picked, mixed, flags, count]
    inputs = [i, j, f, flag]
    files = _strict(tmp_path, outputs, inputs)
    assert _loops(_body(files["f.c"], "f")) == 1 and _work(files) == 0
    iv = np.array([3, -1, 0, 2, 7, -4, 2**40])
    jv = np.array([1, -2, 5, 0, 2000, 4, -1625], dtype=np.int32)  # 2000**3 wraps around in int32
    fv = rng.standard_normal(7).astype(np.float32)
    gv = np.array([True, False, True, False, False, True, True])
    got = sd.compile(outputs, inputs, backend="c")(iv, jv, fv, gv)
    with np.errstate(over="ignore"):
        kv = jv * jv * jv + jv - np.abs(-jv)
    bigv = (iv * 3 - iv) > kv.astype(np.int64)
    flagsv = np.where(gv, bigv, iv == 2)
    for x, y in zip(got, [kv, bigv, np.where(bigv, iv, -iv) + 1, iv * fv + kv, flagsv]):
        _bits(x, y)
    _bits(got[5], np.sum(flagsv.astype(np.int64) + kv))


def test_group_members_that_are_outputs_go_to_the_callers_arrays(tmp_path):
    g = sd.Graph()
    x = g.variable("x", shape=(2, 3, 4))
    u = x * x + 1.0
    v = u / (x - 3.0)
    w = sd.where(v > u, v, u) - x
    files = _strict(tmp_path, [u, v, w], [x])
    body = _body(files["f.c"], "f")
    assert _loops(body) == 1 and _work(files) == 0  # a contiguous (2, 3, 4): one loop of 24
    assert re.search(r"out0\[\w+\] = ", body) and re.search(r"out2\[\w+\] = ", body)
    xv = rng.standard_normal((2, 3, 4))
    uv = xv * xv + 1.0
    vv = uv / (xv - 3.0)
    for a, b in zip(sd.compile([u, v, w], [x], backend="c")(xv), [uv, vv, np.where(vv > uv, vv, uv) - xv]):
        _bits(a, b)


def test_members_read_by_later_steps_that_cannot_join(tmp_path):
    g = sd.Graph()
    x, W = g.variable("x", shape=(6,)), g.variable("W", shape=(6, 6))
    v = W @ x  # a block of the work buffer
    u = x * 2.0 - x * x  # an open group's member...
    both = sd.concatenate([v, u])  # ...read by a step that waits for the loop, as does v
    c = W @ (W @ v)  # printed before the loop: new blocks, which must not take v's
    out = c @ x
    t = u * 3.0 + x  # joins the group after the waiting step
    lengths = sd.sum(x * x) * u  # a sum of the group's shape read by a map: the loop is printed first
    outputs = [both, out, t, lengths]
    files = _strict(tmp_path, outputs, [x, W])
    xv, Wv = rng.standard_normal(6), rng.standard_normal((6, 6))
    got = sd.compile(outputs, [x, W], backend="c")(xv, Wv)
    uv, vv = xv * 2.0 - xv * xv, Wv @ xv
    np.testing.assert_allclose(got[0], np.concatenate([vv, uv]), rtol=1e-13)
    np.testing.assert_allclose(got[1], (Wv @ (Wv @ vv)) @ xv, rtol=1e-12)
    _bits(got[2], uv * 3.0 + xv)
    np.testing.assert_allclose(got[3], np.sum(xv * xv) * uv, rtol=1e-15)
    assert _work(files) > 0  # v, W @ v and c live in the work buffer; u is stored, t is the caller's


def _rk4_numpy(p, theta0, steps):
    th, om = theta0.copy(), np.zeros_like(theta0)
    for s in range(steps):
        th, om = _rk4_step(th, om, s * DT, p[0], p[1], p[2], np.sin, np.cos)
    return np.sum(th * th)


def test_rk4_pendulum_scan_value_and_gradient(tmp_path):
    steps, n = 60, 16
    g = sd.Graph()
    p = g.variable("p", shape=(3,))
    theta0 = g.constant(np.linspace(-2.0, 2.0, n))
    c, k, A = p[0], p[1], p[2]

    def body(state, t):
        return _rk4_step(*state, t, c, k, A, sd.sin, sd.cos), None

    (th, _), _ = sd.scan(body, (theta0, sd.zeros_like(theta0)), g.constant(np.arange(steps) * DT), name="rk4")
    loss = sd.sum(th * th)
    outputs = [loss, sd.grad(loss, p)]
    files = _strict(tmp_path, outputs, [p], name="rk")
    bodies = re.findall(r"static int (symdiff_body\w+)\(", files["rk.c"])
    assert bodies
    for name in bodies:  # each step's vector arithmetic is fused: a few loops, not one per op
        text = files["rk.c"].split(f"static int {name}(")[1].split("\n}\n")[0]
        assert _loops(text) <= 6, (name, _loops(text))
    pv = np.array([0.3, 1.5, 0.8])
    value, gradient = sd.compile(outputs, [p], backend="c")(pv)
    expected = _rk4_numpy(pv, np.linspace(-2.0, 2.0, n), steps)
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    step = 1e-6
    fd = [
        (
            _rk4_numpy(pv + step * e, np.linspace(-2.0, 2.0, n), steps)
            - _rk4_numpy(pv - step * e, np.linspace(-2.0, 2.0, n), steps)
        )
        / (2 * step)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(gradient, fd, rtol=1e-6)
    reference = sd.compile(outputs, [p])(pv)  # the numpy backend's gradient, to rounding
    np.testing.assert_allclose(gradient, reference[1], rtol=1e-12)


# -- calls of the C library in fused loops ---------------------------------------------------
def _loop_texts(body: str) -> list[str]:
    """The text of each (one-deep) for loop of a C function's body."""
    return [chunk.split("\n    }\n")[0] for chunk in body.split("for (")[1:]]


_CALL = re.compile(r"\b(sin|cos|tan|exp|expm1|log|log1p|tanh|sinh|cosh|pow|erf|erfc|atan2|hypot)\(")
_ARITHMETIC = re.compile(r"= \(.*[-+*/].*\);")


def _split_graph(n):
    """An RK4-like step of a vector: values live across later calls of sin, cos and exp."""
    g = sd.Graph()
    x, s = g.variable("x", (n,)), g.variable("s")
    a = x * s + 0.5
    b = sd.sin(a) * s
    c = a + 0.25 * b
    d = sd.cos(c) * a - sd.exp(-c * c)
    y = x + (a + 2.0 * b + 2.0 * c + d) / 6.0
    loss = sd.sum(y * y)
    return [y, loss, sd.grad(loss, x), sd.grad(loss, s)], [x, s]


@pytest.mark.parametrize("n", [1, 7, 64, 4096])
def test_calls_get_loops_of_their_own_with_the_same_bits(tmp_path, n):
    outputs, inputs = _split_graph(n)
    files = _strict(tmp_path, outputs, inputs)
    loops = _loop_texts(_body(files["f.c"], "f"))
    calling = [text for text in loops if _CALL.search(text)]
    if n > 1:  # (one element: no loop)
        assert len(loops) > 1 and calling, loops
    for text in calling:  # a call's loop loads, calls and stores: no arithmetic kept across its calls
        assert not _ARITHMETIC.search(text), text
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(c_backend, "SPLIT_ELEMENTS", 0)
        one = _strict(tmp_path, outputs, inputs)
        assert _loops(_body(one["f.c"], "f")) == (n > 1)  # the forward, its sum and the gradient: one loop
        one_loop = sd.compile(outputs, inputs, backend="c")
    xv, sv = rng.uniform(-2.0, 2.0, n), 0.7
    got = sd.compile(outputs, inputs, backend="c")(xv, sv)
    for a, b in zip(got, one_loop(xv, sv)):
        _bits(a, b)
    av = xv * sv + 0.5
    bv = np.sin(av) * sv
    cv = av + 0.25 * bv
    yv = xv + (av + 2.0 * bv + 2.0 * cv + (np.cos(cv) * av - np.exp(-cv * cv))) / 6.0
    np.testing.assert_allclose(got[0], yv, rtol=1e-14, atol=1e-15)
    numpy = sd.compile(outputs, inputs)(xv, sv)
    for a, b in zip(got, numpy):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_large_groups_and_calls_on_loaded_elements_stay_one_loop(tmp_path):
    outputs, inputs = _split_graph(c_backend.SPLIT_ELEMENTS + 1)  # past the bound: one loop each
    assert _loops(_body(_strict(tmp_path, outputs, inputs)["f.c"], "f")) == 1
    g = sd.Graph()
    x = g.variable("x", (64,))
    y = sd.exp(x) * sd.cos(x) + x**2 - 1.0 / x  # the calls read loaded elements; x**2 is no call
    files = _strict(tmp_path, [y], [x])
    assert _loops(_body(files["f.c"], "f")) == 1 and _work(files) == 0
    # its gradient computes 1/x, 1/x**2 and 2x before sin(x) and reads them after: split, the
    # arithmetic as late as it can be, so only the three calls' results pass through arrays
    files = _strict(tmp_path, [y, sd.grad(sd.sum(y), x)], [x])
    assert _loops(_body(files["f.c"], "f")) == 2 and _work(files) == 3 * 64 * 8


def test_split_loops_run_clean_under_sanitizers(tmp_path):
    """Split loops at the top and in a scan's bodies (their arrays in each body's own share of the
    work buffer), in a program built with the address and undefined-behaviour sanitizers."""
    from .test_c_kernels import sanitized_run

    compiler = "gcc" if shutil.which("gcc") else "clang"
    if shutil.which(compiler) is None:
        pytest.skip("no gcc or clang")
    (y, loss, gx, gs), (x, s) = _split_graph(9)

    def body(carry, t):
        a = carry * s + t
        b = sd.sin(a) * s
        return carry + 0.1 * (a + 2.0 * b - sd.exp(-b * b)) / (1.0 + sd.cos(a + b) ** 2), None

    final, _ = sd.scan(body, x, x.graph.constant(np.linspace(0.0, 0.4, 5)), name="steps")
    total = sd.sum(final * final)
    outputs, inputs = [y, loss, gx, gs, total, sd.grad(total, s)], [x, s]
    for name, text in sd.to_c(outputs, inputs, name="f").items():
        (tmp_path / name).write_text(text)
    main = """#include <stdio.h>
#include <stdlib.h>
#include "f.h"
int main(void)
{
    double x[9], s[1] = {0.7}, y[9], loss[1], gx[9], gs[1], total[1], gt[1];
    void *work = malloc(F_WORK_BYTES);
    int i;
    for (i = 0; i < 9; ++i) x[i] = 0.4 * i - 1.6;
    if (f(x, s, y, loss, gx, gs, total, gt, work) != 0) return 2;
    for (i = 0; i < 9; ++i) printf("%.17g %.17g\\n", y[i], gx[i]);
    printf("%.17g %.17g %.17g %.17g\\n", loss[0], gs[0], total[0], gt[0]);
    free(work);
    return 0;
}
"""
    source = (tmp_path / "f.c").read_text()
    bodies = re.findall(r"static int (symdiff_body\w+)\(", source)
    assert len(bodies) == 2  # the step and its reverse, each split at its calls
    for name in bodies:
        assert _loops(source.split(f"static int {name}(")[1].split("\n}\n")[0]) > 1, name
    out = np.array(sanitized_run(compiler, tmp_path, main, ["f.c"]).split(), float)
    xv = 0.4 * np.arange(9) - 1.6
    want = sd.compile(outputs, inputs)(xv, 0.7)
    expected = np.concatenate([np.column_stack([want[0], want[2]]).ravel(), [want[1], want[3], want[4], want[5]]])
    np.testing.assert_allclose(out, expected, rtol=1e-13)
