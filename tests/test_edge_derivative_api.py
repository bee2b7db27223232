"""Sparse results and the derivative API at their edges (issue 19: G1, G6, G8, G9, H5, H6).

- Every sparse result is its own, fully constructed scipy.sparse matrix: changing one in
  place changes neither the pattern nor any other result, and it prints.
- A derivative that is zero because the output does not depend on x (a Jacobian of
  something independent of x, the Hessian of something linear in x) is an empty pattern
  from sparse_jacobian / sparse_hessian and zeros of the right shape from jacobian,
  hessian and hvp, in evaluate and compile.
- Building a Jacobian never allocates an identity seed larger than the Jacobian: the mode
  is picked by the sizes, and a seed over a size known only at evaluation is made then.
- A Hessian (a pass with a batch of seeds) through any op, differentiated again, is right:
  the adjoint ops (untile, ...) meet batch axes in their primal inputs there.
- hessian and hvp take a list of variables (nested blocks, lists of directions), and
  value_and_grad gives (f, gradients).

Oracles: scipy's rosen_hess, closed forms, central finite differences (tests/oracles.py).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import rosen_hess

import symdiff as sd
from symdiff.autodiff import SMALL_SEED

from . import oracles
from .op_cases import CASES, ZERO_DERIVATIVE
from .programs import SHAPES, programs

seeds = st.integers(0, 2**32 - 1)


def _rosenbrock(n: int):
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    return g, x, sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


# -- G1: sparse results share nothing and are fully constructed ----------------------------
@pytest.mark.parametrize("how", ["evaluate", "compile"])
def test_a_sparse_result_changed_in_place_changes_no_later_result(how):
    g, x, f = _rosenbrock(6)
    S = sd.sparse_hessian(f, x)
    pattern = S.pattern.copy()
    call = sd.compile(S, [x]) if how == "compile" else (lambda v: sd.evaluate(S, {x: v}))
    H0 = call(np.zeros(6))
    H0.eliminate_zeros()  # drops the zero entries of the Hessian at 0 in place
    H0.data *= 3.0
    x1 = np.linspace(0.3, 1.2, 6)
    H1 = call(x1)
    np.testing.assert_allclose(H1.toarray(), rosen_hess(x1), rtol=1e-13)
    assert (S.pattern != pattern).nnz == 0 and S.pattern.nnz == pattern.nnz == S.nnz
    assert "Compressed Sparse Row" in str(H1) and "stored elements" in repr(H1)
    assert isinstance(H1, sp.csr_matrix) and H1.has_canonical_format


@given(programs(max_steps=5), seeds)
def test_every_sparse_result_is_independent_and_prints(program, seed):
    g, xs, y, args = program.graph(seed)
    x = xs[0]
    cost = sd.sum(y * y) if y.ndim else y * y
    made = [sd.sparse_jacobian(y, x), sd.sparse_hessian(cost, x)]
    fn = sd.compile(made, xs)
    other = [a + 0.25 for a in args]
    for call in (lambda v: fn(*v), lambda v: sd.evaluate(made, dict(zip(xs, v)))):
        patterns = [m.pattern.copy() for m in made]
        first, second = call(args), call(other)
        expected = [m.toarray() for m in second]
        for r in first:
            str(r)  # fully constructed: prints
            r.data[:] = np.nan  # changed in place every way a user can
            r.indices[:] = 0
            r.indptr[:] = 0
        third = call(other)
        for m, p, s, t, e in zip(made, patterns, second, third, expected):
            assert (m.pattern != p).nnz == 0
            np.testing.assert_array_equal(s.toarray(), e)
            np.testing.assert_array_equal(t.toarray(), e)
            assert s.indices is not t.indices and s.indptr is not t.indptr and s.data is not t.data


# -- G8, H5: derivatives of what does not depend on x --------------------------------------
def test_sparse_hessian_of_linear_functions_is_empty():
    g = sd.Graph()
    x = g.variable("x", shape=(8,))
    lam = g.variable("lam", shape=(4,))
    A = g.constant(np.arange(32.0).reshape(4, 8))
    for f in (sd.sum(x), sd.sum(lam * (A @ x)), lam[0] * x[3] + 2.0):
        S = sd.sparse_hessian(f, x)
        assert S.nnz == 0 and S.shape == (8, 8)
        for H in (sd.evaluate(S, {x: np.ones(8), lam: np.ones(4)}), sd.compile(S, [x, lam])(np.ones(8), np.ones(4))):
            assert isinstance(H, sp.csr_matrix) and H.shape == (8, 8) and H.nnz == 0
            str(H)


def test_sparse_jacobian_of_an_independent_output_is_empty():
    g = sd.Graph()
    x, p = g.variable("x", shape=(3,)), g.variable("p", shape=(4,))
    S = sd.sparse_jacobian(sd.sin(p), x)
    assert S.nnz == 0 and S.shape == (4, 3)
    J = sd.compile(S, [x, p])(np.ones(3), np.ones(4))
    np.testing.assert_array_equal(J.toarray(), np.zeros((4, 3)))


@given(programs(max_steps=5), seeds, st.sampled_from(SHAPES), st.booleans())
def test_zero_derivatives_are_empty_patterns_and_zeros(program, seed, shape, unknown):
    """y does not depend on x and f is linear in x: every derivative API gives zeros of its shape."""
    g, xs, y, args = program.graph(seed)
    x = g.variable("x_free", shape=shape)
    xv = np.random.default_rng(seed).uniform(-1, 1, shape)
    w = g.constant(np.linspace(-1.0, 1.0, int(np.prod(shape, dtype=int))).reshape(shape))
    f = (sd.sum(y) + 1.0) * sd.sum(w * x) + sd.sum(y * y)  # linear in x
    bind = dict(zip(xs, args)) | {x: xv}
    SJ, SH = sd.sparse_jacobian(y, x), sd.sparse_hessian(f, x)
    assert SJ.nnz == SH.nnz == 0
    assert SJ.shape == (y.size, x.size) and SH.shape == (x.size, x.size)
    dense = [sd.jacobian(y, x), sd.hessian(f, x), sd.hvp(f, x, np.ones(shape))]
    shapes = [y.shape + shape, shape + shape, shape]
    for got in (sd.evaluate([SJ, SH, *dense], bind), sd.compile([SJ, SH, *dense], [*xs, x])(*args, xv)):
        assert got[0].shape == SJ.shape and got[0].nnz == 0 and got[1].shape == SH.shape and got[1].nnz == 0
        for value, s in zip(got[2:], shapes):
            assert np.shape(value) == s
            np.testing.assert_array_equal(value, np.zeros(s))
    if unknown:  # the dense ones with sizes known only at evaluation
        X = g.variable("X_free", shape=(None, *shape))
        fX = (sd.sum(y) + 1.0) * sd.sum(w * X) + sd.sum(y * y)
        Xv = np.ones((2, *shape))
        got = sd.evaluate([sd.jacobian(y, X), sd.hessian(fX, X), sd.hvp(fX, X, Xv)], dict(zip(xs, args)) | {X: Xv})
        for value, s in zip(got, [y.shape + Xv.shape, Xv.shape + Xv.shape, Xv.shape]):
            np.testing.assert_array_equal(value, np.zeros(s))


# -- G6: no seed larger than the Jacobian -------------------------------------------------
def _build_peak(build) -> int:
    tracemalloc.start()
    try:
        build()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_jacobian_over_an_unknown_batch_allocates_no_dense_seed():
    m = k = 200  # the dense identity on W's elements: 1.6e9 float64 (12.8 GB)
    g = sd.Graph()
    X, W = g.variable("X", shape=(None, m)), g.variable("W", shape=(m, k))
    box = []
    peak = _build_peak(lambda: box.append(sd.jacobian(sd.tanh(X @ W), W)))
    assert peak < 5_000_000
    (J,) = box
    assert J.shape == (None, k, m, k)
    rng = np.random.default_rng(1)
    Xv, Wv = rng.standard_normal((2, m)) / 10, rng.standard_normal((m, k)) / 10
    s = 1 - np.tanh(Xv @ Wv) ** 2  # dJ[n, a, i, b] = X[n, i] s[n, a] δ_ab
    np.testing.assert_allclose(sd.evaluate(J, {X: Xv, W: Wv}), np.einsum("ni,na,ab->naib", Xv, s, np.eye(k)))


def test_a_tall_jacobian_is_built_forward_with_a_seed_on_x():
    n = 100  # reverse mode would seed with the identity on y's n**2 elements: n**4 values (800 MB)
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    box = []
    peak = _build_peak(lambda: box.append(sd.jacobian(sd.outer(sd.sin(x), x), x)))
    assert peak < 3 * n**3 * 8  # the Jacobian has n**3 values
    xv = np.linspace(-1, 1, n)
    expected = np.einsum("ik,j->ijk", np.diag(np.cos(xv)), xv) + np.einsum("i,jk->ijk", np.sin(xv), np.eye(n))
    np.testing.assert_allclose(sd.evaluate(box[0], {x: xv}), expected, atol=1e-15)


@given(
    st.sampled_from([1, 3, 40, 300]),
    st.sampled_from([1, 2, 30, 250]),
    st.sampled_from([None, 1, 4]),
    st.sampled_from(["W", "X", "both"]),
    st.booleans(),
)
def test_building_a_jacobian_never_allocates_more_than_it(m, k, batch, wrt, small):
    """Build-time memory is bounded by the Jacobian's known size (or a small seed); the values
    are the closed forms, checked at small sizes."""
    if small:
        m, k = min(m, 3), min(k, 2)
    g = sd.Graph()
    X, W = g.variable("X", shape=(batch, m)), g.variable("W", shape=(m, k))
    xs = {"W": [W], "X": [X], "both": [X, W]}[wrt]
    y = sd.tanh(X @ W)
    box = []
    peak = _build_peak(lambda: box.append(sd.jacobian(y, xs)))
    known = (batch or 1) * k * sum((batch or 1) * m if x is X else m * k for x in xs)
    assert peak < 8 * 2 * max(known, SMALL_SEED) + 2_000_000
    if not small:
        return
    rng = np.random.default_rng(m * 7 + k)
    n = batch or 3
    Xv, Wv = rng.standard_normal((n, m)), rng.standard_normal((m, k))
    s = 1 - np.tanh(Xv @ Wv) ** 2
    closed = {X: np.einsum("np,ia,na->napi", np.eye(n), Wv, s), W: np.einsum("ni,na,ab->naib", Xv, s, np.eye(k))}
    for J, x in zip(sd.evaluate(box[0], {X: Xv, W: Wv}), xs):
        np.testing.assert_allclose(J, closed[x], rtol=1e-12, atol=1e-15)


# -- H6: a Hessian through every op, differentiated again ------------------------------------
def _inner(a, xp):
    """Monotone, sign-preserving and within 10% of a: keeps each case's domain, and makes the
    Hessian pass's batched cotangents depend on x, so the adjoint ops meet them as values."""
    return a + 0.1 * xp.sin(a)


