"""The one rule table: every rewrite symdiff makes, as pattern -> replacement.

Rules marked ``build`` apply to every node as it is built (``x + 0`` is ``x`` before
anything is appended), the last of them constant folding (every input a constant: the
value computed now); the others only when :func:`symdiff.simplify` is asked for
(collecting like terms, merging factors into powers, ``exp(log x)``). Every rule
fires only where it holds for every value the original accepts, up to rounding: a
replacement has the root's shape and dtype (or the rule does not fire), constants
merge only into representable numbers (``ops.core.representable``). The rules that may
turn an inf or nan into a finite value (``x - x -> 0``, ``x/x -> 1``, ``log(exp(x)) -> x``)
are flagged ``extends_domain``;
docs/concepts.md lists exactly these (tests/test_rule_table.py checks it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from symdiff.graph import INTERN_MAX_SIZE, Node
from symdiff.ops import arithmetic as ar
from symdiff.ops.arithmetic import astype, divide, multiply, negative, power, subtract
from symdiff.ops.constants import element_scale, folded_from, identity_form
from symdiff.ops.core import (
    BUILD_REWRITES,
    KINDS,
    REGISTRY,
    Candidate,
    apply,
    attrs_key,
    broadcast_shapes,
    foldable_shape,
    rebuild,
    representable,
)
from symdiff.ops.creation import eye_value
from symdiff.ops.structure import broadcast_to, reshape, transpose
from symdiff.rewrite import Pat, Rule, RuleTable, fill_value, of_kind

x, y, a, b, c, m = (Pat.var(v) for v in "xyabcm")


# -- predicates ------------------------------------------------------------------------
def same_type(node: Node, root: Any) -> bool:
    """``node`` can stand for ``root``: the same shape and dtype."""
    return node.shape == root.shape and node.dtype == root.dtype


def scalar_constant(node: Node) -> float | None:
    """The value of a finite float constant of shape () (it cannot change a shape it multiplies)."""
    if node.op == "constant" and node.shape == () and node.dtype.kind == "f" and np.isfinite(node.value):
        return float(node.value)
    return None


def _is_scalar(node: Node) -> bool:
    return node.op == "constant" and node.shape == ()


def nonzero(node: Node) -> bool:
    """Never 0 (up to underflow): an op with the property, or a nonzero uniform constant."""
    if "nonzero" in REGISTRY.get(node.op, _NO_OP).properties or positive(node):
        return True
    value = node.uniform if node.op == "constant" else None
    return value is not None and value != 0


def positive(node: Node) -> bool:
    """Always > 0 (up to underflow): an op with the property, or a positive uniform constant."""
    if "positive" in REGISTRY.get(node.op, _NO_OP).properties:
        return True
    return node.op == "constant" and node.uniform is not None and node.uniform > 0


class _NoOp:
    properties: frozenset[str] = frozenset()


_NO_OP = _NoOp()


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _neg(p: Pat) -> Pat:
    return Pat("neg", p)


# -- build rules: true for every value, cheap, local -------------------------------------
def foldable(root: Any) -> bool:
    """Whether ``root`` can be computed now: every input a constant, its op not declared
    ``fold=False``, and a result small enough (``ops.core.foldable_shape``)."""
    for u in root.inputs:  # a loop, not all(...): this runs for every node with a constant input
        if u.op != "constant":
            return False
    return REGISTRY[root.op].fold and foldable_shape(root.shape)


def _computed(root: Any) -> Any:
    with np.errstate(all="ignore"):  # inf and nan as numpy gives them when the graph runs
        return REGISTRY[root.op].forward(np, *(i.value for i in root.inputs), **root.attrs)


def _folded(root: Any, value: Any) -> Node:
    """``value`` as a constant of ``root``'s dtype that remembers ``root`` as its origin (so it
    prints as ``log(2)``), unless an equal constant was there already. A 0-d value for a node
    with a shape is its one value repeated: a uniform constant (a broadcast view)."""
    count = len(root.graph._nodes)
    value = np.asarray(value, dtype=root.dtype)
    if value.ndim == 0 and root.shape:
        node = root.graph.uniform_constant(value.item(), root.shape, root.dtype)
    else:
        node = root.graph.constant(value)
    if len(root.graph._nodes) > count:
        node.origin = (root.op, root.inputs)
    return node


def _constant_folding(root: Candidate) -> Node | None:
    """A node whose every input is a constant is computed now (``2*3`` is 6) and its key made an
    alias of the constant, so building it again finds that; the table's last build rule. An
    elementwise op of constants that each repeat one value (a scalar, ``ones(10**6)`` as a
    broadcast) is computed on those values, and its result is such a constant too: ``0.3*seed``
    for a seed of a million ones is one number, not 8 MB that every call then reads."""
    if not foldable(root):
        return None
    one = _repeated_value(root)
    node = _folded(root, _computed(root) if one is None else one)
    return root.graph._alias(root.op, root.inputs, attrs_key(root.attrs), node)


def _repeated_value(root: Any) -> np.ndarray | None:
    """The one value (0-d) of an elementwise node of a large shape whose inputs are scalars or
    uniform constants, computed on their values; else None (small results fold as arrays, and
    broadcast_to, whose forward makes the shape, folds its array)."""
    if not root.shape or REGISTRY[root.op].kind != "elementwise":
        return None
    if int(np.prod(root.shape, dtype=np.int64)) <= INTERN_MAX_SIZE:
        return None
    values = []
    for u in root.inputs:
        if u.shape == ():
            values.append(np.asarray(u.value))
        elif u.uniform is not None:
            values.append(np.asarray(u.uniform, dtype=u.dtype))
        else:
            return None
    with np.errstate(all="ignore"):
        one = np.asarray(REGISTRY[root.op].forward(np, *values, **root.attrs))
    return one if one.ndim == 0 else None


def _scalar_operands(root: Candidate) -> Node | None:
    """A uniform constant operand of an elementwise op as a scalar, where that keeps the shape:
    ``full((99,), 100) * t`` computes the same as ``100 * t`` when t is (99,) already."""
    if len(root.inputs) < 2:
        return None
    out = list(root.inputs)
    for k, n in enumerate(root.inputs):
        if n.op == "constant" and n.shape and n.uniform is not None:
            rest = [m.shape for j, m in enumerate(out) if j != k]  # as replaced so far
            if broadcast_shapes(*rest) == root.shape:
                out[k] = n.graph.constant(np.asarray(n.uniform, dtype=n.dtype))
    if all(u is v for u, v in zip(out, root.inputs)):
        return None
    return apply(REGISTRY[root.op], *out, **root.attrs)


def _keep(root: Any, x: Node) -> Node | None:
    return x if same_type(x, root) else None


def _zero_product(root: Any, zero: Node, x: Node) -> Node | None:
    # 0 * x is 0 even where x is inf or nan: the documented fold (docs/concepts.md)
    if zero.dtype.kind != x.dtype.kind or None in root.shape:
        return None
    return root.graph.uniform_constant(0, root.shape, root.dtype)


def _merges(p: Node, q: Node) -> bool:
    """Whether two scalar constant factors multiply into a representable number (1e308*10 does not)."""
    if p.dtype != q.dtype or p.dtype.kind != "f" or not (np.isfinite(p.value) and np.isfinite(q.value)):
        return False
    return representable(Fraction(float(p.value)) * Fraction(float(q.value)), p.dtype) is not None


def _merge_factors(root: Any, a: Node, b: Node, x: Node) -> Node | None:
    return multiply(multiply(a, b), x) if _merges(a, b) else None  # 2*(3*x) = 6*x


def _times_reciprocal(root: Any, a: Node, one: Node, c: Node) -> Node | None:
    # a*(1/c) = a/c, where 1 changes neither c's shape nor its dtype
    if broadcast_shapes(c.shape, one.shape) == c.shape and np.result_type(c.dtype, one.dtype) == c.dtype:
        return divide(a, c)
    return None


def _negated_product(root: Any) -> Node:
    # (-a)*b = -(a*b): negations collect at the top, where they cancel
    p, q = root.inputs
    product = multiply(p.inputs[0] if p.op == "neg" else p, q.inputs[0] if q.op == "neg" else q)
    return negative(product) if (p.op == "neg") != (q.op == "neg") else product


def _negated_factor(root: Any, a: Node, x: Node) -> Node | None:
    # -(2*x) = -2*x; a constant that prints as where it came from (log(2)) keeps its form
    return multiply(negative(a), x) if folded_from(a) is None else None


def _negated_quotient(root: Any) -> Node:
    p, q = root.inputs
    quotient = divide(p.inputs[0] if p.op == "neg" else p, q.inputs[0] if q.op == "neg" else q)
    return negative(quotient) if (p.op == "neg") != (q.op == "neg") else quotient


def _known_condition(root: Any, c: Node, x: Node, y: Node) -> Node | None:
    known = fill_value(c)
    if known is None:
        return None
    return _keep(root, x if known else y)


def _sum_of_uniform(root: Any, x: Node) -> Node | None:
    # the sum of a broadcast constant is a constant, whatever its size
    if x.uniform is None or None in x.shape:
        return None
    n = int(np.prod([x.shape[k] for k in root.attrs["axis"]], dtype=np.int64))
    return root.graph.uniform_constant(x.uniform * n, root.shape, root.dtype)


def _uniform_broadcast(root: Any, x: Node) -> Node | None:
    if x.shape == root.shape:
        return x
    if x.op == "constant" and x.uniform is not None and None not in root.shape:
        return root.graph.uniform_constant(x.uniform, root.shape, root.dtype)
    return None


def _reshape_reshape(root: Any, x: Node) -> Node:
    return reshape(x.inputs[0], root.attrs["shape_to"])


def _transpose_transpose(root: Any, x: Node) -> Node:
    inner = x.attrs["axes"]
    return transpose(x.inputs[0], tuple(inner[k] for k in root.attrs["axes"]))


def _static_reshape_like(root: Any, x: Node) -> Node | None:
    if None not in root.shape:
        return reshape(x, root.shape)
    return x if x.shape == root.shape else None


def _known_shapes(root: Any, x: Node, ref: Node) -> Node | None:
    # match_shape checks unknown sizes at evaluation; with none left there is nothing to check
    return x if (None not in x.shape and None not in ref.shape) or x is ref else None


def _full_slice(root: Any, x: Node) -> Node | None:
    return x if all(k == ("s", None, None, None) for k in root.attrs["index"].key) else None


def _basic_part(node: Node, source: Node | None, axis: int, kind: str) -> tuple[Node, tuple] | None:
    """(x, the entry at axis) if node is x[..., entry, ...] with every other axis whole."""
    if node.op != "getitem" or len(node.inputs) != 1 or (source is not None and node.inputs[0] is not source):
        return None
    x = node.inputs[0]
    key = node.attrs["index"].key
    at = x.ndim + axis
    if len(key) != x.ndim or not 0 <= at < x.ndim:
        return None
    if any(k != ("s", None, None, None) for i, k in enumerate(key) if i != at) or key[at][0] != kind:
        return None
    return x, key[at]


def _rejoined(root: Any) -> Node | None:
    """concatenate(x[a:b], x[b:c], ...) = x[a:c] and stack([x[0], ..., x[n-1]]) = x, along one axis."""
    from symdiff.ops.indexing import getitem

    parts = root.inputs
    axis = root.attrs["axis"]  # negative; for stack, of the result, whose rank is x's
    kind = "i" if root.op == "stack" else "s"
    first = _basic_part(parts[0], None, axis, kind)
    if first is None:
        return None
    x = first[0]
    if root.op == "stack":
        picked = [_basic_part(p, x, axis, "i") for p in parts]
        n = len(parts)
        if x.shape[axis] != n or any(k is None for k in picked):
            return None
        return x if [k[1][1] % n for k in picked] == list(range(n)) else None
    size = x.shape[axis]
    slices = [_basic_part(p, x, axis, "s") for p in parts]
    if size is None or any(s_ is None for s_ in slices):
        return None
    ranges = [slice(*k[1][1:]).indices(size) for k in slices]
    if any(step != 1 for _, _, step in ranges) or any(a[1] != b[0] for a, b in zip(ranges, ranges[1:])):
        return None
    lo, hi = ranges[0][0], ranges[-1][1]
    if lo == 0 and hi == size:
        return x
    return getitem(x, (Ellipsis, slice(lo, hi)) + (slice(None),) * (-axis - 1))


# -- identities in matrix products ---------------------------------------------------------
# A Jacobian or Hessian seeds its pass with the identity (unit vectors, one per seed); these
# rules fold the products with it at build time, so no identity-sized constant does work:
# the Hessian of x@A@x is built as A + A.T, not as n matrix-vector products with e_i. Which
# constants are identities: symdiff.ops.constants.identity_form (the printers ask it too).
def _as_root(root: Any, node: Node) -> Node | None:
    if node.shape != root.shape:
        return None
    return node if node.dtype == root.dtype else astype(node, root.dtype)


def _evaluates(node: Node, op: str, a: Node, budget: int = 64) -> bool:
    """Whether evaluating ``node`` evaluates ``op(a)`` (searched among its first ``budget`` ancestors)."""
    seen, stack = set(), [node]
    while stack and len(seen) < budget:
        n = stack.pop()
        if n.op == op and n.inputs[0] is a:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(n.inputs)
    return False


def _cancelled_det(root: Any, a: Node, d: Node, y: Node) -> Node | None:
    # det(a)/det(a) * y = y where y evaluates inv(a): inv(a) is undefined exactly where
    # det(a) = 0 (numpy raises "Singular matrix"), so the two agree wherever the original is
    # defined; det's own underflow or overflow (0/0, inf/inf) was the only way to a nan.
    return _as_root(root, y) if _evaluates(y, "inv", a) else None


def _log_det(root: Any, x: Node) -> Node | None:
    # log(det(a)) = logdet(a) for every a (nan below 0, -inf at 0), without det's overflow or
    # underflow; its derivative inv(a).T is where a is known invertible (det's is the adjugate)
    from symdiff.ops.linalg import logdet

    return _as_root(root, logdet(x))


def _diagonal_of(node: Node) -> Node | None:
    """d if node is eye * d (d of shape (n,), (1, n) or (n, 1)): the matrix diag(d)."""
    if node.op != "mul" or node.ndim != 2:
        return None
    for e, d in (node.inputs, node.inputs[::-1]):
        if identity_form(e) == "eye" and d.shape in ((e.shape[0],), (1, e.shape[0]), (e.shape[0], 1)):
            return reshape(d, (e.shape[0],)) if d.ndim == 2 else d
    return None


def _identity_product(root: Any, x: Node, y: Node) -> Node | None:
    from symdiff.ops.structure import expand_dims

    fx, fy = identity_form(x), identity_form(y)
    if fx == "eye" and y.ndim >= 1:
        return _as_root(root, y)  # I @ M = M, I @ v = v
    if fy == "eye" and x.ndim >= 1:
        return _as_root(root, x)
    if fx == "rows" and y.ndim == 2:
        return _as_root(root, expand_dims(y, -2))  # e_i.T @ M: row i of M
    if fy == "cols" and x.ndim == 2:
        return _as_root(root, expand_dims(transpose(x), -1))  # M @ e_i: column i of M
    if fx == "elements" and y.ndim == 2:
        # E[a, b, i, j] = δ_ai δ_bj, so (E @ M)[a, b, i, :] = δ_ai M[b, :]: an outer product, not a matmul
        m = x.shape[0]
        delta = root.graph.constant((element_scale(x) * np.eye(m, dtype=x.dtype)).reshape(m, 1, m, 1))
        return _as_root(root, multiply(delta, expand_dims(y, (0, 2))))
    if y.ndim in (1, 2) and (d := _diagonal_of(x)) is not None:
        return _as_root(root, multiply(expand_dims(d, -1) if y.ndim == 2 else d, y))  # diag(d) @ M
    if x.ndim in (1, 2) and (d := _diagonal_of(y)) is not None:
        return _as_root(root, multiply(x, d))  # M @ diag(d)
    return None


def _matmul(x: Node, y: Node) -> Node:
    from symdiff.ops.linalg import matmul

    return matmul(x, y)


def _factor_out(root: Any, p: Node, n: Node, v: Node) -> Node | None:
    """(P * N) @ V = P * (N @ V) where P is a constant that does not vary along the contracted
    axis (its last axis has length 1, or it is a scalar): the product runs on N alone."""
    from symdiff.ops.linalg import matmul

    if p.op != "constant" or n.ndim < 2 or v.ndim != 2 or (p.ndim >= 1 and p.shape[-1] != 1):
        return None
    return _as_root(root, multiply(p, matmul(n, v)))


def _batched_matvec(root: Any, m: Node, b: Node, e: Node, p: Node) -> Node | None:
    """A batch of matrix-vector products is one matrix product: squeeze(m @ b[..., None], -1) is
    b @ m.T, squeeze(b[..., None, :] @ m, -2) is b @ m (b 2-D: its rows are the batch)."""
    from symdiff.ops.linalg import matmul

    if m.ndim != 2 or b.ndim != 2 or root.attrs["axis"] != e.attrs["axis"]:
        return None
    if root.attrs["axis"] == (-1,) and p.inputs[1] is e:
        return _as_root(root, matmul(b, transpose(m)))
    if root.attrs["axis"] == (-2,) and p.inputs[0] is e:
        return _as_root(root, matmul(b, m))
    return None


def _squeeze_expanded(root: Any, e: Node, x: Node) -> Node | None:
    return x if root.attrs["axis"] == e.attrs["axis"] and same_type(x, root) else None


def _summed_diagonal(root: Any, p: Node) -> Node | None:
    # sum(diag(d), axis) over either axis is d
    d = _diagonal_of(p)
    if d is None or root.attrs["keepdims"] or root.attrs["axis"] not in ((-1,), (-2,)):
        return None
    return _as_root(root, d)


def _row_products(root: Any, p: Node) -> Node | None:
    # sum(M * v, axis=-1) over a matrix's rows is the matrix-vector product M @ v
    from symdiff.ops.linalg import matmul
    from symdiff.ops.structure import expand_dims

    if root.attrs["axis"] != (-1,) or root.dtype.kind != "f":
        return None
    for m, v in (p.inputs, p.inputs[::-1]):
        if m.ndim == 2 and v.ndim == 1 and v.shape[0] is not None and v.shape[0] == m.shape[1]:
            product = matmul(m, v)
            return _as_root(root, expand_dims(product, -1) if root.attrs["keepdims"] else product)
    return None


def _summed_negation(root: Any, x: Node) -> Node | None:
    from symdiff.ops.reduce import sum as sum_

    # sum(-x) = -sum(x) exactly: negations collect at the top, where they cancel
    return _as_root(root, negative(sum_(x, axis=root.attrs["axis"], keepdims=root.attrs["keepdims"])))


def _uniform_diagonal(root: Any, x: Node, ref: Node) -> Node | None:
    # the gradient of a trace: a uniform diagonal on a square matrix is a multiple of the identity
    fill = fill_value(x)
    shape = root.shape
    if fill is None or root.attrs["offset"] != 0 or len(shape) != 2 or shape[0] != shape[1] or shape[0] is None:
        return None
    return root.graph.constant(np.eye(shape[0], dtype=root.dtype) * fill)


# -- indexed gradients: n scalar scatters into one vector are one stack ---------------------------
def _scatter_parts(u: Node) -> tuple[list[Node], list[int]] | None:
    """The parts and positions of a scatter into a vector: unindex(g, ref, [i]), or of a stack
    of parts at listed positions, unindex(stack(parts), ref, [i, j, ...]); None otherwise."""
    if u.op != "unindex" or len(u.inputs) != 2:
        return None
    g, ref = u.inputs
    key = u.attrs["index"].key
    if ref.ndim != 1 or ref.shape[0] is None or len(key) != 1:
        return None
    n = ref.shape[0]
    if key[0][0] == "i":
        return [g], [key[0][1] % n]
    if key[0][0] == "a" and len(key[0][2]) == 1 and g.op == "stack" and g.attrs["axis"] == -1:
        if len(g.inputs) == key[0][2][0]:
            return list(g.inputs), [p % n for p in key[0][1]]
    return None


def _merged_scatters(root: Any, x: Node, y: Node) -> Node | None:
    """The gradient of w[0]*x0 + ... + w[n-1]*x[n-1] is one vector, [g*x0, ..., g*x[n-1]], not n
    full-size scatters summed (O(n) work, not O(n²)); repeated positions add up, as before."""
    from symdiff.ops.indexing import Index, unindex
    from symdiff.ops.join import stack

    a, b = _scatter_parts(x), _scatter_parts(y)
    if a is None or b is None or x.inputs[1] is not y.inputs[1]:
        return None
    parts, positions = a[0] + b[0], a[1] + b[1]
    if len({(p.shape, p.dtype) for p in parts}) != 1:
        return None
    ref = x.inputs[1]
    order = sorted(range(len(parts)), key=positions.__getitem__)  # by position: [g0, g1, ...] reads as w does
    parts, positions = [parts[k] for k in order], [positions[k] for k in order]
    joined = stack(parts, axis=-1)
    if positions == list(range(ref.shape[0])):
        return _as_root(root, joined)
    return _as_root(root, unindex(joined, ref, Index((("a", tuple(positions), (len(positions),)),))))


def _static_fill(fill: float) -> Callable[..., Node | None]:
    def rule(root: Any, x: Node) -> Node | None:
        return None if None in root.shape else root.graph.uniform_constant(fill, root.shape, root.dtype)

    return rule


def _static_count(root: Any, x: Node) -> Node | None:
    dims = [x.shape[k] for k in root.attrs["axis"]]
    if None in dims:
        return None
    return root.graph.constant(np.asarray(np.prod(dims), dtype=root.dtype))


def _static_eye(root: Any, ref: Node) -> Node | None:
    # keyed, not hashed: a 10^4 x 10^4 identity is made once per graph, and saved as "eye"
    n = ref.size
    if n is None:
        return None
    shape, dt = root.shape, root.dtype
    return root.graph._keyed_constant(("eye", n, shape, dt.str), lambda: eye_value(ref.shape, dt))


def _scalar(name: str) -> Pat:
    return Pat.var(name, _is_scalar, ops=("constant",))


def _pat(op: str) -> Pat:
    return Pat(op, x)


# -- simplify rules: sums and products to a normal form, function pairs ------------------
# Coefficients and constants are merged exactly (as fractions) and rounded once, and only
# where the merged number is representable: a merge never overflows.
_INLINED_LEAVES = 8  # a small scalar sum: one that may be multiplied out
_REGION = 32  # nodes: how far the normal form of a scalar sum or product looks for its own shared parts


def _leaves(nodes: tuple[Node, ...], ops: frozenset[str], budget: int) -> list[Node] | None:
    """The leaves under ``nodes`` through the ops ``ops``, each as often as it occurs; None past
    ``budget`` visited nodes (a bounded look: a long sum or product is not searched)."""
    leaves, stack = [], list(nodes)
    while stack:
        n = stack.pop()
        budget -= 1
        if budget < 0:
            return None
        if n.op in ops:
            stack.extend(n.inputs)
        else:
            leaves.append(n)
    return leaves


def _inlined(n: Node, ops: frozenset[str]) -> bool:
    """Whether ``n`` is a small scalar sum (``ops``) of at most _INLINED_LEAVES leaves (a bounded look)."""
    return n.shape == () and n.op in ops and _leaves(n.inputs, ops, _INLINED_LEAVES) is not None


def _small(n: Node) -> bool:
    """A small scalar sum or product (read through wherever it is used, its walk stays short)."""
    return _inlined(n, _SUM_OPS if n.op in _SUM_OPS else _PRODUCT_OPS)


_ARITHMETIC = frozenset({"add", "sub", "neg", "mul", "div", "pow", "sqrt"})


def _reading(root: Node, uses: Callable[[Node], int]) -> Callable[[Node], bool]:
    """Which nodes the normal form at ``root`` keeps whole: those used more than once, except
    small scalar sums and products (``_small``) all of whose uses lie within root's own
    expression (``t1/y - t1`` with t1 = x/y used only there is x/y**2 - x/y), or anywhere when
    root's whole scalar expression is small: reading through them repeats no work, or little,
    and like terms and factors on both sides of them then meet. A bounded look (_REGION nodes),
    taken only when a small shared node is asked about (most sums and products have none)."""
    if root.shape != ():
        return lambda n: uses(n) > 1
    local: set[Node] | None = None

    def shared(n: Node) -> bool:
        nonlocal local
        if uses(n) <= 1:
            return False
        if _power_of_leaf(n):  # x**2 read through repeats one power at most: x**2*x is x**3
            return False
        if not _small(n):  # only small sums and products are ever read through
            return True
        if local is None:
            local = _local(root, uses)
        return n not in local

    return shared


def _power_of_leaf(n: Node) -> bool:
    """A scalar power by a constant (``x**2``, ``sqrt(t)``) of a node that is no product."""
    if n.shape != () or n.op not in ("pow", "sqrt") or n.inputs[0].op in _PRODUCT_OPS:
        return False
    return n.op == "sqrt" or scalar_constant(n.inputs[1]) is not None


def _local(root: Node, uses: Callable[[Node], int]) -> set[Node]:
    """The shared small sums and products that ``_reading`` reads through at ``root``."""
    reach: dict[Node, int] = {}  # how many edges of the region lead to each node
    seen, stack = {root}, [root]
    room = _REGION - 1  # nodes the region may still take before its walk stops
    arithmetic = _ARITHMETIC
    while stack and room > 0:
        for u in stack.pop().inputs:
            if u in reach:  # decided when first reached (a DAG: root is no one's input)
                reach[u] += 1
            else:
                reach[u] = 1
                if u.op in arithmetic and not u.shape:
                    seen.add(u)
                    stack.append(u)
                    room -= 1
    # a whole expression of at most _REGION nodes is read through its small shared parts
    # (a few repeated scalar operations, for a form a person can read); a larger one, only
    # through those it alone uses
    if not stack:
        return {u for u in seen if u is not root and 1 < uses(u) and _small(u)}
    return {u for u, k in reach.items() if k > 1 and u in seen and 1 < uses(u) <= k and _small(u)}


def _coefficient(n: Node) -> tuple[Fraction, Node] | None:
    """A product written coefficient first (``(2*a*b)/c``, as collect_factors builds it) as
    (2, ``a*b/c``): the term two such products share, whatever the coefficient."""
    spine = [n]  # n, its first input, that one's first input, ...: a few (rebuilt without c)
    while spine[-1].op in ("mul", "div") and len(spine) <= _INLINED_LEAVES:
        spine.append(spine[-1].inputs[0])
    c, top = scalar_constant(spine[-1]), spine[-2] if len(spine) > 1 else None
    if c is None or top is None or spine[-1].dtype != n.dtype or (top.op == "div" and c == 1):
        return None
    if top.op == "mul":
        if len(spine) < 3:
            return None  # c*x: read as such by _terms
        rest = top.inputs[1]
    else:
        rest = divide(1.0, top.inputs[1])  # c/x is c * (1/x)
    for above in reversed(spine[:-2]):
        rest = apply(REGISTRY[above.op], rest, above.inputs[1])
    return Fraction(c), rest


def _terms(node: Node, shared: Callable[[Node], bool]) -> tuple[list[tuple[Node, Fraction]], Fraction, int, int]:
    """``node`` as sum(coefficient * term) + constant; also how many terms and constants it had.

    A shared subexpression is a term of its own: expanding it would repeat its work.
    """
    terms: dict[Node, Fraction] = {}
    constant = Fraction(0)
    raw = constants = 0
    stack = [(node, Fraction(1))]
    while stack:
        n, k = stack.pop()
        if n is not node and shared(n) and scalar_constant(n) is None:
            terms[n] = terms.get(n, 0) + k
            raw += 1
        elif n.op == "add":
            stack += [(n.inputs[1], k), (n.inputs[0], k)]
        elif n.op == "sub":
            stack += [(n.inputs[1], -k), (n.inputs[0], k)]
        elif n.op == "neg":
            stack.append((n.inputs[0], -k))
        elif n.op == "mul" and scalar_constant(n.inputs[0]) is not None:
            stack.append((n.inputs[1], k * Fraction(scalar_constant(n.inputs[0]))))
        elif n.op == "mul" and scalar_constant(n.inputs[1]) is not None:
            stack.append((n.inputs[0], k * Fraction(scalar_constant(n.inputs[1]))))
        elif scalar_constant(n) is not None:
            constant += k * Fraction(scalar_constant(n))
            constants += 1
        elif n.op in ("mul", "div") and (split := _coefficient(n)) is not None:
            stack.append((split[1], k * split[0]))
        else:
            terms[n] = terms.get(n, 0) + k
            raw += 1
    return list(terms.items()), constant, raw, constants


def same_as(result: Node, like: Node) -> Node | None:
    """``result`` with ``like``'s shape and dtype, broadcast to it if that is static."""
    if result.dtype != like.dtype:
        result = astype(result, like.dtype)
    if result.shape == like.shape:
        return result
    if None not in like.shape:
        return broadcast_to(result, like.shape)
    return None


