"""sd.check_grads: passes correct derivatives, and names the op and the worst element of a wrong one."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops import REGISTRY


@pytest.fixture
def wrong_op():
    """cube(x) = x**3 with a wrong derivative rule (3 x**2 off by 1% where x > 1)."""
    name = "test_cube_wrong"
    op = sd.define_op(
        name,
        forward=lambda x: x**3,
        shape=lambda shape: shape,
        vjp=(lambda g, out, x: g * 3.0 * x**2 * sd.where(x > 1.0, 1.01, 1.0),),
        jvp=(lambda t, out, x: t * 3.0 * x**2,),
        elementwise=True,
    )
    yield op
    del REGISTRY[name]


def test_correct_derivatives_pass_to_third_order():
    sd.check_grads(
        lambda x, y: sd.sum(sd.tanh(x @ y)) * sd.exp(-x[0, 0]), [np.ones((2, 3)) * 0.3, np.eye(3)[:, :2]], order=3
    )
    sd.check_grads(lambda x: sd.logsumexp(sd.sin(x) * x), [np.linspace(-1, 1, 5)], order=2, modes=("rev",))


def test_a_wrong_rule_is_named_with_its_worst_element(wrong_op):
    points = [np.array([0.5, 2.0, -0.3])]
    with pytest.raises(AssertionError) as info:
        sd.check_grads(lambda x: sd.apply(wrong_op, x), points, order=1)
    message = str(info.value)
    assert "reverse mode (grad)" in message and "test_cube_wrong" in message
    assert "worst element: input 0 (x0) element (1,)" in message  # the one with x > 1
    # forward mode is right, and says so by passing alone
    sd.check_grads(lambda x: sd.apply(wrong_op, x), points, order=1, modes=("fwd",))


def test_evaluate_is_thread_safe():
    g = sd.Graph()
    x = g.variable("x", shape=(None,))
    y = sd.sum(sd.tanh(x) ** 2)
    gy = sd.grad(y, x)
    inputs = [np.linspace(-k, k, 40) for k in range(1, 33)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda v: sd.evaluate([y, gy], {x: v}), inputs))
    for v, (value, grad) in zip(inputs, results):
        assert value == pytest.approx(np.sum(np.tanh(v) ** 2))
        np.testing.assert_allclose(grad, 2 * np.tanh(v) * (1 - np.tanh(v) ** 2))
