"""Graphviz DOT for a graph: the book's symbol-to-symbol figure, and the classic
forward/backward figure with values and gradients on every node.

Forward nodes are drawn plain, derivative nodes (``is_gradient``) filled orange and
grouped in a cluster beside them, with a legend. A node with several outputs (``eigh``) is
drawn once, its outputs as small nodes named by the output hanging from it; a body
(``sd.composite``, a loop's body) is drawn once as a cluster ``subgraph cluster_body<k>``
labelled by its definition's left side, and each node that runs it has a dotted "runs" edge to
it; a derivative body (a loop's reverse body, drawn beside its body) has the derivative nodes'
colour. The same graph always gives the same text.

Derivative graphs are drawn to be read (issue 25): outputs carry the names the user gave
(``to_dot({"L": L, ...})``, a saved graph's output names) and derivatives of a drawn cost are
named ``∂L/∂w`` and ``∂²L/∂w∂v``; a small constant (a number, a few elements, a uniform or
identity array) is drawn beside each use instead of as one shared node, and a derivative's seed
(ones, an identity, a unit row) is folded into the node that uses it as a "seed" line; every
other node is drawn once, however many nodes use it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symdiff.errors import GraphError, SymdiffError
from symdiff.export.nx import subgraph_nodes
from symdiff.graph import Node, Region, ancestors, check_same_graph, format_shape, node_list, regions_in
from symdiff.ops import REGISTRY
from symdiff.ops.constants import element_scale, folded_from, format_number, identity_form
from symdiff.printing import short_text

FORWARD_FILL = "#ffffff"
GRADIENT_FILL = "#ffd8a8"
GRADIENT_EDGE = "#d9480f"
LEAF_FILL = "#d0ebff"
VALUE_COLOR = "#2b8a3e"
GRAD_COLOR = "#c92a2a"
BODY_COLOR = "#5f3dc4"
NAME_COLOR = "#1864ab"

# A constant of at most this many elements is drawn beside each use, by value.
SMALL_CONSTANT = 6
# A node used by this many drawn nodes is a fan: its edges get its own colour and leave the
# layout free (weight 0), so they run side by side like a bus instead of pulling the rest apart.
FAN_OUT = 5
FAN_COLORS = ("#1c7ed6", "#2f9e44", "#ae3ec9", "#0c8599", "#e67700", "#5c940d")
# Naming derivatives (``∂L/∂w``) rebuilds them on the side; past this many nodes it is skipped.
NAMING_MAX_NODES = 5_000

Outputs = Node | Mapping[str, Node] | Sequence[Node | Mapping[str, Node]]


def _symbol(node: Node) -> str:
    """The op as a reader knows it: ``+``, ``*``, ``@``, ``sin``, ``T``, ``[1:3]``."""
    if node.op == "variable":
        return node.name
    if node.op == "constant":
        v = node.value
        if v.ndim == 0:
            return format_number(v.item())
        return format_number(node.uniform) if node.uniform is not None else "const"
    if _ones_input(node):
        return "ones_like"  # broadcast_like(1, y), as printing writes it
    notation = REGISTRY[node.op].notation
    if notation.label is not None:
        return notation.label(node) if callable(notation.label) else notation.label
    return notation.symbol or node.op


def _ordered(node: Node) -> bool:
    """An infix op whose operands' order matters (``-``, ``/``, ``@``, ``**``, ``<``)."""
    op = REGISTRY[node.op]
    return len(node.inputs) > 1 and op.symbol is not None and "commutative" not in op.properties


def label(node: Node) -> str:
    """The short label of a node in a drawing: its name, value or op symbol, and its shape."""
    text = _symbol(node)
    if node.shape:  # a node with several outputs has none: its outputs show theirs
        text += f"\n{format_shape(node.shape)}"
    return text


def _format_value(value: Any) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        item = arr.item()
        return f"{item:.4g}" if isinstance(item, float) else str(item)
    if arr.size <= 4:
        return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in arr.reshape(-1).tolist()) + "]"
    return f"mean {arr.mean():.3g}, max |.| {np.abs(arr).max():.3g}"


