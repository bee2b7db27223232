"""Linear algebra at its edges (issue 19, kind E and fuzzer items H3, H4, H7).

- det's derivatives at singular matrices: the adjugate (cofactors), exact at rank n-1 and
  lower, at 0, for 1x1 and stacks, at every order (oracle: sympy.diff of the symbolic
  determinant of an n x n matrix of symbols, n = 1..4);
- no numpy LinAlgError leaks from evaluate or compile: it is ``sd.LinAlgError``, a SymdiffError;
- einsum with 0-d operands, as numpy;
- the spectral, -2 and nuclear norms of wide and tall matrices (oracle: numpy.linalg.norm and
  finite differences of it);
- the jax backend's triangular and Cholesky solves of a stack with one 2-D right-hand side.
"""

from __future__ import annotations

import functools
import importlib
import pathlib
import tempfile

import numpy as np
import pytest
import scipy.linalg
import sympy
from hypothesis import assume, given
from hypothesis import strategies as st

import symdiff as sd
from symdiff.backends import installed
from symdiff.graph import ancestors
from symdiff.ops import REGISTRY

from . import oracles

# these run every way a graph runs, every backend included
every_backend = pytest.mark.skipif(
    not (installed("numba") and installed("jax")),
    reason="runs on every backend: needs numba and jax (the test extra installs them)",
)

BACKENDS = ("numpy", "numba", "jax")


def _refused_by_table(exc: sd.BackendError, backend: str, outputs: list[sd.Node]) -> bool:
    """The refusal names an op of the graph that the backend's support table marks unsupported."""
    module = importlib.import_module(f"symdiff.backends.{backend}")
    ops = {n.op for n in ancestors(outputs) if n.inputs}
    return any(f"'{op}'" in str(exc) and module.unsupported(REGISTRY[op]) is not None for op in ops)


def _everywhere(outputs, bind, expected, rtol=1e-10, atol=1e-12, backends=("numpy", "jax")):
    """The outputs' values from evaluate, compile (each backend, or its refusal by name as its
    support table says), compile(simplify=True) and a saved and loaded graph, against ``expected``."""
    inputs = list(bind)
    values = [np.asarray(bind[n]) for n in inputs]
    results = {"evaluate": sd.evaluate(outputs, bind)}
    results["simplify"] = sd.compile(outputs, inputs=inputs, simplify=True)(*values)
    for backend in backends:
        try:
            results[backend] = sd.compile(outputs, inputs=inputs, backend=backend)(*values)
        except sd.BackendError as exc:
            assert backend != "numpy" and _refused_by_table(exc, backend, outputs), str(exc)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "g.json"
        outputs[0].graph.save(path, outputs={f"out{k}": o for k, o in enumerate(outputs)})
        loaded = sd.load(path)
    results["save/load"] = sd.evaluate(list(loaded.outputs.values()), {n.name: v for n, v in zip(inputs, values)})
    for how, got in results.items():
        for k, (a, e) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(np.asarray(a, dtype=np.float64), e, rtol=rtol, atol=atol, err_msg=f"{how}, {k}")
    return results


# == E: det's derivatives at singular matrices =================================================
@functools.cache
def _det_derivatives(n: int):
    """sympy's gradient, Hessian and third derivative of det of an n x n matrix of symbols, as
    functions of the matrix (shapes (n, n), (n, n, n, n), (n, n, n, n, n, n))."""
    m = sympy.Matrix(n, n, lambda i, j: sympy.Symbol(f"a{i}_{j}"))
    entries = list(m)
    det = m.det()
    first = [sympy.diff(det, x) for x in entries]
    second = [[sympy.diff(d, y) for y in entries] for d in first]
    third = [[[sympy.diff(d, z) for z in entries] for d in row] for row in second]
    fns = [sympy.lambdify(entries, f) for f in (first, second, third)]
    return [
        lambda a, f=f, k=k: np.array(f(*np.ravel(a)), dtype=float).reshape((n,) * (2 * k))
        for k, f in zip((1, 2, 3), fns)
    ]


def _of_rank(rng: np.random.Generator, n: int, rank: int) -> np.ndarray:
    """An n x n matrix of the given rank with small integer entries (exact in float64)."""
    if rank == 0:
        return np.zeros((n, n))
    return (rng.integers(-3, 4, (n, rank)) @ rng.integers(-3, 4, (rank, n))).astype(float)


