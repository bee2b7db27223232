"""Loops on the C backend: a scan or while_loop is a C loop calling its body's function (printed
once), and the derivatives of loops (loops of the same ops, a reverse loop reading the carries
the forward one stored) are C loops too; the generated C does not grow with the trip count.

Oracles: the numpy interpreter (``sd.evaluate``, itself checked against closed forms, unrolling
and finite differences in tests/test_loops.py) to 1e-12, and the same computation unrolled in
plain numpy where it is short to write.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

import symdiff as sd
from symdiff.graph import Region
from symdiff.loops import kept_positions, make_scan
from symdiff.ops.core import outputs_of

from .c_support import c_cache, needs_c  # noqa: F401 (c_cache: an autouse fixture)
from .test_loops import nested_loops

pytestmark = needs_c

RTOL = 1e-12
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def _flat(outputs):
    return [o for out in outputs for o in (out if isinstance(out, list) else [out])]


def _agree(outputs, inputs, values, rtol=RTOL):
    """The C build's results equal the numpy interpreter's (shape, dtype, values)."""
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    f = sd.compile(outputs, inputs, backend="c")
    got = f(*values)
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=f"output {k}")
    return got, f


def _strict(outputs, inputs, tmp_path, name="f"):
    """``sd.to_c``'s files compiled with warnings as errors; returns the .c text."""
    files = sd.to_c(outputs, inputs, name=name)
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    done = subprocess.run(
        ["cc", *STRICT, "-c", "-o", str(tmp_path / f"{name}.o"), str(tmp_path / f"{name}.c")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return files[f"{name}.c"]


def _bodies(source):
    """The names of the body functions a source defines."""
    return re.findall(r"^static int (symdiff_body\w+)\(", source, re.M)


def test_a_scan_with_two_carries_xs_ys_and_a_captured_value_forward_and_reversed(tmp_path):
    g = sd.Graph()
    a, b, s = g.variable("a", (3,)), g.variable("b"), g.variable("s")
    xs = g.variable("xs", (5, 3))

    def body(c, x):
        u, v = c
        return (u * v + sd.sin(x) * s, v * 0.9 + sd.sum(x) * 0.1), (sd.exp(-u) * x, v * 2.0)

    av, bv, sv = np.array([0.3, -0.2, 0.5]), 0.8, 1.3
    xv = np.linspace(-1.0, 1.0, 15).reshape(5, 3)
    for reverse in (False, True):
        (u, v), (y1, y2) = sd.scan(body, (a, b), xs, reverse=reverse)
        got, f = _agree([u, v, y1, y2], [a, b, s, xs], [av, bv, sv, xv])
        # the same loop in plain numpy
        cu, cv, r1, r2 = av.copy(), bv, np.zeros((5, 3)), np.zeros(5)
        for t in range(4, -1, -1) if reverse else range(5):
            r1[t], r2[t] = np.exp(-cu) * xv[t], cv * 2.0
            cu, cv = cu * cv + np.sin(xv[t]) * sv, cv * 0.9 + np.sum(xv[t]) * 0.1
        for x, y in zip(got, [cu, cv, r1, r2]):
            np.testing.assert_allclose(x, y, rtol=1e-13)
        assert np.asarray(got[1]).shape == () and isinstance(got[1], np.float64)
        assert len(_bodies(f.source)) == 1 and "for (long" in f.source
    _strict([u, v, y1, y2], [a, b, s, xs], tmp_path)


def test_a_counted_scan_and_a_count_out_of_range_raise_the_interpreters_loop_error():
    # a scan counted at evaluation (as a while_loop's reverse is): rows past the count stay zero
    g = sd.Graph()
    x = g.variable("x", (2,))
    count = g.variable("count", (), np.int64)
    body = g.body("counted")
    c0 = body.variable("c0", (2,))
    region = Region(body, (c0,), (c0 * 2.0, c0 + 1.0), "counted", several=True)
    body.seal()
    attrs = {"name": "counted", "length": 4, "carries": 1, "xs": 0, "ys": 1, "reverse": False}
    node = make_scan(region, [x, count], {**attrs, "counted": True, "checkpoint": None})
    final, ys, stored = outputs_of(node)
    xv = np.array([1.5, -0.5])
    for n in (0, 3, 4):
        got, f = _agree([final, ys, stored], [x, count], [xv, np.int64(n)])
        np.testing.assert_allclose(got[0], xv * 2.0**n)
        np.testing.assert_allclose(got[1][n:], 0.0)
    with pytest.raises(sd.LoopError, match="counted: a trip count of 5 is outside 0..4"):
        f(xv, np.int64(5))
    with pytest.raises(sd.LoopError, match="counted: a trip count of -1 is outside 0..4"):
        f(xv, np.int64(-1))


def test_the_gradient_of_a_scan_is_a_reverse_loop_reading_the_stored_carries(tmp_path):
    g = sd.Graph()
    x, w = g.variable("x", (3,)), g.variable("w")
    xs = g.variable("xs", (6, 3))
    c, ys = sd.scan(lambda c, u: (sd.tanh(c * w + u), sd.sum(c * c)), x, xs, name="rnn")
    loss = sd.sum(c) + sd.sum(ys * ys)
    xv, wv, xsv = np.array([0.3, -0.4, 0.8]), 0.9, np.linspace(-0.5, 0.5, 18).reshape(6, 3)
    got, f = _agree(_flat([loss, sd.grad(loss, [x, w, xs])]), [x, w, xs], [xv, wv, xsv])

    def numpy_loss(xv, wv, xsv):
        c, total = xv, 0.0
        for t in range(6):
            total += np.sum(c * c) ** 2
            c = np.tanh(c * wv + xsv[t])
        return np.sum(c) + total

    np.testing.assert_allclose(got[0], numpy_loss(xv, wv, xsv), rtol=1e-13)
    h = 1e-6
    fd = (numpy_loss(xv, wv + h, xsv) - numpy_loss(xv, wv - h, xsv)) / (2 * h)
    np.testing.assert_allclose(got[2], fd, rtol=1e-7)
    # the forward loop stores the carries (the snapshot buffer), the reverse loops read them
    source = _strict(_flat([loss, sd.grad(loss, [x, w, xs])]), [x, w, xs], tmp_path)
    assert any("vjp" in name for name in _bodies(source))
    assert source.count("for (long") >= 2


def test_a_hessian_vector_product_through_a_scan():
    g = sd.Graph()
    x = g.variable("x", (3,))
    c, _ = sd.scan(lambda c, _: (sd.sin(c) * 1.2 + c * c * 0.1, None), x, length=5)
    loss = sd.sum(c * c)
    v = g.constant(np.array([0.3, -0.7, 0.2]))
    xv = np.array([0.4, -0.1, 0.6])
    got, _ = _agree([loss, sd.hvp(loss, x, v), sd.hessian(loss, x)], [x], [xv])
    np.testing.assert_allclose(got[1], got[2] @ np.array([0.3, -0.7, 0.2]), rtol=1e-12)


@pytest.mark.parametrize("policy", [sd.checkpoint.every(3), sd.checkpoint.revolve(snapshots=3)], ids=repr)
def test_checkpointed_scans_store_the_kept_carries_and_their_gradients_agree(policy, tmp_path):
    g = sd.Graph()
    x = g.variable("x", (3,))
    xs = g.variable("xs", (10, 3))
    c, ys = sd.scan(lambda c, u: (sd.cos(c) * u + c, c * u), x, xs, checkpoint=policy, reverse=True)
    stored = outputs_of(c.inputs[0])[2]
    loss = sd.sum(c * c) + sd.sum(ys)
    xv, xsv = np.array([0.3, -0.5, 0.9]), np.linspace(-1.0, 1.0, 30).reshape(10, 3)
    got, _ = _agree(_flat([c, stored, sd.grad(loss, [x, xs])]), [x, xs], [xv, xsv])
    carries = [xv]  # in iteration order (reversed over xs)
    for t in range(9, -1, -1):
        carries.append(np.cos(carries[-1]) * xsv[t] + carries[-1])
    kept = kept_positions(10, (policy.kind, policy.size))
    np.testing.assert_allclose(got[1], [carries[p] for p in kept], rtol=1e-13)
    np.testing.assert_allclose(got[0], carries[-1], rtol=1e-13)
    _strict(_flat([c, sd.grad(loss, [x, xs])]), [x, xs], tmp_path)


def test_a_while_loop_with_max_steps_its_count_and_gradient_and_one_without():
    g = sd.Graph()
    x = g.variable("x", (2,))
    w = g.variable("w")
    u = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * 1.5 + w, x, max_steps=20, name="grow")
    node = u.inputs[0]
    count = outputs_of(node)[-1]
    n = g.variable("n", (), np.int64)
    z = sd.fori_loop(0, n, lambda i, c: c * 1.1 + i, x)  # bounds known at evaluation: a while_loop
    k, m = sd.while_loop(lambda c: c[0] < 10, lambda c: (c[0] + 1, c[1] * 1.2), (g.constant(np.int64(0)), x))
    loss = sd.sum(u * u)
    outputs = _flat([u, count, z, k, m, sd.grad(loss, [x, w])])
    xv, wv = np.array([0.3, 0.5]), 0.25
    got, f = _agree(outputs, [x, w, n], [xv, wv, np.int64(3)])
    c, steps = xv, 0
    while np.sum(c) < 4.0:
        c, steps = c * 1.5 + wv, steps + 1
    np.testing.assert_allclose(got[0], c, rtol=1e-14)
    assert got[1] == steps and got[1].dtype == np.int64
    assert got[3] == 10 and got[3].dtype == np.int64
    with pytest.raises(sd.LoopError, match="grow: the condition still holds after max_steps=20 steps"):
        f(np.array([1e-3, 0.0]), -0.1, np.int64(3))


def test_a_scan_in_a_scan_body_and_its_gradient_and_hessian(tmp_path):
    g = sd.Graph()
    x, w, loss = nested_loops(g)
    outputs = _flat([loss, sd.grad(loss, [x, w]), sd.hessian(loss, x)])
    _agree(outputs, [x, w], [np.array([0.4, -0.7]), 1.3])
    source = _strict(outputs, [x, w], tmp_path)
    names = _bodies(source)
    assert len(names) == len(set(names)) >= 4  # each body printed once, the inner ones called by the outer


DT = 0.05


def _rk4_step(th, om, t, c, k, A, sin, cos):
    """One RK4 step of examples/pendulum_rk4.py's pendulums, in symdiff or numpy (sin, cos)."""

    def f(t, th, om):
        return om, -c * om - k * sin(th) + A * cos(2 / 3 * t)

    a1, b1 = f(t, th, om)
    a2, b2 = f(t + DT / 2, th + DT / 2 * a1, om + DT / 2 * b1)
    a3, b3 = f(t + DT / 2, th + DT / 2 * a2, om + DT / 2 * b2)
    a4, b4 = f(t + DT, th + DT * a3, om + DT * b3)
    return th + DT / 6 * (a1 + 2 * a2 + 2 * a3 + a4), om + DT / 6 * (b1 + 2 * b2 + 2 * b3 + b4)


def _rk4(steps: int):
    """examples/pendulum_rk4.py's misfit and its gradient, over ``steps`` RK4 steps."""
    g = sd.Graph()
    p = g.variable("p", shape=(3,))
    observed = g.variable("observed", shape=(steps, 16))
    theta0 = g.constant(np.linspace(-2.0, 2.0, 16))

    def body(state, t):
        th, om = _rk4_step(*state, t, p[0], p[1], p[2], sd.sin, sd.cos)
        return (th, om), th

    _, angles = sd.scan(body, (theta0, sd.zeros_like(theta0)), g.constant(np.arange(steps) * DT), name="rk4")
    misfit = sd.mean((angles - observed) ** 2)
    return [misfit, sd.grad(misfit, p)], [p, observed]


def _numpy_rk4(pv, steps):
    """The angles after each step, the loop in plain numpy."""
    th, om = np.linspace(-2.0, 2.0, 16), np.zeros(16)
    angles = []
    for t in np.arange(steps) * DT:
        th, om = _rk4_step(th, om, t, *pv, np.sin, np.cos)
        angles.append(th)
    return np.array(angles)


def test_the_rk4_pendulums_gradient_is_c_of_the_same_length_for_100_and_1000_steps(tmp_path):
    rng = np.random.default_rng(0)
    pv = np.array([0.4, 1.2, 0.6])
    sources = []
    for steps in (100, 1000):
        outputs, inputs = _rk4(steps)
        data = _numpy_rk4(np.array([0.3, 1.5, 0.8]), steps) + rng.normal(0.0, 0.01, (steps, 16))
        got, f = _agree(outputs, inputs, [pv, data])
        np.testing.assert_allclose(got[0], np.mean((_numpy_rk4(pv, steps) - data) ** 2), rtol=1e-12)
        h = 1e-6
        for i in range(3):
            e = np.eye(3)[i] * h
            up = np.mean((_numpy_rk4(pv + e, steps) - data) ** 2)
            down = np.mean((_numpy_rk4(pv - e, steps) - data) ** 2)
            np.testing.assert_allclose(got[1][i], (up - down) / (2 * h), rtol=1e-6)
        text = sd.to_c(outputs, inputs, name="rk4")
        sources.append(text["rk4.c"])
        assert len(_bodies(text["rk4.c"])) >= 2
    # the loops are loops (and the time grid a loop filling it): the C of 1000 steps is the C of
    # 100 but for the numbers holding the trip count and the work buffer's offsets
    assert len(sources[0].splitlines()) == len(sources[1].splitlines())
    assert abs(len(sources[0]) - len(sources[1])) < 100
    assert re.sub(r"\d+", "N", sources[0]) == re.sub(r"\d+", "N", sources[1])
    _strict(outputs, inputs, tmp_path)


def test_float32_carries_and_bodies_stay_float32(tmp_path):
    g = sd.Graph()
    x = g.variable("x", (3,), dtype="float32")
    xs = g.variable("xs", (4, 3), dtype="float32")
    c, ys = sd.scan(lambda c, u: (sd.tanh(c * u) + c, sd.sum(c)), x, xs)
    loss = sd.sum(c * c) + sd.sum(ys)
    outputs = _flat([c, ys, sd.grad(loss, [x, xs])])
    xv, xsv = np.array([0.3, -0.5, 0.9], np.float32), np.linspace(-1, 1, 12).reshape(4, 3).astype(np.float32)
    got, _ = _agree(outputs, [x, xs], [xv, xsv], rtol=1e-5)
    assert all(np.asarray(v).dtype == np.float32 for v in got)
    source = _strict(outputs, [x, xs], tmp_path)
    assert "double" not in source.split("static int symdiff_body")[1].split("\n}")[0]


_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "f.h"

int main(void)
{
    double x[3] = {0.3, -0.4, 0.8}, w = 0.9, xs[18], loss, gx[3], gw, gxs[18];
    void *work = malloc(F_WORK_BYTES);
    int i;
    for (i = 0; i < 18; ++i) xs[i] = -0.5 + i / 17.0;
    if (f(x, &w, xs, &loss, gx, &gw, gxs, work) != 0) return 2;
    printf("%.17g\n", loss);
    for (i = 0; i < 3; ++i) printf("%.17g\n", gx[i]);
    printf("%.17g\n", gw);
    for (i = 0; i < 18; ++i) printf("%.17g\n", gxs[i]);
    free(work);
    return 0;
}
"""


def test_a_loops_gradient_runs_clean_under_the_address_and_undefined_behaviour_sanitizers(tmp_path):
    g = sd.Graph()
    x, w = g.variable("x", (3,)), g.variable("w")
    xs = g.variable("xs", (6, 3))
    c, ys = sd.scan(lambda c, u: (sd.tanh(c * w + u), sd.sum(c * c)), x, xs, checkpoint=sd.checkpoint.every(4))
    loss = sd.sum(c) + sd.sum(ys * ys)
    outputs = _flat([loss, sd.grad(loss, [x, w, xs])])
    for name, text in sd.to_c(outputs, [x, w, xs], name="f").items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.c").write_text(_MAIN)
    exe = tmp_path / "main"
    done = subprocess.run(
        ["cc", *STRICT, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", str(exe),
         str(tmp_path / "main.c"), str(tmp_path / "f.c"), "-lm"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stderr, run.stderr
    got = np.array([float(v) for v in run.stdout.split()])
    xsv = -0.5 + np.arange(18) / 17.0
    expected = sd.evaluate(outputs, {x: np.array([0.3, -0.4, 0.8]), w: 0.9, xs: xsv.reshape(6, 3)})
    np.testing.assert_allclose(got, np.concatenate([np.ravel(e) for e in expected]), rtol=1e-13)


def _mpc(horizon):
    """A pendulum's tracking cost over ``horizon`` controls, a scan over them; its value,
    gradient and Hessian with respect to the controls."""
    g = sd.Graph()
    x0, u = g.variable("x0", (2,)), g.variable("u", (horizon,))

    def step(c, uk):
        omega = c[1] + 0.05 * (-sd.sin(c[0]) + uk)
        theta = c[0] + 0.05 * omega
        return sd.stack([theta, omega]), theta**2 + 0.01 * uk**2

    _, ys = sd.scan(step, x0, u)
    cost = sd.sum(ys)
    return [cost, sd.grad(cost, u), sd.hessian(cost, u)], [x0, u]


def test_a_hessian_wrt_a_scans_sequence_is_c_that_does_not_grow_with_the_horizon():
    # the Hessian seeds the tangent loop with an identity of horizon x horizon: it is written by
    # loops, not printed as a table (a user's MPC Hessian at H = 100 printed 10,000 numbers)
    sizes = {h: len(sd.to_c(*_mpc(h))["f.c"]) for h in (20, 200)}
    assert sizes[200] < 1.2 * sizes[20], sizes
    outputs, inputs = _mpc(30)
    values = [np.array([0.3, -0.1]), np.linspace(-1.0, 1.0, 30)]
    got = sd.compile(outputs, inputs, backend="c")(*values)
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
