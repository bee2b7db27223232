"""Loops on the numba backend: a scan or while_loop is a native loop calling its body's njit
function, and the derivatives of loops (loops of the same ops) compile with it.

Oracle: the numpy backend (``sd.evaluate``, itself checked against closed forms, unrolling and
finite differences in tests/test_loops.py), to 1e-12 relative, and closed forms where there is
one. numba builds native code for seconds per body: each test compiles its outputs together,
in one module, and the wider sweeps are marked slow (CI runs them).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import installed
from symdiff.loops import carry_changed, kept_positions, make_scan
from symdiff.ops.core import outputs_of

pytestmark = pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")

RTOL = 1e-12


def _agree(outputs, inputs, values):
    """The numba build's results equal the numpy backend's (shape, dtype, 1e-12 relative)."""
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    f = sd.compile(outputs, inputs, backend="numba")
    got = f(*values)
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL, err_msg=f"output {k}")
    return got, f


def test_a_scan_and_its_derivatives_to_third_order_are_native_loops():
    # x squared k times is x**(2**k): the value and three derivatives in closed form
    g = sd.Graph()
    x = g.variable("x")
    c, ys = sd.scan(lambda c, _: (c * c, c), x, length=3)
    d1 = sd.grad(c, x)
    d2 = sd.grad(d1, x)
    d3 = sd.grad(d2, x)
    got, f = _agree([c, ys, d1, d2, d3], [x], [1.1])
    np.testing.assert_allclose(got[0], 1.1**8, rtol=RTOL)
    np.testing.assert_allclose(got[1], [1.1, 1.1**2, 1.1**4], rtol=RTOL)
    np.testing.assert_allclose(got[2:], [8 * 1.1**7, 56 * 1.1**6, 336 * 1.1**5], rtol=RTOL)
    assert "for _u" in f.source and f.source.count("def _body") >= 2  # loops over bodies, not unrolled


@pytest.mark.slow
def test_a_scan_with_xs_reverse_and_two_carries_and_its_hessian_jacobian_and_hvp():
    g = sd.Graph()
    a, b = g.variable("a", (2,)), g.variable("b")
    xs = g.variable("xs", (4, 2))

    def body(c, x):
        return (c[0] * c[1] + sd.sin(x), c[1] * 0.9), sd.exp(-c[0]) * x

    (ca, cb), ys = sd.scan(body, (a, b), xs, reverse=True)
    loss = sd.sum(ca * ca) + cb + sd.sum(ys * ys)
    v = g.constant(np.array([0.3, -0.7]))
    outputs = [ca, cb, ys, sd.grad(loss, [a, b, xs]), sd.hessian(loss, a), sd.hvp(loss, a, v), sd.jacobian(ca, a)]
    flat = [o for out in outputs for o in (out if isinstance(out, list) else [out])]
    rng = np.random.default_rng(0)
    _agree(flat, [a, b, xs], [rng.normal(size=2), 0.8, rng.normal(size=(4, 2))])


def test_int_carries_a_fori_loop_counter_and_a_while_loop_with_and_without_max_steps():
    g = sd.Graph()
    x = g.variable("x", (2,))
    n = g.variable("n", (), np.int64)
    y = sd.fori_loop(1, 4, lambda i, c: sd.sin(c) * i + 0.5, x)  # a scan over an int64 counter
    z = sd.fori_loop(0, n, lambda i, c: c * 1.1 + i, x)  # bounds known at evaluation: a while_loop
    w, k = sd.while_loop(lambda c: c[0] < 10, lambda c: (c[0] + 1, c[1] * 1.2), (g.constant(np.int64(0)), x))
    u = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * 1.5 + 0.25, x, max_steps=20)
    outputs = [y, z, w, k, u, sd.grad(sd.sum(y * y), x), sd.jvp(z, x, np.ones(2)), sd.grad(sd.sum(u), x)]
    got, _ = _agree(outputs, [x, n], [np.array([0.3, 0.5]), np.int64(3)])
    assert got[2] == 10 and got[2].dtype == np.int64


def test_a_while_loop_past_max_steps_and_a_count_out_of_range_raise_the_interpreters_loop_error():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * 2.0, x, max_steps=5, name="doubling")
    f = sd.compile([y, sd.grad(y, x)], [x], backend="numba")
    np.testing.assert_allclose(f(7.0), [112.0, 16.0])
    with pytest.raises(sd.LoopError, match="doubling: the condition still holds after max_steps=5 steps"):
        f(1.0)
    # a scan counted at evaluation (as a while_loop's reverse is): the count must be in 0..length
    count = g.variable("count", (), np.int64)
    body = g.body("counted")
    c0 = body.variable("c0")
    region = sd.graph.Region(body, (c0,), (c0 * 2.0,), "counted", several=True)
    body.seal()
    attrs = {"name": "counted", "length": 4, "carries": 1, "xs": 0, "ys": 0, "reverse": False}
    node = make_scan(region, [x, count], {**attrs, "counted": True, "checkpoint": None})
    final = outputs_of(node)[0]
    f = sd.compile(final, [x, count], backend="numba")
    assert f(1.5, np.int64(3)) == 12.0 == sd.evaluate(final, {x: 1.5, count: np.int64(3)})
    with pytest.raises(sd.LoopError, match="counted: a trip count of 5 is outside 0..4"):
        f(1.5, np.int64(5))


@pytest.mark.slow
def test_nested_loops_and_composites_and_hessians_through_them():
    g = sd.Graph()
    x = g.variable("x", (3,))
    w = g.variable("w")
    soft = sd.composite(lambda v, s: s * sd.tanh(v / s), name="soft")

    def inner(c):
        return sd.scan(lambda d, _: (sd.sin(d) * w + d, d * d), c, length=2)[0]

    # a scan in a scan's body, a composite in a scan's body, a scan in a composite
    outer, ys = sd.scan(lambda c, _: (inner(c) * 0.5, soft(c, w + 2.0)), x, length=3)
    looped = sd.composite(lambda v: sd.scan(lambda c, _: (c * w + 0.1, None), v, length=4)[0], name="looped")
    y = looped(outer)
    loss = sd.sum(y * y) + sd.sum(ys)
    u = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * 1.5 + w, x, max_steps=20)
    outputs = [y, ys, sd.grad(loss, [x, w]), sd.hessian(loss, x), sd.grad(sd.grad(loss, w), w)]
    outputs += [sd.hessian(sd.sum(u * u), x)]
    flat = [o for out in outputs for o in (out if isinstance(out, list) else [out])]
    _agree(flat, [x, w], [np.array([0.2, -0.4, 0.9]), 0.7])


def test_checkpointed_storage_none_dimensions_and_their_checks_inside_a_body():
    g = sd.Graph()
    x = g.variable("x", (None,))
    s = g.variable("s", (None,))
    c, ys = sd.scan(lambda c, _: (c * s + 0.5, sd.concatenate([c, c])), x, length=5, checkpoint=sd.checkpoint.every(2))
    stored = outputs_of(c.inputs[0])[2]  # the carries at steps 0, 2, 4
    assert stored.shape == (3, None)
    plain, _ = sd.scan(lambda c, _: (c * s + 0.5, c), x, length=5)
    outputs = [c, ys, stored, sd.grad(sd.sum(plain * plain), [x, s])]
    flat = [o for out in outputs for o in (out if isinstance(out, list) else [out])]
    got, f = _agree(flat, [x, s], [np.array([0.1, 0.2, 0.3]), np.array([1.1, 0.9, 1.0])])
    assert got[1].shape == (5, 6)
    # a None dimension bound to 1 meeting a size 3 inside the body: the interpreter's ShapeError
    with pytest.raises(sd.ShapeError, match="None dimension never broadcasts"):
        f(np.array([0.1, 0.2, 0.3]), np.array([1.1]))


def test_the_gradient_of_a_revolve_checkpointed_scan_stores_the_kept_carries():
    # the carries starting the steps at the kept positions (loops.kept_positions), each at its
    # index there, as the interpreter stores them; the oracle of the stored ones is a numpy loop
    g = sd.Graph()
    x = g.variable("x", (3,))
    c, _ = sd.scan(lambda c, _: (sd.sin(c) + c * 0.5, None), x, length=7, checkpoint=sd.checkpoint.revolve(snapshots=2))
    stored = outputs_of(c.inputs[0])[1]
    v = np.array([0.3, -0.5, 0.9])
    got, _ = _agree([c, sd.grad(sd.sum(c), x), stored], [x], [v])
    carries = [v]
    for _ in range(7):
        carries.append(np.sin(carries[-1]) + carries[-1] * 0.5)
    kept = kept_positions(7, ("revolve", 2))
    assert len(kept) == 2
    np.testing.assert_allclose(got[2], [carries[p] for p in kept], rtol=RTOL)
    np.testing.assert_allclose(got[0], carries[-1], rtol=RTOL)


@pytest.mark.slow
def test_gradients_of_every_and_revolve_checkpointed_reversed_scans_over_sequences():
    g = sd.Graph()
    x = g.variable("x", (3,))
    xs = g.variable("xs", (7, 3))
    for policy in (sd.checkpoint.every(2), sd.checkpoint.revolve(snapshots=3)):
        e, ys = sd.scan(lambda c, u: (sd.cos(c) * u + c, c * u), x, xs, checkpoint=policy, reverse=True)
        _agree(
            sd.grad(sd.sum(e * e) + sd.sum(ys), [x, xs]),
            [x, xs],
            [np.array([0.3, -0.5, 0.9]), np.linspace(-1.0, 1.0, 21).reshape(7, 3)],
        )


def test_a_step_changing_a_none_dimension_of_a_carry_raises_the_interpreters_shape_error():
    g = sd.Graph()
    x, y = g.variable("x", (None,)), g.variable("y", (None,))
    # (n - 1) * 2 items: size 2 stays, any other changes
    c, _ = sd.scan(lambda c, _: (sd.concatenate([c[1:], c[1:]]) * 1.5, None), x, length=3, name="halves")
    u = sd.while_loop(lambda c: sd.sum(c) < 50.0, lambda c: sd.concatenate([c[1:], c[1:]]) + 1.0, y, name="grows")
    got, f = _agree([c, u], [x, y], [np.array([1.0, 2.0]), np.array([0.5, 1.0])])
    np.testing.assert_allclose(got[0], [6.75, 6.75], rtol=RTOL)
    with pytest.raises(sd.ShapeError, match=re.escape(str(carry_changed("halves", 0, (3,), (4,))))):
        f(np.arange(3.0), np.array([0.5, 1.0]))
    with pytest.raises(sd.ShapeError, match=re.escape(str(carry_changed("grows", 0, (3,), (4,))))):
        f(np.array([1.0, 2.0]), np.array([0.5, 1.0, 2.0]))
