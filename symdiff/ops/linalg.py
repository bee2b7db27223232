"""Linear algebra: matmul, solve, inv, det, cholesky (numpy semantics, stacks of matrices).

The rules keep matrices in the last two axes and use ``matrix_transpose``, so they
work unchanged on stacked inputs and on batched cotangents.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from symdiff.errors import ShapeError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.arithmetic import add, multiply, negative
from symdiff.ops.core import apply, as_nodes, broadcast_shapes, define_op, to_float
from symdiff.ops.reduce import sum
from symdiff.ops.structure import expand_dims, lift, matrix_transpose, squeeze, tril

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


MATMUL = define_op(
    "matmul",
    numpy="matmul",
    shape=_matmul_shape,
    kind="linalg",
    dtype=lambda x, y: np.result_type(x, y),
    vjp=(_matmul_vjp_x, _matmul_vjp_y),
    jvp=(_matmul_jvp_x, _matmul_jvp_y),
    symbol="@",
    precedence=25,
    strict_right=True,
    latex=lambda node, args, wrap: (f"{wrap(0, 25)} {wrap(1, 26)}", 25),
    sympy=np.matmul,
    doc="d(X @ Y) = dX @ Y + X @ dY; gradients G @ Y.T and X.T @ G",
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


SOLVE = define_op(
    "solve",
    numpy="linalg.solve",
    shape=_solve_shape,
    kind="linalg",
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


INV = define_op(
    "inv",
    numpy="linalg.inv",
    shape=lambda a: _square_shape(a, "inv"),
    kind="linalg",
    vjp=(lambda g, out, a: negative(matmul(mT(out), matmul(g, mT(out)))),),
    jvp=(lambda t, out, a: negative(matmul(out, matmul(t, out))),),
    sympy=_sympy_linalg(lambda m: m.inv()),
    doc="d a⁻¹ = -a⁻¹ da a⁻¹",
)
DET = define_op(
    "det",
    numpy="linalg.det",
    shape=lambda a: tuple(_square_shape(a, "det")[:-2]),
    kind="linalg",
    vjp=(lambda g, out, a: multiply(expand_dims(multiply(g, out), (-2, -1)), mT(inv(a))),),
    jvp=(lambda t, out, a: multiply(out, sum(multiply(mT(inv(a)), t), (-2, -1))),),
    sympy=_sympy_linalg(lambda m: m.det(), keep_matrix=False),
    doc="d det a = det a · tr(a⁻¹ da)",
)


def inv(a: ArrayLike) -> Node:
    """Inverse of (a stack of) square matrices. ``d a⁻¹ = -a⁻¹ da a⁻¹``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.inv(A), {A: [[2.0, 0.0], [0.0, 4.0]]}))
    [[0.5  0.  ]
     [0.   0.25]]
    """
    return apply(INV, to_float(*as_nodes("inv", a)))


def det(a: ArrayLike) -> Node:
    """Determinant of (a stack of) square matrices. ``d det a = det a tr(a⁻¹ da)``.

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
