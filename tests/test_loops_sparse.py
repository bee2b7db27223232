"""Sparse Jacobians and Hessians through loops (sd.scan, sd.fori_loop, sd.while_loop).

A loop's pattern is its body's carried over the steps (symdiff/sparse.py): exact for a scan
(the same pattern as the scan unrolled), a fixed point over any number of steps for a
while_loop. Patterns are checked against hand-derived ones (diagonal, a band widening by one
per step, blocks), values against numpy references by finite differences (tests/oracles.py),
and, to 1e-12, against the dense sd.jacobian / sd.hessian and the sparse derivatives of the
same loop written out by sd.unroll.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import symdiff as sd
import symdiff.sparse as sparse

from . import oracles

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def _neighbours(c):
    """c[i - 1] + c[i + 1], zero past the ends: couples each element to the next ones."""
    return sd.pad(c[1:], (0, 1)) + sd.pad(c[:-1], (1, 0))


def _np_neighbours(c):
    return np.pad(c[1:], (0, 1)) + np.pad(c[:-1], (1, 0))


def _band(n: int, width: int) -> np.ndarray:
    i, j = np.indices((n, n))
    return np.abs(i - j) <= width


def _pattern(S: sd.SparseDerivative) -> np.ndarray:
    return S.pattern.toarray()


def _agree(y, x, value, *, unroll=True, hessian=False):
    """The sparse derivative of y (or, with hessian, of the scalar y) agrees with the dense one
    and with the sparse one of the unrolled loop; returns it and its value."""
    n = value.size
    sparse_fn, dense_fn = (sd.sparse_hessian, sd.hessian) if hessian else (sd.sparse_jacobian, sd.jacobian)
    S = sparse_fn(y, x)
    got = sd.evaluate(S, {x: value}).toarray()
    dense = np.asarray(sd.evaluate(dense_fn(y, x), {x: value})).reshape(got.shape)
    np.testing.assert_allclose(got, dense, **TIGHT)
    assert np.all(_pattern(S) | (dense == 0)), "a non-zero outside the pattern"
    if unroll:
        U = sparse_fn(sd.unroll(y), x)
        np.testing.assert_allclose(got, sd.evaluate(U, {x: value}).toarray(), **TIGHT)
        # a scan's pattern is exact: the unrolled loop's, so the same colours
        assert (S.pattern != U.pattern).nnz == 0 and S.colors == U.colors
    assert got.shape[1] == n
    return S, got


# -- exact patterns ------------------------------------------------------------------------------
def test_an_elementwise_scan_has_a_diagonal_pattern_and_one_colour():
    n, T = 6, 5
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    c, ys = sd.scan(lambda c, _: (sd.sin(c) * 1.5 + 0.1, c * c), x, length=T)
    v = np.linspace(-0.8, 0.9, n)
    J, got = _agree(c, x, v)
    assert (_pattern(J) == np.eye(n, dtype=bool)).all() and J.colors == 1

    def reference(x):
        for _ in range(T):
            x = np.sin(x) * 1.5 + 0.1
        return x

    np.testing.assert_allclose(got, oracles.jacobian(reference, [v], 0), rtol=1e-7, atol=1e-9)
    Jy, _ = _agree(ys, x, v)  # ys[t] = the carry step t started from, squared: a diagonal block per step
    assert (_pattern(Jy) == np.tile(np.eye(n, dtype=bool), (T, 1))).all() and Jy.colors == 1
    H, _ = _agree(sd.sum(sd.cos(c)) + sd.sum(ys * ys * ys), x, v, hessian=True)
    assert (_pattern(H) == np.eye(n, dtype=bool)).all() and H.colors == 1


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 7])
def test_a_neighbour_coupling_widens_the_band_by_one_per_step_until_it_is_full(steps):
    n = 8
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    c, ys = sd.scan(lambda c, _: (sd.sin(c) + 0.1 * _neighbours(c), c), x, length=steps)
    v = np.linspace(-1.0, 1.0, n)
    J, got = _agree(c, x, v)
    assert (_pattern(J) == _band(n, steps)).all()
    assert J.colors == min(2 * steps + 1, n)  # columns within 2 * steps share a row

    def reference(x):
        for _ in range(steps):
            x = np.sin(x) + 0.1 * _np_neighbours(x)
        return x

    np.testing.assert_allclose(got, oracles.jacobian(reference, [v], 0), rtol=1e-7, atol=1e-9)
    # ys[t] is the carry step t started from: its band is t wide
    Jy, _ = _agree(ys, x, v)
    assert (_pattern(Jy) == np.vstack([_band(n, t) for t in range(steps)])).all()
    H, _ = _agree(sd.sum(sd.cos(c)), x, v, hessian=True)  # second derivatives: twice as wide
    assert (_pattern(H) == _band(n, 2 * steps)).all()


def test_a_coupling_within_rows_keeps_the_pattern_block_diagonal():
    rows, cols, T = 3, 4, 3
    g = sd.Graph()
    x = g.variable("x", shape=(rows, cols))
    w = np.linspace(0.5, 1.5, cols * cols).reshape(cols, cols)  # dense: couples a row's elements
    c, _ = sd.scan(
        lambda c, _: (sd.tanh(c + 0.1 * sd.sum(c, axis=1, keepdims=True)) + sd.sin(c @ w) * 0.2, None), x, length=T
    )
    v = np.linspace(-0.5, 0.5, rows * cols).reshape(rows, cols)
    blocks = np.kron(np.eye(rows, dtype=bool), np.ones((cols, cols), dtype=bool))
    J, got = _agree(c, x, v)
    assert (_pattern(J) == blocks).all() and J.colors == cols

    def reference(x):
        for _ in range(T):
            x = np.tanh(x + 0.1 * np.sum(x, axis=1, keepdims=True)) + np.sin(x @ w) * 0.2
        return x

    expected = oracles.jacobian(reference, [v], 0).reshape(got.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)
    H, _ = _agree(sd.sum(c * c * c), x, v, hessian=True)
    assert (_pattern(H) == blocks).all() and H.colors == cols


def test_a_shift_register_reaches_its_fixed_point_in_a_few_walks_of_the_body(monkeypatch):
    """(p, q, r) -> (sin p, 2p, 3q): x reaches q after one step and r after two; from the
    third step on the carries' patterns no longer change, and the body is not walked again
    whatever the number of steps."""
    n, T = 4, 50
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    zero = g.constant(np.zeros(n))
    (p, q, r), ys = sd.scan(lambda c, _: ((sd.sin(c[0]), 2.0 * c[0], 3.0 * c[1]), c[2]), (x, zero, zero), length=T)
    walks = []
    real = sparse._propagate
    monkeypatch.setattr(sparse, "_propagate", lambda *a: walks.append(1) or real(*a))
    J = sd.sparse_jacobian(ys, x)
    assert len(walks) == 1 + 3  # the outer graph, then steps 0, 1 and 2: the rest repeat step 2
    monkeypatch.undo()
    expected = np.vstack([np.zeros((2 * n, n), bool), np.tile(np.eye(n, dtype=bool), (T - 2, 1))])
    assert (_pattern(J) == expected).all() and J.colors == 1
    v = np.linspace(0.1, 0.4, n)
    _agree(ys, x, v)
    _agree(sd.sum(sd.sin(r) * q) + sd.sum(p * p), x, v, hessian=True)


def test_a_while_loop_takes_the_fixed_point_over_any_number_of_steps():
    """c[i] grows with c[i + 1]: after k steps c[i] depends on c[i..i + k]; the trip count is
    known only at evaluation, so the pattern is the union over every count, the upper triangle
    (n - 1 growing iterations), which holds the true one."""
    n = 6
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    y = sd.while_loop(
        lambda c: sd.sum(c) < 6.0, lambda c: c * 1.1 + 0.3 * sd.sin(sd.pad(c[1:], (0, 1))) + 0.05, x, max_steps=40
    )
    v = np.linspace(0.1, 0.3, n)
    J, got = _agree(y, x, v, unroll=False)
    assert (_pattern(J) == np.triu(np.ones((n, n), dtype=bool))).all() and J.colors == n

    def reference(x):
        while np.sum(x) < 6.0:
            x = x * 1.1 + 0.3 * np.sin(np.pad(x[1:], (0, 1))) + 0.05
        return x

    np.testing.assert_allclose(got, oracles.jacobian(reference, [v], 0), rtol=1e-6, atol=1e-8)
    # its Hessian differentiates the gradient: a counted scan backwards over the steps taken
    H, _ = _agree(sd.sum(y * y * y), x, v, unroll=False, hessian=True)
    assert H.pattern.nnz == n * n


def test_an_elementwise_while_loop_stays_diagonal_in_both_derivatives():
    n = 5
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    y = sd.while_loop(lambda c: sd.sum(c) < 10.0, lambda c: c * 1.2 + 0.3 * sd.sin(c), x, max_steps=30)
    v = np.linspace(0.2, 0.6, n)
    J, _ = _agree(y, x, v, unroll=False)
    assert (_pattern(J) == np.eye(n, dtype=bool)).all() and J.colors == 1
    H, _ = _agree(sd.sum(sd.exp(y)), x, v, unroll=False, hessian=True)
    assert (_pattern(H) == np.eye(n, dtype=bool)).all() and H.colors == 1


# -- values agree with the dense derivatives and with the loop unrolled ---------------------------
def _rnn(x):
    """An RNN over the rows of x (steps, width): each step's hidden state depends on the rows
    before it, each y on the state it started from."""
    w = x.graph.constant(np.array([0.9, -0.7, 0.5]))
    h0 = x.graph.constant(np.array([0.1, 0.2, -0.3]))
    h, ys = sd.scan(lambda c, r: (sd.tanh(w * c + r), sd.sum(c * c)), h0, x)
    return sd.concatenate([ys, h])


def _reverse_two_carries(x):
    (a, b), ys = sd.scan(
        lambda c, r: ((c[0] * c[1] + r, c[1] * 0.9), sd.exp(-c[0]) * r), (x[0], x[1, 0]), x[1:], reverse=True
    )
    return sd.concatenate([a, sd.reshape(ys, (-1,)), sd.reshape(b, (1,))])


def _fori(x):
    return sd.fori_loop(0, 2, lambda i, c: sd.sin(c * 0.8) + 0.2 * _neighbours(c) + i * 0.5, x)


def _nested(x):
    """A fori_loop in a scan's body."""
    c, ys = sd.scan(
        lambda c, _: (sd.fori_loop(0, 2, lambda i, d: sd.cos(d) + 0.1 * _neighbours(d), c), c[0]), x, None, 3
    )
    return sd.concatenate([c, ys])


