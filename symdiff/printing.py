"""Readable text for nodes: ``print(node)`` shows infix math.

Small expressions print inline (``cos(x)*x + sin(x)``). A larger graph prints as
numbered lines that name shared and long subexpressions, so a DAG never turns
into an exponentially long tree:

    t1 = sin(x)*x + x
    t2 = sin(t1)*t1 + x
    sin(t2)*t2 + x
"""

from __future__ import annotations

import functools
import inspect
import itertools
import re
from typing import Any

import numpy as np

from symdiff.errors import ShapeError
from symdiff.graph import Node, Region, ancestors, consumers, format_shape, install, regions_in
from symdiff.ops import REGISTRY
from symdiff.ops.constants import element_scale, folded_from, format_number, identity_form
from symdiff.ops.core import broadcast_shapes

# Past this many ops a subexpression gets its own line.
INLINE_MAX = 24


def _constant_form(node: Node) -> tuple[str, Any]:
    """What an array constant is to a reader, for both printers: ``("ones", None)``,
    ``("full", c)`` (every element c), ``("eye", (n, c))`` (c times the n x n identity, c finite and
    nonzero: a seed, a Hessian's ridge), ``("eye_shaped", (n, c))`` (c times an identity laid out
    in more axes: unit rows, columns, the identity on a matrix's elements), ``("values", v)``
    (few elements, each -0.0 as 0.0) or ``("shape", None)``."""
    value = node.value
    if node.uniform is not None:
        one = node.dtype.kind in "fiu" and node.uniform == 1
        return ("ones", None) if one else ("full", node.uniform)
    if node.dtype.kind == "f" and value.ndim == 2 and value.shape[0] == value.shape[1] and value.size:
        n, c = value.shape[0], value.flat[0]
        if np.isfinite(c) and c != 0 and np.count_nonzero(value) == n and bool(np.all(np.diagonal(value) == c)):
            return "eye", (n, c.item())
    form = identity_form(node)
    if form in ("rows", "cols", "elements"):
        n = int(np.sqrt(value.size)) if form == "elements" else value.shape[0]
        return "eye_shaped", (n, element_scale(node).item() if form == "elements" else 1.0)
    if value.size <= 6:
        return "values", value + 0 if value.dtype.kind == "f" else value  # -0.0 + 0 is 0.0
    return "shape", None


def _leaf(node: Node) -> str | tuple[str, int]:
    if node.op == "variable":
        return node.name
    value = node.value
    if value.ndim == 0:
        return folded_from(node) or format_number(value.item())
    dtype = "" if node.dtype == np.float64 else f', dtype="{node.dtype.name}"'
    shape = format_shape(node.shape)
    kind, data = _constant_form(node)
    if kind == "ones":
        return f"ones({node.shape[0] if node.ndim == 1 else shape}{dtype})"
    if kind == "full" and data == -1 and node.dtype.kind == "f":  # -ones(3): a negated seed
        return _scaled(-1, f"ones({node.shape[0] if node.ndim == 1 else shape}{dtype})", "*")
    if kind == "full":
        return f"full({shape}, {format_number(data)}{dtype})"
    if kind in ("eye", "eye_shaped"):
        n, c = data
        text = f"eye({n}{dtype})"  # an identity (a seed, a Hessian's ridge term): written as one
        if kind == "eye_shaped":
            text = f"reshape({text}, shape_to={shape})"
        return _scaled(c, text, "*")
    if kind == "values":  # a Python list: 1.0 is a float, 1 an int, True a bool
        return str(np.asarray(data).tolist()).replace(" ", "")
    return f"const{shape}"  # its values are not written: the parser refuses it


def _leaf_text(node: Node) -> str:
    text = _leaf(node)
    return text[0] if isinstance(text, tuple) else text


def _scaled(c: float, text: str, times: str) -> str | tuple[str, int]:
    """``text`` times the number ``c``: ``eye(3)``, ``-eye(3)``, ``0.4*eye(3)`` and its strength."""
    if c == 1:
        return text
    if c == -1:
        return f"-{text}", REGISTRY["neg"].precedence
    return f"{format_number(c)}{times}{text}", min(_strength(format_number(c)), REGISTRY["mul"].precedence)


def _strength(text: str) -> int:
    """A leaf's binding strength: a negative number binds as unary minus (``(-2)**x``)."""
    return REGISTRY["neg"].precedence if text.startswith("-") else 100


