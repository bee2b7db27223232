"""Graphviz DOT for a graph: the book's symbol-to-symbol figure, and the classic
forward/backward figure with values and gradients on every node.

Forward nodes are drawn plain, derivative nodes (``is_gradient``) filled orange and
grouped in a cluster beside them, with a legend. A node with several outputs (``eigh``) is
drawn once, its outputs as small nodes named by the output hanging from it; a body
(``sd.composite``, a loop's body) is drawn once as a cluster ``subgraph cluster_body<k>``
labelled by its definition's left side, and each node that runs it has a dotted "runs" edge to
it; a derivative body (a loop's reverse body, drawn beside its body) has the derivative nodes'
colour. The same graph always gives the same text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from symdiff.errors import GraphError
from symdiff.export.nx import subgraph_nodes
from symdiff.graph import Node, Region, ancestors, check_same_graph, format_shape, node_list, regions_in
from symdiff.ops import REGISTRY
from symdiff.ops.constants import format_number

FORWARD_FILL = "#ffffff"
GRADIENT_FILL = "#ffd8a8"
GRADIENT_EDGE = "#d9480f"
LEAF_FILL = "#d0ebff"
VALUE_COLOR = "#2b8a3e"
GRAD_COLOR = "#c92a2a"
BODY_COLOR = "#5f3dc4"


def _symbol(node: Node) -> str:
    """The op as a reader knows it: ``+``, ``*``, ``@``, ``sin``, ``T``, ``[1:3]``."""
    if node.op == "variable":
        return node.name
    if node.op == "constant":
        v = node.value
        if v.ndim == 0:
            return format_number(v.item())
        return format_number(node.uniform) if node.uniform is not None else "const"
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


def _html_label(node: Node, value: Any, gradient: Any, cost_name: str) -> str:
    rows = [f"<b>{html.escape(_symbol(node))}</b>"]
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
    outputs: Node | Sequence[Node],
    *,
    values: Mapping[Any, Any] | None = None,
    cost: Node | None = None,
    depth: int | None = None,
    rankdir: str = "TB",
    title: str | None = None,
) -> str:
    """Graphviz DOT source (a str) for the nodes ``outputs`` need.

    Parameters
    ----------
    outputs : Node or list of Node
        What to draw (with everything it depends on). Outputs have a double border.
    values : dict, optional
        Bindings (as for ``evaluate``): each node then shows its value.
    cost : Node, optional
        A scalar node: with ``values``, each forward node also shows the gradient of
        ``cost`` with respect to it, the classic back-propagation figure. The graph
        is left unchanged.
    depth : int, optional
        Draw only nodes at most this many edges above an output; inputs cut off are
        drawn as a "..." node, to keep large graphs legible.
    rankdir : "TB" or "LR"
        Top-to-bottom or left-to-right.
    title : str, optional

    Derivative nodes are filled orange and grouped in a cluster, with a legend;
    variables and constants are blue ellipses and boxes.

    >>> g = sd.Graph(); x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
    >>> f = (x + y) * z
    >>> src = sd.to_dot(f, values={x: -2.0, y: 5.0, z: -4.0}, cost=f)
    >>> "= -12" in src and "∂f = -4" in src
    True
    """
    roots, nodes, cut = drawn_nodes(outputs, depth, "to_dot")
    forward, gradients = _annotations(nodes, values, cost)
    cost_name = (cost.name or "f") if cost is not None else ""
    marked = set(roots)
    lines = [
        "digraph symdiff {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#495057"];',
    ]
    if title:
        lines.append(f'  labelloc="t"; label="{_escape(title)}";')
    bodies = body_nodes(nodes)
    if bodies:
        lines.append("  compound=true;")  # a "runs" edge ends at its body's cluster

    def node_line(n: Node, indent: str, name: str | None = None) -> str:
        if n in forward or n in gradients:
            attrs = [f"label={_html_label(n, forward.get(n), gradients.get(n), cost_name)}"]
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
        if n in marked:
            attrs.append("peripheries=2")
        return f"{indent}{name or f'n{n.index}'} [{', '.join(attrs)}];"

    drawn = set(nodes)
    forward_nodes = [n for n in nodes if not n.is_gradient]
    derivative = [n for n in nodes if n.is_gradient]
    lines += [node_line(n, "  ") for n in forward_nodes]
    if derivative:
        lines.append("  subgraph cluster_derivative {")
        lines.append('    label="derivative nodes"; style="dashed"; color="#d9480f"; fontcolor="#d9480f";')
        lines += [node_line(n, "    ") for n in derivative]
        lines.append("  }")
    for n in sorted(cut, key=lambda n: n.index):
        lines.append(f'  more{n.index} [label="...", shape=plaintext];')
    for n in nodes:
        if n in cut:
            lines.append(f"  more{n.index} -> n{n.index} [style=dashed];")
            continue
        lines += _edges(n, drawn, "n")
    body_ids = {region: k for k, (region, _) in enumerate(bodies)}
    for n in nodes:
        lines += _runs(n, f"n{n.index}", body_ids)
    for k, (region, inside) in enumerate(bodies):
        params = ", ".join(p.name for p in region.params)
        # a derivative body (a loop's reverse body beside its body) in the derivative nodes' colour
        color = GRADIENT_EDGE if any(o.is_gradient for o in region.outputs) else BODY_COLOR
        lines.append(f"  subgraph cluster_body{k} {{")
        lines.append(f'    label="{_escape(f"{region.name}({params})")}"; style="rounded"; color="{color}";')
        saved, marked = marked, set(region.outputs)
        lines += [node_line(n, "    ", f"b{k}_{n.index}") for n in inside]
        marked = saved
        for n in inside:
            lines += _edges(n, set(inside), f"b{k}_", "    ")
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


def _edges(n: Node, drawn: set[Node], prefix: str, indent: str = "  ") -> list[str]:
    """The edges into ``n`` from its drawn inputs (node names ``prefix + index``)."""
    out = []
    for position, u in enumerate(n.inputs):
        if u not in drawn:
            continue
        extra = [f'color="{GRADIENT_EDGE}"'] if n.is_gradient else []
        if n.op == "output":  # hangs from the node whose output it is
            extra += ["arrowhead=none", "style=bold"]
        elif _ordered(n):  # which operand is which: x - y is not y - x
            extra.append(f'taillabel="{position}"')
        style = f" [{', '.join(extra)}]" if extra else ""
        out.append(f"{indent}{prefix}{u.index} -> {prefix}{n.index}{style};")
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