def _html_label(
    node: Node, value: Any, gradient: Any, cost_name: str, name: str | None = None, seeds: Sequence[str] = ()
) -> str:
    """A node's label with its name (an output's, in bold), its seeds, its value and gradient."""
    if name:
        rows = [f'<font color="{NAME_COLOR}"><b>{html.escape(name)}</b></font>', html.escape(_symbol(node))]
    else:
        rows = [f"<b>{html.escape(_symbol(node))}</b>"]
    rows += [f'<font point-size="9">seed {html.escape(seed)}</font>' for seed in seeds]
    if node.shape:
        rows.append(f'<font point-size="9">{html.escape(format_shape(node.shape))}</font>')
    if value is not None:
        rows.append(f'<font color="{VALUE_COLOR}">= {html.escape(_format_value(value))}</font>')
    if gradient is not None:
        rows.append(
            f'<font color="{GRAD_COLOR}">∂{html.escape(cost_name)} = {html.escape(_format_value(gradient))}</font>'
        )
    return "<" + "<br/>".join(rows) + ">"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _legend_style(fill: str) -> str:
    return f'style=filled, fillcolor="{fill}", fontsize=9'


# -- what a drawing shows: named outputs, constants by each use, folded seeds -------------------
def _number(v: Any) -> str:
    """A number as a drawing writes it: ``2``, ``-0.5``, ``log(2)``-free digits cut to 4 (``0.9189``)."""
    text = format_number(v + 0 if isinstance(v, float) else v)  # -0.0 + 0 is 0.0
    return text if len(text) <= 8 else f"{v:.4g}"


def constant_text(node: Node) -> str | None:
    """How a small constant is written beside each use (``2``, ``[0, -1]``, ``eye(3)``,
    ``ones(4)``), or None for a constant drawn once as a node of its own (data)."""
    value = node.value
    if value.ndim == 0:
        return folded_from(node) or _number(value.item())
    if node.uniform is None and value.size <= SMALL_CONSTANT:
        items = np.vectorize(_number, otypes=[object])(value.astype(float) if value.dtype.kind == "f" else value)
        return str(items.tolist()).replace("'", "")
    text = short_text(node)  # the printed form of an identity or a uniform array
    return None if text.startswith("const") else text


def is_seed(node: Node) -> bool:
    """An array a derivative pass started from: ones, an identity, or signed unit rows of one.
    (A number is not: the 1 of ``1 - tanh(x)**2`` is a rule's, drawn as a number.)"""
    if node.op != "constant" or not node.is_gradient or node.value.ndim == 0:
        return False
    if node.uniform is not None:
        return node.uniform in (1, -1)
    form = identity_form(node)
    if form is not None:
        return form != "elements" or abs(element_scale(node)) == 1
    value = node.value
    return 0 < value.size <= SMALL_CONSTANT and bool(np.isin(value, (-1, 0, 1)).all()) and bool(value.any())


def _ones_input(n: Node) -> bool:
    """``broadcast_like(1, y)``: ones shaped like y, drawn as one node ``ones_like``."""
    one = n.inputs[0] if n.op == "broadcast_like" else None
    return one is not None and one.op == "constant" and one.uniform == 1 and one.dtype.kind in "fiu"


def input_kind(n: Node, position: int, roots: set[Node]) -> str:
    """How input ``position`` of ``n`` is drawn: ``"edge"`` (from its node, drawn once), ``"use"``
    (a small constant: a node of its own beside this use), ``"seed"`` (folded into ``n``'s label)
    or ``"hidden"`` (the 1 of ``ones_like``)."""
    u = n.inputs[position]
    if u.op != "constant" or u in roots:
        return "edge"
    if position == 0 and _ones_input(n):
        return "hidden"
    if is_seed(u):
        return "seed"
    return "use" if constant_text(u) is not None else "edge"


