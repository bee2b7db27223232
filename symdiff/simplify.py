"""Algebraic simplification: rewrite a graph's outputs to equivalent, smaller forms.

``simplify`` rebuilds the nodes the outputs need, bottom-up, applying a table of
rewrites until nothing changes: like terms collected (``cos t + cos t`` ->
``2*cos(t)``), constant factors merged (``2*(3*x)`` -> ``6*x``), repeated factors
turned into powers (``x*x`` -> ``x**2``), ``exp(log x)`` for positive x,
``log(exp x)``, powers of powers. Shapes and dtypes never change, and neither do
values, up to rounding (a rewrite may reassociate floating-point arithmetic).

Everything simpler that can be done while building (``x*1``, ``x+0``, ``0*x``,
``--x``, ``sum`` of a broadcast constant, transpose of transpose, reshape of
reshape, constant folding) already is, by the op constructors: this pass is for
what needs to look at a whole sum or product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from symdiff import ops
from symdiff.graph import Node, ancestors, check_same_graph, consumers, gc_paused, node_list
from symdiff.ops import REGISTRY, apply
from symdiff.ops.core import representable

# Ops whose public constructor (with its build-time folds) rebuilds a node from new inputs.
_REBUILD: dict[str, Callable[..., Node]] = {
    "add": ops.add,
    "sub": ops.subtract,
    "mul": ops.multiply,
    "div": ops.divide,
    "neg": ops.negative,
    "pow": ops.power,
    "where": ops.where,
    "broadcast_like": ops.broadcast_like,
    "sum": lambda x, axis, keepdims: ops.sum(x, axis, keepdims),
    "transpose": lambda x, axes: ops.transpose(x, axes),
    "reshape": lambda x, shape_to: ops.reshape(x, shape_to),
    "expand_dims": lambda x, axis: ops.expand_dims(x, axis),
    "squeeze": lambda x, axis: ops.squeeze(x, axis),
}
# Nodes of these ops are never 0 (up to underflow): x/x may cancel.
_NONZERO = {"exp", "sigmoid", "softplus"}
MAX_PASSES = 8


def _scalar_constant(node: Node) -> float | None:
    """The value of a constant that cannot change the shape it multiplies (shape ())."""
    if node.op == "constant" and node.shape == () and node.dtype.kind == "f" and np.isfinite(node.value):
        return float(node.value)
    return None


def _nonzero(node: Node) -> bool:
    if node.op in _NONZERO:
        return True
    value = node.uniform if node.op == "constant" else None
    return value is not None and value != 0


def _positive(node: Node) -> bool:
    if node.op in _NONZERO:
        return True
    return node.op == "constant" and node.uniform is not None and node.uniform > 0


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _same_shape(result: Node, like: Node) -> Node | None:
    """``result`` if it has ``like``'s shape and dtype, broadcast to it if that is static."""
    if result.dtype != like.dtype:
        result = ops.astype(result, like.dtype)
    if result.shape == like.shape:
        return result
    if None not in like.shape:
        return ops.broadcast_to(result, like.shape)
    return None


# -- sums ------------------------------------------------------------------------------
# Coefficients and constants are merged exactly (as fractions) and rounded once, and only
# where the merged number is representable (``representable``): a merge never overflows.
def _terms(node: Node, shared: Callable[[Node], bool]) -> tuple[list[tuple[Node, Fraction]], Fraction, int, int]:
    """``node`` as sum(coefficient * term) + constant; also how many terms and constants it had.

    A shared subexpression is a term of its own: expanding it would repeat its work.
    """
    terms: dict[Node, Fraction] = {}
    constant = Fraction(0)
    raw = constants = 0
    stack = [(node, Fraction(1))]
    while stack:
        n, c = stack.pop()
        if n is not node and shared(n) and _scalar_constant(n) is None:
            terms[n] = terms.get(n, 0) + c
            raw += 1
        elif n.op == "add":
            stack += [(n.inputs[1], c), (n.inputs[0], c)]
        elif n.op == "sub":
            stack += [(n.inputs[1], -c), (n.inputs[0], c)]
        elif n.op == "neg":
            stack.append((n.inputs[0], -c))
        elif n.op == "mul" and _scalar_constant(n.inputs[0]) is not None:
            stack.append((n.inputs[1], c * Fraction(_scalar_constant(n.inputs[0]))))
        elif n.op == "mul" and _scalar_constant(n.inputs[1]) is not None:
            stack.append((n.inputs[0], c * Fraction(_scalar_constant(n.inputs[1]))))
        elif _scalar_constant(n) is not None:
            constant += c * Fraction(_scalar_constant(n))
            constants += 1
        else:
            terms[n] = terms.get(n, 0) + c
            raw += 1
    return list(terms.items()), constant, raw, constants


