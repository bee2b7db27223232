"""Linear algebra: matmul, tensordot, solve, inv, det, logdet, slogdet, cholesky, eigh,
solve_triangular, cho_solve, expm, norm (numpy/scipy semantics, stacks of matrices).

The rules keep matrices in the last two axes and use ``matrix_transpose``, so they
work unchanged on stacked inputs and on batched cotangents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from symdiff.errors import ShapeError, SymdiffError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.arithmetic import add, astype, divide, multiply, negative
from symdiff.ops.arithmetic import subtract as sub
from symdiff.ops.core import Op, apply, as_nodes, broadcast_shapes, define_op, float_dtype, index_set, to_float
from symdiff.ops.families import product_op
from symdiff.ops.logic import equal, where
from symdiff.ops.reduce import _keep, _reduced_shape, sum
from symdiff.ops.structure import (
    broadcast_to,
    expand_dims,
    lift,
    matrix_transpose,
    reshape,
    squeeze,
    transpose,
    tril,
    triu,
)

ArrayLike = Any
mT = matrix_transpose  # noqa: N816 (numpy's spelling, x.mT)


def _sympy_linalg(fn, keep_matrix: bool = True):
    """An op on 2-D numpy object arrays of sympy expressions, through sympy.Matrix."""

    def run(a, *rest):
        if np.ndim(a) > 2:  # a stack: one matrix at a time, stacks broadcast as numpy does
            vector = rest and np.ndim(rest[0]) == 1
            stack = np.broadcast_shapes(a.shape[:-2], *(r.shape[:-2] for r in rest if not vector))
            parts = {}
            for i in np.ndindex(stack):
                pick = [np.broadcast_to(a, stack + a.shape[-2:])[i]]
                pick += [r if vector else np.broadcast_to(r, stack + r.shape[-2:])[i] for r in rest]
                parts[i] = np.asarray(run(*pick), dtype=object)
            first = next(iter(parts.values()))
            out = np.empty(stack + first.shape, dtype=object)
            for i, part in parts.items():
                out[i + (Ellipsis,)] = part  # element-wise: a 0-d part is not stored as an array
            return out
        res = fn(sympy.Matrix(a), *(sympy.Matrix(r) for r in rest))
        if not keep_matrix:
            return np.array(res, dtype=object)
        arr = np.array(res.tolist(), dtype=object)
        return arr.reshape(-1) if rest and np.ndim(rest[0]) == 1 else arr

    return run


def _dims_agree(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _numpy_linalg(name: str, shape: Callable[..., Shape], **declaration: Any) -> Op:
    """An op that is ``numpy.linalg``'s function ``name`` (solve, inv, det): linear algebra on
    stacks of matrices, in float. The rest as for ``define_op``."""
    return define_op(name, numpy=f"linalg.{name}", shape=shape, kind="linalg", **declaration)


# -- matmul ----------------------------------------------------------------------------
def _matmul_shape(x: Shape, y: Shape) -> Shape:
    if not x or not y:
        raise ShapeError("matmul does not take scalars (0-d); use multiply")
    xm = x if len(x) > 1 else (1,) + tuple(x)
    ym = y if len(y) > 1 else tuple(y) + (1,)
    if not _dims_agree(xm[-1], ym[-2]):
        raise ShapeError(f"inner dimensions {xm[-1]} and {ym[-2]} do not match")
    stack = broadcast_shapes(xm[:-2], ym[:-2])
    return stack + (xm[-2],) * (len(x) > 1) + (ym[-1],) * (len(y) > 1)


def _matmul_vjp_x(g, out, x, y):
    if g.ndim == out.ndim and y.ndim <= 2:  # the textbook forms, when g carries no batch axes
        if y.ndim == 1:
            return multiply(expand_dims(g, -1), y) if x.ndim > 1 else multiply(g, y)
        return matmul(g, mT(y))
    r = matmul(_relift(g, x, y), mT(_as_column(y, y.ndim == 1)))
    return squeeze(r, -2) if x.ndim == 1 else r


def _matmul_vjp_y(g, out, x, y):
    if g.ndim == out.ndim and x.ndim <= 2:
        if x.ndim == 1:
            return multiply(expand_dims(x, -1), expand_dims(g, -2)) if y.ndim > 1 else multiply(x, g)
        return matmul(mT(x), g)
    r = matmul(mT(_as_row(x, x.ndim == 1)), _relift(g, x, y))
    return squeeze(r, -1) if y.ndim == 1 else r


def _matmul_jvp_x(t, out, x, y):
    t = _lift_stack(t, x, _stack_ndim(out, x, y) + min(x.ndim, 2))
    return _unlift(matmul(_as_row(t, x.ndim == 1), _as_column(y, y.ndim == 1)), x, y)


def _matmul_jvp_y(t, out, x, y):
    t = _lift_stack(t, y, _stack_ndim(out, x, y) + min(y.ndim, 2))
    return _unlift(matmul(_as_row(x, x.ndim == 1), _as_column(t, y.ndim == 1)), x, y)


def _stack_ndim(out: Node, x: Node, y: Node) -> int:
    """How many stack (broadcast) axes ``x @ y`` has in front of its matrix axes."""
    return out.ndim - (x.ndim > 1) - (y.ndim > 1)


def _lift_stack(t: Node, x: Node, ndim: int) -> Node:
    """A batched tangent of x with axes of length 1 inserted after its batch axes, so that it
    has ``ndim`` axes beyond them: its batch axes then stay in front of the product's stack
    axes instead of broadcasting against the other operand's (seed count != stack size)."""
    return lift(t, ndim, t.ndim - x.ndim)


def _as_row(v: Node, vector: bool) -> Node:
    """numpy's promotion of a 1-D left operand: (k,) -> (1, k) (with any batch axes in front)."""
    return expand_dims(v, -2) if vector else v


def _as_column(v: Node, vector: bool) -> Node:
    """numpy's promotion of a 1-D right operand: (k,) -> (k, 1)."""
    return expand_dims(v, -1) if vector else v


def _unlift(r: Node, x: Node, y: Node) -> Node:
    """Drop the length-1 axes that promoting 1-D operands added to a product."""
    if y.ndim == 1:
        r = squeeze(r, -1)
    if x.ndim == 1:
        r = squeeze(r, -1 if y.ndim == 1 else -2)
    return r


def _relift(g: Node, x: Node, y: Node) -> Node:
    """The inverse of _unlift: a cotangent of x @ y with the promoted axes put back."""
    if x.ndim == 1:
        g = expand_dims(g, -1 if y.ndim == 1 else -2)
    if y.ndim == 1:
        g = expand_dims(g, -1)
    return g


MATMUL = product_op(
    "matmul",
    _matmul_shape,
    vjp=(_matmul_vjp_x, _matmul_vjp_y),
    jvp=(_matmul_jvp_x, _matmul_jvp_y),
    symbol="@",
    precedence=20,  # Python's: @ binds as * and /, left to right (a*B@v is (a*B)@v)
    strict_right=True,
    latex=lambda node, args, wrap: (f"{wrap(0, 20)} {wrap(1, 21)}", 20),
    sympy=np.matmul,
    doc="d(X @ Y) = dX @ Y + X @ dY; gradients G @ Y.T and X.T @ G",
    sparsity="matmul",
)


def matmul(x: ArrayLike, y: ArrayLike) -> Node:
    """Matrix product with numpy's rules (1-D operands promoted, stacks broadcast); also ``x @ y``.

    >>> g = sd.Graph(); X = g.variable("X", shape=(None, 3)); w = g.variable("w", shape=(3,))
    >>> (X @ w).shape
    (None,)
    """
    return apply(MATMUL, *as_nodes("matmul", x, y))


# -- solve --------------------------------------------------------------------------
def _square(shape: Shape, op: str) -> None:
    if len(shape) < 2 or not _dims_agree(shape[-1], shape[-2]):
        raise ShapeError(f"{op} needs square matrices in the last two axes, got {format_shape(shape)}")


def _solve_shape(a: Shape, b: Shape) -> Shape:
    _square(a, "solve")
    if len(b) == 1:
        if not _dims_agree(a[-1], b[0]):
            raise ShapeError(f"a is {format_shape(a)} but b has {b[0]} rows")
        return tuple(a[:-1])
    if len(b) < 2 or not _dims_agree(a[-1], b[-2]):
        raise ShapeError(f"a is {format_shape(a)} but b {format_shape(b)} does not have {a[-1]} rows")
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-1], b[-1])


def _as_columns(v: Node, b: Node) -> Node:
    """A 1-D right-hand side's vectors (with batch axes) as one-column matrices."""
    return expand_dims(v, -1) if b.ndim == 1 else v


def _from_columns(v: Node, b: Node) -> Node:
    return squeeze(v, -1) if b.ndim == 1 else v


def _solve_stack(out: Node, b: Node) -> int:
    """How many stack axes ``solve(a, b)`` has in front of its vector or matrix axes."""
    return out.ndim - (1 if b.ndim == 1 else 2)


def _solve_vjp_b(g, out, a, b):
    return _from_columns(solve(mT(a), _as_columns(g, b)), b)


def _solve_vjp_a(g, out, a, b):
    gb = _as_columns(_solve_vjp_b(g, out, a, b), b)
    return negative(matmul(gb, mT(_as_columns(out, b))))


SOLVE = _numpy_linalg(
    "solve",
    _solve_shape,
    vjp=(_solve_vjp_a, _solve_vjp_b),
    jvp=(
        lambda t, out, a, b: negative(
            _from_columns(solve(a, matmul(_lift_stack(t, a, _solve_stack(out, b) + 2), _as_columns(out, b))), b)
        ),
        lambda t, out, a, b: _from_columns(
            solve(a, _as_columns(_lift_stack(t, b, _solve_stack(out, b) + min(b.ndim, 2)), b)), b
        ),
    ),
    sympy=_sympy_linalg(lambda m, r: m.LUsolve(r)),
    doc="x = a⁻¹ b; gb = solve(a.T, g), ga = -gb x.T",
)


