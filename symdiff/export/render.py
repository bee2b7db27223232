"""Pictures of a graph: its DOT source (``export/dot.py``) run through the Graphviz program."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from typing import Any

from symdiff.errors import GraphError
from symdiff.export.dot import body_nodes, drawn_nodes, to_dot
from symdiff.export.nx import subgraph_nodes
from symdiff.graph import Node, install

# Graphviz's layout grows faster than the node count: a few seconds at 1,000 nodes, minutes at 5,000.
MAX_NODES = 1_000

INSTALL_HINT = (
    "the Graphviz 'dot' program is not installed, so only the DOT source was written; install "
    "Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
    "conda: conda install graphviz; Windows: winget install graphviz) and render it with "
    "dot -Tsvg {dot} -o {out}"
)


def _too_large(outputs: Node | Sequence[Node], options: dict[str, Any], max_nodes: int | None, what: str) -> str | None:
    """Why a drawing of ``outputs`` is too large for Graphviz's layout (None: it is not)."""
    if max_nodes is None:
        return None
    _, nodes, _ = drawn_nodes(outputs, options.get("depth"), what)
    count = len(nodes) + sum(len(inside) for _, inside in body_nodes(nodes))  # each body drawn once
    if count <= max_nodes:
        return None
    return (
        f"{what}: the drawing would have {count} nodes, more than max_nodes={max_nodes}, and Graphviz "
        "would take minutes to lay it out; draw less: depth=3 keeps the nodes within 3 edges of the outputs, "
        "or pass a sub-graph (fewer outputs, one derivative), or write only the DOT source (a .dot path); "
        "max_nodes=None draws it anyway"
    )


def render(
    outputs: Node | Sequence[Node], path: str | pathlib.Path, *, max_nodes: int | None = MAX_NODES, **options: Any
) -> pathlib.Path:
    """Draw ``outputs`` to ``path`` (``.svg``, ``.png`` or ``.pdf``) with Graphviz.

    The DOT source is always written beside it (``path`` with suffix ``.dot``). When
    the Graphviz ``dot`` program is not installed, a warning says how to install it
    and the ``.dot`` path is returned; otherwise the picture's path. ``options`` go to
    :func:`to_dot` (``values``, ``cost``, ``depth``, ``rankdir``, ``title``).

    A drawing of more than ``max_nodes`` nodes (1,000; Graphviz lays it out in minutes) is
    refused with a GraphError before anything is written, naming ``depth=`` and sub-graphs;
    ``max_nodes=None`` lifts the limit, and a ``.dot`` path has none (no layout).

    >>> import tempfile, pathlib
    >>> g = sd.Graph(); x = g.variable("x")
    >>> out = sd.render(sd.grad(sd.sin(x) * x, x), pathlib.Path(tempfile.mkdtemp()) / "d.svg")
    >>> out.suffix in (".svg", ".dot")
    True
    """
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise GraphError(f"render: cannot write {path.name!r}; use a .svg, .png, .pdf or .dot file name")
    too_large = _too_large(outputs, options, max_nodes, "render") if fmt != "dot" else None
    if too_large:
        raise GraphError(too_large)
    source = to_dot(outputs, **options)
    dot_path = path.with_suffix(".dot")
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(source, encoding="utf-8")
    if fmt == "dot":
        return dot_path
    program = shutil.which("dot")
    if program is None:
        warnings.warn(INSTALL_HINT.format(dot=dot_path, out=path), stacklevel=2)
        return dot_path
    subprocess.run([program, f"-T{fmt}", str(dot_path), "-o", str(path)], check=True, capture_output=True)
    return path


def to_svg(outputs: Node | Sequence[Node], *, max_nodes: int | None = MAX_NODES, **options: Any) -> str | None:
    """SVG text of the drawing, or None when Graphviz is not installed, or (with a warning
    naming ``depth=``) when the drawing has more than ``max_nodes`` nodes."""
    program = shutil.which("dot")
    if program is None:
        return None
    too_large = _too_large(outputs, options, max_nodes, "to_svg")
    if too_large:
        warnings.warn(too_large, stacklevel=2)
        return None
    result = subprocess.run([program, "-Tsvg"], input=to_dot(outputs, **options), capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _node_svg(self: Node) -> str | None:
    """A drawing for Jupyter, when Graphviz is installed and the graph is small enough."""
    if len(subgraph_nodes(self.graph, self)) > 200:
        return None
    return to_svg(self)


install(Node, {"_repr_svg_": _node_svg})
