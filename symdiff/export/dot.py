"""Graphviz DOT source for a graph: the book's symbol-to-symbol figure.

Forward nodes are drawn plain, derivative nodes (``is_gradient``) filled and
grouped in a cluster beside them, with a legend. The same graph always gives the
same text.
"""

from __future__ import annotations

from collections.abc import Sequence

from symdiff.export.nx import subgraph_nodes
from symdiff.graph import Node, format_shape
from symdiff.ops import REGISTRY
from symdiff.printing import format_number

FORWARD_FILL = "#ffffff"
GRADIENT_FILL = "#ffd8a8"
GRADIENT_EDGE = "#d9480f"
LEAF_FILL = "#d0ebff"


def _legend_style(fill: str) -> str:
    return f'style=filled, fillcolor="{fill}", fontsize=9'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label(node: Node) -> str:
    """The short label of a node in a drawing: its name, value or op symbol, and its shape."""
    if node.op == "variable":
        text = node.name
    elif node.op == "constant":
        v = node.value
        text = (
            format_number(v.item())
            if v.ndim == 0
            else (f"{format_number(node.uniform)}" if node.uniform is not None else "const")
        )
    else:
        op = REGISTRY[node.op]
        text = op.symbol if op.symbol and op.symbol != ".T" else node.op
        if node.op == "transpose":
            text = "T"
        elif node.op == "getitem":
            text = f"[{node.attrs['index']!r}]"
    if node.shape:
        text += f"\n{format_shape(node.shape)}"
    return text


def to_dot(outputs: Node | Sequence[Node], *, rankdir: str = "TB", title: str | None = None) -> str:
    """Graphviz DOT source (a str) for the nodes ``outputs`` need.

    Derivative nodes are filled orange and grouped in a cluster; variables and
    constants are blue ellipses and boxes; outputs have a double border.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> src = sd.to_dot(sd.grad(sd.sin(x), x))
    >>> src.startswith("digraph")
    True
    """
    roots = [outputs] if isinstance(outputs, Node) else list(outputs)
    nodes = subgraph_nodes(roots[0].graph, roots)
    marked = set(roots)
    lines = [
        "digraph symdiff {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#495057"];',
    ]
    if title:
        lines.append(f'  labelloc="t"; label="{_escape(title)}";')

    def node_line(n: Node, indent: str) -> str:
        attrs = [f'label="{_escape(label(n))}"']
        if n.op == "variable":
            attrs += ["shape=ellipse", "style=filled", f'fillcolor="{LEAF_FILL}"']
        elif n.op == "constant":
            attrs += ["shape=box", 'style="filled,rounded"', f'fillcolor="{LEAF_FILL}"', "fontsize=9"]
        else:
            fill = GRADIENT_FILL if n.is_gradient else FORWARD_FILL
            attrs += ["shape=box", "style=filled", f'fillcolor="{fill}"']
        if n in marked:
            attrs.append("peripheries=2")
        return f"{indent}n{n.index} [{', '.join(attrs)}];"

    forward = [n for n in nodes if not n.is_gradient]
    derivative = [n for n in nodes if n.is_gradient]
    lines += [node_line(n, "  ") for n in forward]
    if derivative:
        lines.append("  subgraph cluster_derivative {")
        lines.append('    label="derivative nodes"; style="dashed"; color="#d9480f"; fontcolor="#d9480f";')
        lines += [node_line(n, "    ") for n in derivative]
        lines.append("  }")
    for n in nodes:
        for position, u in enumerate(n.inputs):
            extra = [f'color="{GRADIENT_EDGE}"'] if n.is_gradient else []
            if len(n.inputs) > 1 and REGISTRY[n.op].symbol in ("-", "/", "@", "**"):
                extra.append(f'taillabel="{position}"')
            lines.append(f"  n{u.index} -> n{n.index}" + (f" [{', '.join(extra)}]" if extra else "") + ";")
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