@dataclass
class Drawing:
    """What a drawing of some outputs shows (see :func:`plan_drawing`): built once, counted by
    the size guard of ``render`` and written as DOT by :func:`to_dot`."""

    roots: list[Node]
    names: dict[Node, str]
    nodes: list[Node]  # within depth=, in topological order (small constants too)
    cut: set[Node]  # of them, those whose inputs depth= cut off
    bodies: list[tuple[Region, list[Node]]]

    @property
    def size(self) -> int:
        """How many nodes the picture has: each node drawn once, one per use of a small
        constant, each body's nodes once."""
        count = _picture_size(self.nodes, set(self.roots))
        return count + sum(_picture_size(inside, set(r.outputs)) for r, inside in self.bodies)


def _picture_size(nodes: list[Node], roots: set[Node]) -> int:
    shown = set(nodes)
    uses = sum(1 for n in nodes for k, u in enumerate(n.inputs) if u in shown and input_kind(n, k, roots) == "use")
    return len(own_nodes(nodes, roots)) + uses


def own_nodes(nodes: list[Node], roots: set[Node]) -> list[Node]:
    """``nodes`` without the constants drawn beside their uses (or folded into them)."""
    uses: dict[Node, list[tuple[Node, int]]] = {}
    for n in nodes:
        for k, u in enumerate(n.inputs):
            if u.op == "constant":
                uses.setdefault(u, []).append((n, k))
    return [
        n
        for n in nodes
        if not (n.op == "constant" and n in uses and all(input_kind(c, k, roots) != "edge" for c, k in uses[n]))
    ]


def plan_drawing(
    outputs: Outputs, *, depth: int | None = None, simplify: bool = False, what: str = "to_dot"
) -> Drawing:
    """What a drawing of ``outputs`` shows: the outputs and their names, the nodes drawn once,
    those whose inputs ``depth`` cut off, and the bodies drawn as clusters.

    ``outputs`` is a node, a dict naming nodes (``{"L": L, "H": H}``), or a list of these
    (``[{"L": L}, gw, H]``).
    Unnamed outputs are named by the graph's saved output names, and a derivative of a named
    (or the one unnamed, then called f) scalar output among them, first or second order with
    respect to a variable, is named ``∂L/∂w`` or ``∂²L/∂w∂v``. ``simplify=True`` draws
    ``sd.simplify(outputs)`` instead (appended to the graph, as simplify always is), under the
    same names.
    """
    roots, names = _named(outputs, what)
    if simplify:
        from symdiff.simplify import simplify as simplified

        new = simplified(roots)
        renamed: dict[Node, str] = {}
        for old, n in zip(roots, new):
            if old in names:
                renamed[n] = names[old] if n not in renamed else f"{renamed[n]} = {names[old]}"
        roots, names = list(dict.fromkeys(new)), renamed
    roots, nodes, cut = drawn_nodes(roots, depth, what)
    return Drawing(roots, names, nodes, cut, body_nodes(nodes))


def _named(outputs: Outputs, what: str) -> tuple[list[Node], dict[Node, str]]:
    """The outputs as a list and the names they are drawn with."""
    names: dict[Node, str] = {}
    items = [outputs] if isinstance(outputs, (Node, Mapping)) else outputs
    if isinstance(items, (list, tuple)) and any(isinstance(item, Mapping) for item in items):
        flat: list[Any] = []
        for item in items:
            if not isinstance(item, Mapping):
                flat.append(item)
                continue
            for key, n in item.items():
                if not isinstance(key, str):
                    raise GraphError(f"{what}: a dict of outputs names each by a str, got {type(key).__name__} {key!r}")
                if isinstance(n, Node):
                    names[n] = f"{names[n]} = {key}" if n in names else key
                flat.append(n)
        outputs = flat
    roots, _ = node_list(outputs, what, "outputs")
    check_same_graph(what, *roots)
    for key, n in roots[0].graph.outputs.items():
        if n in roots and n not in names:
            names[n] = key
    names.update(_derivative_names(roots, names))
    return roots, {n: name for n, name in names.items() if n.op != "variable" or name != n.name}


