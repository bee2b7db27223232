"""symdiff <-> sympy: scalar nodes become sympy expressions, small tensors sympy matrices."""

from __future__ import annotations

from collections import ChainMap
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from symdiff import ops
from symdiff.errors import GraphError, ShapeError
from symdiff.graph import Graph, Node, ancestors, consumers, format_shape, install
from symdiff.loops import unroll
from symdiff.ops import REGISTRY, apply
from symdiff.ops.constants import written_as_call
from symdiff.ops.core import outputs_of
from symdiff.printing import logic_form, to_latex

# Tensors up to this many elements convert (each element is a sympy expression).
MAX_ELEMENTS = 10_000
_LOOPS = ("scan", "while_loop")


def _number(v: Any) -> sympy.Expr:
    if isinstance(v, (bool, np.bool_)):
        return sympy.true if v else sympy.false
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, int):
        return sympy.Integer(v)
    if not np.isfinite(v):
        return sympy.nan if np.isnan(v) else (sympy.oo if v > 0 else -sympy.oo)
    if float(v).is_integer():
        return sympy.Integer(int(v))
    frac = Fraction(v)
    if frac.denominator <= 1024:  # exact binary fractions such as 0.5 stay exact
        return sympy.Rational(frac.numerator, frac.denominator)
    return sympy.Float(v)


def _symbols(node: Node) -> np.ndarray:
    if None in node.shape:
        raise ShapeError(f"to_sympy: variable {node.name!r} has unknown dimensions {format_shape(node.shape)}")
    if not node.shape:
        return np.array(sympy.Symbol(node.name), dtype=object)
    out = np.empty(node.shape, dtype=object)
    for i in np.ndindex(node.shape):
        out[i] = sympy.Symbol(f"{node.name}_{'_'.join(map(str, i))}")
    return out


def _origin(node: Node) -> np.ndarray | None:
    """``log(2)`` rather than 0.693147180559945 for a scalar constant folded from it."""
    if node.origin is None or node.shape != () or _number(node.value.item()).is_Rational:
        return None
    op, inputs = node.origin
    if len(inputs) != 1 or inputs[0].shape != () or REGISTRY[op].sympy is None or not written_as_call(REGISTRY[op]):
        return None
    argument = _number(inputs[0].value.item())
    if not argument.is_Rational:
        return None
    return np.asarray(REGISTRY[op].sympy(np.array(argument, dtype=object)), dtype=object)


def _object_array(node: Node, env: dict[Node, np.ndarray]) -> np.ndarray:
    if node.op == "variable":
        return _symbols(node)
    if node.op == "constant":
        origin = _origin(node)
        if origin is not None:
            return origin
        return (
            np.vectorize(_number, otypes=[object])(node.value)
            if node.value.ndim
            else np.array(_number(node.value.item()), dtype=object)
        )
    op = REGISTRY[node.op]
    for shape in [r[0] for r in node.results] if node.is_multi else [node.shape]:
        if None in shape or int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
            raise ShapeError(
                f"to_sympy: {node.op} (node #{node.index}) has shape {format_shape(shape)}; "
                f"only static shapes up to {MAX_ELEMENTS} elements convert"
            )
    if op.sympy is None and node.regions and "sympy" not in op.unsupported:
        return _unrolled(node, env) if node.op == "scan" else _inline(node, env)
    if op.sympy is None:
        reason = op.unsupported.get("sympy")
        raise GraphError(f"to_sympy: op {node.op!r} has no sympy translation" + (f" ({reason})" if reason else ""))
    form = logic_form(node)
    if form is not None:  # a where of booleans with a constant branch: And, Or, Not, not an ITE
        return _connective(form, [env[u] for u in node.inputs])
    value = op.sympy(*(env[u] for u in node.inputs), **dict(node._attrs))
    if node.is_multi:  # one array per output (slogdet's sign and log|det|)
        return tuple(np.asarray(v, dtype=object) for v in value)
    return np.asarray(value, dtype=object)


def _connective(form: tuple, inputs: list[np.ndarray]) -> np.ndarray:
    """``symdiff.printing.logic_form``'s connective over sympy elements (elementwise)."""
    kind, operands = form
    parts = [np.vectorize(sympy.Not, otypes=[object])(inputs[i]) if negated else inputs[i] for i, negated in operands]
    if kind == "is":
        return np.asarray(parts[0], dtype=object)
    join = sympy.And if kind == "and" else sympy.Or
    return np.asarray(np.vectorize(join, otypes=[object])(*parts), dtype=object)


def _inline(node: Node, env: dict[Node, Any]) -> Any:
    """A node that runs a body, without a sympy rule of its own (``sd.composite``): its body
    converted with its parameters standing for the node's inputs (inlined)."""
    region = node.regions[0]
    inner: dict[Node, Any] = dict(zip(region.params, (env[u] for u in node.inputs)))
    for n in ancestors(region.outputs):
        if n not in inner:
            inner[n] = _object_array(n, inner)
    outs = tuple(inner[o] for o in region.outputs)
    return outs if region.several else outs[0]