def collect_terms(node: Node, ctx: Callable[[Node], int]) -> Node | None:  # ctx: how often a node is used
    """Like terms collected and constants merged: ``cos t + cos t`` -> ``2*cos(t)``. In a
    scalar sum, terms are alike when their factors are (``2*t/y**3 - t/y/y/y`` is ``t/y**3``),
    a product with a small sum in it is multiplied out where that makes like terms meet, and a
    factor every term has is taken out where that saves operations (``x*y + x*z`` is
    ``x*(y + z)``, ``a/t**3 + b/t**4`` is ``(a*t + b)/t**4``)."""
    if node.op == "mul" and _one_term(node, ctx):
        return None
    shared = _reading(node, ctx)
    terms, constant, raw, constants = _terms(node, shared)
    common = None
    if node.shape == () and node.dtype.kind == "f":
        monomials, constant, changed = _polynomial(terms, constant, shared)
        common = _common_factor(monomials, constant)
        if common is not None:
            factor, monomials = common
            # a term that was the factor alone is the inner sum's constant, written last
            constant = sum((k for k, bases, _ in monomials if not bases), Fraction(0))
            monomials = [m for m in monomials if m[1]]
        terms = [(_monomial_node(node, bases, term), k) for k, bases, term in monomials]
        changed = (
            changed
            or raw > len(monomials)
            or common is not None
            or any(t is not u for (t, _), (_, _, u) in zip(terms, monomials))
        )
    else:
        changed = raw > len(terms)
    kept = [(t, k) for t, k in terms if k != 0]
    merged = changed or constants > 1 or len(kept) < len(terms) or (constants and constant == 0)
    leads_negative = len(kept) > 1 and kept[0][1] < 0 and kept[1][1] > 0
    if not merged and not leads_negative:
        return None  # no term combines: the sum stays as it was built
    result = _sum(node, kept, constant, ctx)
    if result is None:
        return None
    if common is not None:
        numerator, denominator = _sides({**factor, result: [1, 0]})
        result = _product(node, _canonical(numerator), denominator, 1)
    if result is node:
        return None
    return same_as(result, node)


