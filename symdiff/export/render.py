"""Pictures of a graph: its DOT source (``export/dot.py``) run through the Graphviz program."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import warnings
from typing import Any

from symdiff.errors import GraphError
from symdiff.export.dot import Drawing, Outputs, plan_drawing, to_dot
from symdiff.export.nx import subgraph_nodes
from symdiff.graph import Node, install

# A picture of more nodes than this no longer reads (and Graphviz's layout grows faster than the
# node count: a few seconds at 1,000 nodes, minutes at 5,000).
MAX_NODES = 200

INSTALL_HINT = (
    "the Graphviz 'dot' program is not installed, so only the DOT source was written; install "
    "Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
    "conda: conda install graphviz; Windows: winget install graphviz) and render it with "
    "dot -Tsvg {dot} -o {out}"
)

_DOT_OPTIONS = ("values", "cost", "rankdir", "title")


def _plan(outputs: Outputs, options: dict[str, Any], what: str) -> Drawing:
    unknown = sorted(set(options) - {*_DOT_OPTIONS, "depth", "simplify"})
    if unknown:
        raise GraphError(
            f"{what}: unknown option {unknown[0]!r}; the options are depth, simplify, {', '.join(_DOT_OPTIONS)}"
        )
    return plan_drawing(outputs, depth=options.get("depth"), simplify=options.get("simplify", False), what=what)


def _too_large(drawing: Drawing, max_nodes: int | None, what: str) -> str | None:
    """Why ``drawing`` is too large to read (None: it is not)."""
    if max_nodes is None or drawing.size <= max_nodes:
        return None
    return (
        f"{what}: the drawing would have {drawing.size} nodes, more than max_nodes={max_nodes}, too many to "
        f"read (and slow to lay out); draw less: {what}(node, ..., depth=3) keeps the nodes within 3 edges of "
        "the outputs, or pass a sub-graph (fewer outputs, one derivative), or simplify=True; "
        "max_nodes=None draws it anyway, and a .dot path writes only the DOT source"
    )


def _source(drawing: Drawing, options: dict[str, Any]) -> str:
    return to_dot(drawing, **{k: v for k, v in options.items() if k in _DOT_OPTIONS})


def render(
    outputs: Outputs, path: str | pathlib.Path, *, max_nodes: int | None = MAX_NODES, **options: Any
) -> pathlib.Path:
    """Draw ``outputs`` to ``path`` (``.svg``, ``.png`` or ``.pdf``) with Graphviz.

    ``outputs`` is a node, a list, or a dict naming them (``{"L": L, "H": H}``: the outputs
    are labelled by these names). The DOT source is always written beside the picture (``path``
    with suffix ``.dot``). When the Graphviz ``dot`` program is not installed, a warning says how
    to install it and the ``.dot`` path is returned; otherwise the picture's path. ``options``
    go to :func:`to_dot` (``values``, ``cost``, ``depth``, ``rankdir``, ``title``, ``simplify``).

    ``simplify=True`` draws ``sd.simplify(outputs)``: simplify appends the simplified nodes
    to the graph (as it always does), so the graph grows; the outputs are left as they were.

    A drawing of more than ``max_nodes`` nodes (200, counted as drawn: a small constant once
    per use) is refused with a GraphError before anything is written, naming ``depth=``,
    sub-graphs and ``simplify=True``; ``max_nodes=None`` lifts the limit, and a ``.dot`` path
    has none (no layout). An unknown option is a GraphError too.

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
    drawing = _plan(outputs, options, "render")
    too_large = _too_large(drawing, max_nodes, "render") if fmt != "dot" else None
    if too_large:
        raise GraphError(too_large)
    source = _source(drawing, options)
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


def to_svg(outputs: Outputs, *, max_nodes: int | None = MAX_NODES, **options: Any) -> str | None:
    """SVG text of the drawing (options as for :func:`render`), or None when Graphviz is not
    installed, or (with a warning naming ``depth=``) when the drawing has more than ``max_nodes``
    nodes (200)."""
    program = shutil.which("dot")
    if program is None:
        return None
    drawing = _plan(outputs, options, "to_svg")
    too_large = _too_large(drawing, max_nodes, "to_svg")
    if too_large:
        warnings.warn(too_large, stacklevel=2)
        return None
    result = subprocess.run([program, "-Tsvg"], input=_source(drawing, options), capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _node_svg(self: Node) -> str | None:
    """A drawing for Jupyter, when Graphviz is installed and the drawing is small enough to read."""
    if shutil.which("dot") is None or len(subgraph_nodes(self.graph, self)) > 2 * MAX_NODES:
        return None  # not even planned: too large
    if plan_drawing(self, what="_repr_svg_").size > MAX_NODES:
        return None
    return to_svg(self)


install(Node, {"_repr_svg_": _node_svg})