def _implicit(node: Node) -> tuple[Node, str | None] | None:
    """For a node whose value is another's broadcast (``broadcast_like(s, x)``, a (1,)-shaped
    constant): the shape it has before broadcasting and, for a constant, its text there. An
    elementwise consumer that broadcasts it the same way anyway may write it as that value."""
    if node.op == "constant" and node.uniform is not None and node.value.ndim and node.value.size == 1:
        return (), format_number(node.uniform)
    if node.inputs and REGISTRY[node.op].notation.transparent and node.inputs[0].shape != node.shape:
        return node.inputs[0].shape, None
    if node.op in _AXES_ONLY and _leading_ones(node.inputs[0].shape, node.shape):
        return node.inputs[0].shape, None  # x with leading axes of length 1: x as broadcasting reads it
    return None


# Ops that may only add (or drop) axes of length 1; where they add them in front, the value is
# the input as an elementwise op broadcasts it (``xs*cos(v)``, not ``expand_dims(xs, axis=-1)*cos(v)``).
_AXES_ONLY = ("expand_dims", "reshape")


def _leading_ones(before: tuple, after: tuple) -> bool:
    k = len(after) - len(before)
    return k > 0 and after[k:] == before and all(d == 1 for d in after[:k])


def _ones_like(node: Node) -> bool:
    """Whether ``node`` is ``broadcast_like(1, y)`` of y's dtype: ones shaped like y."""
    if node.op != "broadcast_like" or node.dtype != node.inputs[1].dtype:
        return False
    one = node.inputs[0]
    return one.op == "constant" and one.uniform is not None and one.dtype.kind in "fiu" and one.uniform == 1