def cost_names(roots: Sequence[Node], names: Mapping[Node, str]) -> dict[Node, str]:
    """The drawn scalar (non-derivative) outputs a derivative could be of, with the names its
    derivatives get: their own, a variable's, or ``f`` for the one unnamed."""
    costs = [r for r in roots if r.shape == () and not r.is_gradient and not r.is_multi and r.dtype.kind == "f"]
    named = {c: names.get(c) or (c.name if c.op == "variable" else None) for c in costs}
    unnamed = [c for c, name in named.items() if name is None]
    if len(unnamed) == 1:
        named[unnamed[0]] = "f"
    return {c: name for c, name in named.items() if name is not None}


def _derivative_names(roots: list[Node], names: Mapping[Node, str]) -> dict[Node, str]:
    """``∂L/∂w`` and ``∂²L/∂w∂v`` for the unnamed outputs that are those derivatives of a drawn
    cost; where no cost is drawn (``sd.to_dot(sd.grad(L, [a, b]))``), of the graph's one
    scalar result the derivatives could be of (a scalar that no forward node uses, built before
    them), called by its saved output name or f.

    Each candidate is built again on the side: the graph interns nodes, so ``sd.grad(L, w)``
    built twice is one node, and an output is that derivative exactly when it is that node.
    """
    pending = {r for r in roots if r.is_gradient and r not in names}
    if not pending or len(ancestors(roots)) > NAMING_MAX_NODES:
        return {}
    costs = cost_names(roots, names)
    drawn = bool(costs)
    if not drawn:
        costs = _undrawn_costs(roots[0].graph, pending)
    if not costs:
        return {}
    from symdiff.autodiff import grad, jacobian

    found: dict[Node, str] = {}

    def mark(node: Node | None, name: str) -> None:
        if node in pending and node not in found:
            found[node] = name

    shapes = {r.shape for r in pending}  # only derivatives of a drawn output's shape are built
    graph = roots[0].graph
    with graph._scratch():
        for cost, cname in costs.items():
            before = len(found)
            wrt = [n for n in ancestors([cost]) if n.op == "variable" and n.dtype.kind == "f"]
            for w in wrt:
                seconds = [v for v in wrt if w.shape + v.shape in shapes]
                if len(found) == len(pending) or (w.shape not in shapes and not seconds):
                    continue
                first = _attempt(grad, cost, w)
                if first is None:
                    continue
                mark(first, f"∂{cname}/∂{w.name}")
                for v in seconds:
                    second = _attempt(grad if first.shape == () else jacobian, first, v)
                    mark(second, f"∂²{cname}/∂{w.name}²" if v is w else f"∂²{cname}/∂{w.name}∂{v.name}")
            if not drawn:
                if len(found) > before:
                    break  # the one undrawn cost these are the derivatives of
                continue
            if any(name.startswith((f"∂{cname}/", f"∂²{cname}/")) for name in found.values()) and cost not in names:
                found[cost] = cname  # the unnamed cost its derivatives call f
    return found


# An undrawn cost is looked for among this many scalar results at most.
_UNDRAWN_COSTS = 4


def _undrawn_costs(graph: Any, pending: set[Node]) -> dict[Node, str]:
    """The scalar forward results built before the derivatives ``pending`` that no forward node
    uses (last built first), each called by its saved output name, else f; {} where the graph is
    too large to look through, or several unnamed ones would all be f."""
    if len(graph) > NAMING_MAX_NODES:
        return {}
    first = min(n.index for n in pending)
    used: set[Node] = set()
    results = []
    for n in graph.nodes:
        if n.index >= first or n.is_gradient:
            continue
        used.update(n.inputs)
        results.append(n)
    saved = {n: key for key, n in graph.outputs.items()}
    candidates = [
        n
        for n in reversed(results)
        if n not in used and n.shape == () and n.dtype.kind == "f" and not n.is_multi and n.inputs
    ][:_UNDRAWN_COSTS]
    unnamed = [c for c in candidates if c not in saved]
    if len(unnamed) > 1:
        candidates = [c for c in candidates if c in saved]
    return {c: saved.get(c, "f") for c in candidates}


