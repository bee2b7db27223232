"""Loops on the jax backend: ``scan`` as ``lax.scan`` (a counted one as ``lax.fori_loop``),
``while_loop`` as ``lax.while_loop``, the body traced once.

Oracle: the numpy interpreter (``sd.evaluate``, itself checked against numpy loops, closed forms
and the unrolled loops in test_loops.py): value, gradient, Hessian, Hessian-vector product,
Jacobian and a third derivative agree to 1e-12 relative. The XLA program is checked not to
unroll: its text is the same for 10 steps as for 1000, the lengths aside.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import installed
from symdiff.loops import make_scan
from symdiff.ops.core import outputs_of

from .test_loops import nested_loops

pytestmark = pytest.mark.skipif(not installed("jax"), reason="jax is not installed (the test extra installs it)")

RNG = np.random.default_rng(2026_12_01)


def agree(outputs, inputs, values, rtol=1e-12):
    """The jax backend's values of ``outputs``, checked against the numpy interpreter's."""
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    got = sd.compile(outputs, inputs, backend="jax")(*values)
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=f"output {k}")
    return got


def derivatives(loss, x, s, every=True):
    """The loss, its gradient, Hessian, a Hessian-vector product and the Jacobian of its gradient
    wrt ``x`` (a vector), and its first three derivatives wrt ``s`` (a scalar); without
    ``every``: the loss, its gradient and Hessian wrt ``x`` and third derivative wrt ``s`` (XLA
    compiles each output's loops: nested ones take it seconds)."""
    v = np.linspace(0.5, 1.5, x.shape[0])
    g = sd.grad(loss, x)
    d1 = sd.grad(loss, s)
    d2 = sd.grad(d1, s)
    if not every:
        return [loss, g, sd.hessian(loss, x), sd.grad(d2, s)]
    return [loss, g, sd.hessian(loss, x), sd.hvp(loss, x, v), sd.jacobian(g, x), d1, d2, sd.grad(d2, s)]


# -- every derivative, to third order -------------------------------------------------------------
def _rnn():
    g = sd.Graph()
    h, xs, w = g.variable("h", (3,)), g.variable("xs", (6, 3)), g.variable("w")
    carry, ys = sd.scan(lambda c, x: (sd.tanh(w * c + x), sd.sum(c * c)), h, xs, name="rnn")
    loss = sd.sum(carry * carry) + sd.sum(ys * np.linspace(0.5, 1.5, 6))
    return [h, xs, w], loss, [RNG.normal(size=3), RNG.normal(size=(6, 3)), 0.8]


def _fori():
    g = sd.Graph()
    x, w = g.variable("x", (2,)), g.variable("w")
    y = sd.fori_loop(0, 5, lambda i, c: sd.sin(c * w) + i * 0.25, x)
    return [x, w], sd.sum(y * y), [np.array([0.3, -0.6]), 1.2]


def _while():
    g = sd.Graph()
    x, w = g.variable("x", (2,)), g.variable("w")
    y = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25 * sd.sin(c), x, max_steps=40)
    return [x, w], sd.sum(y * y), [np.array([0.3, 0.5]), 1.3]


@pytest.mark.parametrize("build", [_rnn, _fori, _while], ids=["scan", "fori_loop", "while_loop"])
def test_value_and_derivatives_to_third_order_agree_with_numpy(build):
    inputs, loss, values = build()
    agree(derivatives(loss, inputs[0], inputs[-1]), inputs, values)


def test_reverse_scan_with_a_tuple_of_carries_an_int_carry_and_captures():
    g = sd.Graph()
    a, xs, w = g.variable("a", (2,)), g.variable("xs", (5, 2)), g.variable("w")

    def body(c, x):
        i, p, q = c
        return (i + 1, p * q + w * x * i, q * 0.9), (sd.exp(-p) * x, i)

    (i, p, q), (ys, steps) = sd.scan(body, (0, a, 1.1), xs, reverse=True)
    assert i.dtype == steps.dtype == np.int64
    loss = sd.sum(p * p) + q + sd.sum(ys)
    got = agree(
        [i, p, q, ys, steps, *derivatives(loss, a, w)], [a, xs, w], [RNG.normal(size=2), RNG.normal(size=(5, 2)), 0.7]
    )
    assert int(got[0]) == 5 and list(np.asarray(got[4])) == [4, 3, 2, 1, 0]


def test_nested_scans_and_a_composite_in_a_scan_body():
    g = sd.Graph()
    x, w, loss = nested_loops(g)
    agree(derivatives(loss, x, w, every=False), [x, w], [np.array([0.4, -0.7]), 1.3])


def test_a_while_loop_in_a_scan_body():
    g = sd.Graph()
    x, w = g.variable("x", (2,)), g.variable("w")

    def body(c, _):
        grown = sd.while_loop(lambda d: sd.sum(d) < 3.0, lambda d: d * w + 0.5, c, max_steps=10)
        return grown * 0.25, sd.sum(grown)

    c, ys = sd.scan(body, x, length=3)
    loss = sd.sum(c * c) + sd.sum(ys)
    agree(derivatives(loss, x, w, every=False), [x, w], [np.array([0.2, 0.4]), 1.1])