def _unrolled(node: Node, env: dict[Node, Any]) -> tuple:
    """A scan (its number of steps static): ``sd.unroll``'s expansion of it into its steps, built
    on the side (the graph is left as it was) and converted, one array per output."""
    with node.graph._scratch():
        steps = unroll(list(outputs_of(node)))
        inner: ChainMap[Node, Any] = ChainMap({}, env)
        for n in ancestors(steps, lambda m: () if m in inner else m.inputs):
            if n not in inner:
                inner[n] = _object_array(n, inner)
        return tuple(inner[s] for s in steps)


def _as_sympy(value: np.ndarray) -> Any:
    if value.ndim == 0:
        return value.item()
    if value.ndim == 1:
        return sympy.Matrix(list(value))
    if value.ndim == 2:
        return sympy.Matrix(value.tolist())
    return sympy.Array(value.tolist())


def to_sympy(node: Node, cse: bool = False) -> Any:
    """The sympy form of ``node``: an expression for a scalar, a Matrix for a vector or
    matrix (a vector is a column), a sympy Array for more dimensions.

    Variables become symbols of the same name; a tensor variable ``w`` becomes
    elements ``w_0, w_1, ...``. An op with several outputs converts by its sympy rule (each
    output node picks its part: ``slogdet``'s sign and log|det|), or is refused with the op's
    reason (``eigh``); a node that runs a body (``sd.composite``) converts as its body with its
    parameters replaced by the node's inputs (inlined), and a ``scan`` as its steps written out
    (``sd.unroll``: an expression as long as the loop); a ``while_loop``, whose number of steps
    is known only at evaluation, is refused.

    With ``cse=True``, returns ``(replacements, expression)`` as ``sympy.cse`` does:
    every subexpression the graph shares becomes a symbol ``t1, t2, ...`` defined in
    ``replacements``, so a graph with shared subexpressions never turns into an
    exponentially large tree.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> sd.to_sympy(sd.grad(x ** 3, x))
    3*x**2
    >>> h = sd.sin(x) * x
    >>> sd.to_sympy(h * sd.sin(h), cse=True)
    ([(t1, x*sin(x))], t1*sin(t1))
    """
    if not isinstance(node, Node):
        raise GraphError(f"to_sympy: expected a node, got {type(node).__name__}")
    nodes = ancestors([node])
    shared: set[Node] = set()
    if cse:
        uses, _ = consumers(nodes)
        shared = {n for n in nodes if n.inputs and uses.get(n, 0) > 1 and n is not node}
    taken = {n.name for n in nodes if n.op == "variable"}
    counter = 0
    replacements: list[tuple[sympy.Symbol, Any]] = []
    env: dict[Node, np.ndarray] = {}
    for n in nodes:
        value = _object_array(n, env)
        if n in shared and not n.is_multi:  # a node of several outputs: its outputs are named
            named = np.empty(value.shape, dtype=object)
            for i in np.ndindex(value.shape):
                element = value[i]
                if isinstance(element, sympy.Basic) and not element.is_Atom:
                    counter += 1
                    while f"t{counter}" in taken:
                        counter += 1
                    symbol = sympy.Symbol(f"t{counter}")
                    replacements.append((symbol, element))
                    element = symbol
                named[i] = element
            value = named
        env[n] = value
    result = _as_sympy(env[node])
    return (replacements, result) if cse else result


def latex(node: Node) -> str:
    """LaTeX for a node.

    An expression of scalar variables goes through sympy (with shared subexpressions as
    named lines of an ``aligned`` block when the graph shares any); a tensor expression, a
    scalar of tensor variables (``\\sum \\left(x - \\mu\\right)``, not one term per element),
    and a scalar that sympy cannot hold (an op without a sympy form) or that runs a loop, is
    written in operator form, ``X^{\\top} \\left(2 \\left(X w - y\\right)\\right)``: a vector
    of ones as ``\\mathbf{1}``, ``c`` times an identity as ``c I_{n}``.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> sd.latex(sd.sin(x) ** 2)
    '\\\\sin^{2}{\\\\left(x \\\\right)}'
    """
    if not isinstance(node, Node):
        raise GraphError(f"latex: expected a node, got {type(node).__name__}")
    nodes = ancestors([node])
    if node.shape != () or any(n.op in _LOOPS or (n.op == "variable" and n.shape != ()) for n in nodes):
        # a loop's sympy form is its steps written out, a tensor's sum its elements one by one:
        # the operator form shows the loop's body once, the sum as \sum
        return to_latex(node)
    try:
        replacements, expr = to_sympy(node, cse=True)
    except (ShapeError, GraphError):  # sizes known only at evaluation, or no sympy form: the operator form
        return to_latex(node)
    if not replacements:
        return sympy.latex(expr)
    rows = [f"{sympy.latex(sym)} &= {sympy.latex(value)}" for sym, value in replacements]
    rows.append(f"& {sympy.latex(expr)}")
    return "\\begin{aligned}" + " \\\\ ".join(rows) + "\\end{aligned}"