def solve(a: ArrayLike, b: ArrayLike) -> Node:
    """Solve ``a @ x = b`` for x (numpy 2's ``linalg.solve``: b is a vector if 1-D, else matrices).

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2)); b = g.variable("b", shape=(2,))
    >>> print(sd.evaluate(sd.solve(A, b), {A: [[2.0, 0.0], [0.0, 4.0]], b: [2.0, 2.0]}))
    [1.  0.5]
    """
    a, b = as_nodes("solve", a, b)
    a, b = to_float(a), to_float(b)
    return apply(SOLVE, a, b)


# -- inv, det ------------------------------------------------------------------------------
def _square_shape(shape: Shape, op: str) -> Shape:
    _square(shape, op)
    return shape


INV = _numpy_linalg(
    "inv",
    lambda a: _square_shape(a, "inv"),
    vjp=(lambda g, out, a: negative(matmul(mT(out), matmul(g, mT(out)))),),
    jvp=(lambda t, out, a: negative(matmul(out, matmul(t, out))),),
    sympy=_sympy_linalg(lambda m: m.inv()),
    doc="d a⁻¹ = -a⁻¹ da a⁻¹",
)
DET = _numpy_linalg(
    "det",
    lambda a: tuple(_square_shape(a, "det")[:-2]),
    # the cofactors, not det(a)·a⁻¹: the derivative of det exists at every matrix, singular ones too
    vjp=(lambda g, out, a: multiply(expand_dims(g, (-2, -1)), mT(adjugate(a))),),
    jvp=(lambda t, out, a: sum(multiply(mT(adjugate(a)), t), (-2, -1)),),
    sympy=_sympy_linalg(lambda m: m.det(), keep_matrix=False),
    doc="d det a = tr(adj(a) da): the adjugate (cofactors), exact at singular matrices",
)


# -- the adjugate: det's derivative, exact at singular matrices -----------------------------
def _exclusive_products(xp, s):
    """p[..., i] = the product of s[..., k] for k != i, by running products (no division:
    exact where elements of s are 0)."""
    one = xp.ones_like(s[..., :1])
    before = xp.cumprod(xp.concatenate([one, s[..., :-1]], -1), -1)
    after = xp.flip(xp.cumprod(xp.flip(xp.concatenate([s[..., 1:], one], -1), -1), -1), -1)
    return before * after, before, after


def _pair_products(xp, s):
    """q[..., i, j] = the product of s[..., k] for k not in {i, j} (i != j), 0 on the diagonal;
    O(n²) running products, no division."""
    k = np.arange(np.shape(s)[-1])
    run = xp.cumprod(xp.where(k > k[:, None], s[..., None, :], 1.0), -1)  # run[i, j]: k in (i, j]
    inner = xp.concatenate([xp.ones_like(run[..., :1]), run[..., :-1]], -1)  # k in (i, j)
    _, before, after = _exclusive_products(xp, s)  # k < i, k > j
    upper = xp.triu(before[..., :, None] * inner * after[..., None, :], 1)
    return upper + xp.swapaxes(upper, -1, -2)


def _svd(xp, a):
    """u, s, vᵀ of a (nan where a has a nan or inf: LAPACK stops there) and det(u) det(vᵀ) (±1)."""
    finite = xp.all(xp.isfinite(a), axis=(-2, -1))
    u, s, vt = xp.linalg.svd(xp.where(finite[..., None, None], a, 0.0))
    sign = xp.where(finite, xp.sign(xp.linalg.det(u)) * xp.sign(xp.linalg.det(vt)), np.nan)
    return u, s, vt, sign


def _svd_adjugate(xp, a):
    # a = U S Vᵀ: adj(a) = adj(Vᵀ) adj(S) adj(U) = det(U) det(V) · V diag(products of the other s) Uᵀ
    u, s, vt, sign = _svd(xp, a)
    p = _exclusive_products(xp, s)[0]
    return sign[..., None, None] * ((xp.swapaxes(vt, -1, -2) * p[..., None, :]) @ xp.swapaxes(u, -1, -2))


def _adjugate_forward(xp, a):
    if xp is not np:
        return _svd_adjugate(xp, a)
    # numpy: det(a)·a⁻¹ from one LU where a is well-conditioned (its error is about cond(a)·eps),
    # the SVD's form (2-4x the time) for the stack members that are singular or close to it
    try:
        inverse = np.linalg.inv(a)
    except np.linalg.LinAlgError:  # an exactly singular member
        return _svd_adjugate(np, a)
    norm1 = np.max(np.sum(np.abs(a), -2), -1) * np.max(np.sum(np.abs(inverse), -2), -1)
    fast = norm1 < 1e4  # False for nan
    out = np.linalg.det(a)[..., None, None] * inverse
    if not np.all(fast):
        if a.ndim == 2:
            return _svd_adjugate(np, a)
        out[~fast] = _svd_adjugate(np, a[~fast])
    return out


def _adjugate_jvp_forward(xp, a, t):
    # a = U S Vᵀ, a + εt = U (S + εW) Vᵀ with W = Uᵀ t V; for diagonal S,
    # d adj(S)[W] = diag(Q diag(W)) - Q ∘ W with Q[i, j] = the product of s_k, k not in {i, j}
    u, s, vt, sign = _svd(xp, a)
    v, ut = xp.swapaxes(vt, -1, -2), xp.swapaxes(u, -1, -2)
    w = ut @ t @ v
    q = _pair_products(xp, s)
    d = q @ xp.diagonal(w, axis1=-2, axis2=-1)[..., None]  # (..., n, 1)
    inner = xp.eye(np.shape(a)[-1], dtype=w.dtype) * xp.swapaxes(d, -1, -2) - q * w
    return sign[..., None, None] * (v @ inner @ ut)


def _minor_parts(a: Node) -> tuple[Node, Node]:
    """P, (n, n-1, n): P[j] is the identity without row j, so P[j] @ m @ P[i].T is m without row j
    and column i; and the cofactor signs (-1)^(i+j), (n, n). Built from a's size (known or not)."""
    from symdiff.ops.creation import eye_like, ones_like
    from symdiff.ops.indexing import getitem
    from symdiff.ops.products import cumprod

    row = getitem(a, (0,) * (a.ndim - 1))  # (n,)
    eye = eye_like(row)
    below = tril(ones_like(getitem(eye, (slice(None), slice(1, None)))), -1)  # [j, k]: k < j
    p = where(equal(expand_dims(below, -1), 1.0), getitem(eye, slice(None, -1)), getitem(eye, slice(1, None)))
    alternate = cumprod(negative(ones_like(row)))  # (-1)^(j+1)
    return p, multiply(expand_dims(alternate, -1), alternate)


def _minors(m: Node, p: Node) -> Node:
    """(..., n, n) -> (..., n, n, n-1, n-1): [..., j, i] is m without row j and column i."""
    return matmul(matmul(expand_dims(p, -3), expand_dims(m, (-4, -3))), expand_dims(mT(p), -4))


def _unminors(c: Node, p: Node) -> Node:
    """The adjoint of _minors: each [..., j, i] put back in place (row j, column i left out), summed."""
    return sum(matmul(matmul(mT(expand_dims(p, -3)), c), mT(expand_dims(mT(p), -4))), (-4, -3))


def _adjugate_jvp(a: Node, t: Node) -> Node:
    return apply(ADJUGATE_JVP, a, t)


def _adjugate_jvp_jvp_a(f, out, a, e):
    # d adj(a)[e][i, j] = (-1)^(i+j) tr(adj(a_ji) e_ji), with a_ji = a without row j and column i,
    # so d² adj(a)[e, f][i, j] = (-1)^(i+j) tr(d adj(a_ji)[f_ji] e_ji): minors, at every order
    p, sign = _minor_parts(a)
    f = lift(f, out.ndim, f.ndim - a.ndim)  # f's batch axes in front of e's
    k = _adjugate_jvp(_minors(a, p), _minors(f, p))
    return multiply(mT(sum(multiply(k, mT(_minors(e, p))), (-2, -1))), sign)


def _adjugate_jvp_vjp_a(g, out, a, e):
    p, sign = _minor_parts(a)
    k = mT(_adjugate_jvp(_minors(a, p), _minors(e, p)))
    return _unminors(multiply(expand_dims(multiply(mT(g), sign), (-2, -1)), k), p)


def _transposed_adjugate_jvp(g, a):
    # the map e -> d adj(a)[e] has the adjoint g -> d adj(a)[gᵀ]ᵀ
    return mT(_adjugate_jvp(a, mT(g)))


def _adjugate_jvp_shape(a: Shape, t: Shape) -> Shape:
    _square(a, "adjugate")
    _square(t, "adjugate")
    if not _dims_agree(a[-1], t[-1]):
        raise ShapeError(f"the matrices are {format_shape(a[-2:])} and {format_shape(t[-2:])}")
    n = a[-1] if a[-1] is not None else t[-1]
    return broadcast_shapes(a[:-2], t[:-2]) + (n, n)


def _sympy_adjugate_jvp(m: sympy.Matrix, e: sympy.Matrix) -> sympy.Matrix:
    eps = sympy.Dummy("eps")
    return (m + eps * e).adjugate().diff(eps).subs(eps, 0)


ADJUGATE = define_op(
    "adjugate",
    _adjugate_forward,
    lambda a: _square_shape(a, "adjugate"),
    kind="linalg",
    vjp=(lambda g, out, a: _transposed_adjugate_jvp(g, a),),
    jvp=(lambda t, out, a: _adjugate_jvp(a, t),),
    sympy=_sympy_linalg(lambda m: m.adjugate()),
    doc="adj(a) = det(a) a⁻¹ wherever a is invertible, and defined at every a (from an SVD, the "
    "products of the other singular values); d adj = adjugate_jvp",
)
ADJUGATE_JVP = define_op(
    "adjugate_jvp",
    _adjugate_jvp_forward,
    _adjugate_jvp_shape,
    kind="linalg",
    vjp=(_adjugate_jvp_vjp_a, lambda g, out, a, e: _transposed_adjugate_jvp(g, a)),
    jvp=(_adjugate_jvp_jvp_a, lambda t, out, a, e: _adjugate_jvp(a, lift(t, out.ndim, t.ndim - e.ndim))),
    sympy=_sympy_linalg(_sympy_adjugate_jvp),
    doc="d adj(a)[e] from an SVD of a, exact at singular a; its derivative in a is through the "
    "adjugates of a's minors (every order exact)",
)


