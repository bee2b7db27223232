"""The one rule table: every rewrite symdiff makes, as pattern -> replacement.

Rules marked ``build`` apply to every node as it is built (``x + 0`` is ``x`` before
anything is appended); the others only when :func:`symdiff.simplify` is asked for
(collecting like terms, merging factors into powers, ``exp(log x)``). Every rule
fires only where it holds for every value the original accepts, up to rounding: a
replacement has the root's shape and dtype (or the rule does not fire), constants
merge only into representable numbers (``ops.core.representable``), and cancelling
``x/x`` needs x to be nonzero (an op property). See docs/concepts.md for the
contract and the two documented domain-extending rewrites (``x - x``, ``exp(x)/exp(x)``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from symdiff.graph import Node
from symdiff.ops import arithmetic as ar
from symdiff.ops.arithmetic import astype, divide, multiply, negative, power, subtract
from symdiff.ops.core import BUILD_REWRITES, REGISTRY, Candidate, apply, broadcast_shapes, representable
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
    from symdiff.printing import _folded_from

    return multiply(negative(a), x) if _folded_from(a) is None else None


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
# the Hessian of x@A@x is built as A + A.T, not as n matrix-vector products with e_i.
_IDENTITY_FORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ELEMENT_SCALE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_eye(v: np.ndarray) -> bool:
    n = v.shape[0]
    return v.shape == (n, n) and np.count_nonzero(v) == n and bool(np.all(np.diagonal(v) == 1))


def identity_form(node: Node) -> str | None:
    """ "eye" for an (n, n) identity constant, "rows" for (n, 1, n) (unit row vectors), "cols" for
    (n, n, 1) (unit columns), "elements" for (m, k, m, k) (the identity on m x k matrices);
    None for anything else. Checked once per constant."""
    if node.op != "constant":
        return None
    form = _IDENTITY_FORMS.get(node, False)
    if form is not False:
        return form
    s, v, form = node.shape, node.value, None
    if node.uniform is None and node.dtype.kind == "f" and len(s) in (2, 3):
        if len(s) == 2 and s[0] == s[1] and _is_eye(v):
            form = "eye"
        elif len(s) == 3 and s[1] == 1 and s[0] == s[2] and _is_eye(v[:, 0, :]):
            form = "rows"
        elif len(s) == 3 and s[2] == 1 and s[0] == s[1] and _is_eye(v[:, :, 0]):
            form = "cols"
    if form is None and node.uniform is None and node.dtype.kind == "f" and len(s) == 4 and s[:2] == s[2:]:
        flat = v.reshape(s[0] * s[1], s[0] * s[1])
        scale = flat[0, 0]
        if scale != 0 and _is_eye(flat / scale):
            form = "elements"  # c times the identity on a matrix's elements: a Hessian's seed by a matrix
            _ELEMENT_SCALE[node] = scale
    _IDENTITY_FORMS[node] = form
    return form


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
    if fx == "eye" and y.ndim >= 2:
        return _as_root(root, y)  # I @ M = M
    if fy == "eye" and x.ndim >= 2:
        return _as_root(root, x)
    if fx == "rows" and y.ndim == 2:
        return _as_root(root, expand_dims(y, -2))  # e_i.T @ M: row i of M
    if fy == "cols" and x.ndim == 2:
        return _as_root(root, expand_dims(transpose(x), -1))  # M @ e_i: column i of M
    if fx == "elements" and y.ndim == 2:
        # E[a, b, i, j] = δ_ai δ_bj, so (E @ M)[a, b, i, :] = δ_ai M[b, :]: an outer product, not a matmul
        m = x.shape[0]
        delta = root.graph.constant((_ELEMENT_SCALE[x] * np.eye(m, dtype=x.dtype)).reshape(m, 1, m, 1))
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


def collect_terms(node: Node, ctx: Callable[[Node], bool]) -> Node | None:  # ctx: is a node shared?
    """Like terms collected and constants merged: ``cos t + cos t`` -> ``2*cos(t)``."""
    terms, constant, raw, constants = _terms(node, ctx)
    kept = [(t, k) for t, k in terms if k != 0]
    merged = raw > len(terms) or constants > 1 or len(kept) < len(terms) or (constants and constant == 0)
    leads_negative = len(kept) > 1 and kept[0][1] < 0 and kept[1][1] > 0
    if not merged and not leads_negative:
        return None  # no term combines: the sum stays as it was built
    numbers = [representable(k, node.dtype) for _, k in kept] + [representable(constant, node.dtype)]
    if None in numbers:
        return None  # a merged coefficient would overflow (or underflow): keep the sum as built
    *coefficients, total = numbers
    pieces = [(t, k) for (t, _), k in zip(kept, coefficients)]
    # Lead with a positive term (x - y, not -y + x). Only the first two swap: that is exact,
    # where a longer reordering could overflow an intermediate the original did not.
    if leads_negative:
        pieces[0], pieces[1] = pieces[1], pieces[0]
    result = None
    for term, k in pieces:
        magnitude = abs(k)
        piece = term if magnitude == 1 else multiply(_number(magnitude), term)
        if result is None:
            result = piece if k > 0 else negative(piece)
        else:
            result = ar.add(result, piece) if k > 0 else subtract(result, piece)
    if result is None:
        result = node.graph.constant(np.asarray(total, dtype=node.dtype))
    elif total != 0:  # x - 2 rather than x + (-2): the same number
        result = ar.add(result, _number(total)) if total > 0 else subtract(result, _number(-total))
    if result is node:
        return None
    return same_as(result, node)


def _factors(node: Node, shared: Callable[[Node], bool]) -> tuple[dict[Node, list[Fraction]], Fraction, int]:
    """``node`` as coefficient * prod(base ** exponent); exponents kept apart by sign.

    Powers combine only where that holds for every real base: ``(x**a)**e`` is
    ``x**(a*e)`` for an integer e, or an odd integer a, or a positive x (``(x**2)**0.5``
    is ``|x|``, not x); a negation leaves a power as ``(-1)**e`` only for an integer e.
    """
    bases: dict[Node, list[Fraction]] = {}  # base -> [positive total, negative total]
    coefficient = Fraction(1)
    raw = 0
    stack: list[tuple[Node, Fraction]] = [(node, Fraction(1))]
    while stack:
        n, e = stack.pop()
        expand = n is node or not shared(n)  # a shared product is a factor of its own
        if not expand and n.op in ("mul", "div", "neg"):
            pass
        elif n.op == "mul":
            stack += [(n.inputs[1], e), (n.inputs[0], e)]
            continue
        elif n.op == "div":
            stack += [(n.inputs[1], -e), (n.inputs[0], e)]
            continue
        elif n.op == "neg" and e.denominator == 1:
            if e.numerator % 2:
                coefficient = -coefficient
            stack.append((n.inputs[0], e))
            continue
        elif n.op == "pow" and _combinable_power(n, e):
            stack.append((n.inputs[0], e * Fraction(scalar_constant(n.inputs[1]))))
            continue
        elif scalar_constant(n) is not None and e.denominator == 1 and abs(e) <= 64 and (e > 0 or scalar_constant(n)):
            coefficient *= Fraction(scalar_constant(n)) ** int(e)
            raw += 1
            continue
        totals = bases.setdefault(n, [Fraction(0), Fraction(0)])
        totals[0 if e > 0 else 1] += e
        raw += 1
    return bases, coefficient, raw


def _combinable_power(n: Node, e: Fraction) -> bool:
    p = scalar_constant(n.inputs[1])
    if p is None or not _exact(p):
        return False
    return e.denominator == 1 or (float(p).is_integer() and int(p) % 2 == 1) or positive(n.inputs[0])


def _exact(value: float) -> bool:
    return Fraction(value).limit_denominator(64) == Fraction(value)


def _size(node: Node) -> float:
    return float("inf") if node.size is None else node.size


def _power(base: Node, exponent: Fraction) -> Node:
    if exponent == 1:
        return base
    return power(base, _number(float(exponent)))


def collect_factors(node: Node, ctx: Callable[[Node], bool]) -> Node | None:
    """Constant factors merged, repeated factors as powers, nonzero factors cancelled:
    ``2*x*(3*x)`` -> ``6*x**2``; the factors in a canonical order (``x*y - y*x`` is 0)."""
    bases, exact_coefficient, raw = _factors(node, ctx)
    coefficient = representable(exact_coefficient, node.dtype)
    if coefficient is None:
        return None  # the merged constant would overflow (or underflow): keep the product as built
    numerator, denominator = [], []
    for base, (up, down) in bases.items():
        if nonzero(base) or up == 0 or down == 0:
            net = up + down
            if net > 0:
                numerator.append((base, net))
            elif net < 0:
                denominator.append((base, -net))
        else:  # x/x is nan at 0: keep both sides
            numerator.append((base, up))
            denominator.append((base, -down))
    combined = raw > len(bases) + (coefficient not in (1.0, -1.0)) or any(
        up != 0 and down != 0 or max(abs(up), abs(down)) > 1 for up, down in bases.values()
    )
    # a constant factor inside (sin(y)*(2*x)) comes to the front; one on top (h*0.999) can stay
    buried = coefficient not in (1.0, -1.0) and not any(scalar_constant(u) is not None for u in node.inputs)
    # Smallest factors first, the coefficient on the smallest: small products happen
    # before anything is broadcast to a large shape (2*(v*M) becomes (2*v)*M). Equal sizes
    # go in creation order, so y*x and x*y are one node and cancel (x*y - y*x is 0). The
    # canonical form rebuilds to itself, which ends the rewriting.
    ordered = sorted(numerator, key=lambda be: (_size(be[0]), be[0].index))
    if not combined and not buried and ordered == numerator:
        return None  # nothing merges, and the order is already canonical
    magnitude = abs(coefficient)
    result = None
    for base, exponent in ordered:
        piece = _power(base, exponent)
        if result is None:
            result = piece if magnitude == 1 else multiply(_number(magnitude), piece)
        else:
            result = multiply(result, piece)
    if result is None:
        result = node.graph.constant(np.asarray(magnitude, dtype=node.dtype))
    for base, exponent in denominator:
        result = divide(result, _power(base, exponent))
    if coefficient < 0:
        result = negative(result)
    if result is node:
        return None
    return same_as(result, node)


def _exp_log(root: Node, x: Node) -> Node | None:
    return x if positive(x) else None


def _pow_pow(root: Node, x: Node, p: Node, q: Node) -> Node | None:
    inner, outer = scalar_constant(p), scalar_constant(q)
    if inner is None or outer is None or not (float(outer).is_integer() or positive(x)):
        return None
    return power(x, _number(inner * outer))


def _where_same(root: Node, c: Node, x: Node) -> Node | None:
    return same_as(x, root)


# The roots the normal forms are computed at (a negation is a term with coefficient -1).
SUMS = ("add", "sub", "neg", "mul")
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
        Rule(Pat.const(0, "zero") * x, _zero_product),
        Rule(_scalar("a") * Pat("mul", _scalar("b"), x, ordered=True), _merge_factors),
        Rule(a * Pat("div", Pat.const(1, "one"), c, ordered=True), _times_reciprocal),
        Rule(Pat("neg", name="n") * b, lambda root, n, b: _negated_product(root)),
        Rule(x / 1, lambda root, x: x if x.dtype.kind == "f" and same_type(x, root) else None),
        Rule(Pat("neg", name="n") / b, lambda root, n, b: _negated_quotient(root)),
        Rule(a / Pat("neg", name="n"), lambda root, a, n: _negated_quotient(root)),
        Rule(-_neg(x), lambda root, x: x),
        Rule(-Pat("mul", _scalar("a"), x), _negated_factor),
        Rule(x**1, _keep),
        Rule(Pat("where", c, x, y), _known_condition),
        Rule(Pat("sum", Pat("constant", name="x")), _sum_of_uniform),
        Rule(Pat("broadcast_like", x, Pat.var("ref")), lambda root, x, ref: _uniform_broadcast(root, x)),
        Rule(Pat("reshape", Pat("reshape", name="x")), _reshape_reshape),
        Rule(Pat("transpose", Pat("transpose", name="x")), _transpose_transpose),
        Rule(Pat("reshape_like", x, Pat.var("ref")), lambda root, x, ref: _static_reshape_like(root, x)),
        Rule(Pat("match_shape", x, Pat.var("ref")), _known_shapes),
        Rule(_pat("getitem"), _full_slice),
        Rule(Pat(("concatenate", "stack")), _rejoined),
        Rule(Pat("expand_dims", _det_ratio) * y, _cancelled_det),
        Rule(_det_ratio * y, _cancelled_det),
        Rule(Pat("matmul", x, y), _identity_product),
        Rule(Pat("matmul", Pat("mul", Pat.var("p"), Pat.var("n")), Pat.var("v")), _factor_out),
        Rule(Pat("matmul", _neg(x), y), lambda root, x, y: _as_root(root, negative(_matmul(x, y)))),
        Rule(Pat("matmul", x, _neg(y)), lambda root, x, y: _as_root(root, negative(_matmul(x, y)))),
        Rule(Pat("add", Pat("unindex", name="x"), Pat("unindex", name="y")), _merged_scatters),
        Rule(Pat("undiagonal", x, Pat.var("ref")), _uniform_diagonal),
        Rule(Pat("squeeze", Pat("expand_dims", x, name="e")), _squeeze_expanded),
        Rule(Pat("expand_dims", Pat("squeeze", x, name="e")), _squeeze_expanded),
        Rule(Pat("sum", Pat("mul", name="p")), _summed_diagonal),
        Rule(Pat("sum", Pat("mul", name="p")), _row_products),
        Rule(Pat("sum", _neg(x)), _summed_negation),
        Rule(Pat("squeeze", Pat("matmul", m, Pat("expand_dims", b, name="e"), name="p")), _batched_matvec),
        Rule(Pat("squeeze", Pat("matmul", Pat("expand_dims", b, name="e"), m, name="p")), _batched_matvec),
        Rule(_pat("zeros_like"), _static_fill(0)),
        Rule(_pat("ones_like"), _static_fill(1)),
        Rule(_pat("count"), _static_count),
        Rule(Pat("eye_like", Pat.var("ref")), _static_eye),
        # simplify only: normal forms of whole sums and products, function pairs
        Rule(Pat(PRODUCTS), collect_factors, build=False, context=True),
        Rule(Pat(SUMS), collect_terms, build=False, context=True),
        Rule(Pat("exp", Pat("log", x)), _exp_log, build=False),
        Rule(Pat("log", Pat("exp", x)), lambda root, x: x, build=False),
        Rule(Pat("pow", Pat("pow", x, Pat.var("p")), Pat.var("q")), _pow_pow, build=False),
        Rule(Pat("where", c, x, x), _where_same, build=False),
    ]
)


def _build_rewrite(op: str) -> Callable[[Candidate], Node | None]:
    rules = RULES.for_op(op, build=True)
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
        if RULES.for_op(op, build=True):
            BUILD_REWRITES[op] = _build_rewrite(op)
    for kind in {"elementwise"}:
        rules = [r for r in RULES.by_op.get(f"kind:{kind}", []) if r.build]
        BUILD_REWRITES[kind] = lambda root, rules=rules: RULES.rewrite(root, rules)


install()