def _attempt(fn: Any, *args: Node) -> Node | None:
    """A derivative built on the side, or None when it cannot be (the graph stays as it was)."""
    try:
        return fn(*args)
    except SymdiffError:
        return None


def _annotations(
    nodes: list[Node], values: Mapping[Any, Any] | None, cost: Node | None
) -> tuple[dict[Node, Any], dict[Node, Any]]:
    """Forward values of the drawn nodes and, for a scalar ``cost``, their gradients.

    The gradients are built in a scratch transaction and removed again: drawing never
    changes the graph.
    """
    from symdiff.autodiff import grad
    from symdiff.evaluate import evaluate

    if values is None:
        if cost is not None:
            raise GraphError("to_dot: cost= needs values= (the point at which to show the gradients)")
        return {}, {}
    computed = [n for n in nodes if not n.is_multi and (n.op != "constant" or n.value.size <= 16)]
    forward = dict(zip(computed, evaluate(computed, values)))
    gradients: dict[Node, Any] = {}
    if cost is not None:
        if not isinstance(cost, Node) or cost.shape != ():
            raise GraphError("to_dot: cost must be a scalar node")
        graph = cost.graph
        targets = [
            n for n in nodes if not n.is_multi and n.dtype.kind == "f" and n.op != "constant" and not n.is_gradient
        ]
        with graph._scratch():
            nodes_grads = grad(cost, targets)
            gradients = dict(zip(targets, evaluate(nodes_grads, values)))
    return forward, gradients


def to_dot(
    outputs: Outputs | Drawing,
    *,
    values: Mapping[Any, Any] | None = None,
    cost: Node | None = None,
    depth: int | None = None,
    rankdir: str = "TB",
    title: str | None = None,
    simplify: bool = False,
) -> str:
    """Graphviz DOT source (a str) for the nodes ``outputs`` need.

    Parameters
    ----------
    outputs : Node, dict of str to Node, or a list of nodes and dicts
        What to draw (with everything it depends on). Outputs have a double border and are
        labelled by name: a dict's keys (``{"L": L, "H": H}``), else the names a saved graph
        gave them; an unnamed first or second derivative of a drawn scalar output with respect
        to a variable is named from it: ``[{"L": L}, gw, H]`` labels ``∂L/∂w``, ``∂²L/∂w²``
        (``∂f/∂w`` when the one scalar output has no name).
        A :class:`Drawing` (from :func:`plan_drawing`) is drawn as planned (``depth`` and
        ``simplify`` were given to the plan).
    values : dict, optional
        Bindings (as for ``evaluate``): each node then shows its value.
    cost : Node, optional
        A scalar node: with ``values``, each forward node also shows the gradient of
        ``cost`` with respect to it (``∂L = ...``, by the cost's name; ``∂f`` when it has
        none), the classic back-propagation figure. The graph is left unchanged.
    depth : int, optional
        Draw only nodes at most this many edges above an output; inputs cut off are
        drawn as a "..." node, to keep large graphs legible.
    rankdir : "TB" or "LR"
        Top-to-bottom or left-to-right.
    title : str, optional
    simplify : bool
        Draw ``sd.simplify(outputs)`` instead, under the same names. Simplify appends the
        simplified nodes to the graph (as it always does); the outputs are left as they were.

    Derivative nodes are filled orange and grouped in a cluster, with a legend;
    variables and constants are blue ellipses and boxes. A small constant (a number, at most
    6 elements, a uniform or identity array) is drawn beside each node that uses it, not as one
    node with long edges; a derivative's seed (ones, an identity, a unit row) is not drawn but
    written into the node that uses it (``seed [0, -1]``; ``broadcast_like(1, y)`` is drawn
    ``ones_like``). Every other node is drawn once, with an edge to each node using it.

    >>> g = sd.Graph(); x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
    >>> f = (x + y) * z
    >>> src = sd.to_dot(f, values={x: -2.0, y: 5.0, z: -4.0}, cost=f)
    >>> "= -12" in src and "∂f = -4" in src
    True
    >>> src = sd.to_dot({"L": f, "H": sd.grad(sd.grad(f, x), z)})
    >>> "<b>L</b>" in src and "<b>H</b>" in src
    True
    >>> "<b>∂L/∂z</b>" in sd.to_dot({"L": f, "∂L/∂z": sd.grad(f, z)})
    True
    """
    if isinstance(outputs, Drawing):  # planned already (render counted its nodes): drawn as planned
        drawing = outputs
    else:
        drawing = plan_drawing(outputs, depth=depth, simplify=simplify, what="to_dot")
    return dot_source(drawing, values=values, cost=cost, rankdir=rankdir, title=title)