def _representable(value: Fraction, dtype: np.dtype) -> float | None:
    """``representable``, at once for the usual coefficients 0, 1 and -1 (exact in every float dtype)."""
    if value in (0, 1, -1):
        return float(value)
    return representable(value, dtype)


def _one_term(node: Node, ctx: Callable[[Node], int]) -> bool:
    """Whether the product ``node`` is, to collect_terms, one term that stays as it is: no
    constant factor of a sum (``2*(3*x + y)``), no coefficient (``(2*a)*b``, ``x*(-y)``), no
    lone sum to multiply out. What collect_terms would find the long way, for the products it
    is asked about (most of them), at the cost of collect_factors' reading, which it shares."""
    a, b = node.inputs
    if scalar_constant(a) is not None or scalar_constant(b) is not None or scalar_constant(node) is not None:
        return False
    if _coefficient(node) is not None:
        return False
    if node.shape != () or node.dtype.kind != "f":
        return True  # read as one term, merged with nothing
    if _product_leaves((node,), _MONOMIAL_LEAVES) is None:
        return True  # its own one base (see _monomial)
    bases, coefficient, _ = _root_factors(node, ctx)
    bases = [base for base, (up, down) in bases.items() if up or down]
    return coefficient == 1 and bool(bases) and not (len(bases) == 1 and bases[0].op in ("add", "sub"))


class _LastFactors(threading.local):
    """The last product read by ``_root_factors`` (collect_factors, then collect_terms, read
    the same product with the same counts of uses: the rules run on a node one after another)."""

    def __init__(self) -> None:
        self.entry: tuple[Node, Any, tuple] | None = None


_LAST_FACTORS = _LastFactors()


def forget_reads() -> None:
    """Drop the product ``_root_factors`` remembers (simplify calls it when done, so no graph
    stays alive through it)."""
    _LAST_FACTORS.entry = None


def _root_factors(node: Node, ctx: Callable[[Node], int]) -> tuple[dict[Node, list[Fraction]], Fraction, int]:
    """``_factors`` of ``node`` as the rules at ``node`` read it (``_reading(node, ctx)``);
    the caller must not change what it returns."""
    entry = _LAST_FACTORS.entry
    if entry is not None and entry[0] is node and entry[1] is ctx:
        return entry[2]
    found = _factors(node, _reading(node, ctx))
    _LAST_FACTORS.entry = (node, ctx, found)
    return found


def _sum(like: Node, kept: list[tuple[Node, Fraction]], constant: Fraction, ctx: Callable[[Node], int]) -> Node | None:
    """sum(k*term) + constant, as built by collect_terms; None where a coefficient would
    overflow (or underflow): the sum is then kept as built."""
    numbers = [_representable(k, like.dtype) for _, k in kept] + [_representable(constant, like.dtype)]
    if None in numbers:
        return None
    *coefficients, total = numbers
    pieces = [(t, k) for (t, _), k in zip(kept, coefficients)]
    # Lead with a positive term (x - y, not -y + x). Only the first two swap: that is exact,
    # where a longer reordering could overflow an intermediate the original did not.
    if len(pieces) > 1 and pieces[0][1] < 0 and pieces[1][1] > 0:
        pieces[0], pieces[1] = pieces[1], pieces[0]
    result = None
    for term, k in pieces:
        magnitude = abs(k)
        term = _widened(term, like)  # noqa: PLW2901 (float32 terms of a float64 sum: added in float64)
        piece = term if magnitude == 1 else _scaled(_number(magnitude), term, ctx)
        if result is None:
            result = piece if k > 0 else negative(piece)
        else:
            result = ar.add(result, piece) if k > 0 else subtract(result, piece)
    if result is None:
        result = like.graph.constant(np.asarray(total, dtype=like.dtype))
    elif total != 0:  # x - 2 rather than x + (-2): the same number
        result = ar.add(result, _number(total)) if total > 0 else subtract(result, _number(-total))
    return result


# -- scalar sums as polynomials in their factors ----------------------------------------------------
# A term of a scalar sum is read as coefficient * prod(base**exponent) (collect_factors' reading,
# like factors cancelled: x/x*y is y), so terms whose factors agree merge whatever order or
# nesting built them. Bounded looks (_MONOMIAL_LEAVES, _INLINED_LEAVES) keep long chains linear.
_MONOMIAL_LEAVES = 16
Bases = dict  # base -> [positive, negative] exponent totals, as _factors gives them


def _monomial(t: Node, shared: Callable[[Node], bool]) -> tuple[Fraction, Bases]:
    """``t`` as (coefficient, bases); a term that is no small product is its own one base."""
    if t.op in ("mul", "div", "pow", "sqrt") and _product_leaves((t,), _MONOMIAL_LEAVES) is not None:
        bases, coefficient, _ = _factors(t, shared)
        # net exponents (_sides' reading): x/x*y is the monomial y
        return coefficient, {
            b: ([up + down, 0] if up + down > 0 else [0, up + down]) for b, (up, down) in bases.items() if up + down
        }
    return Fraction(1), {t: [1, 0]}


def _key(bases: Bases) -> tuple:
    return tuple(sorted((b.index, float(up), float(down)) for b, (up, down) in bases.items()))


def _times(a: Bases, b: Bases) -> Bases:
    """The product of two monomials' bases, each base's exponent net (``_monomial``'s reading)."""
    out = {base: up + down for base, (up, down) in a.items()}
    for base, (up, down) in b.items():
        out[base] = out.get(base, 0) + up + down
    return {base: ([e, 0] if e > 0 else [0, e]) for base, e in out.items() if e}


def _expanded(
    k: Fraction, bases: Bases, shared: Callable[[Node], bool], s: Node
) -> list[tuple[Fraction, Bases]] | None:
    """k * bases with its small sum factor ``s`` multiplied out (``x*(y + 1)``: x*y, x)."""
    up, down = bases[s]
    if up != 1 or down != 0 or not _inlined(s, _SUM_OPS):
        return None
    rest = {b: e for b, e in bases.items() if b is not s}
    inner, c0, _, _ = _terms(s, shared)
    out = []
    for u, ku in inner:
        cu, bu = _monomial(u, shared)
        out.append((k * ku * cu, _times(rest, bu)))
    if c0:
        out.append((k * c0, rest))
    return out


def _meets(i: int, bases: Bases, holding: dict[Node, list[int]]) -> list[Node]:
    """The small sum factors of item ``i`` such that another item has every other factor of
    it: only multiplying out one of those can give a term like another (a quick test)."""
    found = []
    for s in bases:
        if s.op not in ("add", "sub"):
            continue
        rest = [b for b in bases if b is not s]
        if not rest:
            return [s]
        fewest = min((holding[b] for b in rest), key=len)
        if any(j != i and all(j in holding[b] for b in rest) for j in fewest[:_MONOMIAL_LEAVES]):
            found.append(s)
    return found


def _polynomial(
    terms: list[tuple[Node, Fraction]], constant: Fraction, shared: Callable[[Node], bool]
) -> tuple[list[tuple[Fraction, Bases, Node | None]], Fraction, bool]:
    """The terms as monomials (coefficient, bases, the term node if it is that product
    without its coefficient), like ones merged and products multiplied out where that makes
    a term meet a like one; the constant; whether anything changed."""
    items = []
    for t, k in terms:
        c, bases = _monomial(t, shared)
        items.append((k * c, bases, t if c == 1 else None))
    keys = [_key(b) for _, b, _ in items]
    holding: dict[Node, list[int]] = {}  # base -> the items it is a factor of
    for i, (_, bases, _) in enumerate(items):
        for b in bases:
            holding.setdefault(b, []).append(i)
    expansions = {}
    for i, (k, bases, _) in enumerate(items):
        for s in _meets(i, bases, holding):  # the first sum whose expansion can meet a term
            found = _expanded(k, bases, shared, s)
            if found is not None:
                expansions[i] = [(kk, bb, _key(bb)) for kk, bb in found]
                break
    elsewhere: dict[tuple, int] = {}
    for key in keys:
        elsewhere[key] = elsewhere.get(key, 0) + 1
    for found in expansions.values():
        for key in {key for _, _, key in found}:
            elsewhere[key] = elsewhere.get(key, 0) + 1
    changed, out = False, []
    for i, item in enumerate(items):
        found = expansions.get(i)
        if found is not None:
            own = [key for _, _, key in found]
            if len(set(own)) < len(own) or any(elsewhere.get(key, 0) > 1 or (key == () and constant) for key in own):
                out += [(kk, bb, None) for kk, bb, _ in found]
                changed = True
                continue
        out.append(item)
    merged: dict[tuple, list] = {}
    for k, bases, t in out:
        if not bases:
            constant += k
            changed = True
            continue
        key = _key(bases)
        if key in merged:
            merged[key][0] += k
            changed = True
        else:
            merged[key] = [k, bases, t]
    monomials = [(k, bases, t) for k, bases, t in merged.values() if k != 0]
    return monomials, constant, changed or len(monomials) < len(merged)