@every_backend
def test_det_gradient_at_the_issue_matrix_everywhere():
    g = sd.Graph()
    A = g.variable("A", shape=(2, 2))
    a = np.array([[1.0, 2.0], [2.0, 4.0]])
    # det = a00 a11 - a01 a10: gradient [[a11, -a10], [-a01, a00]], Hessian constant
    hess = np.zeros((2, 2, 2, 2))
    hess[0, 0, 1, 1] = hess[1, 1, 0, 0] = 1.0
    hess[0, 1, 1, 0] = hess[1, 0, 0, 1] = -1.0
    outputs = [sd.det(A), sd.grad(sd.det(A), A), sd.hessian(sd.det(A), A)]
    _everywhere(outputs, {A: a}, [0.0, [[4.0, -2.0], [-2.0, 1.0]], hess], backends=BACKENDS)
    H = sd.sparse_hessian(sd.det(A), A)
    np.testing.assert_allclose(sd.evaluate(H, {A: a}).toarray(), hess.reshape(4, 4), atol=1e-12)
    np.testing.assert_allclose(sd.compile(H, [A])(a).toarray(), hess.reshape(4, 4), atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_det_derivatives_at_every_rank_match_sympy(n):
    g = sd.Graph()
    A = g.variable("A", shape=(n, n))
    d = sd.det(A)
    first = sd.grad(d, A)
    second = sd.hessian(d, A)
    third = sd.jacobian(second, A)
    fns = _det_derivatives(n)
    rng = np.random.default_rng(n)
    for rank in range(n + 1):
        a = _of_rank(rng, n, rank)
        got = sd.evaluate([first, second, third], {A: a})
        for k, (value, fn) in enumerate(zip(got, fns)):
            np.testing.assert_allclose(value, fn(a), rtol=1e-9, atol=1e-9, err_msg=f"rank {rank}, order {k + 1}")
        if rank <= n - 2:
            np.testing.assert_allclose(got[0], np.zeros((n, n)), atol=1e-12)  # every cofactor vanishes


@given(n=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_det_derivatives_at_random_singular_matrices(n, seed, data):
    """Contract: det's gradient, Hessian (reverse and forward over reverse) and third derivative
    are sympy's at every matrix, whatever its rank; a stack mixes ranks."""
    rank = data.draw(st.integers(0, n))
    rng = np.random.default_rng(seed)
    a = _of_rank(rng, n, rank) * rng.choice([0.5, 1.0, 3.0])  # exact scalings
    u = rng.standard_normal((n, n))
    g = sd.Graph()
    A = g.variable("A", shape=(n, n))
    d = sd.det(A)
    gr = sd.grad(d, A)
    grad_fn, hess_fn, third_fn = _det_derivatives(n)
    outputs = [gr, sd.hessian(d, A), sd.hvp(d, A, u), sd.jvp(gr, A, u), sd.grad(sd.sum(sd.hessian(d, A)), A)]
    got = sd.evaluate(outputs, {A: a})
    hess = hess_fn(a)
    expected = [grad_fn(a), hess, np.tensordot(hess, u, 2), np.tensordot(hess, u, 2), third_fn(a).sum((0, 1, 2, 3))]
    for value, e in zip(got, expected):
        np.testing.assert_allclose(value, e, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(a).max()) ** n)
    # a stack of this matrix, a full-rank one and zeros: each member's own cofactors
    full = np.eye(n) * 2.0 + 0.1
    S = g.variable("S", shape=(3, n, n))
    stacked = sd.evaluate(sd.grad(sd.sum(sd.det(S)), S), {S: np.stack([a, full, np.zeros((n, n))])})
    for value, m in zip(stacked, (a, full, np.zeros((n, n)))):
        np.testing.assert_allclose(value, grad_fn(m), rtol=1e-9, atol=1e-9 * max(1.0, np.abs(a).max()) ** n)


@every_backend
def test_det_edges_1x1_zero_and_float32():
    g = sd.Graph()
    a1 = g.variable("a1", shape=(1, 1))
    # det [[x]] = x: gradient 1 everywhere, 0 included; Hessian 0
    _everywhere([sd.grad(sd.det(a1), a1), sd.hessian(sd.det(a1), a1)], {a1: [[0.0]]}, [[[1.0]], np.zeros((1, 1, 1, 1))])
    Z = g.variable("Z", shape=(3, 3))
    _everywhere([sd.grad(sd.det(Z), Z)], {Z: np.zeros((3, 3))}, [np.zeros((3, 3))])
    F = g.variable("F", shape=(2, 2), dtype=np.float32)
    gf = sd.grad(sd.det(F), F)
    value = sd.evaluate(gf, {F: np.array([[1.0, 2.0], [2.0, 4.0]], np.float32)})
    assert value.dtype == np.float32
    np.testing.assert_allclose(value, [[4.0, -2.0], [-2.0, 1.0]], rtol=1e-6)


@every_backend
def test_det_gradient_of_a_stack_with_a_singular_member_everywhere():
    g = sd.Graph()
    S = g.variable("S", shape=(3, 2, 2))
    s = np.array([[[1.0, 2.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[2.0, 1.0], [1.0, 3.0]]])
    expected = np.array([[[4.0, -2.0], [-2.0, 1.0]], np.zeros((2, 2)), [[3.0, -1.0], [-1.0, 2.0]]])
    _everywhere([sd.grad(sd.sum(sd.det(S)), S)], {S: s}, [expected])


def test_det_gradient_is_still_the_cookbook_value_where_invertible():
    g = sd.Graph()
    A = g.variable("A", shape=(4, 4))
    a = np.random.default_rng(0).standard_normal((4, 4)) + 3 * np.eye(4)
    expected = np.linalg.det(a) * np.linalg.inv(a).T
    np.testing.assert_allclose(sd.evaluate(sd.grad(sd.det(A), A), {A: a}), expected, rtol=1e-12)
    # nearly singular (cond ~ 1e12): the SVD's cofactors, still sympy's values
    b = _of_rank(np.random.default_rng(1), 4, 3) + 1e-9 * np.eye(4)
    np.testing.assert_allclose(
        sd.evaluate(sd.grad(sd.det(A), A), {A: b}), _det_derivatives(4)[0](b), rtol=1e-6, atol=1e-6
    )


def test_log_det_is_logdet_with_the_inverse_as_gradient():
    """log(det(X)) builds as logdet(X): the same values (nan below 0, -inf at 0), no underflow,
    and the Cookbook gradient inv(X).T where X is known invertible."""
    g = sd.Graph()
    X = g.variable("X", shape=(3, 3))
    assert sd.log(sd.det(X)).op == "logdet"
    assert str(sd.grad(sd.log(sd.det(X)), X)) == "inv(X).T"
    for x in (np.diag([1.0, 2.0, 3.0]), np.diag([-1.0, 2.0, 3.0]), np.zeros((3, 3))):
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(sd.evaluate(sd.log(sd.det(X)), {X: x}), np.log(np.linalg.det(x)))


@every_backend
def test_numpy_linalg_errors_are_symdiff_errors():
    """A singular matrix to inv or solve raises sd.LinAlgError (a SymdiffError and numpy's
    LinAlgError) naming the op, from evaluate and from compile on numpy and numba."""
    g = sd.Graph()
    A = g.variable("A", shape=(2, 2))
    b = g.variable("b", shape=(2,))
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    for y, name in ((sd.inv(A), "inv"), (sd.solve(A, b), "solve"), (sd.grad(sd.logdet(A), A), "inv")):
        bind = {A: singular, b: np.ones(2)}
        needed = [n for n in (A, b) if n in ancestors([y])]
        calls = [lambda: sd.evaluate(y, bind)]
        calls += [
            lambda be=be: sd.compile(y, inputs=needed, backend=be)(*(bind[n] for n in needed))
            for be in (("numpy", "numba") if y.op == "inv" else ("numpy",))  # numba: one first build is enough
        ]
        for call in calls:
            with pytest.raises(sd.LinAlgError, match=rf"while evaluating {name} \(node #\d+\)") as info:
                call()
            assert isinstance(info.value, sd.SymdiffError) and isinstance(info.value, np.linalg.LinAlgError)


# == H3: einsum with 0-d operands ===============================================================
@every_backend
@pytest.mark.parametrize(
    "spec, shapes",
    [
        (",a->a", [(), (3,)]),
        ("a,->a", [(3,), ()]),
        (",->", [(), ()]),
        (",", [(), ()]),
        ("a,", [(3,), ()]),
        ("ab,,b->a", [(2, 3), (), (3,)]),
    ],
)
def test_einsum_takes_0d_operands(spec, shapes):
    rng = np.random.default_rng(3)
    values = [rng.standard_normal(s) for s in shapes]
    g = sd.Graph()
    xs = [g.variable(f"x{k}", shape=s) for k, s in enumerate(shapes)]
    y = sd.einsum(spec, *xs)
    assert y.shape == np.einsum(spec, *values).shape
    weights = rng.standard_normal(np.shape(np.einsum(spec, *values)))

    def cost(*arrays):
        return np.sum(np.einsum(spec, *arrays) * weights)

    s = sd.sum(y * weights)
    expected = [np.einsum(spec, *values), *oracles.gradient(cost, values)]
    _everywhere([y, *sd.grad(s, xs)], dict(zip(xs, values)), expected, rtol=1e-8, atol=1e-10)
    if installed("numba"):  # numba runs einsum's lowering (products and sums)
        got = sd.compile(y, inputs=xs, backend="numba")(*values)
        np.testing.assert_allclose(got, expected[0], rtol=1e-12, atol=1e-14)
    H = sd.hessian(sd.sum(y * y), xs[0])
    h = oracles.hessian(lambda *a: np.sum(np.einsum(spec, *a, *values[1:]) ** 2), [values[0]])
    np.testing.assert_allclose(np.reshape(sd.evaluate(H, dict(zip(xs, values))), h.shape), h, rtol=1e-6, atol=1e-8)


# == H4: the 2, -2 and nuclear norms of wide and tall matrices ==================================
ORDS = (2, -2, "nuc")


def _norm_case(x: np.ndarray, order, shape):
    g = sd.Graph()
    X = g.variable("X", shape=shape)
    y = sd.norm(X, order)
    return X, y, sd.grad(y, X)


@every_backend
@pytest.mark.parametrize(
    "backends", [("numpy", "jax"), pytest.param(("numba",), marks=pytest.mark.slow)], ids=["numpy-jax", "numba"]
)
def test_norms_of_the_issue_wide_matrix_everywhere(backends):
    # [[1, 2, 3]] has one singular value, |(1, 2, 3)| = sqrt(14): every one of these norms is it,
    # its gradient x/|x| and its Hessian (I - x xᵀ/|x|²)/|x|
    x = np.array([[1.0, 2.0, 3.0]])
    r = np.sqrt(14.0)
    hess = ((np.eye(3) - np.outer(x, x) / 14.0) / r).reshape(1, 3, 1, 3)
    for order in ORDS:
        for shape in ((1, 3), (None, None)):
            X, y, gx = _norm_case(x, order, shape)
            outputs = [y, gx] + ([sd.hessian(y, X)] if None not in shape else [sd.hvp(y, X, np.ones((1, 3)))])
            expected = [r, x / r, hess if None not in shape else np.tensordot(hess, np.ones((1, 3)), 2)]
            _everywhere(outputs, {X: x}, expected, rtol=1e-12, atol=1e-14, backends=backends)
            assert np.asarray(sd.evaluate(y, {X: x})) == pytest.approx(np.linalg.norm(x, order), rel=1e-15)


@given(
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    order=st.sampled_from(ORDS),
    unknown=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_norms_of_random_wide_and_tall_matrices(rows, cols, order, unknown, seed):
    """Contract: norm(X, 2 | -2 | 'nuc') is numpy's for every shape, and its gradient and
    Hessian are those of finite differences of numpy's, at distinct non-zero singular values."""
    x = np.random.default_rng(seed).standard_normal((rows, cols))
    s = np.linalg.svd(x, compute_uv=False)
    assume(s.min() > 0.2 and (len(s) == 1 or np.diff(s[::-1]).min() > 0.2))
    X, y, gx = _norm_case(x, order, (None, None) if unknown else (rows, cols))
    value, grad = sd.evaluate([y, gx], {X: x})
    assert value == pytest.approx(np.linalg.norm(x, order), rel=1e-13)

    def f(m):
        return np.linalg.norm(m, order)

    np.testing.assert_allclose(grad, oracles.gradient(f, [x])[0], rtol=1e-7, atol=1e-8)
    hess = oracles.hessian(f, [x])
    u = np.random.default_rng(seed + 1).standard_normal(x.shape)
    np.testing.assert_allclose(np.ravel(sd.evaluate(sd.hvp(y, X, u), {X: x})), hess @ u.ravel(), rtol=1e-5, atol=1e-6)
    if not unknown:
        H = np.reshape(sd.evaluate(sd.hessian(y, X), {X: x}), hess.shape)
        np.testing.assert_allclose(H, hess, rtol=1e-5, atol=1e-6)


def test_norms_of_stacked_and_rank_deficient_matrices():
    g = sd.Graph()
    X = g.variable("X", shape=(2, 2, 3))
    x = np.random.default_rng(5).standard_normal((2, 2, 3))
    for order in ORDS:
        y = sd.norm(X, order, axis=(1, 2))
        np.testing.assert_allclose(sd.evaluate(y, {X: x}), np.linalg.norm(x, order, axis=(1, 2)), rtol=1e-14)
        gx = sd.grad(sd.sum(y), X)
        expected = oracles.gradient(lambda m, o=order: np.sum(np.linalg.norm(m, o, axis=(1, 2))), [x])[0]
        np.testing.assert_allclose(sd.evaluate(gx, {X: x}), expected, rtol=1e-7, atol=1e-8)
    # rank 1 (2 x 3): the nuclear norm is exact (an SVD, not the square root of a rounded 0), and a
    # zero singular value contributes 0 to the gradient (a subgradient), never nan
    Y = g.variable("Y", shape=(2, 3))
    r1 = np.outer([1.0, 2.0], [1.0, 2.0, 2.0])
    nuc = sd.norm(Y, "nuc")
    value, grad = sd.evaluate([nuc, sd.grad(nuc, Y)], {Y: r1})
    assert value == pytest.approx(np.linalg.norm(r1, "nuc"), rel=1e-15)
    np.testing.assert_allclose(grad, r1 / np.linalg.norm(r1), rtol=1e-12)


# == H7: the jax backend's solves of a stack with one 2-D right-hand side ========================
@pytest.mark.parametrize(
    "build, reference",
    [
        (
            lambda a, b: sd.solve_triangular(a, b, lower=True),
            lambda a, b: scipy.linalg.solve_triangular(a, b, lower=True),
        ),
        (
            lambda a, b: sd.solve_triangular(a, b, trans="T", unit_diagonal=True),
            lambda a, b: scipy.linalg.solve_triangular(a, b, trans="T", unit_diagonal=True),
        ),
        (lambda a, b: sd.cho_solve((a, True), b), lambda a, b: scipy.linalg.cho_solve((a, True), b)),
    ],
)
@every_backend
@pytest.mark.parametrize(
    "a_shape, b_shape", [((2, 2, 2), (2, 2)), ((2, 2, 2), (2,)), ((2, 2), (3, 2, 2)), ((2, 1, 2, 2), (3, 2, 1))]
)
def test_triangular_and_cholesky_solves_of_stacks_on_every_backend(build, reference, a_shape, b_shape):
    rng = np.random.default_rng(7)
    a = np.tril(rng.standard_normal(a_shape)) + 3.0 * np.eye(2)
    b = rng.standard_normal(b_shape)
    stack = np.broadcast_shapes(a_shape[:-2], b_shape[:-2] if len(b_shape) > 1 else ())
    aa = np.broadcast_to(a, stack + (2, 2))
    if len(b_shape) == 1:
        expected = np.stack([reference(m, b) for m in aa.reshape(-1, 2, 2)]).reshape(stack + (2,))
    else:
        bb = np.broadcast_to(b, stack + b_shape[-2:])
        expected = np.stack([reference(m, r) for m, r in zip(aa.reshape(-1, 2, 2), bb.reshape((-1,) + b_shape[-2:]))])
        expected = expected.reshape(stack + b_shape[-2:])
    g = sd.Graph()
    A, B = g.variable("A", shape=a_shape), g.variable("B", shape=b_shape)
    y = build(A, B)
    assert y.shape == expected.shape
    grads = sd.grad(sd.sum(y * y), [A, B])
    interpreted = sd.evaluate(grads, {A: a, B: b})
    _everywhere([y, *grads], {A: a, B: b}, [expected, *interpreted], rtol=1e-12, atol=1e-12, backends=("numpy", "jax"))
