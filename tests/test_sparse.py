"""Sparse Jacobians and Hessians: every op case against finite differences of its numpy
reference (the pattern must hold every non-zero, the values must be right), the patterns
of known problems exact, large problems in seconds, and bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import symdiff as sd

from . import oracles
from .op_cases import CASES, ZERO_DERIVATIVE, build_case


def _static(case) -> bool:
    return case.shapes is None or all(None not in s for s in case.shapes)


_build = build_case


def _differentiable(case, y):
    if case.op in ZERO_DERIVATIVE or y.dtype.kind != "f" or not case.differentiable_inputs():
        pytest.skip("no derivative to take")


STATIC = [c for c in CASES if _static(c)]


@pytest.mark.parametrize("case", STATIC, ids=lambda c: c.name)
def test_sparse_jacobian_of_every_op_case_matches_finite_differences(case):
    g, xs, y = _build(case)
    _differentiable(case, y)
    wrt = case.differentiable_inputs()[0]
    J = sd.sparse_jacobian(y, xs[wrt])
    got = sd.evaluate(J, dict(zip(xs, case.inputs)))
    assert isinstance(got, sp.csr_matrix) and got.shape == (y.size, xs[wrt].size)
    expected = oracles.jacobian(case.reference, case.inputs, wrt).reshape(got.shape)
    # the values outside the pattern are zeros: a missed non-zero fails here
    np.testing.assert_allclose(got.toarray(), expected, rtol=case.rtol, atol=case.rtol)


@pytest.mark.parametrize("case", STATIC, ids=lambda c: c.name)
def test_sparse_hessian_of_every_op_case_matches_finite_differences(case):
    g, xs, y = _build(case)
    _differentiable(case, y)
    if case.max_order < 2:
        pytest.skip("first order only")
    wrt = case.differentiable_inputs()[0]
    shape = np.shape(case.reference(*case.inputs))
    w = np.linspace(0.5, 1.5, int(np.prod(shape)) or 1).reshape(shape)
    f = sd.sum(sd.sin(y) * w)  # sin: a second derivative even for linear ops
    H = sd.sparse_hessian(f, xs[wrt])
    got = sd.evaluate(H, dict(zip(xs, case.inputs)))

    def s(a):
        args = list(case.inputs)
        args[wrt] = a
        return np.sum(np.sin(case.reference(*args)) * w)

    expected = oracles.hessian(s, [np.asarray(case.inputs[wrt], dtype=np.float64)])
    np.testing.assert_allclose(got.toarray(), expected, rtol=max(case.rtol, 1e-5), atol=max(case.rtol, 1e-5))
    assert (got != got.T).nnz == 0 or np.allclose(got.toarray(), got.toarray().T)


def _rosenbrock(n):
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    return g, x, sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_rosenbrock_hessian_is_tridiagonal_with_three_colours():
    from scipy.optimize import rosen_hess

    g, x, f = _rosenbrock(50)
    H = sd.sparse_hessian(f, x)
    assert H.nnz == 3 * 50 - 2 and H.colors == 3
    band = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(50, 50)).astype(bool)
    assert (band != H.pattern).nnz == 0
    x0 = np.linspace(-1.2, 1.5, 50)
    f_ = sd.compile(H, [x])
    np.testing.assert_allclose(f_(x0).toarray(), rosen_hess(x0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(f_(-x0).toarray(), rosen_hess(-x0), rtol=1e-12, atol=1e-9)


def test_an_arrowhead_hessian_takes_two_colours_by_its_symmetry():
    """Every column shares row 0, so unsymmetric colouring needs n seeds; a star colouring
    reads each value from its row or its column and needs 2."""
    n = 400
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    f = x[0] * sd.sum(x[1:] ** 2) + sd.sum(x**3)
    H = sd.sparse_hessian(f, x)
    assert H.colors == 2 and H.nnz == 3 * n - 2
    xv = np.linspace(-1.0, 1.0, n)
    closed = np.diag(6 * xv)
    closed[0, 1:] = closed[1:, 0] = 2 * xv[1:]
    closed[np.arange(1, n), np.arange(1, n)] += 2 * xv[0]
    np.testing.assert_allclose(sd.evaluate(H, {x: xv}).toarray(), closed, rtol=1e-12, atol=1e-12)


def _random_pattern(rng, m, n, density):
    return sp.csr_matrix(rng.random((m, n)) < density)


def test_column_colouring_never_gives_two_columns_of_one_row_one_colour():
    """The contract of the (distance-2) colouring the Jacobian's seeds come from, on random
    patterns: in every row the columns' colours differ, so each seed's product reads each
    stored value alone; greedy, so no more colours than a column has conflicts plus one."""
    from symdiff.sparse import _colouring

    rng = np.random.default_rng(7)
    for _ in range(40):
        m, n = rng.integers(1, 40, size=2)
        P = _random_pattern(rng, m, n, rng.uniform(0.02, 0.6))
        colour = _colouring(P)
        assert colour.shape == (n,) and colour.dtype == np.int64 and (colour >= 0).all()
        for i in range(m):
            cols = P.indices[P.indptr[i] : P.indptr[i + 1]]
            assert len(set(colour[cols].tolist())) == len(cols)
        conflicts = np.asarray((P.T.astype(int) @ P.astype(int)).astype(bool).sum(axis=1)).reshape(-1)
        assert colour.max(initial=-1) + 1 <= max(int(conflicts.max(initial=0)), 1)


def test_star_colouring_holds_its_two_rules_on_random_symmetric_patterns():
    """Neighbours differ, and no path on four vertices a - b - c - d has only two colours
    (colour(a) == colour(c) and colour(b) == colour(d)): checked over every such path."""
    from symdiff.sparse import star_colouring

    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(1, 30))
        A = rng.random((n, n)) < rng.uniform(0.05, 0.5)
        A = A | A.T
        np.fill_diagonal(A, trial % 2 == 0)  # with and without a stored diagonal
        colour = star_colouring(sp.csr_matrix(A))
        np.fill_diagonal(A, False)
        adj = [np.flatnonzero(A[v]).tolist() for v in range(n)]
        for a in range(n):
            for b in adj[a]:
                assert colour[a] != colour[b]
                for c in adj[b]:
                    if c == a:
                        continue
                    for d in adj[c]:
                        if d not in (a, b):
                            assert not (colour[a] == colour[c] and colour[b] == colour[d]), (a, b, c, d)


def test_large_problems_in_seconds():
    """10^5 variables: Rosenbrock's Hessian (3n - 2 values) and a 1-D PDE residual's Jacobian,
    against the closed forms (sizes CI's budget holds)."""
    n = 100_000
    g, x, f = _rosenbrock(n)
    H = sd.sparse_hessian(f, x)
    assert H.nnz == 3 * n - 2 and H.colors == 3
    x0 = np.cos(np.arange(n))
    got = sd.compile(H, [x])(x0)
    diag = np.zeros(n)
    diag[:-1] += 1200 * x0[:-1] ** 2 - 400 * x0[1:] + 2
    diag[1:] += 200
    off = -400 * x0[:-1]
    closed = sp.diags([off, diag, off], [-1, 0, 1], format="csr")
    assert abs(got - closed).max() < 1e-9 * abs(closed).max()

    u = g.variable("u", shape=(n,))
    h = 1.0 / (n - 1)
    r = (u[2:] - 2 * u[1:-1] + u[:-2]) / h**2 - sd.exp(u[1:-1])  # u'' = exp(u), Bratu-like
    J = sd.sparse_jacobian(r, u)
    assert J.nnz == 3 * (n - 2) and J.colors == 3
    u0 = np.sin(np.linspace(0, 1, n))
    got = sd.evaluate(J, {u: u0})
    band = np.ones(n - 2) / h**2
    closed = sp.diags([band, -2 * band - np.exp(u0[1:-1]), band], [0, 1, 2], shape=(n - 2, n), format="csr")
    assert abs(got - closed).max() < 1e-6 * abs(closed).max()


def test_patterns_follow_the_ops():
    g = sd.Graph()
    x = g.variable("x", shape=(6,))
    A = np.zeros((4, 6))
    A[0, 1] = A[1, 3] = A[2, 5] = A[3, 0] = 2.0
    assert sd.sparse_jacobian(A @ x, x).nnz == 4  # a constant's zeros are structural
    assert sd.sparse_jacobian(sd.cumsum(x), x).nnz == 36  # a lane: conservative, never missing one
    assert sd.sparse_jacobian(sd.reshape(x, (2, 3)).T, x).nnz == 6  # selections stay exact
    assert sd.sparse_jacobian(sd.concatenate([x[:2], x[4:]]), x).nnz == 4
    assert sd.sparse_jacobian(sd.where(x > 0, x, 0.0), x).nnz == 6  # the condition carries no derivative
    assert sd.sparse_hessian(sd.sum(x[::2] * x[1::2]), x).nnz == 6  # x0 x1 + x2 x3 + x4 x5
    assert sd.sparse_hessian(sd.sum(x) ** 2, x).nnz == 36


def test_bad_input_is_refused_and_the_graph_is_unchanged():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    X = g.variable("X", shape=(None,))
    vector, unknown, unknown_vector = x * 2, sd.sum(X**2), X * 2
    n = len(g)
    with pytest.raises(sd.ShapeError, match="f must be a scalar"):
        sd.sparse_hessian(vector, x)
    with pytest.raises(sd.ShapeError, match="unknown \\(None\\) size"):
        sd.sparse_hessian(unknown, X)
    with pytest.raises(sd.ShapeError, match="unknown \\(None\\) size"):
        sd.sparse_jacobian(unknown_vector, X)
    with pytest.raises(sd.GraphError, match="y must be a node"):
        sd.sparse_jacobian(np.ones(3), x)
    assert len(g) == n
    big = g.variable("big", shape=(20000,))
    cost = sd.sum(sd.inv(sd.reshape(big, (100, 200)) @ sd.reshape(big, (200, 100))))
    n = len(g)
    with pytest.raises(sd.SymdiffError, match="op 'inv'.*not sparse"):
        sd.sparse_hessian(cost, big)
    assert len(g) == n