def _ops(k: Fraction, bases: Bases) -> int:
    """The operations of k * bases as _product builds it."""
    numerator, denominator = _sides(bases)
    factors = len(numerator) + (abs(k) != 1)
    return max(factors - 1, 0) + len(denominator) + sum(e != 1 for _, e in numerator + denominator)


def _tree_ops(node: Node, budget: int = _MONOMIAL_LEAVES) -> int:
    """The operations of ``node`` written out as a tree (at most ``budget``)."""
    count, stack = 0, [node]
    while stack and count < budget:
        n = stack.pop()
        if n.inputs:
            count += 1
            stack.extend(n.inputs)
    return count


def _common_factor(monomials: list, constant: Fraction) -> tuple[Bases, list] | None:
    """A factor of every term (a base in every numerator, the lowest power; or in every
    denominator, the highest), taken out where that saves operations: (factor, the terms
    divided by it)."""
    if len(monomials) < 2 or constant != 0:
        return None
    factor: Bases = {}
    for base in monomials[0][1]:
        found = [m[1].get(base) for m in monomials]
        if any(e is None for e in found):
            continue
        if all(up > 0 and down == 0 for up, down in found):
            factor[base] = [min(up for up, _ in found), 0]
        elif all(up == 0 and down < 0 for up, down in found):
            factor[base] = [0, min(down for _, down in found)]
    if not factor:
        return None
    inner = []
    for k, bases, _ in monomials:
        rest = {}
        for base, (up, down) in bases.items():
            if base in factor:
                left = up - factor[base][0] + down - factor[base][1]
                if left:
                    rest[base] = [left, 0] if left > 0 else [0, left]
            else:
                rest[base] = [up, down]
        inner.append((k, rest, None))
    # a factor's own operations count once per term before, once after
    own = sum(_tree_ops(b) for b in factor)
    before = sum(_ops(k, b) for k, b, _ in monomials) + own * len(monomials)
    after = sum(_ops(k, b) for k, b, _ in inner) + _ops(Fraction(1), factor) + 1 + own
    return (factor, inner) if after < before else None


def _monomial_node(like: Node, bases: Bases, term: Node | None) -> Node:
    """The product of ``bases`` (the term itself where it is that product)."""
    if term is not None:
        return term
    numerator, denominator = _sides(bases)
    return _product(like, _canonical(numerator), denominator, 1)


def _scaled(k: float, term: Node, uses: Callable[[Node], int]) -> Node:
    """``k*term``; a product with the coefficient in its canonical place (``2*x/y``, not ``2*(x/y)``)."""
    piece = multiply(k, term)
    if term.op in ("mul", "div") and piece.op == "mul":
        canonical = collect_factors(piece, uses)
        return piece if canonical is None else canonical
    return piece