def _checkpointed(x):
    c, ys = sd.scan(
        lambda c, _: (sd.sin(c) + 0.1 * _neighbours(c), c * c), x, length=5, checkpoint=sd.checkpoint.every(2)
    )
    return sd.concatenate([c, sd.reshape(ys, (-1,))])


# the loop, x's shape, and the colours of its Jacobian and of the Hessian of sum(sin(y) * w)
# (the unrolled loop's, which _agree checks too)
LOOPS = {
    "rnn": (_rnn, (4, 3), 9, 9),
    "reverse-two-carries": (_reverse_two_carries, (4, 2), 5, 5),
    "fori-banded": (_fori, (9,), 5, 7),  # two steps of a tridiagonal coupling: a band 2 wide
    "nested-fori-in-scan": (_nested, (16,), 13, 14),  # 3 x 2 steps: a band 6 wide
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_sparse_jacobians_and_hessians_of_loops_agree_with_dense_and_unrolled(name):
    build, shape, jacobian_colours, hessian_colours = LOOPS[name]
    g = sd.Graph()
    x = g.variable("x", shape=shape)
    y = build(x)
    v = np.linspace(-0.6, 0.7, int(np.prod(shape))).reshape(shape)
    J, _ = _agree(y, x, v)
    weights = np.linspace(0.5, 1.5, y.size)
    H, _ = _agree(sd.sum(sd.sin(y) * weights), x, v, hessian=True)
    assert (J.colors, H.colors) == (jacobian_colours, hessian_colours)


def test_the_rnn_jacobian_is_lower_triangular_by_rows_and_its_state_columnwise():
    T, m = 5, 3
    g = sd.Graph()
    x = g.variable("x", shape=(T, m))
    # ys[t], the sum of the squared state step t started from: every element of the rows before
    # t; then the final state, elementwise in each row: element i, on column i of every row
    y = _rnn(x)
    J = sd.sparse_jacobian(y, x)
    rows_before = np.arange(T)[:, None] > np.repeat(np.arange(T), m)[None, :]
    assert (_pattern(J) == np.vstack([rows_before, np.tile(np.eye(m, dtype=bool), (1, T))])).all()


def test_a_scan_with_checkpoints_has_the_same_forward_pattern():
    g = sd.Graph()
    x = g.variable("x", shape=(6,))
    y = _checkpointed(x)
    S = sd.sparse_jacobian(y, x)
    U = sd.sparse_jacobian(sd.unroll(y), x)
    assert (S.pattern != U.pattern).nnz == 0 and S.colors == U.colors
    v = np.linspace(-0.5, 0.5, 6)
    np.testing.assert_allclose(sd.evaluate(S, {x: v}).toarray(), sd.evaluate(U, {x: v}).toarray(), **TIGHT)


def test_a_fori_loop_with_bounds_known_only_at_evaluation_is_a_while_loop_in_forward_mode():
    n = 6
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    k = g.variable("k", dtype=np.int64)
    y = sd.fori_loop(0, k, lambda i, c: sd.sin(c) * 1.5 + 0.05 * sd.pad(c[1:], (0, 1)), x)
    J = sd.sparse_jacobian(y, x)
    assert (_pattern(J) == np.triu(np.ones((n, n), dtype=bool))).all()  # any number of steps
    v = np.linspace(0.1, 0.6, n)
    got = sd.evaluate(J, {x: v, k: 3})
    dense = np.stack([sd.evaluate(sd.jvp(y, x, g.constant(e)), {x: v, k: 3}) for e in np.eye(n)], axis=1)
    np.testing.assert_allclose(got.toarray(), dense, **TIGHT)

    def reference(x):
        for _ in range(3):
            x = np.sin(x) * 1.5 + 0.05 * np.pad(x[1:], (0, 1))
        return x

    np.testing.assert_allclose(got.toarray(), oracles.jacobian(reference, [v], 0), rtol=1e-7, atol=1e-9)
    assert isinstance(got, sp.csr_matrix)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("policy", [None, sd.checkpoint.every(2)], ids=["all", "every-2"])
def test_the_stored_carries_have_the_pattern_of_the_step_they_start(policy, reverse):
    """A scan's third group of outputs, the carries its steps started from, which only its
    derivatives read: stored all, index t holds step t's; every k-th, index i the one after
    i * k steps in the order they run."""
    from symdiff.ops.core import outputs_of

    n, T = 9, 5
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    c, _ = sd.scan(
        lambda c, _: (sd.sin(c) + 0.1 * _neighbours(c), None), x, length=T, checkpoint=policy, reverse=reverse
    )
    stored = outputs_of(c.inputs[0])[-1]
    pattern = sparse.dependencies([stored], x, "test")[stored].toarray()
    if policy is None:
        done = [T - 1 - t if reverse else t for t in range(T)]  # steps run before step t
    else:
        done = list(range(0, T, 2))
    assert (pattern == np.vstack([_band(n, k) for k in done])).all()
    unrolled = sd.unroll(stored)
    assert (pattern == sparse.dependencies([unrolled], x, "test")[unrolled].toarray()).all()


def test_a_hessian_of_a_while_loops_gradient_goes_through_counted_scans_both_ways():
    """The gradient of a while_loop is a counted scan backwards over the steps taken; the
    gradient of that, a counted scan forwards: an elementwise body stays diagonal in both."""
    n = 5
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    y = sd.while_loop(lambda c: sd.sum(c) < 10.0, lambda c: c * 1.2 + 0.3 * sd.sin(c), x, max_steps=30)
    f = sd.sum(sd.grad(sd.sum(sd.exp(y)), x) ** 2)
    v = np.linspace(0.2, 0.6, n)
    H = sd.sparse_hessian(f, x)
    assert (_pattern(H) == np.eye(n, dtype=bool)).all() and H.colors == 1
    dense = sd.evaluate(sd.hessian(f, x), {x: v})
    np.testing.assert_allclose(sd.evaluate(H, {x: v}).toarray(), dense, rtol=1e-12, atol=1e-12 * np.abs(dense).max())