def test_zero_steps():
    g = sd.Graph()
    x, xs, w = g.variable("x", (2,)), g.variable("xs", (0, 2)), g.variable("w")
    c, ys = sd.scan(lambda c, x: (c * w + x, sd.sin(c)), x, xs)
    d, _ = sd.scan(lambda c, _: (c * w, None), x, length=0)
    loss = sd.sum(c * c) + sd.sum(ys) + sd.sum(d)
    got = agree([c, ys, d, *derivatives(loss, x, w)], [x, xs, w], [np.array([0.5, 2.0]), np.zeros((0, 2)), 3.0])
    assert np.shape(got[1]) == (0, 2)


# -- what a loop stores for its reverse mode ---------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    "checkpoint, counted",
    [
        (None, False),
        (sd.checkpoint.every(3), False),
        (sd.checkpoint.revolve(snapshots=3), False),
        (None, True),  # a counted scan (a while_loop's reverse) stores every carry: the library never checkpoints one
    ],
    ids=["all", "every-3", "revolve-3", "counted"],
)
def test_stored_carries_ys_and_counted_steps_are_the_interpreters(reverse, checkpoint, counted):
    """A scan's outputs read directly: the stored carries (every step's, or those of the steps
    a checkpointing policy keeps, in iteration order) and, for a counted scan (a while_loop's
    reverse), only the first n steps run, the ys and stored carries of the others zeros."""
    g = sd.Graph()
    x, xs, n = g.variable("x", (2,)), g.variable("xs", (7, 2)), g.variable("n", (), np.int64)
    c, _ = sd.scan(lambda c, x: (sd.sin(c) + x, c * 2.0), x, xs, reverse=reverse, checkpoint=checkpoint)
    node = c.inputs[0]
    if counted:
        attrs = dict(node._attrs)
        attrs["counted"] = True
        node = make_scan(node.regions[0], [*node.inputs, n], attrs)
    outs = outputs_of(node)
    values = [np.array([0.1, -0.3]), RNG.normal(size=(7, 2)), np.int64(4)]
    got = agree(list(outs), [x, xs, n], values)
    assert np.shape(got[2])[0] == (7 if checkpoint is None else 3)
    if counted:
        assert not np.any(np.asarray(got[1])[4:])


def checkpointed_scan(checkpoint, rng):
    """A loss through a scan of 7 steps checkpointed by ``checkpoint``: its inputs (x, xs, w),
    the loss and values for the inputs (also test_loops_dask's)."""
    g = sd.Graph()
    x, xs, w = g.variable("x", (3,)), g.variable("xs", (7, 3)), g.variable("w")
    c, ys = sd.scan(lambda c, x: (sd.sin(c * w) + x, c * 2.0), x, xs, checkpoint=checkpoint)
    return [x, xs, w], sd.sum(c * c) + sd.sum(ys * ys), [np.array([0.1, -0.3, 0.2]), rng.normal(size=(7, 3)), 0.9]


@pytest.mark.parametrize("checkpoint", [sd.checkpoint.every(3), sd.checkpoint.revolve(snapshots=2)], ids=str)
def test_checkpointed_scans_differentiate_as_numpy_does(checkpoint):
    (x, xs, w), loss, values = checkpointed_scan(checkpoint, RNG)
    outputs = [loss, sd.grad(loss, x), sd.hessian(loss, x)]  # a third derivative: XLA compiles it for seconds
    agree(outputs, [x, xs, w], values)


# -- run-time checks ------------------------------------------------------------------------------
def test_a_while_loop_past_max_steps_raises_loop_error_as_numpy_does():
    import jax

    g = sd.Graph()
    x = g.variable("x")
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0, max_steps=5)
    inside, _ = sd.scan(
        lambda c, _: (sd.while_loop(lambda d: d < 100.0, lambda d: d * x, c, max_steps=5), None), 1.0, length=2
    )
    for out in (y, sd.grad(y, x), inside):
        f = sd.compile(out, [x], backend="jax")
        np.testing.assert_allclose(f(3.0), sd.evaluate(out, {x: 3.0}), rtol=1e-12)
        with pytest.raises(sd.LoopError, match=r"the condition still holds after max_steps=5 steps"):
            sd.evaluate(out, {x: 1.5})
        with pytest.raises(sd.LoopError, match=r"the condition still holds after max_steps=5 steps"):
            f(1.5)
        with pytest.raises(sd.LoopError, match=r"the condition still holds after max_steps=5 steps"):
            f.jax_function(1.5)
        # under the user's own jit nothing can raise: the float outputs are nan
        with jax.enable_x64(True):
            assert np.isnan(jax.jit(f.jax_function)(1.5))
            np.testing.assert_allclose(jax.jit(f.jax_function)(3.0), f(3.0), rtol=1e-12)