def _literal(value) -> str:
    """An attribute's value as the parser reads it back: tuples, ints, floats, bools, strings."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        items = [_literal(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return repr(value)


def _attr_text(key: str, value) -> str:
    if key == "dtype_to":
        return f'{key}="{np.dtype(value).name}"'
    if isinstance(value, tuple) and len(value) == 1 and key == "axis":
        value = value[0]  # axis=-1: the parser gives it back to an op that takes tuples as (-1,)
    return f"{key}={_literal(value)}"


def _wrapper(args: list[tuple[str, int]], left: str = "(", right: str = ")"):
    def wrap(i: int, need: int) -> str:
        text, prec = args[i]
        return f"{left}{text}{right}" if prec < need else text

    return wrap


_OPPOSITE = {"+": "-", "-": "+"}


def _render(node: Node, args: list[tuple[str, int]], bodies: list[str] | None = None) -> tuple[str, int]:
    """Text and binding strength of ``node`` given its inputs' texts and strengths (and, for a
    node that runs bodies, the names they print by); the op's notation (its entry in the op
    table) says how it is written."""
    notation = REGISTRY[node.op].notation
    wrap = _wrapper(args)
    if notation.transparent and _implicit(node) is None:
        return args[0]  # a check that passes its input on: the same value
    if _ones_like(node):
        return f"ones_like({args[1][0]})", 100
    if notation.text is not None:
        found = notation.text(node, args, wrap, **_bodies(notation.text, bodies))
        if found is not None:
            return found
    if notation.symbol and len(args) == 2:
        p, symbol = notation.precedence, notation.symbol
        # Left-associative, as in Python: the right operand of - / @ needs parentheses at equal
        # strength (strict_right); x*y*z and x + y - z read as built up to rounding.
        right = wrap(1, p + 1 if notation.strict_right or _mixes(node, 1) else p)
        if symbol in _OPPOSITE and right.startswith("-") and node.inputs[1].op == "constant":
            right, symbol = right[1:], _OPPOSITE[symbol]  # x - 2, not x + (-2)
        elif right.startswith("-"):  # x*(-y), not x*-y
            right = f"({right})"
        return f"{wrap(0, p + 1 if _mixes(node, 0) else p)}{_spaced(symbol)}{right}", p
    shown = [_attr_text(k, v) for k, v in node._attrs if _shows_attr(node, k, v)]
    return f"{node.op}({', '.join([a[0] for a in args] + shown)})", 100


@functools.cache
def _takes_bodies(fn: Any) -> bool:
    """Whether an op's ``text``/``latex`` takes the names its node's bodies print by (a loop's
    does: ``scan(rnn, h, xs)``; a composite call prints by its body's name, renamed as a prefix)."""
    try:
        return "bodies" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _bodies(fn: Any, bodies: list[str] | None) -> dict[str, Any]:
    return {"bodies": bodies} if bodies is not None and _takes_bodies(fn) else {}


def _mixes(node: Node, i: int) -> bool:
    """Whether input ``i`` is a product of the other kind (``@`` beside ``*`` or ``/``):
    bracketed on either side, ``(a*B)@v`` and ``a*(B@v)``, though Python needs only the
    second, as readers of mathematics expect ``@`` to bind tighter."""
    if not node.inputs[i].inputs:
        return False
    outer, inner = REGISTRY[node.op].notation, REGISTRY[node.inputs[i].op].notation
    return (
        inner.precedence == outer.precedence
        and inner.symbol != outer.symbol
        and "@" in (inner.symbol, outer.symbol)
        and inner.symbol is not None
    )


def _arguments(node: Node, texts: dict, bare: dict) -> list[tuple[str, int]]:
    """The texts of ``node``'s inputs, each implicit broadcast written as its value where
    ``node`` (elementwise) broadcasts that value to the same shape anyway: ``x*s``, not
    ``x*broadcast_like(s, x)``, while ``sum(broadcast_like(s, x))`` keeps it (n*s, not s)."""
    args = [texts[u] for u in node.inputs]
    op = REGISTRY[node.op]
    if op.kind != "elementwise" or op.notation.transparent or not any(u in bare for u in node.inputs):
        return args
    shapes = [u.shape for u in node.inputs]
    for i, u in enumerate(node.inputs):
        if u in bare:
            trial = shapes[:i] + [bare[u][0]] + shapes[i + 1 :]
            try:
                same = broadcast_shapes(*trial) == node.shape
            except ShapeError:
                same = False
            if same:
                shapes, args[i] = trial, bare[u][1]
    return args


def _shows_attr(node: Node, key: str, value) -> bool:
    """Attributes at their defaults are not printed: a reduction over every axis (``count(x)``), keepdims=False,
    a float64 dtype_to (symdiff.parse.implied_attrs puts them back)."""
    reduction = "keepdims" in dict(node._attrs) or REGISTRY[node.op].kind == "reduction"
    if reduction and key == "axis" and value == tuple(range(-node.inputs[0].ndim, 0)):
        return False
    if key == "dtype_to":
        return np.dtype(value) != np.float64
    return not (key == "keepdims" and not value)


def _spaced(symbol: str) -> str:
    return f" {symbol} " if symbol in ("+", "-", ">", "<", ">=", "<=", "==", "!=") else symbol


# -- booleans and masks as a person writes them ------------------------------------------------
# A ``where`` of booleans with a constant branch is a connective (symdiff.scalar's logical_and,
# logical_or and logical_not are built so): where(a, b, False) is a & b, where(a, True, b) a | b,
# where(a, False, True) ~a. A selection of 1 and 0 by a mask is the mask as numbers. Binding
# strengths are Python's: | below & below + - (comparisons below both), ~ as unary minus.
OR_STRENGTH, AND_STRENGTH, _NOT = 6, 7, REGISTRY["neg"].precedence
_RELATIONS = {"greater": ">", "greater_equal": r"\geq", "less": "<", "less_equal": r"\leq"}
_LATEX_RELATIONS = {**_RELATIONS, "equal": "=", "not_equal": r"\neq"}


def _truth(node: Node) -> bool | None:
    """The value of a boolean constant whose elements are all equal, else None."""
    if node.op == "constant" and node.dtype == np.bool_ and node.uniform is not None:
        return bool(node.uniform)
    return None


def logic_form(node: Node) -> tuple[str, tuple[tuple[int, bool], ...]] | None:
    """What a ``where`` of booleans with a constant branch is: ``("and", operands)``,
    ``("or", operands)`` or ``("is", (operand,))``, each operand ``(input index, negated)``
    (``where(a, False, b)`` is ``~a & b``), or None for any other node. The constant must not
    widen the result: its shape is the other inputs' broadcast.

    >>> g = sd.Graph(); x = g.variable("x", shape=(3,))
    >>> logic_form(sd.where(x >= 0, x <= 1, False))
    ('and', ((0, False), (1, False)))
    """
    if node.op != "where" or node.dtype != np.bool_ or node.inputs[0].dtype != np.bool_:
        return None
    _, x, y = node.inputs
    tx, ty = _truth(x), _truth(y)
    if tx is not None and ty is not None:
        if tx == ty or node.shape != node.inputs[0].shape:
            return None
        return "is", ((0, not tx),)  # where(a, True, False) is a; where(a, False, True) is ~a
    if tx is None and ty is None:
        return None
    other = 2 if tx is not None else 1
    try:
        if broadcast_shapes(node.inputs[0].shape, node.inputs[other].shape) != node.shape:
            return None
    except ShapeError:
        return None
    if ty is False:
        return "and", ((0, False), (1, False))
    if tx is True:
        return "or", ((0, False), (2, False))
    if tx is False:
        return "and", ((0, True), (2, False))  # b where not a
    return "or", ((0, True), (1, False))  # b where a, else True: ~a | b


def mask_form(node: Node) -> tuple[Node, bool] | None:
    """For ``where(m, 1, 0)`` (numbers, m boolean, of m's shape): ``(m, False)``; for
    ``where(m, 0, 1)``: ``(m, True)`` (the mask negated); else None."""
    if node.op != "where" or node.dtype.kind not in "fiu" or node.inputs[0].dtype != np.bool_:
        return None
    m, x, y = node.inputs
    if node.shape != m.shape or x.op != "constant" or y.op != "constant" or x.uniform is None or y.uniform is None:
        return None
    if (x.uniform, y.uniform) in ((1, 0), (0, 1)):
        return m, x.uniform == 0
    return None


def _connective(
    node: Node, args: list[tuple[str, int]], words: tuple[str, str, str], wrap, strengths: tuple[int, int]
) -> tuple[str, int] | None:
    """``node`` (a where of booleans) written with ``words`` = (and, or, not), ``wrap`` and the
    ``strengths`` (and, or) binds with: Python's, or mathematics' (below the relations)."""
    form = logic_form(node)
    if form is None:
        return None
    kind, operands = form
    and_, or_, not_ = words

    def operand(k: int, need: int) -> str:
        i, negated = operands[k]
        return f"{not_}{wrap(i, _NOT)}" if negated else wrap(i, need)

    if kind == "is":
        i, negated = operands[0]
        return (f"{not_}{wrap(i, _NOT)}", _NOT) if negated else args[i]
    p, symbol = (strengths[0], and_) if kind == "and" else (strengths[1], or_)
    return f"{operand(0, p)}{symbol}{operand(1, p + 1)}", p  # left-associative, as Python reads it


def _text_logic(node: Node, args: list[tuple[str, int]], texts: dict, named: set) -> tuple[str, int] | None:
    """Text for booleans and masks: ``(x >= 0) & (x <= 1)``, ``~(x > 0)``, a mask as numbers
    ``astype(x > 0)``, and beside a number in a product the mask itself, ``g*(x > 0)`` (numpy
    multiplies a boolean as 0 and 1)."""
    found = _connective(node, args, (" & ", " | ", "~"), _wrapper(args), (AND_STRENGTH, OR_STRENGTH))
    if found is not None:
        return found
    mask = mask_form(node)
    if mask is not None:
        m, negated = mask
        text = f"~{_wrapper([texts[m]])(0, _NOT)}" if negated else texts[m][0]
        dtype = "" if node.dtype == np.float64 else f", {_attr_text('dtype_to', node.dtype)}"
        return f"astype({text}{dtype})", 100
    if node.op == "mul":
        for i, u in enumerate(node.inputs):
            other = node.inputs[1 - i]
            mask = mask_form(u) if u not in named else None
            # a product with a (non-constant: 2*(x > 0) reads as ints) number of the mask's dtype
            if mask is not None and other.op != "constant" and other.dtype == u.dtype == node.dtype:
                m, negated = mask
                mask_text = (f"~{_wrapper([texts[m]])(0, _NOT)}", _NOT) if negated else texts[m]
                return _render(node, [mask_text if k == i else a for k, a in enumerate(args)])
    return None


def _plan(roots: list[Node]) -> tuple[list[Node], set[Node]]:
    """The subgraph in order, and which of its nodes get a line of their own."""
    nodes = ancestors(roots)
    uses, _ = consumers(nodes, roots)  # a root is used once as a root: named if used again
    size: dict[Node, int] = {}  # ops on the node's line, with named inputs counting one
    tree: dict[Node, int] = {}  # ops of the fully expanded tree, capped (it grows exponentially)
    named: set[Node] = set()
    for n in nodes:
        size[n] = 1 + sum(1 if u in named else size[u] for u in n.inputs)
        # a node that runs a body weighs as much as a long line: a loop used twice is named, not repeated
        own = INLINE_MAX + 1 if n.regions else 1
        tree[n] = min(INLINE_MAX + 1, own + sum(tree[u] for u in n.inputs))
        if n.inputs and (uses[n] > 1 or (size[n] > INLINE_MAX and n not in roots)):
            named.add(n)
    if sum(tree[r] for r in roots) <= INLINE_MAX:
        # small enough: print it inline, repeats and all; but a node with several outputs, more
        # than one of them used, is computed once and says so: t1 = eigh(A), t1.eigenvalues
        named = {n for n in named if n.is_multi}
    return nodes, named


def _lay_out(
    roots: list[Node], leaf, render, label, taken: set[str] = frozenset(), logic=None, assigned=None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The named lines ``(label, text)`` and the final texts of ``roots``, for one printer:
    ``leaf(node)`` writes a variable or constant, ``render(node, args)`` an op given its
    inputs' texts and strengths, ``label(k)`` the k-th line's name (none of ``taken``);
    ``logic(node, args, texts, named)``, if given, writes a boolean connective or a mask (it
    sees the texts of the nodes below, to write ``0 \\leq x \\leq 1``), or returns None;
    ``assigned(node, text)``, if given, writes the text a line assigns (a relation in brackets)."""
    nodes, named = _plan(roots)
    texts: dict[Node, tuple[str, int]] = {}
    bare: dict[Node, tuple] = {}  # implicit broadcasts: (shape before, text of the value)
    lines = []
    taken = set(taken) | {n.name for n in nodes if n.op == "variable"}
    counter = 0
    for n in nodes:
        if n.inputs:
            args = _arguments(n, texts, bare)
            found = logic(n, args, texts, named) if logic is not None else None
            texts[n] = found if found is not None else render(n, args)
        else:
            text = leaf(n)  # a text, or a text and its strength (``0.4*eye(5)``)
            texts[n] = text if isinstance(text, tuple) else (text, _strength(text))
        implicit = _implicit(n)
        if implicit is not None and n not in named:
            shape, text = implicit
            bare[n] = (shape, texts[n.inputs[0]] if text is None else (text, _strength(text)))
            if text is None and n.inputs[0] in bare:  # a broadcast of a broadcast: of the first value
                bare[n] = bare[n.inputs[0]]
        if n in named:
            counter += 1
            while label(counter) in taken:
                counter += 1
            lines.append((label(counter), texts[n][0] if assigned is None else assigned(n, texts[n][0])))
            texts[n] = (label(counter), 100)
    return lines, [texts[r][0] for r in roots]


# -- bodies (sd.composite): each defined once, before the expression --------------------------
# Names a body's definition may not take: the parser's own functions and the loops it builds
# (the ops the text calls are taken as well; a definition of another op's name is read as the
# definition). A body of a loop named so prints as ``scan_body``.
_RESERVED = frozenset({"full", "ones", "eye", "einsum", "const", "scan", "while_loop"})


class _Style:
    """One printer: how it writes leaves, ops, line names, a body's header and its definition."""

    def __init__(self, leaf, render, label, prefix, header, define, several, logic=None):
        self.leaf, self.render, self.label, self.logic = leaf, render, label, logic
        # prefix(name): how a call of a body of that name starts; header(name, params): a definition's left side
        self.prefix, self.header, self.define, self.several = prefix, header, define, several


def _definitions(roots: list[Node], style: _Style) -> tuple[list[str], Any]:
    """The definitions of the bodies ``roots`` run (inner bodies first), and the ``render`` that
    writes their calls by the names they were defined under. Two bodies of one name (a composite
    traced for two input types) that print alike are defined once; otherwise the later is
    renamed ``name_2``, and its calls with it."""
    nodes = ancestors(roots)
    regions = regions_in(nodes)
    if not regions:
        return [], style.render
    printed: dict[Region, str] = {}
    defined: dict[str, tuple] = {}  # printed name -> its definition's body text
    taken = set(_RESERVED) | {n.name for n in nodes if n.op == "variable"}
    for n in itertools.chain(nodes, *(ancestors(r.outputs) for r in regions)):
        if n.op not in ("variable", "constant") and not n.regions:
            taken.add(n.op)
    out: list[str] = []

    def render(node: Node, args: list[tuple[str, int]]) -> tuple[str, int]:
        if not node.regions:
            return style.render(node, args)
        text, strength = style.render(node, args, [printed[r] for r in node.regions])
        if _takes_bodies(REGISTRY[node.op].notation.text):
            return text, strength
        old, new = style.prefix(node.regions[0].name), style.prefix(printed[node.regions[0]])
        if old != new and text.startswith(old):  # a call that prints by its body's name
            text = new + text[len(old) :]
        return text, strength

    for region in regions:
        lines, finals = _lay_out(list(region.outputs), style.leaf, render, style.label, taken, style.logic)
        final = style.several(finals) if region.several else finals[0]
        body = (tuple(p.name for p in region.params), tuple(lines), final)
        base = _definable(region.name)
        name, k = base, 1
        while name in taken and defined.get(name) != body:
            k += 1
            name = f"{base}_{k}"
        printed[region] = name
        if name not in defined:
            defined[name] = body
            taken.add(name)
            out.append(style.define(style.header(name, [p.name for p in region.params]), lines, final))
    return out, render


def _definable(name: str) -> str:
    """A body's name as a definition can take it: an identifier (``scan_every_2`` for a derived
    body named ``scan_every_2()``), not one of the parser's own (``scan`` prints as ``scan_body``)."""
    base = re.sub(r"\W+", "_", name).strip("_") or "body"
    base = base if base.isidentifier() else f"body_{base}"
    return f"{base}_body" if base in _RESERVED else base


def _text_header(name: str, params: list[str]) -> str:
    return f"{name}({', '.join(params)})"


def _text_define(header: str, lines: list[tuple[str, str]], final: str) -> str:
    if not lines:
        return f"{header} = {final}"
    return "\n".join([f"{header} ="] + [f"    {name} = {text}" for name, text in lines] + [f"    {final}"])


def _tuple_text(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _text_style() -> _Style:
    return _Style(
        _leaf, _render, lambda k: f"t{k}", lambda name: f"{name}(", _text_header, _text_define, _tuple_text, _text_logic
    )


def to_text(root: Node) -> str:
    """The expression of ``root`` as text (``str(node)``): Python's reading of it, as
    ``symdiff.parse.parse`` reads it back, is the node's value.

    The bodies it runs (``sd.composite``, a loop's body) are defined first, each once, one per
    line (``softclip(x, c) = c*tanh(x/c)``; a long body as an indented block after ``f(x, c) =``);
    shared subexpressions are numbered lines ``t1 = ...`` before the expression. A loop is a
    call of its body's definition as JAX writes it, ``scan(rnn, h, xs, w)``, its outputs by
    name (``t1.carry``, ``t1.ys``); its derivative loops the same (``scan(rnn_vjp, ...)``).
    """
    style = _text_style()
    definitions, render = _definitions([root], style)
    lines, (last,) = _lay_out([root], _leaf, render, style.label, logic=_text_logic)
    return "\n".join(definitions + [f"{name} = {text}" for name, text in lines] + [last])


def _expression_text(root: Node) -> str:
    """``to_text`` without the bodies' definitions (a call reads ``softclip(x, 2)``)."""
    lines, (last,) = _lay_out([root], _leaf, _render, lambda k: f"t{k}", logic=_text_logic)
    return "\n".join([f"{name} = {text}" for name, text in lines] + [last])


def _within(node: Node, limit: int) -> bool:
    """True if ``node`` depends on at most ``limit`` nodes (a walk that stops early)."""
    seen = {node}
    stack = [node]
    while stack:
        for u in stack.pop().inputs:
            if u not in seen:
                seen.add(u)
                if len(seen) > limit:
                    return False
                stack.append(u)
    return True


def short_text(node: Node, limit: int = 60) -> str:
    """At most ``limit`` characters of the node's expression (for repr and labels).

    Looks only at a small neighbourhood, so labelling every node of a large graph
    stays linear.
    """
    if not node.inputs:
        return _leaf_text(node)
    if _within(node, INLINE_MAX):
        text = _expression_text(node)
        if "\n" not in text and len(text) <= limit:
            return text
    args = ", ".join(_leaf_text(u) if not u.inputs else f"#{u.index}" for u in node.inputs)
    return f"{node.op}({args})"


# -- LaTeX in operator form (tensor expressions) -------------------------------------------
_GREEK = frozenset(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi "
    "psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)


def latex_name(name: str) -> str:
    """``W1`` -> ``W_{1}``, ``x_in`` -> ``x_{in}``, ``mu`` -> ``\\mu``, ``sigma2`` -> ``\\sigma_{2}``:
    the letters and subscripts a reader expects."""
    match = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    if match:
        return f"{_letter(match.group(1))}_{{{match.group(2)}}}"
    if "_" in name.strip("_"):
        base, rest = name.split("_", 1)
        return f"{_letter(base)}_{{{rest.replace('_', ',')}}}"
    return _letter(name).replace("_", r"\_")


def _letter(name: str) -> str:
    return f"\\{name}" if name in _GREEK else name


def _latex_leaf(node: Node) -> str | tuple[str, int]:
    if node.op == "variable":
        return latex_name(node.name)
    value = node.value
    if value.ndim == 0:
        return format_number(value.item())
    kind, data = _constant_form(node)
    if kind == "full" and data == 0:  # an array of zeros: a bold 0
        return r"\mathbf{0}"
    if kind in ("ones", "full"):  # a vector (or array) of ones, a bold 1, times its number
        return _scaled(1 if kind == "ones" else data, r"\mathbf{1}", " ")
    if kind in ("eye", "eye_shaped"):
        n, c = data
        return _scaled(c, rf"I_{{{n}}}", " ")
    if value.ndim <= 2 and value.size <= 12:  # small constants are written out
        rows = np.atleast_2d(value + 0 if value.dtype.kind == "f" else value).tolist()
        body = r" \\ ".join(" & ".join(format_number(v) for v in row) for row in rows)
        return rf"\begin{{pmatrix}}{body}\end{{pmatrix}}"
    size = r" \times ".join(map(str, node.shape))
    return rf"\operatorname{{const}}_{{{size}}}"


def _latex_render(node: Node, args: list[tuple[str, int]], bodies: list[str] | None = None) -> tuple[str, int]:
    notation = REGISTRY[node.op].notation
    if notation.transparent and _implicit(node) is None:
        return args[0]
    if node.op == "broadcast_like" and node.inputs[0].shape == ():  # s broadcast like y: s times a bold 1
        return (r"\mathbf{1}", 100) if _ones_like(node) else (rf"{_wrapper(args)(0, 21)} \mathbf{{1}}", 20)
    latex = notation.latex
    if callable(latex):
        found = latex(node, args, _wrapper(args, r"\left(", r"\right)"), **_bodies(latex, bodies))
        if found is not None:
            return found
    elif latex is not None:  # a function name: \sin\left(x\right)
        return rf"{latex}\left({args[0][0]}\right)", 100
    extra = [_latex_attr(k, v) for k, v in node._attrs if _shows_attr(node, k, v)]
    inner = ", ".join([a[0] for a in args] + extra)
    name = node.op.replace("_", r"\_")
    return rf"\operatorname{{{name}}}\left({inner}\right)", 100


def _latex_attr(key: str, value) -> str:
    name, _, text = _attr_text(key, value).partition("=")
    return rf"\mathrm{{{name}}}={text}".replace("_", r"\_")


def _bound(comparison: Node, x: Node) -> tuple[str, str] | None:
    """``("lower", relation)`` if ``comparison`` says x is above its other side (``x >= a``,
    ``a < x``), ``("upper", relation)`` if below, the relation as written left to right in a
    chain ``a \\leq x \\leq b``; None if it does not compare x so."""
    op, (u, v) = comparison.op, comparison.inputs
    if op not in _RELATIONS or x not in (u, v) or u is v:
        return None
    above = op.startswith("greater") == (u is x)
    strict = "<" if op in ("greater", "less") else r"\leq"
    return ("lower" if above else "upper"), strict


def _chain(node: Node, texts: dict, named: set) -> tuple[str, int] | None:
    """``a \\leq x \\leq b`` for ``(x >= a) & (x <= b)`` (in any order or orientation)."""
    form = logic_form(node)
    if form is None or form[0] != "and" or any(negated for _, negated in form[1]):
        return None
    first, second = (node.inputs[i] for i, _ in form[1])
    if first in named or second in named or first.op not in _RELATIONS or second.op not in _RELATIONS:
        return None
    for x in first.inputs:
        a, b = _bound(first, x), _bound(second, x)
        if a is None or b is None or a[0] == b[0]:
            continue
        lower, upper = (first, second) if a[0] == "lower" else (second, first)
        low = next(u for u in lower.inputs if u is not x)
        high = next(u for u in upper.inputs if u is not x)
        wrap = _wrapper([texts[low], texts[x], texts[high]], r"\left(", r"\right)")
        (_, low_rel), (_, high_rel) = _bound(lower, x), _bound(upper, x)
        return f"{wrap(0, 6)} {low_rel} {wrap(1, 6)} {high_rel} {wrap(2, 6)}", 5
    return None


_CASES = (r"\begin{cases} ", r" \end{cases}")


def _cases(node: Node, args: list[tuple[str, int]], named: set) -> str:
    """``where(c, a, b)`` as cases: ``a`` if ``c``, otherwise ``b``; a where in the otherwise
    branch (not named on a line of its own) adds its cases to these."""
    (cond, _), (chosen, _), (other, _) = args
    rows = [rf"{chosen} & \text{{if }} {cond}"]
    inner = node.inputs[2]
    if inner.op == "where" and inner not in named and other.startswith(_CASES[0]) and other.endswith(_CASES[1]):
        rows.append(other[len(_CASES[0]) : -len(_CASES[1])])
    else:
        rows.append(rf"{other} & \text{{otherwise}}")
    return _CASES[0] + r" \\ ".join(rows) + _CASES[1]


def _latex_logic(node: Node, args: list[tuple[str, int]], texts: dict, named: set) -> tuple[str, int] | None:
    """LaTeX for comparisons (``x \\geq 0``), connectives (``a \\land b``, ``0 \\leq x \\leq 1``)
    and masks as numbers, the indicator ``\\mathbb{1}\\left[x > 0\\right]``."""
    if node.op in _LATEX_RELATIONS:
        wrap = _wrapper(args, r"\left(", r"\right)")
        return f"{wrap(0, 6)} {_LATEX_RELATIONS[node.op]} {wrap(1, 6)}", 5
    found = _chain(node, texts, named)
    if found is not None:
        return found
    # x > 0 \land y > 0: the connectives bind below the relations, as mathematics reads them
    wrap = _wrapper(args, r"\left(", r"\right)")
    found = _connective(node, args, (r" \land ", r" \lor ", r"\lnot "), wrap, (4, 3))
    if found is not None:
        return found
    if node.op == "where" and mask_form(node) is None:
        return _cases(node, args, named), 100
    mask = mask_form(node)
    if mask is not None:
        m, negated = mask
        text = texts[m][0]
        if negated:
            text = r"\lnot " + _wrapper([texts[m]], r"\left(", r"\right)")(0, _NOT)
        return rf"\mathbb{{1}}\left[{text}\right]", 100
    return None


def to_latex(root: Node) -> str:
    """LaTeX for ``root`` in operator form (``X^{\\top} w``); shared parts as aligned lines.

    >>> g = sd.Graph(); X = g.variable("X", shape=(None, 3)); w = g.variable("w", shape=(3,))
    >>> from symdiff.printing import to_latex
    >>> to_latex(X.T @ sd.tanh(X @ w))
    'X^{\\\\top} \\\\tanh\\\\left(X w\\\\right)'
    """
    style = _Style(
        _latex_leaf,
        _latex_render,
        lambda k: f"t_{{{k}}}",
        _latex_prefix,
        _latex_header,
        _latex_define,
        _latex_tuple,
        _latex_logic,
    )
    definitions, render = _definitions([root], style)
    lines, (last,) = _lay_out([root], _latex_leaf, render, style.label, logic=_latex_logic, assigned=_latex_assigned)
    if not lines and not definitions:
        return last
    last = _latex_assigned(root, last)  # the aligned block's last row is a value too
    rows = definitions + [f"{name} &= {text}" for name, text in lines] + [f"& {last}"]
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


_RELATION_TEXT = re.compile(r"[=<>]|\\leq|\\geq|\\neq")


def _latex_assigned(node: Node, text: str) -> str:
    """What ``t_k &= ...`` assigns: a boolean value written with a relation in (Iverson)
    brackets, ``t_{2} &= \\left[t_{1} = 0\\right]``, so the line's = is not read as a chain."""
    if node.dtype is not None and node.dtype.kind == "b" and _RELATION_TEXT.search(text):
        return rf"\left[{text}\right]"
    return text


def _latex_prefix(name: str) -> str:
    return rf"\operatorname{{{_escape(name)}}}"


def _escape(name: str) -> str:
    return name.replace("_", r"\_")


def _latex_header(name: str, params: list[str]) -> str:
    return rf"{_latex_prefix(name)}\left({', '.join(latex_name(p) for p in params)}\right)"


def _latex_define(header: str, lines: list[tuple[str, str]], final: str) -> str:
    """A body's rows: its own lines, indented, then ``f(x, c) &= ...``."""
    return r" \\ ".join([rf"\quad {name} &= {text}" for name, text in lines] + [f"{header} &= {final}"])


def _latex_tuple(items: list[str]) -> str:
    return r"\left(" + ", ".join(items) + r"\right)"


# -- Node's text -----------------------------------------------------------------------------
def _node_repr(node: Node) -> str:
    return f"<{node._header()}: {short_text(node)}>"


def _node_str(node: Node) -> str:
    return to_text(node)


install(Node, {"__repr__": _node_repr, "__str__": _node_str})
