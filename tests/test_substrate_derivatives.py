"""Sparsity, simplification and derivatives through nodes with several outputs (eigh, slogdet)
and nodes that run bodies (sd.composite and its derivative calls).

Oracles: central differences of plain numpy (tests/oracles.py) at random points, and closed
forms (d log|det A| = inv(A)ᵀ, d w_i = v_i v_iᵀ); a simplified graph against the evaluation
of the graph it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

import symdiff as sd
from symdiff.graph import ancestors

from . import oracles

RNG_SEEDS = (0, 1, 2)


def _sym(a):
    return (a + np.swapaxes(a, -1, -2)) / 2


def _np_softclip(x, c):
    return c * np.tanh(x / c)


softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
pair = sd.composite(lambda x: (sd.sin(x), x * x), name="pair")
outer = sd.composite(lambda x: 2.0 * softclip(x, 1.5), name="outer")
eigsum = sd.composite(lambda m: sd.eigh(m)[0] * sd.slogdet(m)[1], name="eigsum")


def _matrix(rng, shape=(3, 3)):
    """A matrix (or stack) with eigenvalues of its symmetric part well apart, and a determinant
    well away from 0: eigenvector derivatives divide by gaps."""
    while True:
        a = rng.standard_normal(shape) + 2.0 * np.eye(shape[-1]) * rng.choice([-1.0, 1.0])
        w = np.linalg.eigvalsh(_sym(a))
        if np.min(np.diff(w, axis=-1)) > 0.3 and np.min(np.abs(np.linalg.det(a))) > 0.3:
            return a


# name: (symdiff function of x, the same in numpy, a point maker)
FUNCTIONS = {
    "eigenvalues": (
        lambda a: sd.eigh(a)[0] * np.array([1.0, 2.0, 3.0]),
        lambda a: np.linalg.eigvalsh(_sym(a)) * [1.0, 2.0, 3.0],
        _matrix,
    ),
    "eigenvectors": (lambda a: sd.eigh(a)[1] ** 2, lambda a: np.linalg.eigh(_sym(a))[1] ** 2, _matrix),
    "both-eigh-outputs": (
        lambda a: sd.eigh(a)[1][0] ** 2 * sd.eigh(a)[0],
        lambda a: np.linalg.eigh(_sym(a))[1][0] ** 2 * np.linalg.eigh(_sym(a))[0],
        _matrix,
    ),
    "eigh-stack": (
        lambda a: sd.eigh(a)[0] * sd.sum(sd.eigh(a)[1] ** 3, -2),
        lambda a: np.linalg.eigh(_sym(a))[0] * np.sum(np.linalg.eigh(_sym(a))[1] ** 3, -2),
        lambda rng: _matrix(rng, (2, 3, 3)),
    ),
    "slogdet": (
        lambda a: sd.slogdet(a)[1] * sd.slogdet(a)[0] + a[0],
        lambda a: np.prod(np.linalg.slogdet(a)) + a[0],
        _matrix,
    ),
    "slogdet-stack": (
        lambda a: sd.slogdet(a)[1] * sd.slogdet(a)[0],
        lambda a: np.prod(np.linalg.slogdet(a), axis=0),
        lambda rng: _matrix(rng, (2, 3, 3)),
    ),
    "softclip": (
        lambda x: softclip(x, 2.0) + softclip(2 * x, 2.0),
        lambda x: _np_softclip(x, 2.0) + _np_softclip(2 * x, 2.0),
        lambda rng: rng.standard_normal(5),
    ),
    "softclip-of-neighbours": (
        lambda x: softclip(x[1:] * x[:-1], 2.0),
        lambda x: _np_softclip(x[1:] * x[:-1], 2.0),
        lambda rng: rng.standard_normal(5),
    ),
    "composite-with-two-outputs": (
        lambda x: pair(x)[0] * pair(x)[1] + pair(x[::-1])[0],
        lambda x: np.sin(x) * x * x + np.sin(x[::-1]),
        lambda rng: rng.standard_normal(5),
    ),
    "composite-in-composite": (
        lambda x: outer(x**2) * x,
        lambda x: 2.0 * _np_softclip(x**2, 1.5) * x,
        lambda rng: rng.standard_normal(5),
    ),
    "eigh-of-composite": (
        lambda a: sd.eigh(softclip(a, 3.0))[0],
        lambda a: np.linalg.eigvalsh(_sym(_np_softclip(a, 3.0))),
        _matrix,
    ),
    "composite-of-eigh-and-slogdet": (
        lambda a: eigsum(a),
        lambda a: np.linalg.eigvalsh(_sym(a)) * np.linalg.slogdet(a)[1],
        _matrix,
    ),
}


def _point(name, seed):
    return FUNCTIONS[name][2](np.random.default_rng(seed))


def _cost(y, reference, x0):
    """A scalar cost of y with a second derivative in every direction, and its numpy twin."""
    w = np.linspace(0.5, 1.5, np.size(reference(x0))).reshape(np.shape(reference(x0)))
    return sd.sum(sd.sin(y) * w), lambda a: np.sum(np.sin(reference(a)) * w)


def _build(name, x0):
    build, reference, _ = FUNCTIONS[name]
    g = sd.Graph()
    x = g.variable("x", shape=x0.shape)
    return x, build(x), reference


def _covers(pattern, values, what):
    """Every numerically non-zero entry lies in the declared pattern."""
    dense = pattern.toarray()
    missed = np.argwhere((np.abs(values) > 1e-7) & ~dense)
    assert missed.size == 0, f"{what}: the pattern misses the non-zeros at {missed[:5].tolist()}"


# -- sparsity ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FUNCTIONS)
def test_sparse_patterns_hold_every_non_zero_at_random_points(name):
    for seed in RNG_SEEDS if _point(name, 0).size <= 9 else RNG_SEEDS[:1]:  # a stack's FD Hessian is slow
        x0 = _point(name, seed)
        x, y, reference = _build(name, x0)
        f, s = _cost(y, reference, x0)
        J, H = sd.sparse_jacobian(y, x), sd.sparse_hessian(f, x)
        fd_j = oracles.jacobian(reference, [x0], 0).reshape(J.shape)
        fd_h = oracles.hessian(s, [x0])
        _covers(J.pattern, fd_j, f"{name}: Jacobian")
        _covers(H.pattern, fd_h, f"{name}: Hessian")
        np.testing.assert_allclose(sd.evaluate(J, {x: x0}).toarray(), fd_j, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(sd.evaluate(H, {x: x0}).toarray(), fd_h, rtol=1e-5, atol=1e-5)


def test_a_separable_cost_through_a_composite_has_a_diagonal_hessian():
    g = sd.Graph()
    x = g.variable("x", shape=(6,))
    H = sd.sparse_hessian(sd.sum(softclip(x, 2.0)), x)
    assert H.nnz == 6 and H.colors == 1
    assert (H.pattern != sp.identity(6, dtype=bool, format="csr")).nnz == 0
    x0 = np.linspace(-2.0, 2.0, 6)
    # d²/dx² c tanh(x/c) = -(2/c) tanh(x/c) / cosh²(x/c)
    want = -np.tanh(x0 / 2) / np.cosh(x0 / 2) ** 2
    np.testing.assert_allclose(sd.evaluate(H, {x: x0}).toarray(), np.diag(want), rtol=1e-12, atol=1e-15)


def test_derivative_bodies_keep_the_pattern():
    """The gradient is a call of softclip's vjp body, a tangent a call of its jvp body: both
    elementwise in x, so their Jacobians are diagonal; a neighbour product gives a band."""
    g = sd.Graph()
    x = g.variable("x", shape=(6,))
    t = g.variable("t", shape=(6,))
    gradient = sd.grad(sd.sum(softclip(x, 2.0)), x)
    tangent = sd.jvp(softclip(x, 2.0), x, t)
    called = {n.attrs.get("name") for n in ancestors([gradient, tangent]) if n.op == "composite"}
    assert {"softclip_vjp", "softclip_jvp"} <= called
    for node in (gradient, tangent):
        assert sd.sparse_jacobian(node, x).nnz == 6
    band = sd.sparse_hessian(sd.sum(softclip(x[1:] * x[:-1], 2.0)), x)
    assert band.nnz == 6 + 2 * 5


def test_captured_nodes_carry_their_pattern_into_the_body():
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    w = g.variable("w", shape=(4,))
    scaled = sd.composite(lambda x: sd.tanh(w * x), name="scaled")
    assert sd.sparse_jacobian(scaled(x), w).nnz == 4
    assert sd.sparse_hessian(sd.sum(scaled(x) ** 2), w).nnz == 4


def test_each_output_of_several_has_its_own_inputs_pattern():
    """log|det| of two matrices made of separate halves of x: two dense 4x4 blocks, not 8x8."""
    g = sd.Graph()
    x = g.variable("x", shape=(8,))
    f = sd.slogdet(sd.reshape(x[:4], (2, 2)))[1] + sd.eigh(sd.reshape(x[4:], (2, 2)))[0][1]
    H = sd.sparse_hessian(f, x)
    np.testing.assert_array_equal(H.pattern.toarray(), scipy.linalg.block_diag(np.ones((4, 4)), np.ones((4, 4))) > 0)
    x0 = np.array([2.0, 0.3, -0.4, 1.0, 1.5, 0.2, 0.7, -0.5])

    def s(v):
        return np.linalg.slogdet(v[:4].reshape(2, 2))[1] + np.linalg.eigvalsh(_sym(v[4:].reshape(2, 2)))[1]

    np.testing.assert_allclose(sd.evaluate(H, {x: x0}).toarray(), oracles.hessian(s, [x0]), rtol=1e-5, atol=1e-6)


def test_a_node_with_several_outputs_is_refused_as_y_or_x():
    g = sd.Graph()
    a = g.variable("a", shape=(2, 2))
    w, _ = sd.eigh(a)
    with pytest.raises(sd.GraphError, match="eigh.*outputs.*pass one of them"):
        sd.sparse_jacobian(w.inputs[0], a)
    with pytest.raises(sd.GraphError, match="slogdet.*outputs"):
        sd.sparse_hessian(sd.sum(w), sd.slogdet(a)[0].inputs[0])


# -- simplification ------------------------------------------------------------------------
@pytest.mark.parametrize("name", FUNCTIONS)
def test_simplify_keeps_the_values_of_derivatives_to_second_order(name):
    x0 = _point(name, 0)
    x, y, reference = _build(name, x0)
    f, _ = _cost(y, reference, x0)
    t0 = np.random.default_rng(7).standard_normal(x0.shape)
    outputs = [y, sd.grad(f, x), sd.hessian(f, x), sd.hvp(f, x, t0), sd.jacobian(y, x), sd.jvp(y, x, t0)]
    before = sd.evaluate(outputs, {x: x0})
    for got, want in zip(sd.evaluate(sd.simplify(outputs), {x: x0}), before):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_simplify_rebuilds_nodes_with_several_outputs_and_bodies_on_simplified_inputs():
    g = sd.Graph()
    a = g.variable("a", shape=(3, 3))
    x = g.variable("x", shape=(4,))
    s = a * a + a * a  # simplifies to 2*a**2: eigh, slogdet and the calls are rebuilt on it
    w, v = sd.eigh(s)
    sign, logabs = sd.slogdet(s + s)
    f = (
        sd.sum(w * w)
        + sd.sum(v**2 * a)
        + sign * logabs
        + sd.sum(softclip(x + x, 2.0) * softclip(x * x * x, 1.0))
        + sd.sum(pair(x + x)[0] * pair(x + x)[1])
    )
    outputs = [f, sd.grad(f, a), sd.grad(f, x), sd.hessian(f, a), sd.hessian(f, x), sd.hvp(f, x, np.ones(4))]
    bind = {a: np.array([[2.0, 0.3, -0.4], [0.1, 1.0, 0.2], [-0.2, 0.5, -1.0]]), x: np.array([0.3, -1.2, 0.7, 1.1])}
    simplified = sd.simplify(outputs)
    assert all(new is not old for new, old in zip(simplified, outputs))
    for got, want in zip(sd.evaluate(simplified, bind), sd.evaluate(outputs, bind)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_simplify_folds_a_node_with_several_outputs_whose_input_becomes_constant():
    g = sd.Graph()
    a = g.variable("a", shape=(3, 3))
    m = a + a - 2 * a + np.diag([1.0, 2.0, 3.0])  # the simplify rules make it a constant
    w, v = sd.eigh(m)
    sign, logabs = sd.slogdet(m)
    out = sd.simplify([w, v, sign * logabs])
    assert all(n.op == "constant" for n in out)
    np.testing.assert_array_equal(out[0].value, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out[1].value, np.eye(3))
    assert out[2].value == pytest.approx(np.log(6.0))


# -- derivatives: closed forms, both modes of the Jacobian, batch axes -----------------------
def test_jacobian_of_eigenvalues_of_a_stack_is_blockwise_outer_products_in_both_modes():
    """y = eigenvalues of a (2, 3, 3) stack: reverse mode (y has 6 elements, a 18); and the
    same through a 2-element parameter p (y then has more elements: forward mode)."""
    a0 = _matrix(np.random.default_rng(3), (2, 3, 3))
    g = sd.Graph()
    a = g.variable("a", shape=(2, 3, 3))
    w, _ = sd.eigh(a)
    _, v = np.linalg.eigh(_sym(a0))
    want = np.zeros((2, 3, 2, 3, 3))
    for b in range(2):
        want[b, :, b] = np.einsum("ki,li->ikl", v[b], v[b])  # dλ_i/dA = v_i v_iᵀ
    np.testing.assert_allclose(sd.evaluate(sd.jacobian(w, a), {a: a0}), want, atol=1e-12)

    p = g.variable("p", shape=(2,))
    e = np.zeros((2, 2, 3, 3))
    e[0, 0], e[1, 1] = np.eye(3), _sym(np.arange(9.0).reshape(3, 3))
    wp = sd.eigh(a + sd.tensordot(p, e, 1))[0]  # dA/dp_k = e[k]
    got = sd.evaluate(sd.jacobian(wp, p), {a: a0, p: np.zeros(2)})
    np.testing.assert_allclose(got, np.einsum("bimn,kbmn->bik", np.einsum("bmi,bni->bimn", v, v), e), atol=1e-12)


def test_jacobian_of_logabsdet_of_a_stack_is_the_inverse_transpose_in_both_modes():
    a0 = _matrix(np.random.default_rng(4), (2, 3, 3))
    a0[1] = -a0[1]  # an odd dimension: the second determinant changes sign
    g = sd.Graph()
    a = g.variable("a", shape=(2, 3, 3))
    sign, logabs = sd.slogdet(a)
    want = np.zeros((2, 2, 3, 3))
    for b in range(2):
        want[b, b] = np.linalg.inv(a0[b]).T
    np.testing.assert_allclose(sd.evaluate(sd.jacobian(logabs, a), {a: a0}), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(sd.evaluate(sd.jacobian(sign, a), {a: a0}), np.zeros((2, 2, 3, 3)))
    s = g.variable("s")
    scaled = sd.slogdet(a * s)[1]  # log|det(s A)| = 3 log|s| + log|det A|: forward mode (s is 1 element)
    np.testing.assert_allclose(sd.evaluate(sd.jacobian(scaled, s), {a: a0, s: 0.7}), [3 / 0.7, 3 / 0.7], rtol=1e-12)
    t0 = np.random.default_rng(5).standard_normal((2, 3, 3))
    tangent = sd.evaluate(sd.jvp(logabs, a, t0), {a: a0})
    np.testing.assert_allclose(tangent, [np.trace(np.linalg.solve(a0[b], t0[b])) for b in range(2)], rtol=1e-10)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_jacobian_hessian_hvp_and_jvp_match_central_differences(name):
    x0 = _point(name, 1)
    x, y, reference = _build(name, x0)
    f, s = _cost(y, reference, x0)
    bind = {x: x0}
    fd_j = oracles.jacobian(reference, [x0], 0)
    fd_h = oracles.hessian(s, [x0]).reshape(x0.shape * 2)
    t0 = np.random.default_rng(6).standard_normal(x0.shape)
    np.testing.assert_allclose(sd.evaluate(sd.jacobian(y, x), bind), fd_j, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        sd.evaluate(sd.jvp(y, x, t0), bind), np.tensordot(fd_j, t0, x0.ndim), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(sd.evaluate(sd.hessian(f, x), bind), fd_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        sd.evaluate(sd.hvp(f, x, t0), bind), np.tensordot(fd_h, t0, x0.ndim), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", ["softclip", "composite-with-two-outputs", "eigenvalues", "eigh-stack"])
def test_a_jacobian_in_forward_mode_equals_the_one_in_reverse_mode(name):
    """A scalar parameter s scaling x: the Jacobian of y by s is built in forward mode (1 seed),
    the Jacobian by x in reverse mode; d y/d s at s = 1 is J x (the chain rule)."""
    x0 = _point(name, 2)
    x, y, reference = _build(name, x0)
    s = x.graph.variable("s")
    build = FUNCTIONS[name][0]
    ys = build(x * s)
    bind = {x: x0, s: 1.0}
    by_x = sd.evaluate(sd.jacobian(y, x), bind)
    by_s = sd.evaluate(sd.jacobian(ys, s), bind)
    np.testing.assert_allclose(by_s, np.tensordot(by_x, x0, x0.ndim), rtol=1e-10, atol=1e-12)