def latex_or_none(node: Node) -> str | None:
    """``$...$`` LaTeX for a scalar node if sympy can express it, else None (``_repr_latex_``,
    which Jupyter shows)."""
    if node.shape != () or len(ancestors([node])) > 200:
        return None
    try:
        return f"${latex(node)}$"
    except Exception:
        return None


install(Node, {"_repr_latex_": latex_or_none})


# -- from sympy -------------------------------------------------------------------
def _fold(fn, items: list[Node]) -> Node:
    total = items[0]
    for item in items[1:]:
        total = fn(total, item)
    return total


def _split(expr: sympy.Basic) -> tuple[list[sympy.Basic], list[sympy.Basic]]:
    """A product's numerator and denominator factors (x*y**-2 -> [x], [y**2])."""
    num, den = [], []
    for a in expr.args:
        if isinstance(a, sympy.Pow) and a.exp.is_number and a.exp.is_negative:
            den.append(a.base if a.exp == -1 else sympy.Pow(a.base, -a.exp))
        else:
            num.append(a)
    return num, den


def _children(expr: sympy.Basic) -> list[sympy.Basic]:
    if isinstance(expr, sympy.Mul):
        num, den = _split(expr)
        return num + den
    return list(expr.args)


def _build(expr: sympy.Basic, args: list[Node], graph: Graph) -> Node:
    if isinstance(expr, sympy.Add):
        return _fold(ops.add, args)
    if isinstance(expr, sympy.Mul):
        num, den = _split(expr)
        top_nodes, den_nodes = args[: len(num)], args[len(num) :]
        if len(num) > 1 and num[0] == -1:
            top = ops.negative(_fold(ops.multiply, top_nodes[1:]))
        else:
            top = _fold(ops.multiply, top_nodes) if top_nodes else graph.constant(1.0)
        return ops.divide(top, _fold(ops.multiply, den_nodes)) if den_nodes else top
    if isinstance(expr, sympy.Pow):
        base, exponent = args
        if expr.exp == sympy.Rational(1, 2):
            return ops.sqrt(base)
        if expr.exp == -1:
            return ops.divide(1.0, base)
        return ops.power(base, exponent)
    if isinstance(expr, sympy.log):
        return ops.log(args[0]) if len(args) == 1 else ops.divide(ops.log(args[0]), ops.log(args[1]))
    if isinstance(expr, (sympy.And, sympy.Or)):  # a & b & c: where(where(a, b, False), c, False)
        join = ops.where
        return _fold(lambda a, b: join(a, b, False) if isinstance(expr, sympy.And) else join(a, True, b), args)
    if isinstance(expr, sympy.Not):
        return ops.where(args[0], False, True)
    if isinstance(expr, sympy.Piecewise):
        # args alternate value, condition; the last condition is usually True
        pairs = list(zip(args[0::2], args[1::2]))
        result = pairs[-1][0]
        for value, cond in reversed(pairs[:-1]):
            result = ops.where(cond, value, result)
        return result
    name = type(expr).__name__
    op = next((op for op in REGISTRY.values() if op.sympy_name == name), None)
    if op is not None:  # the op table names the sympy function each op corresponds to
        if op.arity is not None and len(args) > op.arity == 2:  # Max(a, b, c): max(max(a, b), c)
            return _fold(lambda u, v: apply(op, u, v), args)
        return apply(op, *args)
    raise GraphError(f"from_sympy: no symdiff op for sympy {name} (in {expr})")


def from_sympy(expr: Any, graph: Graph) -> Node:
    """Build a sympy expression in ``graph``.

    Symbols map to the graph's variables of the same name; missing ones are
    created as scalar float64 variables. Numbers become constants.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> import sympy
    >>> node = sd.from_sympy(sympy.sin(sympy.Symbol("x")) ** 2, g)
    >>> print(node)
    sin(x)**2
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"from_sympy: expected a Graph as second argument, got {type(graph).__name__}")
    expr = sympy.sympify(expr)
    if isinstance(expr, sympy.MatrixBase):
        raise GraphError("from_sympy: matrices are not supported; convert their elements one by one")
    built: dict[sympy.Basic, Node] = {}
    stack: list[tuple[sympy.Basic, bool]] = [(expr, False)]
    while stack:  # post-order without recursion
        e, ready = stack.pop()
        if e in built:
            continue
        if isinstance(e, sympy.Symbol):
            found = graph._variables.get(e.name)
            built[e] = found if found is not None else graph.variable(e.name)
        elif e.is_number and not isinstance(e, sympy.logic.boolalg.BooleanAtom) and e.is_real is not False:
            built[e] = graph.constant(float(e))
        elif isinstance(e, sympy.logic.boolalg.BooleanAtom):
            built[e] = graph.constant(bool(e))
        elif not ready:
            stack.append((e, True))
            stack.extend((a, False) for a in _children(e) if a not in built)
        else:
            built[e] = _build(e, [built[a] for a in _children(e)], graph)
    return built[expr]
