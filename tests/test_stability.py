"""Numerical stability at the extremes, in float64 and float32, and IEEE results at the edges."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import symdiff as sd

EXTREMES = np.array([-1000.0, -300.0, -40.0, -1e-8, 0.0, 1e-8, 40.0, 300.0, 1000.0])


def _sigmoid_ref(x):
    return scipy.special.expit(x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "name, build, value, derivative",
    [
        ("sigmoid", sd.sigmoid, _sigmoid_ref, lambda x: _sigmoid_ref(x) * _sigmoid_ref(-x)),
        ("softplus", sd.softplus, lambda x: np.logaddexp(0, x), _sigmoid_ref),
        ("log1p", lambda x: sd.log1p(sd.abs(x)), lambda x: np.log1p(np.abs(x)), lambda x: np.sign(x) / (1 + np.abs(x))),
        (
            "expm1",
            lambda x: sd.expm1(-sd.abs(x)),
            lambda x: np.expm1(-np.abs(x)),
            lambda x: -np.sign(x) * np.exp(-np.abs(x)),
        ),
    ],
)
def test_elementwise_functions_stay_finite_and_accurate(name, build, value, derivative, dtype):
    g = sd.Graph()
    x = g.variable("x", shape=(len(EXTREMES),), dtype=dtype)
    y = build(x)
    dy = sd.grad(sd.sum(y), x)
    d2y = sd.grad(sd.sum(dy), x)
    xv = EXTREMES.astype(dtype)
    got, got_d, got_d2 = sd.evaluate([y, dy, d2y], {x: xv})
    assert got.dtype == np.dtype(dtype) and got_d.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(got_d)) and np.all(np.isfinite(got_d2))
    tol = 1e-12 if dtype == "float64" else 1e-5
    reference = xv.astype(np.float64)
    np.testing.assert_allclose(got, value(reference), rtol=tol, atol=tol)
    np.testing.assert_allclose(got_d, derivative(reference), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_family_at_extremes(dtype):
    g = sd.Graph()
    x = g.variable("x", shape=(2, 4), dtype=dtype)
    xv = np.array([[1000.0, 999.0, -1000.0, 0.0], [-1000.0, -1000.0, -999.0, -1001.0]], dtype=dtype)
    outputs = [sd.softmax(x), sd.log_softmax(x), sd.logsumexp(x, axis=1)]
    weights = np.arange(8.0).reshape(2, 4)
    grads = [sd.grad(sd.sum(o * (weights if o.ndim == 2 else weights[:, 0])), x) for o in outputs]
    values = sd.evaluate(outputs + grads, {x: xv})
    for v in values:
        assert np.all(np.isfinite(v)) and v.dtype == np.dtype(dtype)
    ref = xv.astype(np.float64)
    # x - logsumexp(x) at |x| = 1000 is as exact as x itself: float32's spacing there is 6e-5
    tol = 1e-12 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(values[0], scipy.special.softmax(ref, axis=1), rtol=tol, atol=tol)
    np.testing.assert_allclose(values[1], scipy.special.log_softmax(ref, axis=1), rtol=tol, atol=tol)
    np.testing.assert_allclose(values[2], scipy.special.logsumexp(ref, axis=1), rtol=tol)
    s = scipy.special.softmax(ref, axis=1)
    np.testing.assert_allclose(values[5], np.broadcast_to(weights[:, :1], (2, 4)) * s, rtol=tol, atol=tol)


def test_logsumexp_of_all_minus_infinity():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    assert sd.evaluate(sd.logsumexp(x), {x: [-np.inf, -np.inf, -np.inf]}) == -np.inf


@pytest.mark.parametrize("compiled", [False, True])
def test_ieee_edges_give_numpy_results_without_exceptions(compiled):
    g = sd.Graph()
    x = g.variable("x")
    cases = [
        (sd.grad(sd.sqrt(x), x), 0.0, np.inf),
        (sd.grad(sd.abs(x), x), 0.0, 0.0),
        (sd.log(x), 0.0, -np.inf),
        (sd.grad(sd.log(x), x), 0.0, np.inf),
        (1.0 / x, 0.0, np.inf),
        (-1.0 / x, 0.0, -np.inf),
        (x / x, 0.0, np.nan),
        (sd.log(x), -1.0, np.nan),
        (sd.exp(x), 1000.0, np.inf),
        (sd.sqrt(x), -4.0, np.nan),
    ]
    for node, at, expected in cases:
        with np.errstate(all="raise"):  # any numpy warning would raise here
            got = sd.compile(node, inputs=[x])(at) if compiled else sd.evaluate(node, {x: at})
        np.testing.assert_equal(got, expected, err_msg=str(node))


def test_nan_and_inf_inputs_propagate():
    g = sd.Graph()
    w = g.variable("w", shape=(3,))
    loss = sd.sum(sd.tanh(w) ** 2)
    gw = sd.grad(loss, w)
    value, grad = sd.evaluate([loss, gw], {w: [np.nan, np.inf, 1.0]})
    assert np.isnan(value)
    assert np.isnan(grad[0]) and grad[1] == 0.0 and np.isfinite(grad[2])