def _rewrite_sum(node: Node, shared: Callable[[Node], bool]) -> Node | None:
    terms, constant, raw, constants = _terms(node, shared)
    kept = [(t, c) for t, c in terms if c != 0]
    merged = raw > len(terms) or constants > 1 or len(kept) < len(terms) or (constants and constant == 0)
    leads_negative = len(kept) > 1 and kept[0][1] < 0 and kept[1][1] > 0
    if not merged and not leads_negative:
        return None  # no term combines: the sum stays as it was built
    numbers = [representable(c, node.dtype) for _, c in kept] + [representable(constant, node.dtype)]
    if None in numbers:
        return None  # a merged coefficient would overflow (or underflow): keep the sum as built
    *coefficients, total = numbers
    pieces = [(t, c) for (t, _), c in zip(kept, coefficients)]
    # Lead with a positive term (x - y, not -y + x). Only the first two swap: that is exact,
    # where a longer reordering could overflow an intermediate the original did not.
    if leads_negative:
        pieces[0], pieces[1] = pieces[1], pieces[0]
    result = None
    for term, c in pieces:
        magnitude = abs(c)
        piece = term if magnitude == 1 else ops.multiply(_number(magnitude), term)
        if result is None:
            result = piece if c > 0 else ops.negative(piece)
        else:
            result = ops.add(result, piece) if c > 0 else ops.subtract(result, piece)
    if result is None:
        result = node.graph.constant(np.asarray(total, dtype=node.dtype))
    elif total != 0:  # x - 2 rather than x + (-2): the same number
        result = ops.add(result, _number(total)) if total > 0 else ops.subtract(result, _number(-total))
    if result is node:
        return None
    return _same_shape(result, node)


# -- products --------------------------------------------------------------------------
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
            stack.append((n.inputs[0], e * Fraction(_scalar_constant(n.inputs[1]))))
            continue
        elif _scalar_constant(n) is not None and e.denominator == 1 and abs(e) <= 64 and (e > 0 or _scalar_constant(n)):
            coefficient *= Fraction(_scalar_constant(n)) ** int(e)
            raw += 1
            continue
        totals = bases.setdefault(n, [Fraction(0), Fraction(0)])
        totals[0 if e > 0 else 1] += e
        raw += 1
    return bases, coefficient, raw


def _combinable_power(n: Node, e: Fraction) -> bool:
    a = _scalar_constant(n.inputs[1])
    if a is None or not _exact(a):
        return False
    return e.denominator == 1 or (float(a).is_integer() and int(a) % 2 == 1) or _positive(n.inputs[0])


def _exact(value: float) -> bool:
    return Fraction(value).limit_denominator(64) == Fraction(value)


def _size(node: Node) -> float:
    return float("inf") if node.size is None else node.size


def _power(base: Node, exponent: Fraction) -> Node:
    if exponent == 1:
        return base
    return ops.power(base, _number(float(exponent)))


def _rewrite_product(node: Node, shared: Callable[[Node], bool]) -> Node | None:
    bases, exact_coefficient, raw = _factors(node, shared)
    coefficient = representable(exact_coefficient, node.dtype)
    if coefficient is None:
        return None  # the merged constant would overflow (or underflow): keep the product as built
    numerator, denominator = [], []
    for base, (up, down) in bases.items():
        if _nonzero(base) or up == 0 or down == 0:
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
    buried = coefficient not in (1.0, -1.0) and not any(_scalar_constant(u) is not None for u in node.inputs)
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
            result = piece if magnitude == 1 else ops.multiply(_number(magnitude), piece)
        else:
            result = ops.multiply(result, piece)
    if result is None:
        result = node.graph.constant(np.asarray(magnitude, dtype=node.dtype))
    for base, exponent in denominator:
        result = ops.divide(result, _power(base, exponent))
    if coefficient < 0:
        result = ops.negative(result)
    if result is node:
        return None
    return _same_shape(result, node)


# -- the rewrite table -----------------------------------------------------------------
def _exp_log(node: Node, shared: Callable[[Node], bool]) -> Node | None:
    inner = node.inputs[0]
    if inner.op == "log" and _positive(inner.inputs[0]):
        return inner.inputs[0]
    return None


def _log_exp(node: Node, shared: Callable[[Node], bool]) -> Node | None:
    inner = node.inputs[0]
    return inner.inputs[0] if inner.op == "exp" else None


