"""Derivatives of matrix expressions against closed forms (The Matrix Cookbook, Petersen &
Pedersen 2012), and the textbook forms the Hessians and Jacobians are built in.

Each closed form is computed here in numpy, independently of symdiff; the printed forms
check that no identity-sized constant does work (a Hessian of x@A@x is A + A.T, not n
matrix-vector products with unit vectors)."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.graph import ancestors

rng = np.random.default_rng(11)
n, m = 4, 6
A_, B_, b_, a_ = (
    rng.standard_normal((n, n)),
    rng.standard_normal((m, n)),
    rng.standard_normal(m),
    rng.standard_normal(n),
)
x_, X_, y_ = rng.standard_normal(n), rng.standard_normal((m, n)), rng.integers(0, 2, m) * 1.0
W_ = rng.standard_normal((n, n)) / 2
S_ = rng.standard_normal((n, n)) + n * np.eye(n)


@pytest.fixture
def g():
    graph = sd.Graph()
    v = {
        "x": graph.variable("x", shape=(n,)),
        "A": graph.variable("A", shape=(n, n)),
        "B": graph.variable("B", shape=(m, n)),
        "b": graph.variable("b", shape=(m,)),
        "a": graph.variable("a", shape=(n,)),
        "X": graph.variable("X", shape=(m, n)),
        "y": graph.variable("y", shape=(m,)),
        "W": graph.variable("W", shape=(n, n)),
        "S": graph.variable("S", shape=(n, n)),
    }
    values = {
        v["x"]: x_,
        v["A"]: A_,
        v["B"]: B_,
        v["b"]: b_,
        v["a"]: a_,
        v["X"]: X_,
        v["y"]: y_,
        v["W"]: W_,
        v["S"]: S_,
    }
    return v, values


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


# (name, derivative built from the variables, closed form in numpy)
IDENTITIES = [
    # first order
    ("d(a.x)/dx = a  (Cookbook 69)", lambda v: sd.grad(v["a"] @ v["x"], v["x"]), a_),
    ("d(x.A.x)/dx = (A + A.T) x  (81)", lambda v: sd.grad(v["x"] @ v["A"] @ v["x"], v["x"]), (A_ + A_.T) @ x_),
    (
        "d|Bx - b|^2/dx = 2 B.T (Bx - b)  (84)",
        lambda v: sd.grad(sd.sum((v["B"] @ v["x"] - v["b"]) ** 2), v["x"]),
        2 * B_.T @ (B_ @ x_ - b_),
    ),
    ("d(a.X.T.b)/dX = b a.T  (70)", lambda v: sd.grad(v["b"] @ v["X"] @ v["a"], v["X"]), np.outer(b_, a_)),
    (
        "d det(S)/dS = det(S) inv(S).T  (49)",
        lambda v: sd.grad(sd.det(v["S"]), v["S"]),
        np.linalg.det(S_) * np.linalg.inv(S_).T,
    ),
    ("d log det S/dS = inv(S).T  (51)", lambda v: sd.grad(sd.log(sd.det(v["S"])), v["S"]), np.linalg.inv(S_).T),
    ("d log|det S|/dS = inv(S).T  (57)", lambda v: sd.grad(sd.slogdet(v["S"])[1], v["S"]), np.linalg.inv(S_).T),
    (
        "d tr(A S^-1)/dS = -(S^-1 A S^-1).T  (63)",
        lambda v: sd.grad(sd.sum(sd.transpose(v["A"]) * sd.inv(v["S"])), v["S"]),
        -(np.linalg.inv(S_) @ A_ @ np.linalg.inv(S_)).T,
    ),
    ("d tr(A X)/dX = A.T  (100)", lambda v: sd.grad(sd.trace(v["A"] @ v["W"]), v["W"]), A_.T),
    (
        "d tr(X A X.T)/dX = X (A + A.T)  (107)",
        lambda v: sd.grad(sd.trace(v["X"] @ v["A"] @ v["X"].T), v["X"]),
        X_ @ (A_ + A_.T),
    ),
    (
        "d (a.T X X.T a)... outer: d sum(outer(a, x) * A)/dx = A.T a",
        lambda v: sd.grad(sd.sum(sd.outer(v["a"], v["x"]) * v["A"]), v["x"]),
        A_.T @ a_,
    ),
    ("d |x|/dx = x / |x|  (129)", lambda v: sd.grad(sd.norm(v["x"]), v["x"]), x_ / np.linalg.norm(x_)),
    ("d |X|_F^2/dX = 2X  (Frobenius)", lambda v: sd.grad(sd.norm(v["X"]) ** 2, v["X"]), 2 * X_),
    # Jacobians
    ("d(Ax)/dx = A", lambda v: sd.jacobian(v["A"] @ v["x"], v["x"]), A_),
    (
        "d tanh(Wx)/dx = (1 - t^2)[:, None] W",
        lambda v: sd.jacobian(sd.tanh(v["W"] @ v["x"]), v["x"]),
        (1 - np.tanh(W_ @ x_) ** 2)[:, None] * W_,
    ),
    (
        "d softmax(x)/dx = diag(s) - s s.T",
        lambda v: sd.jacobian(sd.softmax(v["x"]), v["x"]),
        np.diag(_softmax(x_)) - np.outer(_softmax(x_), _softmax(x_)),
    ),
    # second order
    ("H(x.A.x) = A + A.T", lambda v: sd.hessian(v["x"] @ v["A"] @ v["x"], v["x"]), A_ + A_.T),
    ("H|Bx - b|^2 = 2 B.T B", lambda v: sd.hessian(sd.sum((v["B"] @ v["x"] - v["b"]) ** 2), v["x"]), 2 * B_.T @ B_),
    (
        "H ridge = 2 B.T B + 2 lambda I",
        lambda v: sd.hessian(sd.sum((v["B"] @ v["x"] - v["b"]) ** 2) + 0.5 * sd.sum(v["x"] ** 2), v["x"]),
        2 * B_.T @ B_ + np.eye(n),
    ),
    ("H (a.x)^2 = 2 a a.T", lambda v: sd.hessian((v["a"] @ v["x"]) ** 2, v["x"]), 2 * np.outer(a_, a_)),
    (
        "H logistic = X.T diag(s(1 - s)) X",
        lambda v: sd.hessian(sd.sum(sd.softplus(v["X"] @ v["x"]) - v["y"] * (v["X"] @ v["x"])), v["x"]),
        X_.T @ (X_ * (_sigmoid(X_ @ x_) * (1 - _sigmoid(X_ @ x_)))[:, None]),
    ),
    (
        "H sum exp(Bx) = B.T diag(exp(Bx)) B",
        lambda v: sd.hessian(sd.sum(sd.exp(v["B"] @ v["x"])), v["x"]),
        B_.T @ (B_ * np.exp(B_ @ x_)[:, None]),
    ),
    (
        "H logsumexp(Bx) = B.T (diag(p) - p p.T) B",
        lambda v: sd.hessian(sd.logsumexp(v["B"] @ v["x"]), v["x"]),
        B_.T @ (np.diag(_softmax(B_ @ x_)) - np.outer(_softmax(B_ @ x_), _softmax(B_ @ x_))) @ B_,
    ),
]


def test_matrix_factorisation_hessian_is_two_delta_vtv():
    graph = sd.Graph()
    T, U, V = graph.variable("T", shape=(m, 5)), graph.variable("U", shape=(m, 2)), graph.variable("V", shape=(5, 2))
    t, u, v = rng.standard_normal((m, 5)), rng.standard_normal((m, 2)), rng.standard_normal((5, 2))
    H = sd.hessian(sd.sum((T - U @ V.T) ** 2), U)
    assert H.shape == (m, 2, m, 2)
    closed = 2 * np.einsum("ij,kl->ikjl", np.eye(m), v.T @ v)
    np.testing.assert_allclose(sd.evaluate(H, {T: t, U: u, V: v}), closed, rtol=1e-12, atol=1e-12)
    # built as delta (m, 1, m, 1) times V.T@V (1, k, 1, k): no (m, k, m, k) identity in a matmul
    assert not _identity_sized_work(H, m * 2)
    assert "expand_dims(V.T, axis=(-4, -2))@V" in str(H)


@pytest.mark.parametrize("name, build, closed", IDENTITIES, ids=[i[0] for i in IDENTITIES])
def test_matrix_cookbook_identities(g, name, build, closed):
    v, values = g
    d = build(v)
    np.testing.assert_allclose(sd.evaluate(d, values), closed, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sd.evaluate(sd.simplify(d), values), closed, rtol=1e-10, atol=1e-12)


def _identity_sized_work(node: sd.Node, size: int) -> bool:
    """A matmul with an operand that is a constant of at least size² elements (a seed at work)."""
    for u in ancestors([node]):
        if u.op == "matmul" and any(w.op == "constant" and (w.size or 0) >= size * size for w in u.inputs):
            return True
    return False


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda v: sd.hessian(v["x"] @ v["A"] @ v["x"], v["x"]), "A + A.T"),
        (lambda v: sd.hessian(sd.sum((v["B"] @ v["x"] - v["b"]) ** 2), v["x"]), "2*(B.T@B)"),  # 2*B.T@B reads (2*B.T)@B
        (lambda v: sd.jacobian(v["A"] @ v["x"], v["x"]), "A"),
        (lambda v: sd.jacobian(sd.tanh(v["W"] @ v["x"]), v["x"]), "expand_dims(1 - tanh(W@x)**2, axis=-1)*W"),
        (
            lambda v: sd.hessian(sd.sum(sd.softplus(v["X"] @ v["x"]) - v["y"] * (v["X"] @ v["x"])), v["x"]),
            "(X.T*sigmoid(X@x)*sigmoid(-X@x))@X",
        ),
        (lambda v: sd.hessian(sd.sum(sd.exp(v["B"] @ v["x"])), v["x"]), "(B.T*exp(B@x))@B"),
        (lambda v: sd.grad(sd.log(sd.det(v["S"])), v["S"]), "inv(S).T"),
        (
            lambda v: sd.hessian(sd.logsumexp(v["B"] @ v["x"]), v["x"]),  # B.T (diag(p) - p p.T) B, distributed
            "(softmax(B@x, axis=-1)*(B.T - expand_dims(B.T@softmax(B@x, axis=-1), axis=-1)))@B",
        ),
    ],
)
def test_hessians_and_jacobians_are_built_in_textbook_form(g, build, text):
    v, _ = g
    d = build(v)
    assert str(d) == text
    assert not _identity_sized_work(d, n)


def test_indexed_gradients_are_one_vector():
    graph = sd.Graph()
    w, xin = graph.variable("w", shape=(3,)), graph.variable("xin", shape=(2,))
    neuron = sd.sigmoid(w[0] * xin[0] + w[1] * xin[1] + w[2])
    gw = sd.grad(neuron, w)
    assert gw.op == "stack" and str(gw).endswith("[t4*t1, t4*t2, t4]")
    s = 1 / (1 + np.exp(-(2.0 * -1.0 + -3.0 * -2.0 - 3.0)))
    np.testing.assert_allclose(
        sd.evaluate(gw, {w: [2.0, -3.0, -3.0], xin: [-1.0, -2.0]}), s * (1 - s) * np.array([-1.0, -2.0, 1.0])
    )
    # n terms: one scatter of one stack (O(n) work), not n full-size scatters summed
    k = 50
    v, u = graph.variable("v", shape=(k,)), graph.variable("u", shape=(k,))
    total = v[0] * u[0]
    for i in range(1, k):
        total = total + v[i] * u[i]
    gv = sd.grad(total, v)
    assert sum(1 for n in ancestors([gv]) if n.op in ("unindex", "stack")) <= 2
    uv = rng.standard_normal(k)
    np.testing.assert_array_equal(sd.evaluate(gv, {v: np.zeros(k), u: uv}), uv)
    # repeated positions add up
    np.testing.assert_array_equal(
        sd.evaluate(sd.grad(w[0] * w[0] + w[2] * w[0], w), {w: [1.0, 2.0, 3.0]}), [5.0, 0.0, 1.0]
    )


def test_det_over_det_cancels_only_beside_inv():
    """det(a)/det(a) goes only where the product evaluates inv(a), which is undefined exactly
    where det(a) = 0: the two forms agree wherever the original is defined."""
    graph = sd.Graph()
    S = graph.variable("S", shape=(3, 3))
    d = sd.det(S)
    assert str(d / d * S[0, 0]) == "det(S)/det(S)*S[0, 0]"  # nothing guards it: 0/0 stays nan
    assert np.isnan(sd.evaluate(d / d * S[0, 0], {S: np.ones((3, 3))}))
    g = sd.grad(sd.log(d), S)
    for form in (g, sd.simplify(g)):
        with pytest.raises(np.linalg.LinAlgError):  # singular: inv raises, before and after
            sd.evaluate(form, {S: np.ones((3, 3))})
    # det underflows to 0 for this well-conditioned matrix: the cancelled form is still right
    big = graph.variable("big", shape=(200, 200))
    small = 0.01 * np.eye(200)
    assert np.linalg.det(small) == 0.0
    np.testing.assert_allclose(sd.evaluate(sd.grad(sd.log(sd.det(big)), big), {big: small}), 100 * np.eye(200))
