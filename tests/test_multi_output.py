"""Ops with several outputs (eigh, slogdet): one node computes them all, each output is a
node of its own, and derivatives route through the outputs used.

Oracles: numpy's own eigh/slogdet, central finite differences, closed forms
(d log|det A| = A⁻ᵀ, Matrix Cookbook eq. 50; dλ_i = v_i v_iᵀ for a symmetric matrix).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff.ops.core import output


def _fd(f, a, eps=1e-6):
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        step = np.zeros_like(a)
        step[idx] = eps
        out[idx] = (f(a + step) - f(a - step)) / (2 * eps)
    return out


@pytest.fixture
def lapack_calls(monkeypatch):
    """Counts numpy.linalg.eigh and slogdet calls (what symdiff's forwards call)."""
    calls = {"eigh": 0, "slogdet": 0}
    for name in calls:
        real = getattr(np.linalg, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(np.linalg, name, counted)
    return calls


def test_eigh_is_one_node_with_two_output_nodes():
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, v = sd.eigh(A)
    assert (w.op, v.op) == ("output", "output")
    assert w.inputs[0] is v.inputs[0] and w.inputs[0].is_multi and w.inputs[0].op == "eigh"
    assert (w.shape, v.shape) == ((3,), (3, 3))
    assert sd.eigh(A)[0] is w and sd.eigh(A)[1] is v  # interned: built once
    assert output(w.inputs[0], 1) is v
    assert str(w) == "eigh(A).eigenvalues" and str(v) == "eigh(A).eigenvectors"
    with pytest.raises(sd.GraphError, match="no output 2"):
        output(w.inputs[0], 2)
    with pytest.raises(sd.GraphError, match="has one output"):
        output(A, 0)


def test_slogdet_outputs_are_named_as_numpys_result():
    g = sd.Graph()
    A = g.variable("A", shape=(2, 2))
    sign, logabs = sd.slogdet(A)
    assert (str(sign), str(logabs)) == ("slogdet(A).sign", "slogdet(A).logabsdet")
    got = sd.evaluate([sign, logabs], {A: [[0.0, 2.0], [3.0, 0.0]]})
    np.testing.assert_allclose(got, [-1.0, np.log(6.0)], rtol=1e-15)


@pytest.mark.parametrize("how", ["evaluate", "compile"])
def test_eigh_and_slogdet_call_lapack_once_per_evaluation(lapack_calls, how):
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, v = sd.eigh(A)
    sign, logabs = sd.slogdet(A)
    cost = sd.sum(w * np.array([1.0, 2.0, 3.0])) + sd.sum(v**2) + sign * logabs
    a = np.array([[2.0, 0.3, -0.4], [0.3, 1.0, 0.2], [-0.4, 0.2, -1.0]])
    f = sd.compile(cost, [A]) if how == "compile" else (lambda x: sd.evaluate(cost, {A: x}))
    lapack_calls.update(eigh=0, slogdet=0)
    for _ in range(3):
        f(a)
    assert lapack_calls == {"eigh": 3, "slogdet": 3}


def test_the_sign_of_slogdet_passes_no_gradient():
    g = sd.Graph()
    x = g.variable("x", shape=(None,))
    y = sd.slogdet(sd.expand_dims(x, -1) * sd.expand_dims(x, 0) - np.eye(3))[0]
    assert y.inputs[0].op == "slogdet"
    gx = sd.grad(y, x)
    np.testing.assert_array_equal(sd.evaluate(gx, {x: [0.5, -2.0, 0.0]}), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(sd.evaluate(sd.jvp(y, x, np.ones(3)), {x: [0.5, -2.0, 0.0]}), 0.0)


def test_the_eigenvalues_alone_differentiate_at_a_repeated_eigenvalue():
    """A cost of the eigenvalues uses no eigenvalue gap: fine where two are equal (dλ_i = v_i v_iᵀ)."""
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, _ = sd.eigh(A)
    gw = sd.grad(w[2], A)
    got = sd.evaluate(gw, {A: np.diag([1.0, 1.0, 3.0])})
    np.testing.assert_allclose(got, np.diag([0.0, 0.0, 1.0]), atol=1e-15)


def test_an_unused_output_costs_no_derivative_work():
    """The gradient of the eigenvalues alone builds no eigenvector derivative (no eigh_gaps)."""
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, _ = sd.eigh(A)
    gw = sd.grad(sd.sum(w), A)
    from symdiff.graph import ancestors

    assert "eigh_gaps" not in {n.op for n in ancestors([gw])}


symmetric = st.integers(0, 2**32 - 1).map(
    lambda seed: (lambda a: a + a.T)(np.random.default_rng(seed).standard_normal((3, 3)))
)
weights = st.lists(st.floats(-2, 2), min_size=3, max_size=3)


@settings(max_examples=25, deadline=None)
@given(symmetric, weights, weights)
def test_derivatives_through_both_outputs_match_differences(a, c1, c2):
    """grad, hessian (via jacobian of the gradient) and hvp of a cost of both eigh outputs
    and of log|det| against central differences of numpy's eigh and slogdet."""
    w_np = np.linalg.eigvalsh(a)
    if np.min(np.diff(w_np)) < 0.2:
        return  # eigenvector derivatives divide by the gaps: keep clear of ties
    c1, c2 = np.array(c1), np.array(c2)

    def reference(m):
        s = (m + m.T) / 2
        w, v = np.linalg.eigh(s)
        return float(c1 @ w + c2 @ (v**2).sum(axis=0) + np.linalg.slogdet(m)[1])

    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, v = sd.eigh(A)
    cost = sd.sum(c1 * w) + sd.sum(c2 * sd.sum(v**2, axis=0)) + sd.slogdet(A)[1]
    grad = sd.grad(cost, A)
    np.testing.assert_allclose(sd.evaluate(grad, {A: a}), _fd(reference, a), rtol=1e-5, atol=1e-6)
    gfun = sd.compile(grad, [A])
    h = sd.evaluate(sd.hessian(cost, A), {A: a}).reshape(9, 9)
    fd_h = np.stack([_fd(lambda m, k=k: gfun(m).reshape(-1)[k], a).reshape(-1) for k in range(9)])
    np.testing.assert_allclose(h, fd_h, rtol=1e-4, atol=1e-5)
    d = np.random.default_rng(0).standard_normal((3, 3))
    np.testing.assert_allclose(
        sd.evaluate(sd.hvp(cost, A, d), {A: a}).reshape(-1), h @ d.reshape(-1), rtol=1e-8, atol=1e-9
    )


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_logabsdet_gradient_is_the_inverse_transpose(seed):
    a = np.random.default_rng(seed).standard_normal((4, 4)) + 0.5 * np.eye(4)
    g = sd.Graph()
    A = g.variable("A", shape=(4, 4))
    sign, logabs = sd.slogdet(A)
    got = sd.evaluate(sd.grad(logabs, A), {A: a})
    np.testing.assert_allclose(got, np.linalg.inv(a).T, rtol=1e-9, atol=1e-9)
    # forward mode: d log|det| along t is tr(A⁻¹ t)
    t = np.random.default_rng(seed + 1).standard_normal((4, 4))
    np.testing.assert_allclose(sd.evaluate(sd.jvp(logabs, A, t), {A: a}), np.trace(np.linalg.solve(a, t)), rtol=1e-9)


def test_eigenvalue_jacobian_is_the_outer_products_of_the_eigenvectors():
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, _ = sd.eigh(A)
    a = np.array([[2.0, 0.3, -0.4], [0.3, 1.0, 0.2], [-0.4, 0.2, -1.0]])
    _, v = np.linalg.eigh(a)
    want = np.einsum("ki,li->ikl", v, v)  # dλ_i/dA = v_i v_iᵀ (symmetric input)
    np.testing.assert_allclose(sd.evaluate(sd.jacobian(w, A), {A: a}), want, atol=1e-12)