def _pow_pow(node: Node, shared: Callable[[Node], bool]) -> Node | None:
    inner, outer = node.inputs
    if inner.op != "pow":
        return None
    a, b = _scalar_constant(inner.inputs[1]), _scalar_constant(outer)
    if a is None or b is None or not (float(b).is_integer() or _positive(inner.inputs[0])):
        return None
    return ops.power(inner.inputs[0], _number(a * b))


def _where_same(node: Node, shared: Callable[[Node], bool]) -> Node | None:
    _, x, y = node.inputs
    return _same_shape(x, node) if x is y else None


# op -> rewrites, each ``rule(node, shared) -> Node | None`` (None: no change);
# ``shared(n)`` tells whether a node has other consumers in the graph being simplified.
RULES: dict[str, list[Callable[[Node, Callable[[Node], bool]], Node | None]]] = {
    "add": [_rewrite_sum],
    "sub": [_rewrite_sum],
    "neg": [_rewrite_sum],
    "mul": [_rewrite_product, _rewrite_sum],
    "div": [_rewrite_product],
    "pow": [_pow_pow],
    "exp": [_exp_log],
    "log": [_log_exp],
    "where": [_where_same],
}


def _rewrite(node: Node, shared: Callable[[Node], bool]) -> Node:
    """Apply the rules to ``node`` (whose inputs are already simplified) until none fires."""
    for _ in range(MAX_PASSES):
        if node.dtype.kind != "f":
            return node
        for rule in RULES.get(node.op, ()):
            new = rule(node, shared)
            if new is not None and new is not node:
                node = new
                break
        else:
            return node
    return node


def _rebuild(node: Node, inputs: tuple[Node, ...]) -> Node:
    attrs = dict(node._attrs)
    build = _REBUILD.get(node.op)
    if build is not None:
        return build(*inputs, **attrs)
    return apply(REGISTRY[node.op], *inputs, **attrs)


_SUMS = {"add", "sub", "neg"}
_PRODUCTS = {"mul", "div", "neg"}


def _one_pass(outputs: Sequence[Node]) -> list[Node]:
    graph = outputs[0].graph
    nodes = ancestors(outputs)
    uses, consumer = consumers(nodes, outputs)
    done: dict[Node, Node] = {}
    new_uses: dict[Node, int] = {}  # consumers of the rebuilt nodes, carried over from the originals

    def shared(n: Node) -> bool:
        return new_uses.get(n, 1) > 1

    with graph._transaction():
        for n in nodes:
            if not n.inputs:
                done[n] = n
            else:
                inputs = tuple(done[u] for u in n.inputs)
                # Only the root of a sum or a product is rewritten: flattening each node of a
                # long chain again would take quadratic time.
                parent = consumer.get(n) if uses.get(n) == 1 else None
                interior = parent is not None and (
                    (n.op in _SUMS and parent.op in _SUMS) or (n.op in _PRODUCTS and parent.op in _PRODUCTS)
                )
                graph._gradient_depth += n.is_gradient  # a simplified derivative node is still one
                try:
                    # a node whose inputs did not change is itself, unless a rule fires
                    rebuilt = n if inputs == n.inputs else _rebuild(n, inputs)
                    done[n] = rebuilt if interior or n.op not in RULES else _rewrite(rebuilt, shared)
                finally:
                    graph._gradient_depth -= n.is_gradient
            new_uses[done[n]] = new_uses.get(done[n], 0) + uses.get(n, 0)
    return [done[n] for n in outputs]


def simplify(outputs: Node | Sequence[Node]) -> Any:
    """Equivalent, simpler nodes for ``outputs`` (appended to the same graph).

    Collects like terms, merges constant factors, turns repeated factors into powers
    and removes ``exp(log x)`` / ``log(exp x)`` pairs, to a fixed point. Values are
    unchanged up to floating-point rounding; shapes and dtypes are unchanged.

    >>> g = sd.Graph(); t = g.variable("t")
    >>> d2 = sd.grad(sd.grad(sd.sin(t) * t, t), t)
    >>> print(d2)
    cos(t) - t*sin(t) + cos(t)
    >>> print(sd.simplify(d2))
    2*cos(t) - t*sin(t)
    """
    outs, single = node_list(outputs, "simplify", "outputs")
    check_same_graph("simplify", *outs)
    # One bottom-up pass suffices: each node is rewritten to a fixed point of the rules
    # after its inputs were, so no rewrite waits for a later pass.
    with gc_paused():
        outs = _one_pass(outs)
    return outs[0] if single else outs