def adjugate(a: ArrayLike) -> Node:
    """The adjugate of (a stack of) square matrices: ``det(a) * inv(a)`` where a is invertible,
    and its continuous extension (the transposed cofactors) where it is not. ``det``'s
    gradient is ``adjugate(a).T``, so it holds at singular matrices, at every order.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(adjugate(A), {A: [[1.0, 2.0], [2.0, 4.0]]}))
    [[ 4. -2.]
     [-2.  1.]]
    """
    return apply(ADJUGATE, to_float(*as_nodes("adjugate", a)))


def inv(a: ArrayLike) -> Node:
    """Inverse of (a stack of) square matrices. ``d a⁻¹ = -a⁻¹ da a⁻¹``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.inv(A), {A: [[2.0, 0.0], [0.0, 4.0]]}))
    [[0.5  0.  ]
     [0.   0.25]]
    """
    return apply(INV, to_float(*as_nodes("inv", a)))


def det(a: ArrayLike) -> Node:
    """Determinant of (a stack of) square matrices. ``d det a = tr(adj(a) da)``: the gradient is the
    transposed adjugate (the cofactors), exact at singular matrices too, at every order.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.grad(sd.det(A), A), {A: [[2.0, 0.0], [0.0, 4.0]]}))
    [[4. 0.]
     [0. 2.]]
    """
    return apply(DET, to_float(*as_nodes("det", a)))


# -- cholesky --------------------------------------------------------------------------
def _cholesky_forward(xp, a):
    # Factor the symmetric part, as JAX does: a function of every entry of a, so the
    # gradient (symmetric) is the true derivative and finite differences agree.
    return xp.linalg.cholesky(0.5 * (a + xp.swapaxes(a, -1, -2)))


def _phi(x: Node) -> Node:
    """The lower triangle with the diagonal halved."""
    return multiply(0.5, add(tril(x), tril(x, -1)))


def _cholesky_vjp(g, out, a):
    # Murray (2016): abar = L⁻ᵀ Φ(Lᵀ Lbar) L⁻¹, symmetrised.
    p = _phi(matmul(mT(out), g))
    z = solve(mT(out), p)
    s = mT(solve(mT(out), mT(z)))
    return multiply(0.5, add(s, mT(s)))


def _cholesky_jvp(t, out, a):
    # dL = L Φ(L⁻¹ sym(da) L⁻ᵀ)
    sym = multiply(0.5, add(t, mT(t)))
    m = mT(solve(out, mT(solve(out, sym))))
    return matmul(out, _phi(m))


CHOLESKY = define_op(
    "cholesky",
    _cholesky_forward,
    lambda a: _square_shape(a, "cholesky"),
    kind="linalg",
    vjp=(_cholesky_vjp,),
    jvp=(_cholesky_jvp,),
    sympy=_sympy_linalg(lambda m: ((m + m.T) / 2).cholesky(hermitian=False)),
    doc="lower L with L Lᵀ = (a + aᵀ)/2; abar = L⁻ᵀ Φ(Lᵀ Lbar) L⁻¹ (symmetrised)",
)


def cholesky(a: ArrayLike) -> Node:
    """Lower Cholesky factor L of a symmetric positive-definite matrix (``L @ L.T == a``).

    The factor is of the symmetric part ``(a + a.T) / 2``, so the derivative is the
    true one for every entry of ``a`` (JAX does the same).

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.cholesky(A), {A: [[4.0, 2.0], [2.0, 2.0]]}))
    [[2. 0.]
     [1. 1.]]
    """
    return apply(CHOLESKY, to_float(*as_nodes("cholesky", a)))


# -- tensordot --------------------------------------------------------------------------
def _tensordot_shape(a: Shape, b: Shape, axes: tuple[tuple[int, ...], tuple[int, ...]]) -> Shape:
    ia, ib = axes
    for p, q in zip(ia, ib):
        if not _dims_agree(a[p], b[q]):
            raise ShapeError(f"axis {p} of {format_shape(a)} and axis {q} of {format_shape(b)} differ in size")
    return tuple(d for k, d in enumerate(a) if k not in ia) + tuple(d for k, d in enumerate(b) if k not in ib)


def _td(a: Node, b: Node, ia: Any, ib: Any) -> Node:
    return apply(TENSORDOT, a, b, axes=(tuple(ia), tuple(ib)))


def _tensordot_vjp_a(g, out, a, b, axes):
    ia, ib = axes
    nb = g.ndim - out.ndim
    free_a = [k for k in range(a.ndim) if k not in ia]
    free_b = [k for k in range(b.ndim) if k not in ib]
    r = _td(g, b, [nb + len(free_a) + j for j in range(len(free_b))], free_b)
    # r: batch, a's free axes, then b's contracted axes in b's order (each paired with an axis of a)
    layout = free_a + [ia[ib.index(q)] for q in sorted(ib)]
    return transpose(r, tuple(range(nb)) + tuple(nb + layout.index(k) for k in range(a.ndim)))


def _tensordot_vjp_b(g, out, a, b, axes):
    ia, ib = axes
    nb = g.ndim - out.ndim
    free_a = [k for k in range(a.ndim) if k not in ia]
    free_b = [k for k in range(b.ndim) if k not in ib]
    r = _td(a, g, free_a, [nb + j for j in range(len(free_a))])
    # r: a's contracted axes in a's order (each paired with an axis of b), then batch, b's free axes
    paired = [ib[ia.index(p)] for p in sorted(ia)]
    pos = {k: (paired.index(k) if k in ib else len(paired) + nb + free_b.index(k)) for k in range(b.ndim)}
    return transpose(r, tuple(len(paired) + j for j in range(nb)) + tuple(pos[k] for k in range(b.ndim)))


def _tensordot_jvp_b(t, out, a, b, axes):
    ia, ib = axes
    nb = t.ndim - b.ndim
    n_free_a = a.ndim - len(ia)
    r = _td(a, t, ia, [nb + q for q in ib])  # a's free axes, batch, b's free axes
    rest = r.ndim - n_free_a - nb
    perm = [n_free_a + j for j in range(nb)] + list(range(n_free_a)) + [n_free_a + nb + j for j in range(rest)]
    return transpose(r, tuple(perm))


def _lower_tensordot(a: Node, b: Node, axes: tuple[tuple[int, ...], tuple[int, ...]]) -> Node:
    """The einsum that names each paired axis of b as its axis of a (_lower_einsum: a matmul of
    the operands with their axes grouped, as numpy's tensordot)."""
    ia, ib = axes
    letters = [chr(0x100 + k) for k in range(a.ndim + b.ndim)]  # any distinct names
    ta = letters[: a.ndim]
    tb = [ta[ia[ib.index(q)]] if q in ib else letters[a.ndim + q] for q in range(b.ndim)]
    out = [c for k, c in enumerate(ta) if k not in ia] + [c for q, c in enumerate(tb) if q not in ib]
    return _lower_einsum(a, b, terms=("".join(ta), "".join(tb)), out="".join(out))


TENSORDOT = product_op(
    "tensordot",
    _tensordot_shape,
    vjp=(_tensordot_vjp_a, _tensordot_vjp_b),
    jvp=(
        lambda t, out, a, b, axes: _td(t, b, [t.ndim - a.ndim + p for p in axes[0]], axes[1]),
        _tensordot_jvp_b,
    ),
    sympy=lambda a, b, axes: np.tensordot(a, b, axes),
    lower=_lower_tensordot,
    doc="sum of products over paired axes; each gradient is a tensordot of g with the other operand",
)


def tensordot(a: ArrayLike, b: ArrayLike, axes: Any = 2) -> Node:
    """Sum of products over paired axes, as ``numpy.tensordot`` (``axes``: a count N, the last N
    axes of a with the first N of b, or a pair of axis lists).

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 3, 4)); B = g.variable("B", shape=(4, 3))
    >>> sd.tensordot(A, B, axes=([1, 2], [1, 0])).shape
    (2,)
    """
    a, b = as_nodes("tensordot", a, b)
    if isinstance(axes, (int, np.integer)):
        if not 0 <= axes <= min(a.ndim, b.ndim):
            raise ShapeError(
                f"tensordot: cannot contract {axes} axes of {format_shape(a.shape)} and {format_shape(b.shape)}"
            )
        ia, ib = list(range(a.ndim - axes, a.ndim)), list(range(axes))
    else:
        try:
            ia, ib = ([x] if isinstance(x, (int, np.integer)) else list(x) for x in axes)
        except (TypeError, ValueError):
            raise ShapeError(f"tensordot: axes {axes!r} is not a count or a pair of axis lists") from None
        if len(ia) != len(ib):
            raise ShapeError(f"tensordot: axes {axes!r} pair {len(ia)} axes of a with {len(ib)} of b")
    # the axes checked (in range, none repeated) as the other axis-taking ops check them
    ia = [k % a.ndim for k in op_axes_ordered("tensordot", a, ia)]
    ib = [k % b.ndim for k in op_axes_ordered("tensordot", b, ib)]
    return _td(a, b, ia, ib)


# -- log-determinants -------------------------------------------------------------------
def _logdet_forward(xp, a):
    sign, logabs = xp.linalg.slogdet(a)
    # log det for a positive determinant; -inf at 0 and nan below, as log(det(a)) would give
    edge = xp.where(sign == 0, -np.inf, np.nan).astype(logabs.dtype)  # float32 stays float32
    return xp.where(sign > 0, logabs, edge)


_LOGDET_RULES = {
    "vjp": (lambda g, out, a: multiply(expand_dims(g, (-2, -1)), mT(inv(a))),),
    "jvp": (lambda t, out, a: sum(multiply(mT(inv(a)), t), (-2, -1)),),
}


def _lower_logdet(a: Node) -> Node:
    """slogdet's log |det a| where its sign is positive, -inf where it is 0, nan elsewhere (as the forward)."""
    from symdiff.ops.logic import greater

    sign, logabs = slogdet(a)
    edge = where(equal(sign, 0.0), -np.inf, np.nan)
    return where(greater(sign, 0.0), logabs, astype(edge, logabs.dtype))


LOGDET = define_op(
    "logdet",
    _logdet_forward,
    lambda a: tuple(_square_shape(a, "logdet")[:-2]),
    kind="linalg",
    lower=_lower_logdet,
    **_LOGDET_RULES,
    sympy=_sympy_linalg(lambda m: sympy.log(m.det()), keep_matrix=False),
    doc="log det a (nan for a negative determinant), without overflow; d = tr(a⁻¹ da)",
)