def _factors(
    node: Node, shared: Callable[[Node], bool], uniform: bool = True
) -> tuple[dict[Node, list[Fraction]], Fraction, int]:
    """``node`` as coefficient * prod(base ** exponent); exponents kept apart by sign.

    Powers combine only where that holds for every real base: ``(x**a)**e`` is
    ``x**(a*e)`` for an integer e, or an odd integer a, or a positive x (``(x**2)**0.5``
    is ``|x|``, not x); a negation leaves a power as ``(-1)**e`` only for an integer e.
    With ``uniform``, an array factor that only broadcasts a value is read as that value:
    a uniform constant (``ones(1)``, ``full((3,), -1)``) as its number, ``broadcast_like(s,
    r)`` and ``ones_like(r)`` as s and 1 (every element of the product is the same; only its
    shape may be lost, which the caller checks).
    """
    bases: dict[Node, list[Fraction]] = {}  # base -> [positive total, negative total]
    coefficient = Fraction(1)
    raw = 0
    # exponents are ints while they can be (Fractions cost far more), Fractions otherwise
    stack: list[tuple[Node, Fraction | int]] = [(node, 1)]
    while stack:
        n, e = stack.pop()
        op = n.op
        if op in _PRODUCT_OPS and n is not node and shared(n):
            pass  # a shared product is a factor of its own
        elif op == "mul":
            stack += [(n.inputs[1], e), (n.inputs[0], e)]
            continue
        elif op == "div":
            stack += [(n.inputs[1], -e), (n.inputs[0], e)]
            continue
        elif op == "neg" and e.denominator == 1:
            if e.numerator % 2:
                coefficient = -coefficient
            stack.append((n.inputs[0], e))
            continue
        elif op == "pow" and _combinable_power(n, e):
            p = Fraction(scalar_constant(n.inputs[1]))
            stack.append((n.inputs[0], e * (p.numerator if p.denominator == 1 else p)))
            continue
        elif op == "sqrt" and e.denominator == 1 and n.dtype.kind == "f":  # sqrt(u)**e = u**(e/2)
            stack.append((n.inputs[0], e // 2 if e % 2 == 0 else Fraction(e, 2)))
            continue
        elif (
            op == "constant"
            and (c := scalar_constant(n) if not n.shape or not uniform else _uniform_number(n)) is not None
            and e.denominator == 1
            and abs(e) <= 64
            and (e > 0 or c)
        ):
            coefficient *= Fraction(c) ** int(e)
            raw += 1
            continue
        elif (
            uniform
            and (op == "broadcast_like" or (op in _SCALAR_SHAPED and n.inputs[0].shape == ()))
            and n.dtype == n.inputs[0].dtype
            and n.dtype.kind == "f"
        ):
            stack.append((n.inputs[0], e))  # every element of broadcast_like(s, r), expand_dims(c) is s's, c
            raw += 1
            continue
        elif uniform and op == "ones_like" and n.dtype.kind == "f":
            raw += 1
            continue
        totals = bases.get(n)
        if totals is None:
            totals = bases[n] = [0, 0]
        totals[0 if e > 0 else 1] += e
        raw += 1
    return bases, coefficient, raw


_SCALAR_SHAPED = frozenset({"expand_dims", "reshape", "broadcast_to"})  # of a scalar: that scalar in every element


def _uniform_number(n: Node) -> float | None:
    """The one finite value of every element of a float constant (``ones(1)``, ``full((3,), -1)``)."""
    if n.dtype.kind != "f" or n.uniform is None or not np.isfinite(n.uniform):
        return None
    return float(n.uniform)


def _combinable_power(n: Node, e: Fraction) -> bool:
    p = scalar_constant(n.inputs[1])
    if p is None or not _exact(p):
        return False
    return e.denominator == 1 or (float(p).is_integer() and int(p) % 2 == 1) or positive(n.inputs[0])


def _exact(value: float) -> bool:
    return Fraction(value).limit_denominator(64) == Fraction(value)


def _size(node: Node) -> float:
    if not node.shape:
        return 1  # the usual case, without numpy
    return float("inf") if node.size is None else node.size


def _power(base: Node, exponent: Fraction) -> Node:
    if exponent == 1:
        return base
    if exponent == Fraction(1, 2) and base.dtype.kind == "f":
        from symdiff.ops.functions import sqrt

        return sqrt(base)
    return power(base, _number(float(exponent)))


def _sides(bases: dict[Node, list[Fraction]]) -> tuple[list[tuple[Node, Fraction]], list[tuple[Node, Fraction]]]:
    """The numerator and denominator of a product of ``bases`` (base -> [positive, negative]
    exponent totals), each a list of (base, exponent): a base's powers above and below the
    line merge into one, its net exponent (``x**3/x`` is ``x**2``, ``x/x`` is 1). That only
    extends the domain: where the original is finite, so is every power of the base in it
    (powers combine only where that holds for every real base, see ``_factors``), and the
    net power has the same value; at a base of 0 or inf, or of x < 0 under a fractional
    power, the original's 0/0, inf/inf or nan becomes the net power's value."""
    numerator, denominator = [], []
    for base, (up, down) in bases.items():
        net = up + down
        if net > 0:
            numerator.append((base, net))
        elif net < 0:
            denominator.append((base, -net))
    return numerator, denominator


def _canonical(numerator: list[tuple[Node, Fraction]]) -> list[tuple[Node, Fraction]]:
    """Smallest factors first, the coefficient on the smallest: small products happen before
    anything is broadcast to a large shape (2*(v*M) becomes (2*v)*M). Equal sizes go in
    creation order, so y*x and x*y are one node and cancel (x*y - y*x is 0)."""
    return sorted(numerator, key=lambda be: (_size(be[0]), be[0].index))


def _widened(n: Node, like: Node) -> Node:
    """``n`` cast up to ``like``'s float dtype where it is a narrower float: a product or sum
    rebuilt from float32 factors where a float64 constant made the original float64 runs in
    float64, as the original did (``2*x*0.1`` is ``0.2*astype(x)``, not float32's ``0.2*x``)."""
    if n.dtype.kind == "f" and like.dtype.kind == "f" and n.dtype.itemsize < like.dtype.itemsize:
        return astype(n, like.dtype)
    return n


def _product(like: Node, numerator: list, denominator: list, magnitude: float) -> Node:
    """magnitude * prod(numerator) / prod(denominator), each a list of (base, exponent), at
    ``like``'s precision."""
    result = None
    numerator = [(_widened(base, like), e) for base, e in numerator]
    denominator = [(_widened(base, like), e) for base, e in denominator]
    for base, exponent in numerator:
        piece = _power(base, exponent)
        if result is None:
            result = piece if magnitude == 1 else multiply(_number(magnitude), piece)
        else:
            result = multiply(result, piece)
    if result is None:
        result = like.graph.constant(np.asarray(magnitude, dtype=like.dtype))
    for base, exponent in denominator:
        result = divide(result, _power(base, exponent))
    return result


def collect_factors(node: Node, ctx: Callable[[Node], int]) -> Node | None:  # ctx: how often a node is used
    """Constant factors merged, repeated factors as powers, like factors cancelled (x**3/x is x**2):
    ``2*x*(3*x)`` -> ``6*x**2``; the factors in a canonical order (``x*y - y*x`` is 0); a
    factor that only broadcasts a value read as that value (``2*x*ones(1)/n`` is ``2*x/n``)
    where the other factors keep the product's shape."""
    result = _collected(node, *_root_factors(node, ctx))
    if result is not None and result.shape != node.shape:
        # a uniform factor carried the shape (s*ones(3)): keep such factors as they are
        result = _collected(node, *_factors(node, _reading(node, ctx), uniform=False))
    if result is None or result is node:
        return None
    return same_as(result, node)


def _collected(node: Node, bases: Bases, exact_coefficient: Fraction, raw: int) -> Node | None:
    """The product of ``bases`` times the coefficient, canonical; None where it is ``node``
    as built already, or the coefficient would overflow."""
    coefficient = _representable(exact_coefficient, node.dtype)
    if coefficient is None:
        return None  # the merged constant would overflow (or underflow): keep the product as built
    numerator, denominator = _sides(bases)
    ordered = _canonical(numerator)
    combined = raw > len(bases) + (coefficient not in (1.0, -1.0)) or any(
        up != 0 and down != 0 or max(abs(up), abs(down)) > 1 for up, down in bases.values()
    )
    # a constant factor inside (sin(y)*(2*x)) comes to the front; one on top (h*0.999) can stay
    buried = coefficient not in (1.0, -1.0) and not any(scalar_constant(u) is not None for u in node.inputs)
    # the canonical form rebuilds to itself, which ends the rewriting
    if not combined and not buried and ordered == numerator:
        return None  # nothing merges, and the order is already canonical
    result = _product(node, ordered, denominator, abs(coefficient))
    if coefficient < 0:
        result = negative(result)
    return result


def _counted_ones(root: Node, x: Node) -> Node | None:
    """sum(c broadcast like r, axis) is c times the number of r's elements along axis:
    ``c*count(r, axis)`` (n, a constant where the sizes are known: not a vector of ones summed)."""
    from symdiff.ops.reduce import count

    fill = 1 if x.op == "ones_like" else fill_value(x)
    if fill is None or root.attrs["keepdims"] or root.dtype.kind != "f" or isinstance(fill, bool):
        return None
    ref = x.inputs[-1]
    counted = count(ref if ref.shape == x.shape else x, axis=root.attrs["axis"])
    return same_as(counted if fill == 1 else multiply(_number(float(fill)), counted), root)


_UNIFORM_LOOK = 16  # nodes: how far the uniform-sum rule reads a summand


def _uniform_value(n: Node, like: Node, refs: list[Node], budget: list[int]) -> Node | None:
    """The one value every element of ``n`` has, as a scalar node, where ``n`` is an
    elementwise expression of scalars and of uniform arrays shaped like ``like``
    (``ones_like(r)``, ``broadcast_like(s, r)``: their references go to ``refs``); else None."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if n.shape == ():
        return n
    if n.shape != like.shape or n.is_multi:
        return None
    if n.op == "constant" and n.uniform is not None and n.dtype.kind == "f":  # ones(5), a (1,) 0.5
        return n.graph.constant(np.asarray(n.uniform, dtype=n.dtype))
    if n.op == "ones_like" and n.dtype.kind == "f":
        refs.append(n.inputs[0])
        return n.graph.constant(np.asarray(1, dtype=n.dtype))
    if n.op == "broadcast_like" and n.dtype == n.inputs[0].dtype:
        s = n.inputs[0] if n.inputs[0].shape == () else _uniform_value(n.inputs[0], n.inputs[0], [], budget)
        if s is not None:
            refs.append(n.inputs[1])
        return s  # broadcast_like(ones(1)/n, r): every element is 1/n
    if n.op in ("expand_dims", "squeeze", "reshape", "transpose", "broadcast_to") and n.dtype == n.inputs[0].dtype:
        return _uniform_value(n.inputs[0], n.inputs[0], [], budget)  # the same elements, moved
    if not n.inputs or n.regions or REGISTRY[n.op].kind != "elementwise":
        return None
    values = []
    for u in n.inputs:
        v = _uniform_value(u, like, refs, budget)
        if v is None:
            return None
        values.append(v)
    out = apply(REGISTRY[n.op], *values, **dict(n._attrs))
    return out if out.shape == () and out.dtype == n.dtype else None


def _never_empty(x: Node, axes: tuple[int, ...]) -> bool:
    """Every axis of ``x`` in ``axes`` has a static size above 0 (a sum over them has a term)."""
    return all(x.shape[a] not in (None, 0) for a in axes)


def _finite_number(v: Node) -> bool:
    c = scalar_constant(v)
    return c is not None and bool(np.isfinite(c))


def _uniform_sum(root: Node, x: Node) -> Node | None:
    """sum(e, axis) of an elementwise ``e`` whose every element is one value v (scalars and
    ones or scalars broadcast like r: ``sum(ones_like(x)/s**2)``) is v times the count along
    axis: ``count(x)/s**2``, a count where a sum of ones stood. Up to rounding (n*v for n
    additions of v). Where an axis summed may be empty (a None or 0 size), only for a finite
    number v: the empty sum is 0, and 0*v would be nan for an infinite v."""
    from symdiff.ops.reduce import count

    if root.dtype.kind != "f" or root.attrs["keepdims"] or x.shape == () or x.op == "ones_like":
        return None  # sum(ones_like(r)): counted_ones
    if x.op == "broadcast_like" and fill_value(x) is not None:
        return None  # sum(c broadcast like r) for a constant c: counted_ones
    refs: list[Node] = []
    value = _uniform_value(x, x, refs, [_UNIFORM_LOOK])
    if value is None or (not refs and None in x.shape):
        return None
    if not _never_empty(x, root.attrs["axis"]) and not _finite_number(value):
        return None  # an empty axis sums to 0, and 0*v is nan for an infinite v (1/s at s = 0)
    ref = min(refs, key=lambda r: r.index) if refs else x  # a static shape: its count is a number
    counted = count(ref if ref.shape == x.shape else x, axis=root.attrs["axis"])
    return same_as(multiply(counted, value), root)


def _uniform_factor(root: Node) -> Node | None:
    """``a*u``, ``u*a``, ``a/u``, ``u/a`` where every element of ``u`` is one value v (a uniform
    constant, ones or a scalar broadcast like a reference, an elementwise expression of these
    and scalars: ``ones(5)/sigma``) and ``a`` alone has the product's shape: the same product
    with the scalar v, exactly (each element is multiplied or divided by the same number), so
    v's factors meet the others' (``2*r*0.5`` is ``r``)."""
    if root.dtype.kind != "f":
        return None
    for i, u in enumerate(root.inputs):
        a = root.inputs[1 - i]
        if u.shape == () or a.shape != root.shape or a.dtype != root.dtype or None in u.shape:
            continue  # (a None size of u's is checked against a's when the product runs: kept)
        value = _uniform_value(u, u, [], [_UNIFORM_LOOK])
        if value is None:
            continue
        if root.op == "mul":
            return _as_root(root, multiply(a, value) if i else multiply(value, a))
        return _as_root(root, divide(a, value) if i else divide(value, a))
    return None


def _summed_scalar_factors(root: Node, p: Node, ctx: Callable[[Node], int]) -> Node | None:
    """sum(c*e, axis) is c*sum(e, axis) for factors c of shape () (numbers, scalar nodes):
    ``sum(2*(x - mu)/count(x))`` is ``2*sum(x - mu)/count(x)``, so the factors meet those
    outside (``0.5*sum(2*r)`` is ``sum(r)``). Up to rounding; only for a product used here
    alone (splitting a shared one would repeat its work), and, for factors other than a number,
    where no axis summed may be empty (a None or 0 size: the empty sum is 0, c times it nan for an
    infinite c)."""
    from symdiff.ops.reduce import sum as sum_

    if root.dtype.kind != "f" or p.dtype != root.dtype or p.shape == () or ctx(p) > 1:
        return None
    bases, exact, _ = _factors(p, lambda n: ctx(n) > 1, uniform=False)
    coefficient = _representable(exact, p.dtype)
    scalars = {b: e for b, e in bases.items() if b.shape == () and (e[0] or e[1])}
    arrays = {b: e for b, e in bases.items() if b.shape != () and (e[0] or e[1])}
    if coefficient is None or not arrays or (not scalars and coefficient in (1.0, -1.0)):
        return None  # (a lone negation: summed_negation)
    if scalars and not _never_empty(p, root.attrs["axis"]):
        return None  # the empty sum is 0, c times it nan for an infinite c (2/count(x) at count 0)
    numerator, denominator = _sides(arrays)
    inner = _product(p, _canonical(numerator), denominator, 1)
    if inner.shape != p.shape or inner.dtype != p.dtype:
        return None  # a scalar factor's broadcast is not what gives the shape
    numerator, denominator = _sides(scalars)
    outer = _product(p, _canonical(numerator), denominator, abs(coefficient))
    result = multiply(outer, sum_(inner, axis=root.attrs["axis"], keepdims=root.attrs["keepdims"]))
    return _as_root(root, negative(result) if coefficient < 0 else result)


def _shape_source(ref: Node) -> Node:
    """The plainest node with ``ref``'s shape and dtype that ``ref`` is an elementwise function
    of, through inputs beside which all others are scalars (``x`` for ``-0.5*(x - mu)**2 -
    log(s)``): a reference whose only use is its shape (ones_like, broadcast_like, count)."""
    for _ in range(_UNIFORM_LOOK):
        if not ref.inputs or ref.regions or REGISTRY[ref.op].kind != "elementwise":
            return ref
        wide = [u for u in ref.inputs if u.shape != ()]
        if len(wide) != 1 or wide[0].shape != ref.shape or wide[0].dtype != ref.dtype:
            return ref
        ref = wide[0]
    return ref


def _plainer_reference(root: Node) -> Node | None:
    """ones_like(r), broadcast_like(s, r), count(r, axis) with r's plainest shape source."""
    i = len(root.inputs) - 1
    source = _shape_source(root.inputs[i])
    if source is root.inputs[i]:
        return None
    return _as_root(root, rebuild(root, root.inputs[:i] + (source,)))


def _uniform_matmul(root: Node, x: Node, y: Node) -> Node | None:
    """full((m, k), c) @ v is c*sum(v, axis=0) in every row, v @ full((k, p), c) is
    c*sum(v, axis=-1) in every column: the sum the all-c matrix stands for."""
    from symdiff.ops.reduce import sum as sum_

    if None in root.shape or root.dtype.kind != "f":
        return None
    for fill, v, axis in ((fill_value(x), y, 0), (fill_value(y), x, -1)):
        uniform = x if v is y else y
        if fill is None or fill == 0 or uniform.ndim not in (1, 2) or v.ndim not in (1, 2) or v.dtype.kind != "f":
            continue  # (a zero matrix: 0*inf is nan in the product, and its rules are the zero product's)
        # A @ ones(k) is sum(A, axis=-1), ones(k) @ A is sum(A, axis=0): one sum per row or column
        keep = v.ndim == 2 and axis == -1 and uniform.ndim == 2
        if v.op == "transpose" and v.ndim == 2 and v.attrs["axes"] == (1, 0):
            summed = sum_(_widened(v.inputs[0], root), axis=1 + axis, keepdims=keep)  # sum(A.T, -1): sum(A, 0)
            summed = transpose(summed) if keep else summed
        else:
            summed = sum_(_widened(v, root), axis=axis, keepdims=keep)  # float32 v in a float64 product
        return same_as(summed if fill == 1 else multiply(_number(float(fill)), summed), root)
    return None


def _exp_log(root: Node, x: Node) -> Node | None:
    return x if positive(x) else None


def _pow_pow(root: Node, x: Node, p: Node, q: Node) -> Node | None:
    inner, outer = scalar_constant(p), scalar_constant(q)
    if inner is None or outer is None or not (float(outer).is_integer() or positive(x)):
        return None
    return power(x, _number(inner * outer))


def _where_same(root: Node, c: Node, x: Node) -> Node | None:
    return same_as(x, root)


# The conditions under which relu(x) is x, as (op, position of x in it), for x in where's
# first branch; and those under which it is 0, for x in the second. Strict: where(x >= 0, x, 0)
# has the value of relu(x) but the derivative 1 at 0, relu's is 0.
_RELU_TAKES = {("greater", 0), ("less", 1)}  # x > 0, 0 < x
_RELU_ZERO = {("less_equal", 0), ("greater_equal", 1)}  # x <= 0, 0 >= x


def _relu_form(root: Node, c: Node, x: Node, y: Node) -> Node | None:
    """``where(x > 0, x, 0)`` (or ``0 < x``; and ``where(x <= 0, 0, x)``) is ``relu(x)``, value
    and derivative at 0 alike: a relu's derivative times x, written as the function, so it meets
    relu's own terms (``relu(v) + where(v > 0, v, 0)`` is ``2*relu(v)``)."""
    from symdiff.ops.functions import relu

    if len(c.inputs) != 2 or root.dtype.kind != "f":
        return None
    for kept, zero, forms in ((x, y, _RELU_TAKES), (y, x, _RELU_ZERO)):
        if fill_value(zero) != 0:
            continue
        for op, at in forms:
            if c.op == op and c.inputs[at] is kept and fill_value(c.inputs[1 - at]) == 0:
                return same_as(relu(kept), root)
    return None


# == masks: an untaken where-branch or an unselected element contributes exactly 0 ==============
# A derivative pass builds where(c, g, 0) for the branch of a where that is not taken, and a
# scatter into zeros (unindex(g, x, i): g at [i], 0 elsewhere; untake, untake_along_axis) for a
# selection x[i]. Such a zero times an infinite or nan local derivative (sqrt'(0) of an unused
# element, exp(1000) of a branch not taken) would be nan. These rules carry the mask outwards
# through every product, quotient, negation, cast, sum of masks, move of elements and sum along
# axes the condition is constant on, so the product happens inside the where,
# where(c, 0, g)*p -> where(c, 0, g*p), or on the selected elements alone,
# unindex(g)*p -> unindex(g*p[i]): what is masked is exactly 0, at every order (a derivative of a
# derivative is built through the same rules). A where whose branch is such a where carries its
# mask too (the sum of two masks with different conditions is one). The rules rewrite derivative
# nodes only (built in a derivative pass, or a mask that one built), so a forward graph's values
# never change; each rewrite computes the same values as before wherever those were finite.
_MOVES = ("expand_dims", "squeeze", "transpose", "flip", "roll", "reshape", "reshape_like")  # axes to axes
# ops that place g into zeros: a selection's adjoint (and a join's tangent), each with the
# selection that picks what sits at the places it writes (tril/triu: nothing moves)
_SCATTERS = ("unindex", "untake_along_axis", "concat_place", "pad", "undiagonal", "tril", "triu")
# selections that take each element at most once: the adjoints of stack, concatenate, split, pad, diagonal
_SELECTIONS = ("getitem", "concat_part", "diagonal")


def _masking(root: Any, mask: Node) -> bool:
    return root.graph._gradient_depth > 0 or mask.is_gradient


def _zero(n: Node) -> bool:
    return fill_value(n) == 0


def carries_mask(n: Node, depth: int = 4) -> bool:
    """Whether ``n`` is a float where with a zero branch, or with a branch that is one (to ``depth``)."""
    if n.op != "where" or n.dtype.kind != "f":
        return False
    return any(_zero(b) or (depth > 0 and carries_mask(b, depth - 1)) for b in n.inputs[1:])


def _where(c: Node, a: Node, b: Node) -> Node:
    from symdiff.ops.logic import where

    return where(c, a, b)


def _each_branch(
    root: Any, w: Node, fn: Callable[[Node], Node], zero: Callable[[Node], Node] | None = None, cond=None
) -> Node | None:
    """``op(where(c, a, b))`` as ``where(cond(c), fn(a), fn(b))``; a zero branch stays as it is
    (or becomes ``zero(it)``): 0*p is never computed, so it is 0 even where p is inf or nan."""
    if not carries_mask(w) or not _masking(root, w):
        return None
    c, a, b = w.inputs

    def branch(x: Node) -> Node:
        if _zero(x):
            return x if zero is None else zero(x)
        return fn(x)

    new_c = c if cond is None else cond(c)
    if new_c is None:
        return None
    return _as_root(root, _where(new_c, branch(a), branch(b)))


def _mask_product(root: Any, w: Node, p: Node) -> Node | None:
    # where(c, v, 0) * p = where(c, v*p, 0*p), and 0*p is 0 (the documented fold)
    if root.op == "div":
        return _each_branch(root, w, lambda v: divide(v, p))
    first = root.inputs[0] is w
    return _each_branch(root, w, lambda v: multiply(v, p) if first else multiply(p, v))


def _mask_sum(root: Any, w: Node, u: Node) -> Node | None:
    # where(c, a, b) ± where(c, d, e) = where(c, a ± d, b ± e); with another condition, the
    # second where goes into both branches of the first: the total still carries both masks
    if not (carries_mask(w) and carries_mask(u)) or not (_masking(root, w) or _masking(root, u)):
        return None
    op = ar.add if root.op == "add" else subtract
    first = root.inputs[0] is w
    c, a, b = w.inputs
    if u.inputs[0] is c:
        d, e = u.inputs[1:]
        pairs = ((a, d), (b, e)) if first else ((d, a), (e, b))
        return _as_root(root, _where(c, *(op(x, y) for x, y in pairs)))
    if w.shape != root.shape or u.shape != root.shape:
        return None
    return _as_root(root, _where(c, *(op(x, u) if first else op(u, x) for x in (a, b))))


def _lifted_to(x: Node, ndim: int) -> Node:
    from symdiff.ops.structure import expand_dims

    return expand_dims(x, tuple(range(ndim - x.ndim))) if 0 < x.ndim < ndim else x


def _mask_moved(root: Any, w: Node) -> Node | None:
    """A move of elements (expand_dims, transpose, reshape, ...) of a mask moves its condition
    and branches alike (a scalar stays as it is)."""
    if not carries_mask(w):
        return None
    op, attrs, extra = REGISTRY[root.op], dict(root.attrs), tuple(root.inputs[1:])  # extra: reshape_like's ref
    if root.op in ("reshape", "reshape_like") and any(n.ndim and n.shape != w.shape for n in w.inputs):
        return None  # a reshape needs every part at the full shape

    def move(n: Node) -> Node:
        return n if n.ndim == 0 else apply(op, _lifted_to(n, w.ndim), *extra, **attrs)

    return _each_branch(root, w, move, move, move)


def _mask_broadcast(root: Any, w: Node) -> Node | None:
    # broadcasting the condition broadcasts the where
    op, attrs = REGISTRY[root.op], root.attrs
    return _each_branch(root, w, lambda n: n, cond=lambda c: apply(op, c, *root.inputs[1:], **attrs))


def _unbroadcast_condition(c: Node) -> Node:
    while c.op in ("broadcast_like", "broadcast_to"):
        c = c.inputs[0]
    return c


def _mask_reduced(root: Any, w: Node) -> Node | None:
    """sum(where(c, a, b), axis) = where(c, sum(a), sum(b)) where c does not vary along axis
    (the cotangent of a broadcast, summed back): the mask stays on the sum."""
    from symdiff.ops.reduce import sum as sum_
    from symdiff.ops.structure import squeeze

    axis, keepdims = root.attrs["axis"], root.attrs["keepdims"]
    c = _lifted_to(_unbroadcast_condition(w.inputs[0]), w.ndim)
    if c.ndim != w.ndim or any(c.shape[k] != 1 for k in axis):
        return None

    def reduce(n: Node) -> Node:
        if n.ndim == 0 and _zero(n):
            return n
        if n.shape != w.shape:
            if None in w.shape:
                return None
            n = broadcast_to(n, w.shape)
        return sum_(n, axis=axis, keepdims=keepdims)

    if any(n.shape != w.shape and (None in w.shape) and not (n.ndim == 0 and _zero(n)) for n in w.inputs[1:]):
        return None
    return _each_branch(root, w, reduce, reduce, lambda _: c if keepdims else squeeze(c, axis))


def _scatters(u: Node) -> bool:
    """Whether ``u`` places its first input into zeros (a pad with another border does not)."""
    return u.op in _SCATTERS and (u.op != "pad" or u.attrs["value"] == 0)


def _base_ndim(u: Node) -> int:
    """The rank of the scatter ``u`` without the batch axes in front of it."""
    if u.op == "pad":
        return len(u.attrs["widths"])
    return 2 if u.op in ("tril", "triu") else u.inputs[1].ndim


def _picked(u: Node, p: Node) -> Node | None:
    """``p`` (shaped like the scatter ``u``, or broadcasting to it along batch axes only) at the
    places ``u`` writes to: what ``u``'s values meet in an elementwise product."""
    from symdiff.ops.indexing import TAKE_ALONG_AXIS, _getitem
    from symdiff.ops.join import _part, _unpad
    from symdiff.ops.linalg import DIAGONAL

    base = _base_ndim(u)
    if p.ndim < base or p.ndim > u.ndim or p.shape[p.ndim - base :] != u.shape[u.ndim - base :]:
        return None
    p, attrs = _lifted_to(p, u.ndim), u.attrs
    if u.op == "unindex":
        return _getitem(p, attrs["index"].with_batch(u.ndim - base), u.inputs[2:])
    if u.op == "untake_along_axis":
        return apply(TAKE_ALONG_AXIS, p, u.inputs[2], axis=attrs["axis"])
    if u.op == "concat_place":
        return _part(p, u.inputs[1:], attrs["index"], attrs["axis"])
    if u.op == "pad":
        return _unpad(p, attrs["widths"])
    if u.op == "undiagonal":
        return apply(DIAGONAL, p, **attrs)
    return p  # tril, triu: the kept elements stay in place


def _scatter_each(root: Any, u: Node, fn: Callable[[Node], Node | None]) -> Node | None:
    """``op(scatter(g))`` as ``scatter(op(g))`` for an op that keeps 0 (a product with what is
    at the scattered places, a negation, a cast)."""
    if not _scatters(u) or not _masking(root, u) or u.dtype.kind != "f":
        return None
    new = fn(u.inputs[0])
    if new is None:
        return None
    return _as_root(root, apply(REGISTRY[u.op], new, *u.inputs[1:], **u.attrs))


def _scatter_product(root: Any, u: Node, p: Node) -> Node | None:
    # unindex(g)*p = unindex(g*p[i]): the elements that are not selected are never multiplied
    if root.shape != u.shape:
        return None
    first = root.inputs[0] is u

    def times(g: Node) -> Node | None:
        at = _picked(u, p)
        if at is None:
            return None
        if root.op == "div":
            return divide(g, at)
        return multiply(g, at) if first else multiply(at, g)

    return _scatter_each(root, u, times)


def _cast(dtype: np.dtype) -> Callable[[Node], Node | None]:
    return lambda n: astype(n, dtype) if dtype.kind == "f" else None


def _static_input(n: Node) -> np.ndarray | None:
    # a reference stands in by its shape; an index node by its value, when it is a constant
    if n.op == "constant":
        return np.asarray(n.value)
    return None if None in n.shape or n.dtype.kind != "f" else np.zeros(n.shape, dtype=n.dtype)


def _run_static(n: Node, first: np.ndarray) -> np.ndarray | None:
    rest = [_static_input(x) for x in n.inputs[1:]]
    if any(r is None for r in rest):
        return None
    return np.asarray(REGISTRY[n.op].forward(np, first, *rest, **n.attrs))


_STATIC_LIMIT = 1 << 16  # elements: deciding a fold at build time must stay cheap


def _unwritten(root: Any, s: Any) -> Node | None:
    """A selection of a scatter that takes only places the scatter left zero is 0 (where the
    shapes, and indices, are known when it is built)."""
    u = root.inputs[0]
    g = u.inputs[0] if u.inputs else u
    if not _scatters(u) or not _masking(root, u) or None in u.shape + g.shape + root.shape:
        return None
    if u.size > _STATIC_LIMIT or g.size > _STATIC_LIMIT:
        return None
    written = _run_static(u, np.ones(g.shape, dtype=bool if u.op in ("tril", "triu") else np.float64))
    taken = None if written is None else _run_static(root, written != 0)
    if taken is None or taken.any():
        return None
    return root.graph.uniform_constant(0, root.shape, root.dtype)


def _injective(s: Node) -> bool:
    return s.op in _SELECTIONS and (s.op != "getitem" or not s.attrs["index"].advanced)


def _selected_each(root: Any, s: Node, fn: Callable[[Node], Node | None]) -> Node | None:
    """``op(sel(scatter(g)))`` as ``sel(op(scatter(g)))`` for an op that keeps 0 (a negation, a
    cast), so that a product that meets it later still finds the scatter."""
    u = s.inputs[0]
    if not _injective(s) or not _scatters(u) or not _masking(root, u) or u.dtype.kind != "f":
        return None
    new = fn(u)
    if new is None or new.op != u.op:
        return None
    return _as_root(root, apply(REGISTRY[s.op], new, *s.inputs[1:], **s.attrs))


def _same_places(u: Node, v: Node) -> bool:
    """Whether the scatters ``u`` and ``v`` write to the same places of the same shape (their
    references only give the shape)."""
    if u.op != v.op or u.attrs != v.attrs or len(u.inputs) != len(v.inputs):
        return False
    if u.op == "concat_place":
        return all(a.shape == b.shape for a, b in zip(u.inputs[1:], v.inputs[1:]))
    refs = 0 if u.op in ("pad", "tril", "triu") else 1
    return all(a.shape == b.shape for a, b in zip(u.inputs[1 : 1 + refs], v.inputs[1 : 1 + refs])) and all(
        a is b for a, b in zip(u.inputs[1 + refs :], v.inputs[1 + refs :])
    )


def _scatter_sum(root: Any, u: Node, v: Node) -> Node | None:
    # scatter(g) ± scatter(h) = scatter(g ± h) at the same places: the total is still a scatter
    if not (_scatters(u) and _same_places(u, v)) or not (_masking(root, u) or _masking(root, v)):
        return None
    if u.shape != root.shape or v.shape != root.shape or u.dtype != v.dtype:
        return None
    g, h = u.inputs[0], v.inputs[0]
    if root.inputs[0] is not u:
        g, h = h, g
    total = ar.add(g, h) if root.op == "add" else subtract(g, h)
    return _as_root(root, apply(REGISTRY[u.op], total, *u.inputs[1:], **u.attrs))


def _moved_product(root: Any, m: Node, p: Node) -> Node | None:
    """move(x)*p = move(x*moveᵀ(p)) for x a scatter or a selection of one (the adjoint of
    expand_dims, a squeeze, comes between a join's adjoint and the product): the product then
    meets the scatter (scatter_product, selected_product)."""
    x = m.inputs[0]
    u = x.inputs[0] if x.op in _SELECTIONS and x.inputs else x
    if _pushing_state.roots or m.op not in ("expand_dims", "squeeze", "transpose") or not _scatters(u):
        return None
    if not _masking(root, u) or u.dtype.kind != "f" or p.op == "constant" or root.shape != m.shape:
        return None
    if root.op == "div" and root.inputs[0] is not m:
        return None
    nb, p = u.ndim - _base_ndim(u), _lifted_to(p, m.ndim)  # p may broadcast along batch axes only
    if p.ndim != m.ndim or p.shape[nb:] != m.shape[nb:] or any(d not in (1, e) for d, e in zip(p.shape[:nb], m.shape)):
        return None
    back = REGISTRY[m.op].vjp_rule(0)(p, m, *m.inputs, **m.attrs)
    if root.op == "div":
        inner = divide(x, back)
    else:
        inner = multiply(x, back) if root.inputs[0] is m else multiply(back, x)
    if inner.op not in _SCATTERS + _SELECTIONS:
        return None  # the product did not reach the scatter: leave it as it was
    return _as_root(root, apply(REGISTRY[m.op], inner, *m.inputs[1:], **m.attrs))


_INVERSES = {"unindex": "getitem", "concat_place": "concat_part", "undiagonal": "diagonal"}


def _unscattered(root: Any, s: Any) -> Node | None:
    """sel(scatter(g)) = g where sel takes back exactly the places scatter wrote (x[i] of the
    gradient of x[i])."""
    u = root.inputs[0]
    if _INVERSES.get(u.op) != root.op or root.attrs != u.attrs or not _masking(root, u):
        return None
    if root.op == "getitem" and (root.attrs["index"].advanced or len(root.inputs) > 1 or len(u.inputs) > 2):
        return None
    if root.op == "concat_part" and any(a.shape != b.shape for a, b in zip(root.inputs[1:], u.inputs[1:])):
        return None
    return _as_root(root, u.inputs[0])


class _Pushing(threading.local):
    """The products being moved, per thread: what moving one builds is not moved again
    (graphs may be built from several threads at once)."""

    def __init__(self) -> None:
        self.roots: list = []


_pushing_state = _Pushing()
_FOLDED_MASKS: weakref.WeakSet = weakref.WeakSet()  # constants a scatter or where of constants folded into


def _folded_mask(root: Any) -> Node | None:
    """A scatter or where of constants in a derivative pass, folded here (as apply would) and
    remembered, so that a product with it keeps its zeros exact (_folded_scatter_product)."""
    if root.op in ("mul", "div") and not any(i in _FOLDED_MASKS for i in root.inputs):
        return None
    if root.graph._gradient_depth == 0 or root.dtype.kind != "f" or not foldable(root):
        return None
    if root.op == "pad" and root.attrs["value"] != 0:
        return None
    value = np.asarray(_computed(root), dtype=root.dtype)
    if value.shape != root.shape or np.count_nonzero(value) in (0, value.size):
        return None  # no zeros, or all: nothing to keep
    node = _folded(root, value)
    _FOLDED_MASKS.add(node)
    return node


def _folded_scatter_product(root: Any, k: Node, p: Node) -> Node | None:
    """K*p = where(K != 0, K*p, 0) for a constant K that a scatter or a mask of constants folded
    into (the gradient of sum(tril(x)), a Hessian's seed behind a where): its zeros stay exact,
    and the where carries them on as a mask."""
    if k not in _FOLDED_MASKS:
        return None
    if p.op == "constant":  # a product of constants is folded: it stays a mask (a seed times it)
        return _folded_mask(root)
    if _pushing_state.roots or root.graph._gradient_depth == 0 or (root.op == "div" and root.inputs[0] is not k):
        return None
    nonzero = np.asarray(k.value) != 0
    if nonzero.all():
        return None
    _pushing_state.roots.append(root)
    try:
        # never root's own key (op, inputs): that would be interned unmasked and found next time
        value = multiply(k, divide(1.0, p)) if root.op == "div" else multiply(*reversed(root.inputs))
    finally:
        _pushing_state.roots.pop()
    return _as_root(root, _where(root.graph.constant(nonzero), value, 0.0))


def _selected_product(root: Any, s: Node, p: Node) -> Node | None:
    """sel(scatter(g))*p = sel(scatter(g*picked(selᵀ(p)))) for a selection ``sel`` that takes each
    element at most once: the places the scatter left zero are never multiplied, so p's inf or
    nan there (sqrt'(0) of an element stack or concatenate joined but did not use) stays out."""
    u = s.inputs[0]
    if _pushing_state.roots or not _scatters(u) or not _masking(root, u) or u.dtype.kind != "f" or not _injective(s):
        return None
    if p.op == "constant" or root.shape != s.shape or p.ndim > s.ndim or (root.op == "div" and root.inputs[0] is not s):
        return None  # a constant factor (a seed) is finite: the product stays as it is
    nb, p = u.ndim - _base_ndim(u), _lifted_to(p, s.ndim)  # p may broadcast along batch axes only
    if p.shape[nb:] != s.shape[nb:] or any(d not in (1, e) for d, e in zip(p.shape[:nb], s.shape)):
        return None
    _pushing_state.roots.append(root)
    try:
        if root.op == "div":  # times 1/p: a division by the zeros selᵀ places would be inf there
            p = divide(1.0, p)
        placed = REGISTRY[s.op].vjp_rule(0)(p, s, *s.inputs, **s.attrs)  # selᵀ: the selection's adjoint
        at = _picked(u, placed)
        if at is None:
            return None
        g = multiply(u.inputs[0], at) if root.inputs[0] is s else multiply(at, u.inputs[0])
        moved = apply(REGISTRY[u.op], g, *u.inputs[1:], **u.attrs)
        return _as_root(root, apply(REGISTRY[s.op], moved, *s.inputs[1:], **s.attrs))
    finally:
        _pushing_state.roots.pop()


_masked = Pat("where", name="w")
_scatter = Pat(_SCATTERS, name="u")
MASK_RULES = [
    Rule(Pat("mul", _masked, Pat.var("p")), _mask_product, name="mask_product", extends_domain=True),
    Rule(Pat("div", _masked, Pat.var("p")), _mask_product, name="mask_quotient", extends_domain=True),
    Rule(Pat("neg", _masked), lambda root, w: _each_branch(root, w, negative, negative), name="mask_negation"),
    Rule(
        Pat("astype", _masked),
        lambda root, w: _each_branch(root, w, *[_cast(root.dtype)] * 2) if root.dtype.kind == "f" else None,
        name="mask_cast",
    ),
    Rule(Pat(("add", "sub"), _masked, Pat("where", name="u")), _mask_sum, name="mask_sum"),
    Rule(Pat(_MOVES, _masked), _mask_moved, name="mask_moved"),
    Rule(
        Pat("reshape_like", _masked, Pat.var("ref")),
        lambda root, w, ref: _mask_moved(root, w),
        name="mask_reshaped_like",
    ),
    Rule(Pat("broadcast_to", _masked), _mask_broadcast, name="mask_broadcast"),
    Rule(
        Pat("broadcast_like", _masked, Pat.var("ref")),
        lambda root, w, ref: _mask_broadcast(root, w),
        name="mask_broadcast_like",
    ),
    Rule(Pat("sum", _masked), _mask_reduced, name="mask_reduced"),
    Rule(Pat(("mul", "div"), _scatter, Pat.var("p")), _scatter_product, name="scatter_product", extends_domain=True),
    Rule(Pat("neg", _scatter), lambda root, u: _scatter_each(root, u, negative), name="scatter_negation"),
    Rule(Pat("astype", _scatter), lambda root, u: _scatter_each(root, u, _cast(root.dtype)), name="scatter_cast"),
    # a selection has index or reference inputs after the first: the scatter is checked inside
    Rule(Pat(_SELECTIONS, name="s"), _unscattered, name="unscattered"),
    Rule(Pat(_SELECTIONS + ("take", "take_along_axis"), name="s"), _unwritten, name="unwritten_selection"),
    Rule(Pat(("add", "sub"), _scatter, Pat(_SCATTERS, name="v")), _scatter_sum, name="scatter_sum"),
    Rule(
        Pat(("mul", "div"), Pat(_SELECTIONS, name="s"), Pat.var("p")),
        _selected_product,
        name="selected_product",
        extends_domain=True,
    ),
    Rule(Pat(_SCATTERS + ("where",)), _folded_mask, name="folded_mask"),
    Rule(
        Pat(("mul", "div"), Pat("constant", name="k"), Pat.var("p")),
        _folded_scatter_product,
        name="folded_scatter",
        extends_domain=True,
    ),
    Rule(
        Pat(("mul", "div"), Pat(("expand_dims", "squeeze", "transpose"), name="m"), Pat.var("p")),
        _moved_product,
        name="moved_product",
        extends_domain=True,
    ),
    Rule(
        Pat("neg", Pat(_SELECTIONS, name="s")), lambda root, s: _selected_each(root, s, negative), name="selected_neg"
    ),
    Rule(
        Pat("astype", Pat(_SELECTIONS, name="s")),
        lambda root, s: _selected_each(root, s, _cast(root.dtype)),
        name="selected_cast",
    ),
]
# == end of masks ==================================================================================


# == kinks whose square is smooth (issue 19, A) ====================================================
# |x|, norm(x), hypot(a, b) and std(x) have a kink where they are 0, and their derivative there is
# a documented convention (0); sqrt(s) has an infinite one at s = 0. Their squares are smooth:
# |x|² = x², norm(x)² = sum(x²), hypot(a, b)² = a² + b², std(x)² = var(x), sqrt(s)² = s for s >= 0.
# Differentiating K² through K composes the conventions: 2 K dK, whose derivative at the kink,
# 2 dK dK + 2 K d²K, is 0 (or nan) where the smooth form's is not (2 for |x|², 2I for norm(x)²).
# So these rules build the smooth form before anything is differentiated. Each is an identity
# for every real input: an even power of |u| is the power of u (bit for bit: the signs cancel);
# the square of a norm or of std is what it computes inside (norm(x) is sqrt(sum(x*x))), so no
# overflow or underflow appears that the original did not have; hypot(a, b)² is a² + b², which
# overflows where hypot(a, b)² does. sqrt(s)**p and (s**q)**p become s**(q*p) only where s is
# known to be >= 0 (``nonnegative``): for a negative s the original is nan, and stays so.
_PRODUCT_OPS = frozenset({"mul", "div", "neg"})
_SQUARED_KINKS = frozenset({"abs", "norm", "hypot", "std", "sqrt", "pow"})  # bases with a smooth even power
_INNER_SQUARES = frozenset({"norm", "std", "sqrt"})  # whose square is what they compute inside
_NONNEGATIVE = frozenset({"abs", "sqrt", "norm", "hypot", "std", "var", "relu", "softmax", "eye_like", "count"})
_NONNEGATIVE_IF_ALL = frozenset(
    {"add", "mul", "div", "sum", "mean", "max", "min", "prod", "cumsum", "cumprod", "minimum", "concatenate", "stack"}
)
_NONNEGATIVE_IF_ANY = frozenset({"maximum", "clip_below"})
_NONNEGATIVE_THROUGH = frozenset(  # their first input's values, moved or repeated
    {"broadcast_like", "broadcast_to", "reshape", "reshape_like", "transpose", "expand_dims", "squeeze"}
    | {"getitem", "take", "take_along_axis", "flip", "roll", "tile", "repeat", "match_shape", "diagonal"}
)


def nonnegative(node: Node, depth: int = 6) -> bool:
    """Never below 0 (nan allowed), as built: |x|, x**2, sqrt, norm, exp, sums and products of
    such, ...; looked at ``depth`` levels deep (False past that: not known)."""
    op = node.op
    if op == "constant":
        value = node.uniform if node.uniform is not None else node.value
        return node.dtype.kind in "fiu" and not np.any(np.asarray(value) < 0)
    if op in _NONNEGATIVE or positive(node):
        return True
    if depth == 0:
        return False
    inputs = node.inputs
    if op == "pow":
        return _even_integer(fill_value(inputs[1])) is not None or nonnegative(inputs[0], depth - 1)
    if op == "mul" and inputs[0] is inputs[1]:
        return True
    if op in _NONNEGATIVE_IF_ALL:
        return all(nonnegative(u, depth - 1) for u in inputs)
    if op in _NONNEGATIVE_IF_ANY:
        return any(nonnegative(u, depth - 1) for u in inputs)
    if op == "where":
        return nonnegative(inputs[1], depth - 1) and nonnegative(inputs[2], depth - 1)
    if op in _NONNEGATIVE_THROUGH or (op == "astype" and node.dtype.kind == "f"):
        return nonnegative(inputs[0], depth - 1)
    return False


def _even_integer(value: Any) -> int | None:
    """``value`` as a nonzero even int (2, -2, 4.0, ...), else None."""
    if value is None or isinstance(value, bool) or not np.isfinite(value) or not float(value).is_integer():
        return None
    n = int(value)
    return n if n != 0 and n % 2 == 0 else None


def _ratio(value: Any) -> Fraction | None:
    """A finite exponent as the small fraction it stands for (1/3 for 0.333...), else None."""
    if value is None or isinstance(value, bool) or not np.isfinite(value):
        return None
    r = Fraction(float(value)).limit_denominator(64)
    return r if float(r) == float(value) else None


def _in(u: Node, dtype: np.dtype) -> Node:
    return u if u.dtype == dtype else astype(u, dtype)


def _product_leaves(nodes: tuple[Node, ...], budget: int = 16) -> list[Node] | None:
    """The factors of a product of ``nodes`` (through mul, div and neg), each as often as it
    occurs; None past ``budget`` nodes (a long product is not searched)."""
    return _leaves(nodes, _PRODUCT_OPS, budget)


def _is_float_abs(n: Node) -> bool:
    return n.op == "abs" and n.dtype.kind == "f"


def _without_abs(node: Node, drop: frozenset) -> Node:
    """The product ``node`` with each |u| of ``drop`` as u: the same value up to its sign (a
    product with ``_product_leaves`` searched first, so this visits as few nodes)."""
    if node in drop:
        return node.inputs[0]
    if node.op not in _PRODUCT_OPS:
        return node
    return rebuild(node, [_without_abs(u, drop) for u in node.inputs])


def _root_power(r: Node, p: Any, dtype: np.dtype) -> Node | None:
    """sqrt(s)**p and (s**q)**p as s**(q*p), where s >= 0 (for a negative s the original is nan)."""
    if r.op == "sqrt":
        s, q = r.inputs[0], Fraction(1, 2)
    elif r.op == "pow":
        s, q = r.inputs[0], _ratio(fill_value(r.inputs[1]))
    else:
        return None
    outer = _ratio(p)
    if q is None or outer is None or q * outer == 0 or s.dtype.kind != "f" or not nonnegative(s):
        return None
    e = q * outer
    return _in(s, dtype) if e == 1 else power(_in(s, dtype), _number(float(e)))


def _smooth_square(k: Node, dtype: np.dtype) -> Node | None:
    """k*k written without k's kink, computed in ``dtype``; None where k is no such kink."""
    from symdiff.ops.reduce import VAR
    from symdiff.ops.reduce import sum as sum_

    if k.op == "neg":  # (-k)² = k²; --k was folded when it was built, so this recurses once
        return _smooth_square(k.inputs[0], dtype)
    if k.op == "abs" and k.dtype.kind == "f":
        return ar.square(_in(k.inputs[0], dtype))
    if k.op == "norm":
        return sum_(ar.square(_in(k.inputs[0], dtype)), axis=k.attrs["axis"], keepdims=k.attrs["keepdims"])
    if k.op == "hypot":
        return ar.add(*(ar.square(_in(u, dtype)) for u in k.inputs))
    if k.op == "std":
        return apply(VAR, _in(k.inputs[0], dtype), **dict(k._attrs))
    return _root_power(k, 2, dtype)


def _kink_power(root: Any, base: Node, p: Any) -> Node | None:
    """base**p without base's kink: an even power of a product with |u| in it as that of u, an
    even power of a kink as a power of its smooth square, sqrt(s)**p as s**(p/2) for s >= 0."""
    if root.dtype.kind != "f" or p is None:
        return None
    dtype, n, new = root.dtype, _even_integer(p), None
    if n is not None:
        leaves = _product_leaves((base,))
        drop = frozenset(u for u in leaves or () if _is_float_abs(u))
        if drop:
            new = power(_in(_without_abs(base, drop), dtype), n)
        elif (square := _smooth_square(base, dtype)) is not None:
            new = square if n == 2 else power(square, n // 2)
    if new is None:
        new = _root_power(base, p, dtype)
    return None if new is None else same_as(new, root)


def _paired_abs(root: Any, p: Node, q: Node) -> Node | None:
    # |u| an even number of times among a product's factors: each can be u, the signs cancel
    leaves = _product_leaves(root.inputs)
    if leaves is None:
        return None
    drop = frozenset(u for u in leaves if _is_float_abs(u) and leaves.count(u) % 2 == 0)
    if not drop:
        return None
    return _as_root(root, apply(REGISTRY[root.op], *(_without_abs(u, drop) for u in root.inputs)))


def _paired_kink(root: Any, y: Node, k: Node) -> Node | None:
    # (y*k)*k = y*k² and (y/k)/k = y/k², for a k whose square it computes inside (no new overflow)
    square = _smooth_square(k, root.dtype) if k.op in _INNER_SQUARES and root.dtype.kind == "f" else None
    if square is None:
        return None
    return _as_root(root, apply(REGISTRY[root.op], y, square))


def _root_of_square(root: Any, t: Node, q: Fraction | None) -> Node | None:
    """sqrt(u**2) = sqrt(u*u) = (u**2k)**(1/2k) = |u|, for every real u (the kink's convention:
    d|u| = 0 at 0, not the nan of 0/0)."""
    if q is None or root.dtype.kind != "f":
        return None
    if t.op == "pow":
        u, n = t.inputs[0], _even_integer(fill_value(t.inputs[1]))
        square = n is not None and n * q == 1
    else:
        u = t.inputs[0]
        square = t.inputs[1] is u and q == Fraction(1, 2)
    if not square or u.dtype.kind != "f":
        return None
    from symdiff.ops.functions import abs as abs_

    return same_as(abs_(u), root)


_kink = Pat.var("k", ops=_SQUARED_KINKS | _PRODUCT_OPS)
_inner = Pat.var("k", ops=_INNER_SQUARES)
_abs = Pat.var("p", ops=("abs",))
KINK_RULES = [
    Rule(
        Pat("pow", _kink, Pat.var("e")),
        lambda root, k, e: _kink_power(root, k, fill_value(e)),
        name="kink_power",
        extends_domain=True,  # (s**3)**(1/3) is s for s >= 0, also where s**3 overflows
    ),
    Rule(Pat("mul", _kink, Pat.var("k")), lambda root, k: _kink_power(root, k, 2), name="kink_square"),
    # a product gaining a factor |u| (w*|u|*|u|, (w/|u|)/|u|): searched only then, so other products cost nothing
    Rule(Pat("mul", _abs, Pat.var("q")), _paired_abs, name="paired_abs"),
    Rule(Pat("div", Pat.var("q"), _abs), _paired_abs, name="paired_abs"),
    Rule(Pat("div", _abs, Pat.var("q")), _paired_abs, name="paired_abs"),
    Rule(Pat("mul", Pat("mul", Pat.var("y"), _inner), Pat.var("k")), _paired_kink, name="paired_kink"),
    Rule(Pat("div", Pat("div", Pat.var("y"), _inner, ordered=True), Pat.var("k")), _paired_kink, name="paired_kink"),
    Rule(
        Pat("sqrt", Pat(("pow", "mul"), name="t")),
        lambda root, t: _root_of_square(root, t, Fraction(1, 2)),
        name="root_of_square",
        extends_domain=True,  # sqrt(u**2) is |u|, also where u**2 overflows
    ),
    Rule(
        Pat("pow", Pat(("pow", "mul"), name="t"), Pat.var("q")),
        lambda root, t, q: _root_of_square(root, t, _ratio(fill_value(q))),
        name="root_of_square",
        extends_domain=True,
    ),
]
# == end of kinks ==================================================================================


# The roots the normal forms are computed at (a negation is a term with coefficient -1; a
# product's, of a factor -1), and the ops each reads through (``flattens``): a single-use
# inner sum is part of the outer sum, so the simplifier rewrites it there, not on its own.
# A product scaled by a constant (``2*(3*x + y)``) is also a sum's term, read through only then.
_SUM_OPS = frozenset({"add", "sub", "neg"})
SUMS = ("add", "sub", "neg")
PRODUCTS = ("mul", "div")

_det_ratio = Pat("div", Pat("det", Pat.var("a"), name="d"), Pat.var("d"))

RULES = RuleTable(
    [
        # while building: identities that hold for every value
        Rule(of_kind("elementwise"), _scalar_operands, name="scalar_operands"),
        Rule(x + 0, _keep),
        Rule(x + _neg(y), lambda root, x, y: subtract(x, y)),
        Rule(x - 0, _keep),
        Rule(Pat.const(0) - x, lambda root, x: negative(x) if same_type(x, root) else None),
        Rule(x - _neg(y), lambda root, x, y: ar.add(x, y)),
        Rule(x * 1, _keep),
        Rule(x * -1, lambda root, x: negative(x) if same_type(x, root) else None),
        Rule(Pat.const(0, "zero") * x, _zero_product, name="zero_product", extends_domain=True),
        Rule(_scalar("a") * Pat("mul", _scalar("b"), x, ordered=True), _merge_factors),
        Rule(a * Pat("div", Pat.const(1, "one"), c, ordered=True), _times_reciprocal),
        Rule(Pat("neg", name="n") * b, lambda root, n, b: _negated_product(root)),
        Rule(x / 1, lambda root, x: x if x.dtype.kind == "f" and same_type(x, root) else None),
        Rule(Pat("neg", name="n") / b, lambda root, n, b: _negated_quotient(root)),
        Rule(a / Pat("neg", name="n"), lambda root, a, n: _negated_quotient(root)),
        Rule(-_neg(x), lambda root, x: x),
        Rule(-Pat("mul", _scalar("a"), x), _negated_factor),
        Rule(x**1, _keep),
        *KINK_RULES,  # kinks whose square is smooth (the section above)
        Rule(Pat("where", c, x, y), _known_condition),
        Rule(Pat("sum", Pat("constant", name="x")), _sum_of_uniform),
        Rule(Pat("broadcast_like", x, Pat.var("ref")), lambda root, x, ref: _uniform_broadcast(root, x)),
        Rule(Pat("reshape", Pat("reshape", name="x")), _reshape_reshape),
        Rule(Pat("transpose", Pat("transpose", name="x")), _transpose_transpose),
        Rule(Pat("reshape_like", x, Pat.var("ref")), lambda root, x, ref: _static_reshape_like(root, x)),
        Rule(Pat("match_shape", x, Pat.var("ref")), _known_shapes),
        Rule(_pat("getitem"), _full_slice),
        Rule(Pat(("concatenate", "stack")), _rejoined),
        Rule(Pat("expand_dims", _det_ratio) * y, _cancelled_det, name="cancelled_det", extends_domain=True),
        Rule(_det_ratio * y, _cancelled_det, name="cancelled_det", extends_domain=True),
        Rule(Pat("log", Pat("det", x)), _log_det, name="log_det", extends_domain=True),
        Rule(Pat("matmul", x, y), _identity_product, name="identity_product", extends_domain=True),
        Rule(Pat("matmul", Pat("mul", Pat.var("p"), Pat.var("n")), Pat.var("v")), _factor_out),
        Rule(Pat("matmul", _neg(x), y), lambda root, x, y: _as_root(root, negative(_matmul(x, y)))),
        Rule(Pat("matmul", x, _neg(y)), lambda root, x, y: _as_root(root, negative(_matmul(x, y)))),
        Rule(Pat("add", Pat("unindex", name="x"), Pat("unindex", name="y")), _merged_scatters),
        Rule(Pat("undiagonal", x, Pat.var("ref")), _uniform_diagonal),
        Rule(Pat("squeeze", Pat("expand_dims", x, name="e")), _squeeze_expanded),
        Rule(Pat("expand_dims", Pat("squeeze", x, name="e")), _squeeze_expanded),
        Rule(Pat("sum", Pat("mul", name="p")), _summed_diagonal, name="summed_diagonal", extends_domain=True),
        Rule(Pat("sum", Pat("mul", name="p")), _row_products),
        Rule(Pat("sum", _neg(x)), _summed_negation),
        Rule(Pat("squeeze", Pat("matmul", m, Pat("expand_dims", b, name="e"), name="p")), _batched_matvec),
        Rule(Pat("squeeze", Pat("matmul", Pat("expand_dims", b, name="e"), m, name="p")), _batched_matvec),
        Rule(_pat("zeros_like"), _static_fill(0)),
        Rule(_pat("ones_like"), _static_fill(1)),
        Rule(_pat("count"), _static_count),
        Rule(Pat("eye_like", Pat.var("ref")), _static_eye),
        *MASK_RULES,  # the masks of where and of selections (the section above)
        # last: a node no other rule replaced, every input a constant, is computed now
        Rule(of_kind(KINDS), _constant_folding, name="constant_folding", guard=("constant",)),
        # simplify only: normal forms of whole sums and products, function pairs
        Rule(Pat(PRODUCTS), collect_factors, build=False, context=True, extends_domain=True, flattens=_PRODUCT_OPS),
        Rule(Pat(SUMS), collect_terms, build=False, context=True, extends_domain=True, flattens=_SUM_OPS),
        Rule(Pat("mul"), collect_terms, build=False, context=True, extends_domain=True),  # 2*(3*x + y): a term
        Rule(Pat("exp", Pat("log", x)), _exp_log, build=False, name="exp_log"),
        Rule(
            Pat("sum", Pat(("ones_like", "broadcast_like"), name="x")), _counted_ones, build=False, name="counted_ones"
        ),
        Rule(Pat("sum", x), _uniform_sum, build=False, name="uniform_sum"),
        Rule(Pat("sum", Pat(("mul", "div"), name="p")), _summed_scalar_factors, build=False, context=True),
        Rule(Pat(("mul", "div")), _uniform_factor, build=False, name="uniform_factor"),
        Rule(Pat(("ones_like", "broadcast_like", "count")), _plainer_reference, build=False, name="plainer_reference"),
        Rule(Pat("matmul", x, y), _uniform_matmul, build=False, name="uniform_matmul"),
        Rule(Pat("log", Pat("exp", x)), lambda root, x: x, build=False, name="log_exp", extends_domain=True),
        Rule(
            Pat("pow", Pat("pow", x, Pat.var("p")), Pat.var("q")),
            _pow_pow,
            build=False,
            name="pow_pow",
            extends_domain=True,
        ),
        Rule(Pat("where", c, x, x), _where_same, build=False),
        Rule(Pat("where", c, x, y), _relu_form, build=False, name="relu_form"),
    ]
)


def _build_rewrite(rules: list[Rule]) -> Callable[[Candidate], Node | None]:
    # A node none of whose inputs has an op that some rule's pattern names (a constant, a
    # negation, ...) can only meet the rules that name none: the usual case, decided at once.
    unguarded = [r for r in rules if r.guard is None]
    named = frozenset().union(*(r.guard for r in rules if r.guard is not None))

    def rewrite(root: Candidate) -> Node | None:
        for u in root.inputs:
            if u.op in named:
                return RULES.rewrite(root, rules)
        return RULES.rewrite(root, unguarded) if unguarded else None

    return rewrite


def install() -> None:
    """Make the build rules part of ``apply`` (for every op, and for ops declared later by kind)."""
    BUILD_REWRITES.clear()
    for op in REGISTRY:
        if rules := RULES.for_op(op, build=True):
            BUILD_REWRITES[op] = _build_rewrite(rules)
    for kind in KINDS:
        if rules := [r for r in RULES.by_op.get(f"kind:{kind}", []) if r.build]:
            BUILD_REWRITES[kind] = _build_rewrite(rules)


install()