SECOND_ORDER = [c for c in CASES if c.max_order >= 2 and c.op not in ZERO_DERIVATIVE and c.differentiable_inputs()]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c.name)
def test_gradient_of_a_hessian_through_every_op(case):
    k = case.differentiable_inputs()[0]
    values = [np.asarray(a) for a in case.inputs]
    if values[k].dtype != np.float64:
        pytest.skip("differentiated input is not float64")
    g = sd.Graph()
    shapes = case.shapes or [np.shape(a) for a in case.inputs]
    xs = [g.variable(f"x{j}", shape=s, dtype=a.dtype) for j, (a, s) in enumerate(zip(values, shapes))]
    y = case.build(*[_inner(x, sd) if j == k else x for j, x in enumerate(xs)])
    if y.dtype.kind != "f":
        pytest.skip("integer or boolean output")
    H = sd.hessian(sd.sum(sd.sin(y)), xs[k])
    got = sd.evaluate(sd.grad(sd.sum(H**2), xs[k]), dict(zip(xs, values)))
    hessian = sd.compile(H, xs)
    # along a random direction u: d/ds sum(H(x + s u)**2) at 0 is <gradient, u> (a wrong
    # component is missed only if u is orthogonal to its error: never, in practice)
    u = np.random.default_rng(len(case.name)).standard_normal(values[k].shape)

    def squared(s):
        return np.sum(hessian(*[values[j] + s * u if j == k else v for j, v in enumerate(values)]) ** 2)

    np.testing.assert_allclose(np.sum(got * u), oracles.derivative(squared), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("simplify", [False, True])
def test_gradient_of_a_hessian_through_tile(simplify):
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    H = sd.hessian(sd.sum(sd.sin(sd.tile(sd.sin(x), 2))), x)
    d = sd.grad(sd.sum(H**2), x)
    xv = np.array([0.1, 0.2, 0.3])
    # by hand: f = 2 sum(sin(sin x)), so H = diag(h) with h = 2 (-sin(sin x) cos(x)**2 -
    # cos(sin x) sin x), and d/dx sum(H**2) = 2 h h'
    u = np.sin(xv)
    h = 2 * (-np.sin(u) * np.cos(xv) ** 2 - np.cos(u) * u)
    dh = 2 * (
        -np.cos(u) * np.cos(xv) ** 3
        + 2 * np.sin(u) * np.cos(xv) * u
        + np.sin(u) * np.cos(xv) * u
        - np.cos(u) * np.cos(xv)
    )
    expected = 2 * h * dh
    np.testing.assert_allclose(expected, [3.074, 5.437, 6.588], atol=1e-3)
    np.testing.assert_allclose(sd.evaluate(d, {x: xv}), expected, rtol=1e-12)
    np.testing.assert_allclose(sd.compile(d, [x], simplify=simplify)(xv), expected, rtol=1e-12)


# -- G9: several variables, value_and_grad -------------------------------------------------
def _three_variables():
    g = sd.Graph()
    a, b, s = g.variable("a", shape=(2,)), g.variable("b", shape=(3,)), g.variable("s")
    f = sd.sum(sd.expand_dims(sd.sin(a), -1) * b**2) + s * sd.sum(a**3) + s**2 * sd.sum(b)

    def ref(av, bv, sv):
        return np.sum(np.sin(av)[:, None] * bv**2) + sv * np.sum(av**3) + sv**2 * np.sum(bv)

    values = [np.array([0.3, -0.7]), np.array([0.5, 1.5, -1.0]), np.array(0.8)]
    return [a, b, s], f, ref, values


def test_hessian_of_a_list_gives_the_nested_blocks():
    xs, f, ref, values = _three_variables()
    H = sd.hessian(f, xs)
    full = oracles.hessian(ref, values)  # over the flattened, concatenated variables
    edges = np.cumsum([0] + [v.size for v in values])
    got = sd.evaluate([b for row in H for b in row], dict(zip(xs, values)))
    for i, xi in enumerate(xs):
        for j, xj in enumerate(xs):
            block = got[i * len(xs) + j]
            assert H[i][j].shape == xi.shape + xj.shape and np.shape(block) == xi.shape + xj.shape
            expected = full[edges[i] : edges[i + 1], edges[j] : edges[j + 1]].reshape(xi.shape + xj.shape)
            np.testing.assert_allclose(block, expected, rtol=1e-7, atol=1e-8)
    assert sd.hessian(f, [xs[0]])[0][0] is sd.hessian(f, xs[0])


def test_hvp_of_a_list_takes_a_list_of_directions():
    xs, f, ref, values = _three_variables()
    vs = [np.array([1.0, -2.0]), np.array([0.5, 0.25, 2.0]), np.array(-1.5)]
    Hv = sd.hvp(f, xs, vs)
    full = oracles.hessian(ref, values)
    expected = full @ np.concatenate([np.ravel(v) for v in vs])
    got = sd.compile(Hv, xs)(*values)
    edges = np.cumsum([0] + [v.size for v in values])
    for i, (x, value) in enumerate(zip(xs, got)):
        assert Hv[i].shape == x.shape
        np.testing.assert_allclose(np.ravel(value), expected[edges[i] : edges[i + 1]], rtol=1e-7, atol=1e-8)
    with pytest.raises(sd.GraphError, match="3 variables need a list of 3 directions"):
        sd.hvp(f, xs, vs[:2])
    with pytest.raises(sd.ShapeError, match=r"hvp: v\[1\] has shape \(2,\) but variable 'b'"):
        sd.hvp(f, xs, [vs[0], vs[0], vs[2]])


def test_value_and_grad():
    xs, f, ref, values = _three_variables()
    value, grads = sd.value_and_grad(f, xs)
    assert value is f and isinstance(grads, list) and [d.shape for d in grads] == [x.shape for x in xs]
    got = sd.compile([value, *grads], xs)(*values)
    np.testing.assert_allclose(got[0], ref(*values), rtol=1e-14)
    for d, expected in zip(got[1:], oracles.gradient(ref, values)):
        np.testing.assert_allclose(d, expected, rtol=1e-8, atol=1e-10)
    one, da = sd.value_and_grad(f, xs[0])
    assert one is f and da is grads[0]
    with pytest.raises(sd.ShapeError, match="value_and_grad: cost has shape"):
        sd.value_and_grad(xs[1], xs[1])


@given(programs(max_steps=5), seeds)
def test_hessian_blocks_are_the_derivatives_of_the_gradients(program, seed):
    """H[i][j] is d(df/dx_i)/dx_j (central differences of the gradient), the blocks are
    symmetric, and hvp of a list is the blocks' product with the directions."""
    g, xs, y, args = program.graph(seed)
    f = sd.sum(0.5 * y * y + 0.3 * y) if y.ndim else 0.5 * y * y + 0.3 * y
    H = sd.hessian(f, xs)
    vs = [np.cos(np.arange(a.size) + k).reshape(a.shape) for k, a in enumerate(args)]
    Hv = sd.hvp(f, xs, vs)
    grads = sd.compile(sd.grad(f, xs), xs)
    blocks = sd.compile([b for row in H for b in row] + Hv, xs)(*args)
    n = len(xs)
    for i in range(n):
        product = 0.0
        for j in range(n):
            block = blocks[i * n + j]
            assert np.shape(block) == xs[i].shape + xs[j].shape
            fd = oracles.jacobian(lambda *a: grads(*a)[i], args, j)
            np.testing.assert_allclose(block, fd, rtol=1e-5, atol=1e-6)
            mirrored = np.transpose(
                blocks[j * n + i], tuple(range(xs[j].ndim, xs[j].ndim + xs[i].ndim)) + tuple(range(xs[j].ndim))
            )
            np.testing.assert_allclose(block, mirrored, rtol=1e-9, atol=1e-12)
            product = product + np.tensordot(block, vs[j], axes=xs[j].ndim)
        np.testing.assert_allclose(blocks[n * n + i], product, rtol=1e-9, atol=1e-12)