def _slogdet_vjp(gs, outs, a):
    return None if gs[1] is None else _LOGDET_RULES["vjp"][0](gs[1], outs[1], a)


def _slogdet_jvp(t, outs, a):
    return None, _LOGDET_RULES["jvp"][0](t, outs[1], a)


SLOGDET = define_op(
    "slogdet",
    lambda xp, a: tuple(xp.linalg.slogdet(a)),
    lambda a: (tuple(_square_shape(a, "slogdet")[:-2]),) * 2,
    dtype=lambda a: (float_dtype(a),) * 2,
    kind="linalg",
    outputs=("sign", "logabsdet"),
    vjp=(_slogdet_vjp,),
    jvp=(_slogdet_jvp,),
    sympy=lambda a: tuple(
        _sympy_linalg(f, keep_matrix=False)(a)
        for f in (lambda m: sympy.sign(m.det()), lambda m: sympy.log(sympy.Abs(m.det())))
    ),
    doc="(sign det a, log |det a|) from one LU factorisation; d sign = 0, d log|det a| = tr(a⁻¹ da)",
)


def logdet(a: ArrayLike) -> Node:
    """``log(det(a))`` for (a stack of) matrices with positive determinant, without overflow
    (nan for a negative determinant, -inf for a singular matrix). ``d = tr(a⁻¹ da)``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.grad(sd.logdet(A), A))
    inv(A).T
    """
    return apply(LOGDET, to_float(*as_nodes("logdet", a)))


def slogdet(a: ArrayLike) -> tuple[Node, Node]:
    """``(sign, log|det a|)``, as ``numpy.linalg.slogdet``; the sign has derivative 0.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> sign, logabs = sd.slogdet(A)
    >>> print(sd.evaluate([sign, logabs], {A: [[0.0, 2.0], [3.0, 0.0]]}))
    [np.float64(-1.0), np.float64(1.791759469228055)]
    """
    (a,) = as_nodes("slogdet", a)
    return apply(SLOGDET, to_float(a))


# -- eigh -------------------------------------------------------------------------------
def _symmetric(xp, a):
    return 0.5 * (a + xp.swapaxes(a, -1, -2))


def _eigh(xp, a):
    # LAPACK stops at a nan or inf ("did not converge"); such a matrix gives nan, as det and solve do
    s = _symmetric(xp, a)
    finite = xp.isfinite(s)
    w, v = xp.linalg.eigh(xp.where(finite, s, 0.0))
    bad = ~xp.all(finite, axis=(-2, -1))
    return xp.where(bad[..., None], np.nan, w), xp.where(bad[..., None, None], np.nan, v)


def _sym(t: Node) -> Node:
    return multiply(0.5, add(t, mT(t)))


def eigh_gaps_and_ties(xp, w):
    """F[i, j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it; and where two eigenvalues are
    equal to rounding (there F is undefined)."""
    d = w[..., None, :] - w[..., :, None]  # d[i, j] = w[j] - w[i]
    n = np.shape(w)[-1]
    off = ~np.eye(n, dtype=bool)
    scale = xp.max(xp.abs(w), axis=-1, keepdims=True)[..., None] if n else 0.0
    tie = off & (xp.abs(d) <= 8 * n * np.finfo(w.dtype).eps * scale)
    return xp.where(off, 1.0 / xp.where(off, d, 1.0), 0.0), tie


def _gaps_forward(xp, w):
    gaps, tie = eigh_gaps_and_ties(xp, w)
    if np.any(tie):
        i, j = (int(k) for k in np.argwhere(tie)[0][-2:])
        raise SymdiffError(
            f"eigh: the eigenvector derivative is undefined at a repeated eigenvalue (eigenvalues {i} and {j} "
            f"are equal to rounding: {float(np.asarray(w)[..., i].flat[0]):.17g}); the eigenvalues alone differentiate"
        )
    return gaps


def _gaps_vjp(g, out, w):
    h = multiply(g, multiply(out, out))  # dF_ij = -F_ij² (dw_j - dw_i)
    return sub(sum(h, -1), sum(h, -2))


def _gaps_jvp(t, out, w):
    return negative(multiply(multiply(out, out), sub(expand_dims(t, -2), expand_dims(t, -1))))


EIGH_GAPS = define_op(
    "eigh_gaps",
    _gaps_forward,
    lambda w: tuple(w) + (w[-1],),
    kind="linalg",
    vjp=(_gaps_vjp,),
    jvp=(_gaps_jvp,),
    unsupported={"sympy": "a check of numbers (repeated eigenvalues), not a formula"},
    fold=False,
    doc="F[i, j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it; raises SymdiffError at a repeated eigenvalue",
)


def _eigh_vjp(gs, outs, a):
    gw, gv = gs
    w, v = outs
    parts = []
    if gw is not None:  # dw = diag(Vᵀ da V): defined everywhere, repeated eigenvalues too
        parts.append(matmul(multiply(v, expand_dims(gw, -2)), mT(v)))
    if gv is not None:  # dV = V (F ∘ (Vᵀ da V)), F = eigh_gaps(w)
        f = apply(EIGH_GAPS, w)
        parts.append(_sym(matmul(v, matmul(multiply(f, matmul(mT(v), gv)), mT(v)))))
    return parts[0] if len(parts) == 1 else add(*parts)


def _eigh_jvp(t, outs, a):
    w, v = outs
    dw = sum(multiply(v, matmul(_sym(t), v)), -2)  # diag(Vᵀ sym(t) V)
    return dw, matmul(v, multiply(apply(EIGH_GAPS, w), matmul(mT(v), matmul(_sym(t), v))))


EIGH = define_op(
    "eigh",
    _eigh,
    lambda a: (tuple(_square_shape(a, "eigh")[:-1]), tuple(_square_shape(a, "eigh"))),
    dtype=lambda a: (float_dtype(a),) * 2,
    kind="linalg",
    outputs=("eigenvalues", "eigenvectors"),
    vjp=(_eigh_vjp,),
    jvp=(_eigh_jvp,),
    unsupported={"sympy": "sympy's eigen decomposition has no numpy order or sign convention"},
    doc="eigenvalues (ascending) and eigenvectors of (a + aᵀ)/2, one LAPACK call; dw = diag(Vᵀ da V), defined "
    "everywhere; dV = V (F ∘ (Vᵀ da V)), F = eigh_gaps(w): undefined at repeated eigenvalues",
)