def counted_scan(length):
    """A scan doubling its carry, counted at evaluation (as a while_loop's reverse is): its
    inputs (x, the trip count) and its outputs (the final carry, the stored carries); also
    test_loops_dask's."""
    g = sd.Graph()
    x, count = g.variable("x"), g.variable("count", (), np.int64)
    body = g.body("counted")
    c0 = body.variable("c0")
    region = sd.graph.Region(body, (c0,), (c0 * 2.0,), "counted", several=True)
    body.seal()
    attrs = {"name": "counted", "length": length, "carries": 1, "xs": 0, "ys": 0, "reverse": False}
    node = make_scan(region, [x, count], {**attrs, "counted": True, "checkpoint": None})
    final, stored = outputs_of(node)
    return [x, count], [final, stored]


def test_a_trip_count_outside_0_to_length_raises_the_interpreters_loop_error():
    import jax

    (x, count), outs = counted_scan(3)
    f = sd.compile(outs, [x, count], backend="jax")
    got = f(1.5, np.int64(2))
    assert float(got[0]) == 6.0 and list(np.asarray(got[1])) == [1.5, 3.0, 0.0]  # 1.5 * 2**2; steps 0, 1 stored
    for n in (4, 5, -1):
        message = rf"counted: a trip count of {n} is outside 0\.\.3"
        with pytest.raises(sd.LoopError, match=message):
            sd.evaluate(outs, {x: 1.5, count: np.int64(n)})
        with pytest.raises(sd.LoopError, match=message):
            f(1.5, np.int64(n))
        with pytest.raises(sd.LoopError, match=message):
            f.jax_function(1.5, np.int64(n))
        with jax.enable_x64(True):  # under the user's own jit nothing can raise: the float outputs are nan
            assert np.isnan(jax.jit(f.jax_function)(1.5, np.int64(n))[0])


def test_a_float32_loop_compiles_in_32_bits():
    """A loop node has several outputs and no dtype of its own: the backend reads its outputs'."""
    g = sd.Graph()
    x, w = g.variable("x", (3,), np.float32), g.variable("w", (), np.float32)
    c, ys = sd.scan(lambda c, _: (sd.tanh(c * w) + c, c * w), x, length=4)
    got = sd.compile([c, ys], [x, w], backend="jax")(np.array([0.5, -1.0, 2.0], np.float32), np.float32(0.7))
    expected, stacked = np.array([0.5, -1.0, 2.0]), []
    for _ in range(4):  # the loop by hand
        stacked.append(expected * 0.7)
        expected = np.tanh(expected * 0.7) + expected
    assert got[0].dtype == got[1].dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)
    np.testing.assert_allclose(got[1], np.stack(stacked), rtol=1e-6)


def changing_carry(loop):
    """A ``loop`` ("scan" or "while_loop") over x of shape (None,) whose body turns a carry of
    shape (3,) into one of shape (4,): its input, output and the interpreter's error message
    (also test_loops_dask's)."""
    g = sd.Graph()
    x = g.variable("x", (None,))
    if loop == "scan":
        y, _ = sd.scan(lambda c, _: (sd.concatenate([c[1:], c[1:]]), None), x, length=3)
    else:
        y = sd.while_loop(lambda c: sd.sum(c) < 100.0, lambda c: sd.concatenate([c, c[:1]]), x, max_steps=5)
    message = rf"{loop}: a step turned carry item 0 of shape \(3,\) into shape \(4,\); a loop's carry keeps its shape"
    with pytest.raises(sd.ShapeError, match=message):
        sd.evaluate(y, {x: np.arange(3.0)})
    return x, y, message


@pytest.mark.parametrize("loop", ["scan", "while_loop"])
def test_a_carry_whose_none_dimension_changes_raises_the_interpreters_shape_error(loop):
    x, y, message = changing_carry(loop)
    with pytest.raises(sd.ShapeError, match=message):
        sd.compile(y, [x], backend="jax")(np.arange(3.0))


# -- not unrolled -----------------------------------------------------------------------------------
def test_the_xla_program_holds_the_body_once_whatever_the_number_of_steps():
    import jax

    def program(T):
        g = sd.Graph()
        x, w = g.variable("x", (4,)), g.variable("w")
        c, ys = sd.scan(lambda c, _: (c + 0.01 * sd.sin(w * c), sd.sum(c)), x, length=T)
        loss = sd.sum(c * c) + sd.sum(ys)
        f = sd.compile([loss, sd.grad(loss, w), sd.hessian(loss, w)], [x, w], backend="jax")
        with jax.enable_x64(True):
            return str(jax.make_jaxpr(f.jax_function)(np.ones(4), 0.5))

    short, long = program(10), program(1000)
    assert "scan[" in long
    # the same program, its lengths aside (shapes f64[1000,4], length=1000)
    assert re.sub(r"\d+", "N", short) == re.sub(r"\d+", "N", long)
