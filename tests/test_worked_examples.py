"""The worked examples of SEEDS.md (items 1-8), with hand-derived or plain-numpy values."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symdiff as sd

from . import oracles


# 1. Gates: f(x, y, z) = (x + y) z at (-2, 5, -4)
def test_gates_add_and_multiply():
    g = sd.Graph()
    x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
    q = x + y
    f = q * z
    at = {"x": -2.0, "y": 5.0, "z": -4.0}
    assert sd.evaluate(q, at) == 3.0
    assert sd.evaluate(f, at) == -12.0
    dfdx, dfdy, dfdz, dfdq = sd.grad(f, [x, y, z, q])
    assert sd.evaluate([dfdx, dfdy, dfdz, dfdq], at) == [-4.0, -4.0, 3.0, -4.0]
    # the multiply gate passes the *other* input: df/dz is q itself, df/dq is z itself
    assert dfdz is q and dfdq is z


# 2. The sigmoid neuron, node by node and as one fused node
W0, X0 = np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0])
SIG1 = 1 / (1 + np.exp(-1.0))  # w·x + b = 1 at this point
LOCAL = SIG1 * (1 - SIG1)  # dσ = σ(1 - σ) = 0.19661...


@pytest.mark.parametrize("fused", [False, True])
def test_sigmoid_neuron(fused):
    g = sd.Graph()
    w, x = g.variable("w", shape=(3,)), g.variable("x", shape=(2,))
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = sd.sigmoid(dot) if fused else 1.0 / (1.0 + sd.exp(-dot))
    dw, dx = sd.grad(f, [w, x])
    value, dw_value, dx_value = sd.evaluate([f, dw, dx], {w: W0, x: X0})
    assert value == pytest.approx(SIG1, abs=1e-15)
    np.testing.assert_allclose(dw_value, [X0[0] * LOCAL, X0[1] * LOCAL, LOCAL], rtol=1e-13)
    np.testing.assert_allclose(dx_value, [W0[0] * LOCAL, W0[1] * LOCAL], rtol=1e-13)
    np.testing.assert_allclose(dw_value, [-0.19661193, -0.39322387, 0.19661193], atol=1e-8)


# 3. z = f(f(f(w))): the derivative reuses the stored forward values
def test_chain_reuses_stored_subexpressions():
    g = sd.Graph()
    w = g.variable("w")
    x = sd.sin(w)
    y = sd.sin(x)
    z = sd.sin(y)
    forward = len(g)
    dz = sd.grad(z, w)
    # dz/dw = f'(y) f'(x) f'(w): cos of the stored y, x and w, not of recomputed sin(sin(w))
    cosines = [n for n in g.nodes if n.op == "cos"]
    assert {c.inputs[0] for c in cosines} == {w, x, y}
    assert sum(1 for n in g.nodes if n.op == "sin") == 3  # no sin was rebuilt
    assert len(g) - forward <= 3 * forward
    w0 = 0.7
    expected = np.cos(np.sin(np.sin(w0))) * np.cos(np.sin(w0)) * np.cos(w0)
    assert sd.evaluate(dz, {w: w0}) == pytest.approx(expected, rel=1e-15)
    assert all(n.is_gradient for n in cosines)
    assert not any(n.is_gradient for n in (w, x, y, z))


# 4. Logistic regression, a ReLU layer, weight decay (two paths into w)
def test_logistic_regression():
    rng = np.random.default_rng(0)
    g = sd.Graph()
    x, w, b, t = g.variable("x", shape=(4,)), g.variable("w", shape=(4,)), g.variable("b"), g.variable("t")
    y_hat = sd.sigmoid(x @ w + b)
    loss = -(t * sd.log(y_hat) + (1 - t) * sd.log(1 - y_hat))
    gw, gb = sd.grad(loss, [w, b])
    xv, wv, bv, tv = rng.standard_normal(4), rng.standard_normal(4), 0.3, 1.0
    p = 1 / (1 + np.exp(-(xv @ wv + bv)))
    got_w, got_b = sd.evaluate([gw, gb], {x: xv, w: wv, b: bv, t: tv})
    np.testing.assert_allclose(got_w, (p - tv) * xv, rtol=1e-12)  # the textbook (ŷ - t) x
    assert got_b == pytest.approx(p - tv, rel=1e-12)


def test_relu_layer():
    rng = np.random.default_rng(1)
    g = sd.Graph()
    X, W, b = g.variable("X", shape=(5, 3)), g.variable("W", shape=(3, 4)), g.variable("b", shape=(4,))
    H = sd.maximum(0.0, X @ W + b)
    G = rng.standard_normal((5, 4))
    gW, gb, gX = sd.grad(sd.sum(H * G), [W, b, X])
    Xv, Wv, bv = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    mask = (Xv @ Wv + bv > 0).astype(float)
    got = sd.evaluate([gW, gb, gX], {X: Xv, W: Wv, b: bv})
    np.testing.assert_allclose(got[0], Xv.T @ (G * mask), rtol=1e-12)
    np.testing.assert_allclose(got[1], (G * mask).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got[2], (G * mask) @ Wv.T, rtol=1e-12)


def test_weight_decay_paths_add():
    rng = np.random.default_rng(2)
    g = sd.Graph()
    X, y, w = g.variable("X", shape=(None, 3)), g.variable("y", shape=(None,)), g.variable("w", shape=(3,))
    lam = 0.1
    loss = sd.sum((X @ w - y) ** 2) + lam * sd.sum(w**2)
    gw = sd.grad(loss, w)
    Xv, yv, wv = rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal(3)
    expected = 2 * Xv.T @ (Xv @ wv - yv) + 2 * lam * wv
    np.testing.assert_allclose(sd.evaluate(gw, {X: Xv, y: yv, w: wv}), expected, rtol=1e-12)
    # the gradient's top node sums the two paths into w
    assert gw.op == "add"


# 5. A two-layer softmax MLP (book Alg. 6.3/6.4) and the four equations of backprop
def test_softmax_mlp_matches_hand_written_backprop():
    rng = np.random.default_rng(3)
    N, D, H, C = 8, 5, 6, 3
    g = sd.Graph()
    X = g.variable("X", shape=(None, D))
    Y = g.variable("Y", shape=(None, C))  # one-hot labels
    W1, b1 = g.variable("W1", shape=(D, H)), g.variable("b1", shape=(H,))
    W2, b2 = g.variable("W2", shape=(H, C)), g.variable("b2", shape=(C,))
    h1 = sd.relu(X @ W1 + b1)
    scores = h1 @ W2 + b2
    loss = -sd.mean(sd.sum(Y * sd.log_softmax(scores), axis=1))
    grads = sd.grad(loss, [W1, b1, W2, b2])
    Xv = rng.standard_normal((N, D))
    labels = rng.integers(0, C, N)
    Yv = np.eye(C)[labels]
    P = dict(
        W1=rng.standard_normal((D, H)),
        b1=rng.standard_normal(H),
        W2=rng.standard_normal((H, C)),
        b2=rng.standard_normal(C),
    )
    got = sd.evaluate(grads, {"X": Xv, "Y": Yv, **P})
    # hand-written backprop
    z1 = Xv @ P["W1"] + P["b1"]
    a1 = np.maximum(z1, 0)
    s = a1 @ P["W2"] + P["b2"]
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dscore = (p - Yv) / N
    dW2 = a1.T @ dscore
    db2 = dscore.sum(axis=0)
    dh1 = dscore @ P["W2"].T
    dz1 = dh1 * (z1 > 0)
    dW1 = Xv.T @ dz1
    db1 = dz1.sum(axis=0)
    for value, expected in zip(got, [dW1, db1, dW2, db2]):
        np.testing.assert_allclose(value, expected, rtol=1e-11, atol=1e-14)


def test_four_equations_of_backprop():
    """Sigmoid MLP with quadratic cost, column-vector convention z = W a + b."""
    rng = np.random.default_rng(4)
    sizes = [3, 4, 2]
    g = sd.Graph()
    x, target = g.variable("x", shape=(3,)), g.variable("t", shape=(2,))
    Ws = [g.variable(f"W{k}", shape=(sizes[k + 1], sizes[k])) for k in range(2)]
    bs = [g.variable(f"b{k}", shape=(sizes[k + 1],)) for k in range(2)]
    a = x
    for W, b in zip(Ws, bs):
        a = sd.sigmoid(W @ a + b)
    cost = 0.5 * sd.sum((a - target) ** 2)
    grads = sd.grad(cost, Ws + bs)
    vals = {x: rng.standard_normal(3), target: rng.uniform(size=2)}
    for W, b in zip(Ws, bs):
        vals[W], vals[b] = rng.standard_normal(W.shape), rng.standard_normal(b.shape)
    got = sd.evaluate(grads, vals)

    def sig(z):
        return 1 / (1 + np.exp(-z))

    acts, zs = [vals[x]], []
    for W, b in zip(Ws, bs):
        zs.append(vals[W] @ acts[-1] + vals[b])
        acts.append(sig(zs[-1]))
    delta = (acts[-1] - vals[target]) * sig(zs[-1]) * (1 - sig(zs[-1]))  # BP1
    dW, db = [None, None], [None, None]
    for layer in (1, 0):
        db[layer] = delta  # BP3
        dW[layer] = np.outer(delta, acts[layer])  # BP4
        if layer:
            delta = (vals[Ws[layer]].T @ delta) * sig(zs[layer - 1]) * (1 - sig(zs[layer - 1]))  # BP2
    for value, expected in zip(got, dW + db):
        np.testing.assert_allclose(value, expected, rtol=1e-12)


# 6. Gradient descent on a linear and a quadratic model
def test_linear_model_gradient_descent():
    g = sd.Graph()
    w, x, y = g.variable("w"), g.variable("x", shape=(None,)), g.variable("y", shape=(None,))
    loss = sd.mean((w * x - y) ** 2)
    step = sd.compile([loss, sd.grad(loss, w)], inputs=[w, x, y])
    xs = np.linspace(-1, 1, 20)
    wv = 0.0
    for _ in range(200):
        _, gw = step(wv, xs, 3.0 * xs)
        wv -= 0.5 * gw
    assert wv == pytest.approx(3.0, abs=1e-9)


def test_quadratic_model_fit_predicts_21_at_4():
    g = sd.Graph()
    theta = g.variable("theta", shape=(3,))  # w1, w2, b
    x, y = g.variable("x", shape=(None,)), g.variable("y", shape=(None,))
    pred = theta[0] * x**2 + theta[1] * x + theta[2]
    loss = sd.mean((pred - y) ** 2)
    gradient, H = sd.grad(loss, theta), sd.hessian(loss, theta)
    xs = np.linspace(-2, 2, 9)
    data = {x: xs, y: xs**2 + xs + 1}
    th = np.zeros(3)
    for _ in range(2):  # Newton's method: exact in one step on a quadratic loss
        gv, Hv = sd.evaluate([gradient, H], {theta: th, **data})
        th = th - np.linalg.solve(Hv, gv)
    np.testing.assert_allclose(th, [1.0, 1.0, 1.0], atol=1e-12)
    assert sd.evaluate(pred, {theta: th, x: np.array([4.0])})[0] == pytest.approx(21.0, abs=1e-10)


# 7. Weighted least squares inside a network, back-propagated through the solve
def _wls_numpy(theta, X, yv, V, target, use_cholesky):
    w = np.log1p(np.exp(V @ theta))  # softplus: positive weights from the "network"
    A = X.T @ (w[:, None] * X)
    rhs = X.T @ (w * yv)
    if use_cholesky:
        L = np.linalg.cholesky(A)
        beta = np.linalg.solve(L.T, np.linalg.solve(L, rhs))
    else:
        beta = np.linalg.solve(A, rhs)
    return np.sum((beta - target) ** 2)


@pytest.mark.parametrize("use_cholesky", [False, True])
def test_weighted_least_squares_through_the_solve(use_cholesky):
    rng = np.random.default_rng(5)
    n, k = 12, 3
    coords = np.linspace(-1, 1, n)
    Xv = np.stack([np.ones(n), coords, coords**2], axis=1)
    yv = 0.5 + coords - 2 * coords**2 + 0.1 * rng.standard_normal(n)
    Vv, target = rng.standard_normal((n, 4)), np.array([0.4, 1.1, -1.8])
    g = sd.Graph()
    theta = g.variable("theta", shape=(4,))
    X, y = g.constant(Xv), g.constant(yv)
    w = sd.softplus(g.constant(Vv) @ theta)
    A = X.T @ (w[:, None] * X)
    rhs = X.T @ (w * y)
    if use_cholesky:
        L = sd.cholesky(A)
        beta = sd.solve(L.T, sd.solve(L, rhs))
    else:
        beta = sd.solve(A, rhs)
    loss = sd.sum((beta - target) ** 2)
    gtheta = sd.grad(loss, theta)
    th = rng.standard_normal(4)
    assert sd.evaluate(loss, {theta: th}) == pytest.approx(_wls_numpy(th, Xv, yv, Vv, target, use_cholesky))
    expected = oracles.jacobian(lambda t: _wls_numpy(t, Xv, yv, Vv, target, use_cholesky), [th], 0)
    np.testing.assert_allclose(sd.evaluate(gtheta, {theta: th}), expected, rtol=1e-7, atol=1e-10)
    del k


# 8. Higher-order derivatives: put the derivative in the graph and differentiate again
def test_repeated_derivatives_of_x5_match_sympy():
    g = sd.Graph()
    x = g.variable("x")
    X = sympy.Symbol("x")
    node, expr = x**5, X**5
    for order in range(1, 7):
        node, expr = sd.grad(node, x), sympy.diff(expr, X)
        assert sympy.simplify(sd.to_sympy(node) - expr) == 0, f"order {order}"
        assert sd.evaluate(node, {x: 1.7}) == pytest.approx(float(expr.subs(X, 1.7)), rel=1e-13, abs=1e-12)


def test_third_derivative_of_sin_x_times_x():
    g = sd.Graph()
    x = g.variable("x")
    d3 = sd.grad(sd.grad(sd.grad(sd.sin(x) * x, x), x), x)
    x0 = 0.9
    # d³/dx³ (x sin x) = -3 sin x - x cos x
    assert sd.evaluate(d3, {x: x0}) == pytest.approx(-3 * np.sin(x0) - x0 * np.cos(x0), rel=1e-14)