def eigh(a: ArrayLike) -> tuple[Node, Node]:
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices, as
    ``numpy.linalg.eigh``: ``(w, v)``.

    The decomposition is of the symmetric part ``(a + a.T) / 2``, so derivatives are true
    for every entry of a. A cost of the eigenvalues alone differentiates everywhere; the
    eigenvectors' derivative divides by eigenvalue gaps, and evaluating it where two
    eigenvalues are equal raises SymdiffError (never a silent nan or inf).

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> w, v = sd.eigh(A)
    >>> print(sd.evaluate(sd.grad(w[1], A), {A: [[2.0, 0.0], [0.0, 3.0]]}))
    [[0. 0.]
     [0. 1.]]
    """
    (a,) = as_nodes("eigh", a)
    return apply(EIGH, to_float(a))


# -- triangular and Cholesky solves ---------------------------------------------------------
def _stacked(fn, a, b):
    """``fn(a, b)`` for matrices a (n, n) and b (n, k), over numpy-broadcast stacks of them."""
    batch = np.broadcast_shapes(np.shape(a)[:-2], np.shape(b)[:-2])
    if not batch:
        return fn(a, b)
    a = np.broadcast_to(a, batch + np.shape(a)[-2:])
    b = np.broadcast_to(b, batch + np.shape(b)[-2:])
    parts = [fn(a[i], b[i]) for i in np.ndindex(batch)]
    return np.stack(parts).reshape(batch + parts[0].shape)


def _column_solve(fn):
    """A solver of a x = b for matrices b, also taking a vector b (numpy's convention)."""

    def solve_(a, b, **attrs):
        def one(m, r):
            return fn(m, r, **attrs)

        if np.ndim(b) == 1:
            return _stacked(one, a, b[:, None])[..., 0]
        return _stacked(one, a, b)

    return solve_


def _sympy_triangle(m: sympy.Matrix, lower: bool, unit: bool) -> sympy.Matrix:
    def entry(i, j):
        if i == j and unit:
            return 1
        return m[i, j] if (i >= j if lower else i <= j) else 0

    return sympy.Matrix(m.rows, m.cols, entry)


def _triangle(x: Node, lower: bool, unit: bool) -> Node:
    k = -1 if unit else 0
    return tril(x, k) if lower else triu(x, -k)


def _solve_triangular_forward(a, b, lower, trans, unit):
    import scipy.linalg

    return _column_solve(scipy.linalg.solve_triangular)(
        a,
        b,
        lower=lower,
        trans=int(trans),
        unit_diagonal=unit,
        check_finite=False,  # nan and inf propagate, as numpy's
    )


def _st(a: Node, b: Node, lower: bool, trans: bool, unit: bool) -> Node:
    return apply(SOLVE_TRIANGULAR, a, b, lower=lower, trans=trans, unit=unit)


def _st_vjp_b(g, out, a, b, lower, trans, unit):
    return _from_columns(_st(a, _as_columns(g, b), lower, not trans, unit), b)


def _st_vjp_a(g, out, a, b, lower, trans, unit):
    gb = _as_columns(_st_vjp_b(g, out, a, b, lower, trans, unit), b)
    x = _as_columns(out, b)
    outer = matmul(x, mT(gb)) if trans else matmul(gb, mT(x))
    return negative(_triangle(outer, lower, unit))


def _st_jvp_a(t, out, a, b, lower, trans, unit):
    dt = _triangle(_lift_stack(t, a, _solve_stack(out, b) + 2), lower, unit)
    rhs = matmul(mT(dt) if trans else dt, _as_columns(out, b))
    return negative(_from_columns(_st(a, rhs, lower, trans, unit), b))


def _st_jvp_b(t, out, a, b, lower, trans, unit):
    t = _as_columns(_lift_stack(t, b, _solve_stack(out, b) + min(b.ndim, 2)), b)
    return _from_columns(_st(a, t, lower, trans, unit), b)


SOLVE_TRIANGULAR = define_op(
    "solve_triangular",
    _solve_triangular_forward,
    lambda a, b, lower, trans, unit: _solve_shape(a, b),
    kind="linalg",
    vjp=(_st_vjp_a, _st_vjp_b),
    jvp=(_st_jvp_a, _st_jvp_b),
    sympy=lambda a, b, lower, trans, unit: _sympy_linalg(
        lambda m, r: (_sympy_triangle(m, lower, unit).T if trans else _sympy_triangle(m, lower, unit)).LUsolve(r)
    )(a, b),
    unsupported={"array_module": "scipy.linalg's triangular solver (numpy has none)"},
    doc="x with T x = b (Tᵀ x = b with trans), T a triangle of a; gb = solve with Tᵀ, ga = -tri(gb xᵀ)",
)


def solve_triangular(
    a: ArrayLike, b: ArrayLike, trans: int | str = 0, lower: bool = False, unit_diagonal: bool = False
) -> Node:
    """Solve ``T x = b`` where T is the lower or upper triangle of a, as
    ``scipy.linalg.solve_triangular`` (``trans=1`` or ``"T"``: ``T.T x = b``; only the triangle
    is read, and its diagonal taken as ones with ``unit_diagonal``). b is a vector if 1-D.

    >>> g = sd.Graph(); L = g.variable("L", shape=(2, 2)); b = g.variable("b", shape=(2,))
    >>> print(sd.evaluate(sd.solve_triangular(L, b, lower=True), {L: [[2.0, 0.0], [1.0, 1.0]], b: [2.0, 3.0]}))
    [1. 2.]
    """
    a, b = as_nodes("solve_triangular", a, b)
    if trans not in (0, 1, "N", "T"):
        raise ValueError(f"solve_triangular: trans must be 0, 1, 'N' or 'T', got {trans!r}")
    return _st(to_float(a), to_float(b), bool(lower), trans in (1, "T"), bool(unit_diagonal))


def _cho_solve_forward(c, b, lower):
    import scipy.linalg

    return _column_solve(lambda m, r: scipy.linalg.cho_solve((m, lower), r, check_finite=False))(c, b)


def _sympy_gram(t: sympy.Matrix, lower: bool) -> sympy.Matrix:
    return t * t.T if lower else t.T * t


def _cs(c: Node, b: Node, lower: bool) -> Node:
    return apply(CHO_SOLVE, c, b, lower=lower)


def _cs_vjp_b(g, out, c, b, lower):
    return _from_columns(_cs(c, _as_columns(g, b), lower), b)


def _cs_vjp_c(g, out, c, b, lower):
    # A = L Lᵀ (or Uᵀ U): abar = -gb xᵀ; Lbar = (abar + abarᵀ) L, Ubar = U (abar + abarᵀ), on the triangle
    gb = _as_columns(_cs_vjp_b(g, out, c, b, lower), b)
    x = _as_columns(out, b)
    both = negative(add(matmul(gb, mT(x)), matmul(x, mT(gb))))
    t = _triangle(c, lower, False)
    return _triangle(matmul(both, t) if lower else matmul(t, both), lower, False)


def _cs_jvp_c(t, out, c, b, lower):
    dt = _triangle(_lift_stack(t, c, _solve_stack(out, b) + 2), lower, False)
    f = _triangle(c, lower, False)
    da = add(matmul(dt, mT(f)), matmul(f, mT(dt))) if lower else add(matmul(mT(dt), f), matmul(mT(f), dt))
    return negative(_from_columns(_cs(c, matmul(da, _as_columns(out, b)), lower), b))


def _cs_jvp_b(t, out, c, b, lower):
    t = _as_columns(_lift_stack(t, b, _solve_stack(out, b) + min(b.ndim, 2)), b)
    return _from_columns(_cs(c, t, lower), b)


def _lower_cho_solve(c: Node, b: Node, lower: bool) -> Node:
    """Two triangular solves, as LAPACK's potrs: L (Lᵀ x) = b, or Uᵀ (U x) = b."""
    return _st(c, _st(c, b, lower, not lower, False), lower, lower, False)


CHO_SOLVE = define_op(
    "cho_solve",
    _cho_solve_forward,
    lambda c, b, lower: _solve_shape(c, b),
    kind="linalg",
    vjp=(_cs_vjp_c, _cs_vjp_b),
    jvp=(_cs_jvp_c, _cs_jvp_b),
    sympy=lambda c, b, lower: _sympy_linalg(
        lambda m, r: _sympy_gram(_sympy_triangle(m, lower, False), lower).LUsolve(r)
    )(c, b),
    unsupported={"array_module": "scipy.linalg's Cholesky solver (numpy has none)"},
    lower=_lower_cho_solve,
    doc="x with (L Lᵀ) x = b, L the triangle of c; gb = cho_solve(c, g), Lbar = -(gb xᵀ + x gbᵀ) L on the triangle",
)


def cho_solve(c_and_lower: tuple[ArrayLike, bool], b: ArrayLike) -> Node:
    """Solve ``A x = b`` given the Cholesky factor of A, as ``scipy.linalg.cho_solve((c, lower), b)``:
    A = L Lᵀ with L the lower triangle of c (``lower=True``), or Uᵀ U with U its upper triangle.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2)); b = g.variable("b", shape=(2,))
    >>> x = sd.cho_solve((sd.cholesky(A), True), b)
    >>> print(sd.evaluate(x, {A: [[4.0, 2.0], [2.0, 2.0]], b: [2.0, 1.0]}))
    [0.5 0. ]
    """
    try:
        c, lower = c_and_lower
    except (TypeError, ValueError):
        raise ValueError("cho_solve: the first argument is the pair (c, lower), as scipy's") from None
    c, b = as_nodes("cho_solve", c, b)
    return _cs(to_float(c), to_float(b), bool(lower))


# -- expm -------------------------------------------------------------------------------
def _expm_forward(a):
    import scipy.linalg

    return scipy.linalg.expm(a)


def _frechet(a: Node, e: Node) -> Node:
    """The Fréchet derivative of expm at a in direction e: the top-right block of
    expm([[a, e], [0, a]]) (exact to rounding, and a graph: it differentiates again)."""
    from symdiff.ops.creation import zeros_like
    from symdiff.ops.join import _part, concatenate
    from symdiff.ops.structure import broadcast_like

    a = broadcast_like(a, e)  # e may carry batch axes
    block = concatenate([concatenate([a, e], -1), concatenate([zeros_like(a), a], -1)], -2)
    top = _part(apply(EXPM, block), (a, a), 0, -2)
    return _part(top, (a, e), 1, -1)


EXPM = define_op(
    "expm",
    _expm_forward,
    lambda a: _square_shape(a, "expm"),
    kind="linalg",
    vjp=(lambda g, out, a: _frechet(mT(a), g),),
    jvp=(lambda t, out, a: _frechet(a, t),),
    unsupported={
        "array_module": "scipy.linalg.expm (numpy has none)",
        "sympy": "sympy's exponential of a matrix of symbols needs its eigenvalues in closed form",
    },
    doc="matrix exponential; d = the top-right block of expm([[a, da], [0, a]]) (abar: the same with aᵀ and g)",
)


def expm(a: ArrayLike) -> Node:
    """Matrix exponential of (a stack of) square matrices, as ``scipy.linalg.expm``.

    Derivatives use the block-triangular form of the Fréchet derivative, exact to rounding.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.expm(A), {A: [[0.0, 1.0], [0.0, 0.0]]}))
    [[1. 1.]
     [0. 1.]]
    """
    return apply(EXPM, to_float(*as_nodes("expm", a)))


# -- norm -------------------------------------------------------------------------------
def _norm_share(out, x, axis, keepdims):
    # x / |x|, and 0 where |x| = 0: the subgradient of minimum norm (no nan)
    safe = where(equal(out, 0), 1.0, out)
    return divide(x, _keep(safe, axis, keepdims))


def _lower_norm(x: Node, axis: tuple[int, ...], keepdims: bool) -> Node:
    """sqrt(sum(x * x)), as the op's forward (and numpy's norm for real x) computes it."""
    from symdiff.ops.functions import sqrt

    return sqrt(sum(multiply(x, x), axis, keepdims))


NORM = define_op(
    "norm",
    lambda xp, x, axis, keepdims: xp.sqrt(xp.sum(x * x, axis=axis, keepdims=keepdims)),
    lambda shape, axis, keepdims: _reduced_shape(shape, axis=axis, keepdims=keepdims),
    kind="reduction",
    vjp=(lambda g, out, x, axis, keepdims: multiply(_keep(g, axis, keepdims), _norm_share(out, x, axis, keepdims)),),
    jvp=(lambda t, out, x, axis, keepdims: sum(multiply(t, _norm_share(out, x, axis, keepdims)), axis, keepdims),),
    lower=_lower_norm,
    sympy=lambda x, axis, keepdims: np.vectorize(sympy.sqrt, otypes=[object])(
        np.sum(x * x, axis=axis, keepdims=keepdims)
    ),
    doc="sqrt(sum x²) over axis (vector 2-norm, Frobenius norm); d = sum(x dx) / out, 0 at x = 0",
)


def _tall_shape(h: Shape, ref: Shape) -> Shape:
    rows, cols = ref[-2:]
    if rows is None or cols is None:
        return tuple(h[:-2]) + (None, None)
    return tuple(h[:-2]) + (tuple(h[-2:]) if rows >= cols else (h[-1], h[-2]))


def _lower_tall(h: Node, ref: Node) -> Node:
    """h or its matrix transpose, chosen by ref's shape; which one is not known before evaluation
    where ref has an unknown size, and the two have different shapes."""
    rows, cols = ref.shape[-2:]
    if rows is None or cols is None:
        raise ShapeError(
            f"tall: whether to transpose depends on the sizes of {format_shape(ref.shape)}, known only at evaluation"
        )
    return mT(h) if cols > rows else h


TALL = define_op(
    "tall",
    lambda xp, h, ref: h if np.shape(ref)[-2] >= np.shape(ref)[-1] else xp.swapaxes(h, -1, -2),
    _tall_shape,
    kind="structural",
    dtype=lambda h, ref: h,
    transpose=(lambda ct, h, ref: apply(TALL, ct, ref), None),
    sparsity="dense",
    lower=_lower_tall,
    doc="h, transposed where ref (h's shape, known at evaluation) has more columns than rows; its own adjoint",
)


def _tall(x: Node, like: Node | None = None) -> Node:
    """x, or its matrix transpose where ``like`` (x itself by default) has more columns than rows:
    the Gram matrix tallᵀ tall is then the smaller one, min(rows, cols) square."""
    ref = x if like is None else like
    rows, cols = ref.shape[-2:]
    if rows is None or cols is None:
        return apply(TALL, x, ref)
    return mT(x) if cols > rows else x


def _singular_values_forward(xp, x):
    finite = xp.all(xp.isfinite(x), axis=(-2, -1))
    s = xp.flip(xp.linalg.svd(xp.where(finite[..., None, None], x, 0.0), compute_uv=False), -1)
    return xp.where(finite[..., None], s, np.nan)


def _singular_values_shape(x: Shape) -> Shape:
    if len(x) < 2:
        raise ShapeError(f"singular values need matrices in the last two axes, got {format_shape(x)}")
    rows, cols = x[-2:]
    return tuple(x[:-2]) + (None if rows is None or cols is None else min(rows, cols),)


def _gram_parts(x: Node, out: Node) -> tuple[Node, Node, Node]:
    """x made tall (t), the eigenvectors V of tᵀ t (ascending, as out), and 1/s, with 0 for a
    singular value that is 0 to rounding (at most max(m, n)·eps·s_max, numpy's matrix_rank):
    ds_i = (t v_i)ᵀ dt v_i / s_i, where t v_i is rounding noise for such an s_i, so it contributes
    0 (the subgradient of least norm) rather than noise divided by noise, or nan."""
    from symdiff.ops.logic import less_equal
    from symdiff.ops.reduce import max as max_

    t = _tall(x)
    size = max((d for d in x.shape[-2:] if d is not None), default=1)
    tiny = less_equal(out, multiply(max_(out, -1, keepdims=True), float(size * np.finfo(out.dtype).eps)))
    inverse = where(tiny, 0.0, divide(1.0, where(tiny, 1.0, out)))
    return t, eigh(matmul(mT(t), t))[1], inverse


def _singular_values_vjp(g, out, x):
    t, v, inverse = _gram_parts(x, out)
    return _tall(matmul(t, matmul(multiply(v, expand_dims(multiply(g, inverse), -2)), mT(v))), x)


def _singular_values_jvp(tx, out, x):
    t, v, inverse = _gram_parts(x, out)
    return multiply(sum(multiply(matmul(t, v), matmul(_tall(tx, x), v)), -2), inverse)


SINGULAR_VALUES = define_op(
    "singular_values",
    _singular_values_forward,
    _singular_values_shape,
    kind="linalg",
    vjp=(_singular_values_vjp,),
    jvp=(_singular_values_jvp,),
    unsupported={"sympy": "singular values of symbols are roots of a polynomial, in no numpy order"},
    doc="singular values (ascending) of (stacks of) m x n matrices, min(m, n) of them, from an SVD; "
    "ds_i = u_iᵀ dx v_i through the eigenvectors of the smaller Gram matrix (distinct values)",
)


def _singular_values(x: Node, axes: tuple[int, int]) -> Node:
    """Singular values over ``axes`` (rows, cols), ascending."""
    n = x.ndim
    rest = tuple(k for k in range(n) if k - n not in axes)
    return apply(SINGULAR_VALUES, transpose(x, rest + tuple(a + n for a in axes)))


def norm(x: ArrayLike, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A002
    """Vector and matrix norms, as ``numpy.linalg.norm``.

    Vectors: ``ord`` None/2 (Euclidean), 1, inf, -inf, 0 (count of non-zeros), or any p.
    Matrices (a 2-D input or two axes): None/"fro", "nuc", 1, -1, inf, -inf, 2, -2. The
    Euclidean and Frobenius norms have derivative ``x / norm`` and 0 at x = 0 (a
    subgradient, no nan); "nuc", 2 and -2 use singular values (an SVD; derivatives through the
    smaller Gram matrix, x xᵀ or xᵀ x, so wide and tall matrices alike) and differentiate
    where those are distinct (a zero singular value contributes 0, a subgradient).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.grad(sd.norm(w), w), {w: [3.0, 4.0]}))
    [0.6 0.8]
    """
    from symdiff.ops.functions import abs as abs_
    from symdiff.ops.logic import not_equal
    from symdiff.ops.reduce import max as max_
    from symdiff.ops.reduce import min as min_

    (x,) = as_nodes("norm", x)
    x = to_float(x)
    if axis is None:
        if ord is None:
            return apply(NORM, x, axis=tuple(range(-x.ndim, 0)), keepdims=bool(keepdims))
        if x.ndim not in (1, 2):
            raise ShapeError(
                f"norm: ord={ord!r} needs a 1-D or 2-D input or an axis; got shape {format_shape(x.shape)}"
            )
        axes = tuple(range(-x.ndim, 0))
    else:
        axes = op_axes_ordered("norm", x, axis)
    k = bool(keepdims)
    if len(axes) == 1:
        if ord is None or ord == 2:
            return apply(NORM, x, axis=axes, keepdims=k)
        if ord == np.inf:
            return max_(abs_(x), axes, keepdims=k)
        if ord == -np.inf:
            return min_(abs_(x), axes, keepdims=k)
        if ord == 1:
            return sum(abs_(x), axes, k)
        if ord == 0:
            return sum(astype(not_equal(x, 0), x.dtype), axes, k)
        if isinstance(ord, (int, float, np.number)) and not isinstance(ord, bool):
            return sum(abs_(x) ** float(ord), axes, k) ** (1.0 / float(ord))
        raise ValueError(f"norm: ord {ord!r} is not a vector norm (None, 2, 1, inf, -inf, 0 or a number)")
    if len(axes) != 2:
        raise ShapeError(f"norm: axis {axis!r} names {len(axes)} axes; a norm is over 1 (vector) or 2 (matrix)")
    rows, cols = axes
    if ord is None or ord == "fro":
        return apply(NORM, x, axis=tuple(sorted(axes)), keepdims=k)
    if ord in (1, -1, np.inf, -np.inf):
        summed, other = (rows, cols) if ord in (1, -1) else (cols, rows)
        line = sum(abs_(x), summed, True)
        pick = max_ if ord > 0 else min_
        out = pick(line, other, keepdims=True)
        return out if k else squeeze(out, tuple(sorted(axes)))
    if ord in ("nuc", 2, -2):
        s = _singular_values(x, (rows, cols))
        out = sum(s, -1) if ord == "nuc" else max_(s, -1) if ord == 2 else min_(s, -1)
        return expand_dims(out, tuple(sorted(axes))) if k else out
    raise ValueError(f"norm: ord {ord!r} is not a matrix norm (None, 'fro', 'nuc', 1, -1, inf, -inf, 2, -2)")


def op_axes_ordered(op: str, x: Node, axis: Any) -> tuple[int, ...]:
    """Axes as given (order kept: a matrix norm's rows axis comes first), negative, checked."""
    given = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in given:
        if not isinstance(a, (int, np.integer)) or not -x.ndim <= a < x.ndim:
            raise ShapeError(f"{op}: axis {a!r} is out of range for shape {format_shape(x.shape)}")
        out.append(int(a) % x.ndim - x.ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: axis {axis!r} repeats an axis")
    return tuple(out)


# -- diagonals, trace, outer, eye -------------------------------------------------------------
def _diagonal_shape(shape: Shape, offset: int, axis1: int, axis2: int) -> Shape:
    n = len(shape)
    d1, d2 = shape[axis1], shape[axis2]
    rest = tuple(d for k, d in enumerate(shape) if k - n not in (axis1, axis2))
    size = None if d1 is None or d2 is None else max(0, min(d1 + min(offset, 0), d2 - max(offset, 0)))
    return rest + (size,)


def _undiagonal_forward(xp, g, ref, offset, axis1, axis2):
    nb = np.ndim(g) - (np.ndim(ref) - 1)
    shape = tuple(np.shape(g)[:nb]) + tuple(np.shape(ref))
    a1, a2 = axis1 % len(shape), axis2 % len(shape)
    rest = tuple(d for k, d in enumerate(shape) if k not in (a1, a2))
    out = xp.zeros(rest + (shape[a1], shape[a2]), dtype=g.dtype)
    k = np.shape(g)[-1]
    rows, cols = np.arange(k) + max(-offset, 0), np.arange(k) + max(offset, 0)
    return xp.moveaxis(index_set(xp, out, (..., rows, cols), g), (-2, -1), (a1, a2))


def _undiagonal(g: Node, x: Node, offset: int, axis1: int, axis2: int) -> Node:
    return apply(UNDIAGONAL, g, x, offset=offset, axis1=axis1, axis2=axis2)


def _plane_last(x: Node, axis1: int, axis2: int) -> tuple[Node, tuple[int, ...]]:
    """x with its (axis1, axis2) plane as its last two axes, the others in order; and the permutation."""
    n = x.ndim
    perm = tuple(k for k in range(n) if k - n not in (axis1, axis2)) + (axis1 % n, axis2 % n)
    return transpose(x, perm), perm


def _flat_plane(y: Node, lead: Shape = ()) -> Node | None:
    """y's last two axes (a plane) as one, the plane's elements row by row; None where the plane's
    sizes are unknown or a reshape (of y, or of y with ``lead`` axes in front) would need more
    than one unknown size of the others."""
    from symdiff.ops.join import _batched_reshape

    rows, cols = y.shape[-2:]
    if rows is None or cols is None or (*lead, *y.shape[:-2]).count(None) > 1:
        return None
    return _batched_reshape("diagonal", y, y.ndim - 2, [rows * cols])


def _diagonal_slice(rows: int, cols: int, offset: int) -> slice:
    """The offset diagonal of a rows x cols plane laid out flat, row by row: every (cols + 1)-th element."""
    r0, c0 = max(-offset, 0), max(offset, 0)
    m = max(0, min(rows - r0, cols - c0))
    start = r0 * cols + c0
    return slice(start, start + (m - 1) * (cols + 1) + 1, cols + 1) if m else slice(0, 0)


def _diagonal_mask(y: Node, offset: int) -> tuple[Node, Node, Any]:
    """For the plane of y's last two axes, of sizes known or not: where the offset diagonal lies
    (rows, cols booleans); for each row, its element's place along the diagonal (the diagonal's
    length m for a row without one); and the diagonal's places in the rows, a slice or an integer node."""
    from symdiff.ops.functions import maximum, minimum
    from symdiff.ops.indexing import arange
    from symdiff.ops.logic import less
    from symdiff.ops.reduce import count

    r0, c0 = max(-offset, 0), max(offset, 0)
    rows, cols = y.shape[-2:]
    if rows is not None and cols is not None:
        m = max(0, min(rows - r0, cols - c0))
        i, j = np.arange(rows), np.arange(cols)
        place = np.where((i >= r0) & (i < r0 + m), i - r0, m)
        mask = y.graph.constant(j[None, :] - i[:, None] == offset)
        return mask, y.graph.constant(place), slice(r0, r0 + m)
    # each size and its indices: a number and a constant where known, else nodes
    rows, cols = (astype(count(y, a), np.int64) if d is None else d for a, d in zip((-2, -1), y.shape[-2:]))
    i, j = (arange(d) if isinstance(d, Node) else y.graph.constant(np.arange(d)) for d in (rows, cols))
    m = maximum(minimum(rows - r0, cols - c0), 0)
    k = sub(i, r0)
    mask = equal(sub(expand_dims(j, 0), expand_dims(i, 1)), offset)
    return mask, where(less(k, 0), m, minimum(k, m)), add(arange(m), r0)


def _lower_diagonal(x: Node, offset: int, axis1: int, axis2: int) -> Node:
    """A strided slice of the plane's elements laid out flat; where the sizes do not allow that,
    each row's diagonal element (a select summed over the row), for the rows that have one."""
    from symdiff.ops.indexing import getitem

    y, _ = _plane_last(x, axis1, axis2)
    flat = _flat_plane(y)
    if flat is not None:
        return getitem(flat, (Ellipsis, _diagonal_slice(*y.shape[-2:], offset)))
    mask, _, rows = _diagonal_mask(y, offset)
    zero = y.graph.constant(np.zeros((), y.dtype))
    return getitem(_total(where(mask, y, zero), (-1,)), (Ellipsis, rows))


def _lower_undiagonal(g: Node, ref: Node, offset: int, axis1: int, axis2: int) -> Node:
    """g scattered into a strided slice of zeros laid out as _lower_diagonal reads (where the sizes do
    not allow that, a select of g's element for each row, 0 past its end), then the plane put back."""
    from symdiff.ops.indexing import _make_index, getitem, unindex
    from symdiff.ops.join import _batched_reshape, pad

    nb = g.ndim - (ref.ndim - 1)
    y, perm = _plane_last(ref, axis1, axis2)
    flat = _flat_plane(y, g.shape[:nb])
    if flat is not None:
        index = _make_index((Ellipsis, _diagonal_slice(*y.shape[-2:], offset)), flat.shape)
        scattered = unindex(g, flat, index)
        out = _batched_reshape("undiagonal", scattered, scattered.ndim - 1, y.shape[-2:])
    else:
        mask, place, _ = _diagonal_mask(y, offset)
        per_row = getitem(pad(g, ((0, 0),) * (g.ndim - 1) + ((0, 1),)), (Ellipsis, place))
        out = where(mask, expand_dims(per_row, -1), g.graph.constant(np.zeros((), g.dtype)))
    return transpose(out, tuple(range(nb)) + tuple(nb + k for k in np.argsort(perm)))


DIAGONAL = define_op(
    "diagonal",
    lambda xp, x, offset, axis1, axis2: xp.diagonal(x, offset, axis1, axis2),
    _diagonal_shape,
    numpy="diagonal",
    kind="structural",
    dtype=lambda x, **_: x,
    transpose=lambda ct, x, offset, axis1, axis2: _undiagonal(ct, x, offset, axis1, axis2),
    lower=_lower_diagonal,
    doc="the (offset) diagonal of the axis1, axis2 planes, as a last axis; the gradient is g on that diagonal",
)
UNDIAGONAL = define_op(
    "undiagonal",
    _undiagonal_forward,
    lambda g, ref, offset, axis1, axis2: tuple(g[: len(g) - (len(ref) - 1)]) + tuple(ref),
    kind="structural",
    dtype=lambda g, r, **_: g,
    transpose=(
        lambda ct, h, ref, offset, axis1, axis2: apply(DIAGONAL, ct, offset=offset, axis1=axis1, axis2=axis2),
        None,
    ),
    lower=_lower_undiagonal,
    doc="zeros shaped like ref with g on the (offset) diagonal (the transpose of diagonal)",
)


def diagonal(a: ArrayLike, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Node:
    """The diagonal of ``a`` (of its axis1, axis2 planes, as a new last axis), as ``numpy.diagonal``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 3))
    >>> print(sd.evaluate(sd.diagonal(A, 1), {A: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}))
    [2. 6.]
    """
    (a,) = as_nodes("diagonal", a)
    if a.ndim < 2:
        raise ShapeError(f"diagonal: needs at least 2 dimensions, got shape {format_shape(a.shape)}")
    axes = op_axes_ordered("diagonal", a, (axis1, axis2))
    return apply(DIAGONAL, a, offset=int(offset), axis1=axes[0], axis2=axes[1])


def trace(a: ArrayLike, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Node:
    """Sum of the (offset) diagonal, as ``numpy.trace``; ``d tr(a) = tr(da)``, the gradient is the identity.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.simplify(sd.grad(sd.trace(A @ A), A)))
    2*A.T
    """
    return sum(diagonal(a, offset, axis1, axis2), -1)


def _diag_forward(xp, v, k):
    n = np.shape(v)[-1] + abs(k)
    widths = ((0, 0),) * (np.ndim(v) - 1) + (((0, k) if k >= 0 else (-k, 0)),)
    # a select, as numpy's diag (a product by the identity would put inf * 0 = nan off the diagonal)
    on = xp.eye(n, k=k, dtype=bool)
    return xp.where(on, xp.pad(v, widths)[..., :, None], xp.zeros((), dtype=v.dtype))


def _lower_diag(v: Node, k: int) -> Node:
    """The undiagonal of v (_lower_undiagonal) in a square of zeros n + |k| wide (for a length known
    only at evaluation, a broadcast of v padded by |k|: only its shape is read)."""
    from symdiff.ops.join import pad
    from symdiff.ops.structure import broadcast_like

    n = v.shape[-1]
    if n is not None:
        ref = broadcast_to(v.graph.constant(np.zeros((), v.dtype)), (n + abs(k),) * 2)
    else:
        t = pad(v, ((0, 0),) * (v.ndim - 1) + ((0, abs(k)),))
        ref = broadcast_like(expand_dims(t, -1), expand_dims(t, -2))
    return _lower_undiagonal(v, ref, k, -2, -1)


DIAG = define_op(
    "diag",
    _diag_forward,
    lambda shape, k: tuple(shape[:-1]) + ((None, None) if shape[-1] is None else (shape[-1] + abs(k),) * 2),
    kind="structural",
    dtype=lambda v, k: v,
    transpose=lambda ct, v, k: apply(DIAGONAL, ct, offset=k, axis1=-2, axis2=-1),
    lower=_lower_diag,
    doc="the matrix with v on its k-th diagonal; the gradient is g's k-th diagonal",
)


def diag(v: ArrayLike, k: int = 0) -> Node:
    """As ``numpy.diag``: a vector's diagonal matrix, or a matrix's k-th diagonal.

    >>> g = sd.Graph(); v = g.variable("v", shape=(2,))
    >>> print(sd.evaluate(sd.diag(v), {v: [1.0, 2.0]}))
    [[1. 0.]
     [0. 2.]]
    """
    (v,) = as_nodes("diag", v)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ShapeError(f"diag: takes a vector or a matrix, got shape {format_shape(v.shape)}")
    return apply(DIAG, v, k=int(k))


OUTER = product_op(
    "outer",
    lambda a, b: (a[0], b[0]),
    vjp=(lambda g, out, a, b: matmul(g, b), lambda g, out, a, b: matmul(a, g)),
    jvp=(
        lambda t, out, a, b: multiply(expand_dims(t, -1), b),
        lambda t, out, a, b: multiply(expand_dims(a, -1), expand_dims(t, -2)),
    ),
    sympy=lambda a, b: np.multiply.outer(a, b),
    lower=lambda a, b: multiply(expand_dims(a, -1), b),
    doc="a bᵀ; d = da bᵀ + a dbᵀ; gradients g b and aᵀ g",
)


def outer(a: ArrayLike, b: ArrayLike) -> Node:
    """Outer product of the flattened inputs, as ``numpy.outer``.

    >>> g = sd.Graph(); a = g.variable("a", shape=(2,))
    >>> print(sd.evaluate(sd.outer(a, a), {a: [1.0, 2.0]}))
    [[1. 2.]
     [2. 4.]]
    """
    a, b = as_nodes("outer", a, b)
    a, b = (x if x.ndim == 1 else reshape(x, (-1,)) for x in (a, b))
    return apply(OUTER, a, b)


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = float, *, like: Node | None = None) -> Any:  # noqa: N803
    """The identity, as ``numpy.eye``: numpy's array, or with ``like=node`` a constant node of its
    graph. Products with it fold away as graphs are built (``eye(n) @ A`` is A).

    >>> g = sd.Graph(); A = g.variable("A", shape=(3, 3))
    >>> print(sd.eye(3, like=A) @ A)
    A
    """
    value = np.eye(N, M, k, dtype=dtype)
    if like is None:
        return value
    (like,) = as_nodes("eye", like)
    return like.graph.constant(value)


# -- einsum -----------------------------------------------------------------------------
def _einsum_spec(spec: str, ndims: list[int]) -> tuple[list[str], str]:
    """numpy's subscripts, checked: one letter per axis, an explicit or implied output."""
    spec = spec.replace(" ", "")
    if "." in spec:
        raise ShapeError(f"einsum: {spec!r}: ellipses are not supported; name every axis")
    lhs, arrow, out = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ShapeError(f"einsum: {spec!r} names {len(terms)} operand(s), got {len(ndims)}")
    for t, nd in zip(terms, ndims):
        if len(t) != nd or not (t.isalpha() or not t):  # "" names a 0-d operand
            raise ShapeError(f"einsum: {spec!r}: subscripts {t!r} do not fit an operand with {nd} axes")
        if len(set(t)) != len(t):
            raise ShapeError(f"einsum: {spec!r}: a repeated index within one operand ({t!r}); use sd.diagonal")
    letters = "".join(terms)
    if not arrow:
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(set(out)) != len(out) or any(c not in letters for c in out):
        raise ShapeError(f"einsum: {spec!r}: the output {out!r} repeats an index or names one no operand has")
    return terms, out


def _einsum_shape(*shapes: Shape, terms: tuple[str, ...], out: str) -> Shape:
    size: dict[str, int | None] = {}
    for t, s in zip(terms, shapes):
        for c, d in zip(t, s[len(s) - len(t) :]):
            if size.get(c) is not None and d is not None and d != size[c] and 1 not in (d, size[c]):
                raise ShapeError(f"index {c!r} has sizes {size[c]} and {d}")
            size[c] = d if size.get(c) in (None, 1) else size[c]
    lead = [s[: len(s) - len(t)] for t, s in zip(terms, shapes)]  # batch axes of a derivative
    return broadcast_shapes(*lead) + tuple(size[c] for c in out)


def _einsum_forward(xp, *arrays, terms, out):
    batch = any(np.ndim(a) > len(t) for a, t in zip(arrays, terms))
    spec = ",".join(("..." if batch else "") + t for t in terms) + "->" + ("..." if batch else "") + out
    return xp.einsum(spec, *arrays)


def _einsum(arrays: Any, terms: Any, out: str) -> Node:
    return apply(EINSUM, *arrays, terms=tuple(terms), out=out)


def _einsum_vjp(i: int):
    def rule(g, out_node, *xs, terms, out):
        from symdiff.ops.structure import broadcast_like

        mine = terms[i]
        others = [(t, x) for k, (t, x) in enumerate(zip(terms, xs)) if k != i]
        reach = set(out).union(*(set(t) for t, _ in others))
        kept = "".join(c for c in mine if c in reach)  # an index only x_i has was summed: broadcast back
        r = _einsum([g, *(x for _, x in others)], [out, *(t for t, _ in others)], kept)
        missing = [k for k, c in enumerate(mine) if c not in reach]
        if missing:
            r = broadcast_like(expand_dims(r, tuple(k - len(mine) for k in missing)), xs[i])
        return r

    return rule


def _einsum_jvp(i: int):
    def rule(t, out_node, *xs, terms, out):
        return _einsum([t if k == i else x for k, x in enumerate(xs)], terms, out)

    return rule


def _total(x: Node, axes: tuple[int, ...]) -> Node:
    """The sum over axes in x's own dtype, as numpy's einsum adds: for booleans their "or" (a sum
    would count); integers wrap as in x's dtype (summed in int64 and cast back: the same bits,
    as sums modulo 2**bits agree)."""
    from symdiff.ops.reduce import max as max_

    return max_(x, axes) if x.dtype == bool else astype(sum(x, axes), x.dtype)


def _sum_letters(x: Node, letters: str, needed: set[str]) -> tuple[Node, str]:
    """x (its named axes last) summed over the axes whose letters are not ``needed``."""
    gone = [k - len(letters) for k, c in enumerate(letters) if c not in needed]
    if not gone:
        return x, letters
    return _total(x, tuple(gone)), "".join(c for c in letters if c in needed)


def _aligned(x: Node, letters: str, order: str) -> Node:
    """x's named axes transposed into ``order``, with axes of length 1 for the letters x lacks (batch axes in front)."""
    nb = x.ndim - len(letters)
    x = transpose(x, tuple(range(nb)) + tuple(nb + letters.index(c) for c in order if c in letters))
    missing = tuple(k - len(order) for k, c in enumerate(order) if c not in letters)
    return expand_dims(x, missing) if missing else x


def _size(dims: list[int | None]) -> int | None:
    return None if None in dims else int(np.prod(dims, dtype=np.int64))


def _regroups(lead: Shape, groups: list[list[int | None]]) -> bool:
    """Whether axes ``lead`` followed by the groups' axes can be reshaped to one axis per group and
    back: with no unknown size, or one. (No reshape where no group has two axes: _merged and
    _split insert or drop the empty groups' axes.)"""
    merged = [*lead, *(_size(g) for g in groups)]
    apart = [*lead, *(d for g in groups for d in g)]
    return all(len(g) <= 1 for g in groups) or (merged.count(None) <= 1 and apart.count(None) <= 1)


def _merged(x: Node, groups: list[list[int | None]]) -> Node:
    """x, whose last axes are the groups' axes in order, with each group as one axis (an empty group: length 1)."""
    from symdiff.ops.join import _batched_reshape

    if any(len(g) > 1 for g in groups):
        return _batched_reshape("einsum", x, x.ndim - len([d for g in groups for d in g]), [_size(g) for g in groups])
    empty = tuple(k - len(groups) for k, g in enumerate(groups) if not g)
    return expand_dims(x, empty) if empty else x


def _split(x: Node, groups: list[list[int | None]]) -> Node:
    """The inverse of _merged: x's last axes, one per group, as the groups' axes."""
    from symdiff.ops.join import _batched_reshape

    if any(len(g) > 1 for g in groups):
        return _batched_reshape("einsum", x, x.ndim - len(groups), [d for g in groups for d in g])
    empty = tuple(k - len(groups) for k, g in enumerate(groups) if not g)
    return squeeze(x, empty) if empty else x


def _contracted(x: Node, tx: str, y: Node, ty: str, keep: set[str]) -> tuple[Node, str]:
    """The einsum of two operands (named axes last, batch axes in front) over the letters not in
    ``keep``: a matmul of the operands with their axes grouped (batch, free, summed), as numpy's
    tensordot, where there is a sum and the groups' sizes allow it; else broadcast products,
    summed. The result's letters: the shared kept ones, then x's others, then y's."""
    x, tx = _sum_letters(x, tx, keep | set(ty))
    y, ty = _sum_letters(y, ty, keep | set(tx))
    shared = [c for c in tx if c in ty]
    both, summed = [c for c in shared if c in keep], [c for c in shared if c not in keep]
    fx, fy = [c for c in tx if c not in ty], [c for c in ty if c not in tx]
    sizes_x, sizes_y = dict(zip(tx, x.shape[x.ndim - len(tx) :])), dict(zip(ty, y.shape[y.ndim - len(ty) :]))
    lead_x, lead_y = x.ndim - len(tx) + len(both), y.ndim - len(ty) + len(both)
    groups_x = [[sizes_x[c] for c in fx], [sizes_x[c] for c in summed]]
    groups_y = [[sizes_y[c] for c in summed], [sizes_y[c] for c in fy]]
    stack = broadcast_shapes(x.shape[:lead_x], y.shape[:lead_y]) if summed else ()
    if (
        summed
        and all(sizes_x[c] == sizes_y[c] for c in summed)  # no length-1 axis broadcast against a sum
        and np.result_type(x.dtype, y.dtype).kind == "f"
        and _regroups(x.shape[:lead_x], groups_x)
        and _regroups(y.shape[:lead_y], groups_y)
        and _regroups(stack, [groups_x[0], groups_y[1]])
    ):
        xm = _merged(_aligned(x, tx, "".join(both + fx + summed)), groups_x)
        ym = _merged(_aligned(y, ty, "".join(both + summed + fy)), groups_y)
        return _split(matmul(xm, ym), [groups_x[0], groups_y[1]]), "".join(both + fx + fy)
    order = "".join(both + fx + fy + summed)
    r = multiply(_aligned(x, tx, order), _aligned(y, ty, order))
    return (_total(r, tuple(range(-len(summed), 0))) if summed else r), "".join(both + fx + fy)


def _lower_einsum(*arrays: Node, terms: tuple[str, ...], out: str) -> Node:
    """The operands contracted two at a time, left to right (_contracted), each letter summed as soon
    as no later operand and not the output names it; then the output's letters put in order. The
    operands are first cast to their common dtype, as numpy's einsum computes (int8 with bool: int8)."""
    common = np.result_type(*(a.dtype for a in arrays))
    arrays = tuple(astype(a, common) for a in arrays)
    x, tx = arrays[0], terms[0]
    for k in range(1, len(arrays)):
        x, tx = _contracted(x, tx, arrays[k], terms[k], set(out).union(*terms[k + 1 :]))
    x, tx = _sum_letters(x, tx, set(out))
    nb = x.ndim - len(tx)
    return transpose(x, tuple(range(nb)) + tuple(nb + tx.index(c) for c in out))


EINSUM = define_op(
    "einsum",
    _einsum_forward,
    _einsum_shape,
    kind="linalg",
    dtype=lambda *dts, terms, out: np.result_type(*dts),
    vjp=_einsum_vjp,
    jvp=_einsum_jvp,
    text=lambda node, args, wrap: (
        f'einsum("{",".join(node.attrs["terms"])}->{node.attrs["out"]}", ' + ", ".join(a[0] for a in args) + ")",
        100,
    ),
    sympy=lambda *arrays, terms, out: np.einsum(",".join(terms) + "->" + out, *arrays),
    lower=_lower_einsum,
    doc="sum of products over named indices; each operand's gradient is an einsum of g with the others",
)


def einsum(subscripts: str, *operands: ArrayLike) -> Node:
    """Sums of products over named axes, as ``numpy.einsum`` (``"ij,jk->ik"``; without an arrow,
    the output is the indices named once, in order). Each axis has its own letter in an operand
    (for a diagonal, ``sd.diagonal``); no ellipses.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 3)); B = g.variable("B", shape=(3, 2))
    >>> sd.einsum("ij,jk->ik", A, B).shape
    (2, 2)
    """
    if not isinstance(subscripts, str):
        raise ShapeError(f"einsum: the first argument is the subscripts string, got {type(subscripts).__name__}")
    nodes = as_nodes("einsum", *operands)
    terms, out = _einsum_spec(subscripts, [x.ndim for x in nodes])
    return _einsum(nodes, terms, out)