def dot_source(
    drawing: Drawing,
    *,
    values: Mapping[Any, Any] | None = None,
    cost: Node | None = None,
    rankdir: str = "TB",
    title: str | None = None,
) -> str:
    """The DOT text of a planned drawing (:func:`plan_drawing`); see :func:`to_dot`."""
    roots, names, cut = drawing.roots, drawing.names, drawing.cut
    forward, gradients = _annotations(drawing.nodes, values, cost)
    cost_name = ""
    if cost is not None:
        cost_name = names.get(cost) or (cost.name if cost.op == "variable" else None) or "f"
    lines = [
        "digraph symdiff {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#495057"];',
    ]
    if title:
        lines.append(f'  labelloc="t"; label="{_escape(title)}";')
    bodies = drawing.bodies
    if bodies:
        lines.append("  compound=true;")  # a "runs" edge ends at its body's cluster

    def node_line(n: Node, indent: str, top: set[Node], fan: Mapping[Node, str], name: str) -> str:
        seeds = [constant_text(u) or "" for k, u in enumerate(n.inputs) if input_kind(n, k, top) == "seed"]
        shown_name = names.get(n) if n in roots else None
        if n in forward or n in gradients or shown_name or seeds:
            attrs = [f"label={_html_label(n, forward.get(n), gradients.get(n), cost_name, shown_name, seeds)}"]
        else:
            attrs = [f'label="{_escape(label(n))}"']
        if n.op == "variable":
            attrs += ["shape=ellipse", "style=filled", f'fillcolor="{LEAF_FILL}"']
        elif n.op == "constant":
            attrs += ["shape=box", 'style="filled,rounded"', f'fillcolor="{LEAF_FILL}"', "fontsize=9"]
        elif n.op == "output":  # a small node under the node whose output it is
            fill = GRADIENT_FILL if n.is_gradient else FORWARD_FILL
            attrs += ["shape=box", 'style="filled,rounded"', f'fillcolor="{fill}"', "fontsize=9", "height=0.2"]
        else:
            fill = GRADIENT_FILL if n.is_gradient else FORWARD_FILL
            attrs += ["shape=box", "style=filled", f'fillcolor="{fill}"']
        if n in top:
            attrs.append("peripheries=2")
        if n in fan:
            attrs += [f'color="{fan[n]}"', "penwidth=2"]
        return f"{indent}{name} [{', '.join(attrs)}];"

    def group(
        members: list[Node], shown: set[Node], top: set[Node], fan: Mapping[Node, str], prefix: str, indent: str
    ) -> list[str]:
        """The node lines of ``members``, each followed by its small constants, one per use."""
        out = []
        for n in members:
            out.append(node_line(n, indent, top, fan, f"{prefix}{n.index}"))
            for k, u in enumerate(n.inputs):
                if u in shown and input_kind(n, k, top) == "use":
                    out.append(
                        f'{indent}{prefix}u{n.index}_{k} [label="{_escape(constant_text(u) or "")}", shape=box, '
                        f'style="filled,rounded", fillcolor="{LEAF_FILL}", fontsize=9, height=0.2, width=0.2, '
                        'margin="0.04,0.02"];'
                    )
        return out

    top = set(roots)
    shown = set(drawing.nodes)
    own = own_nodes(drawing.nodes, top)
    fan = fans(own, shown, top)
    forward_nodes = [n for n in own if not n.is_gradient]
    derivative = [n for n in own if n.is_gradient]
    lines += group(forward_nodes, shown, top, fan, "n", "  ")
    if derivative:
        lines.append("  subgraph cluster_derivative {")
        lines.append('    label="derivative nodes"; style="dashed"; color="#d9480f"; fontcolor="#d9480f";')
        lines += group(derivative, shown, top, fan, "n", "    ")
        lines.append("  }")
    for n in sorted(cut, key=lambda n: n.index):
        lines.append(f'  more{n.index} [label="...", shape=plaintext];')
    for n in own:
        if n in cut:
            lines.append(f"  more{n.index} -> n{n.index} [style=dashed];")
            continue
        lines += _edges(n, shown, top, "n", fan=fan, rankdir=rankdir)
    body_ids = {region: k for k, (region, _) in enumerate(bodies)}
    for n in own:
        lines += _runs(n, f"n{n.index}", body_ids)
    for k, (region, inside) in enumerate(bodies):
        params = ", ".join(p.name for p in region.params)
        # a derivative body (a loop's reverse body beside its body) in the derivative nodes' colour
        color = GRADIENT_EDGE if any(o.is_gradient for o in region.outputs) else BODY_COLOR
        lines.append(f"  subgraph cluster_body{k} {{")
        lines.append(f'    label="{_escape(f"{region.name}({params})")}"; style="rounded"; color="{color}";')
        outs, members = set(region.outputs), set(inside)
        body_own = own_nodes(inside, outs)
        body_fan = fans(body_own, members, outs)
        lines += group(body_own, members, outs, body_fan, f"b{k}_", "    ")
        for n in body_own:
            lines += _edges(n, members, outs, f"b{k}_", "    ", body_fan, rankdir)
            lines += _runs(n, f"b{k}_{n.index}", body_ids, "    ")
        lines.append("  }")
    if derivative:
        lines += [
            "  subgraph cluster_legend {",
            '    label="legend"; style="solid"; color="#adb5bd"; fontsize=9;',
            f'    legend_fwd [label="forward op", shape=box, {_legend_style(FORWARD_FILL)}];',
            f'    legend_grad [label="derivative op", shape=box, {_legend_style(GRADIENT_FILL)}];',
            f'    legend_leaf [label="input", shape=ellipse, {_legend_style(LEAF_FILL)}];',
            "    legend_fwd -> legend_grad -> legend_leaf [style=invis];",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def fans(nodes: Sequence[Node], shown: set[Node], top: set[Node]) -> dict[Node, str]:
    """The nodes among ``nodes`` used by at least FAN_OUT drawn nodes, each with its colour."""
    uses: dict[Node, int] = {}
    for n in nodes:
        for k, u in enumerate(n.inputs):
            if u in shown and input_kind(n, k, top) == "edge":
                uses[u] = uses.get(u, 0) + 1
    many = [n for n in nodes if uses.get(n, 0) >= FAN_OUT]
    return {n: FAN_COLORS[k % len(FAN_COLORS)] for k, n in enumerate(many)}


# Where each operand of an ordered op enters it: in reading order, left to right (top to bottom
# when the graph runs left to right), as the infix text writes them (x - y: x left, y right).
_PORTS = {
    "TB": {2: ("nw", "ne"), 3: ("nw", "n", "ne")},
    "LR": {2: ("nw", "sw"), 3: ("nw", "w", "sw")},
}


def _operand_port(position: int, count: int, rankdir: str) -> list[str]:
    """The edge attributes that say which operand an edge is: it enters the op's node at the
    operand's side (``headport``), the first on the left (on top when the graph runs left to
    right), as the text reads; no number on the edge (numbers ran into the arrowheads). An op
    of more operands than the ports have keeps a number, set off from the arrowhead."""
    ports = _PORTS.get(rankdir, _PORTS["TB"]).get(count)
    if ports is None:
        return [f'headlabel="{position}"', "labeldistance=1.6", "labelfontsize=8"]
    return [f"headport={ports[position]}"]


def _edges(
    n: Node,
    shown: set[Node],
    top: set[Node],
    prefix: str,
    indent: str = "  ",
    fan: Mapping[Node, str] | None = None,
    rankdir: str = "TB",
) -> list[str]:
    """The edges into ``n`` from its drawn inputs (node names ``prefix + index``; a small
    constant's node beside this use ``prefix + u<n>_<position>``); an edge out of a fan
    (``fans``) in the fan's colour; an ordered op's operands enter it at their own sides
    (``_operand_port``)."""
    out = []
    for position, u in enumerate(n.inputs):
        kind = input_kind(n, position, top) if u in shown else None
        if kind not in ("edge", "use"):
            continue
        if fan and u in fan:
            extra = [f'color="{fan[u]}"', "penwidth=0.8", "weight=0"]
        else:
            extra = [f'color="{GRADIENT_EDGE}"'] if n.is_gradient else []
        if n.op == "output":  # hangs from the node whose output it is
            extra += ["arrowhead=none", "style=bold"]
        elif _ordered(n):  # which operand is which: x - y is not y - x, the first on the left (top)
            extra += _operand_port(position, len(n.inputs), rankdir)
        if kind == "use":
            extra += ["arrowsize=0.5", "weight=4"]  # short: the constant sits beside its use
        tail = f"{prefix}u{n.index}_{position}" if kind == "use" else f"{prefix}{u.index}"
        style = f" [{', '.join(extra)}]" if extra else ""
        out.append(f"{indent}{tail} -> {prefix}{n.index}{style};")
    return out


def _runs(n: Node, name: str, body_ids: dict[Region, int], indent: str = "  ") -> list[str]:
    """A dotted edge from a node to each body it runs (to the cluster, at the body's first output)."""
    return [
        f"{indent}{name} -> b{body_ids[r]}_{r.outputs[0].index} [lhead=cluster_body{body_ids[r]}, style=dotted, "
        f'label="runs", fontsize=8, constraint=false];'
        for r in n.regions
    ]


def body_nodes(nodes: Sequence[Node]) -> list[tuple[Region, list[Node]]]:
    """Each body that ``nodes`` run (at any depth, each once) with the nodes a drawing of it shows:
    its parameters and what its outputs need."""
    return [(r, ancestors([*r.params, *r.outputs])) for r in regions_in(nodes)]


def drawn_nodes(
    outputs: Node | Sequence[Node], depth: int | None = None, what: str = "to_dot"
) -> tuple[list[Node], list[Node], set[Node]]:
    """The outputs, the nodes a drawing of them shows (within ``depth`` edges of an output),
    and those of them whose inputs were cut off."""
    roots, _ = node_list(outputs, what, "outputs")
    check_same_graph(what, *roots)
    nodes = subgraph_nodes(roots[0].graph, roots)
    cut: set[Node] = set()
    if depth is not None:
        nodes, cut = _within_depth(roots, nodes, depth)
    return roots, nodes, cut


def _within_depth(roots: list[Node], nodes: list[Node], depth: int) -> tuple[list[Node], set[Node]]:
    """The nodes at most ``depth`` edges above a root, and those whose inputs were cut off."""
    distance = dict.fromkeys(roots, 0)
    for n in reversed(nodes):  # consumers come after inputs: walk from the roots down
        if n in distance and distance[n] < depth:
            for u in n.inputs:
                distance[u] = min(distance.get(u, depth), distance[n] + 1)
    kept = [n for n in nodes if n in distance]
    cut = {n for n in kept if n.inputs and any(u not in distance for u in n.inputs)}
    return kept, cut
