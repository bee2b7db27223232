"""Pictures of a graph: its DOT source (``export/dot.py``) run through the Graphviz program."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from typing import Any

from symdiff.errors import GraphError
from symdiff.export.dot import to_dot
from symdiff.graph import Node

INSTALL_HINT = (
    "the Graphviz 'dot' program is not installed, so only the DOT source was written; install "
    "Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
    "conda: conda install graphviz; Windows: winget install graphviz) and render it with "
    "dot -Tsvg {dot} -o {out}"
)


def render(outputs: Node | Sequence[Node], path: str | pathlib.Path, **options: Any) -> pathlib.Path:
    """Draw ``outputs`` to ``path`` (``.svg``, ``.png`` or ``.pdf``) with Graphviz.

    The DOT source is always written beside it (``path`` with suffix ``.dot``). When
    the Graphviz ``dot`` program is not installed, a warning says how to install it
    and the ``.dot`` path is returned; otherwise the picture's path. ``options`` go to
    :func:`to_dot` (``values``, ``cost``, ``depth``, ``rankdir``, ``title``).

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


def to_svg(outputs: Node | Sequence[Node], **options: Any) -> str | None:
    """SVG text of the drawing, or None when Graphviz is not installed."""
    program = shutil.which("dot")
    if program is None:
        return None
    result = subprocess.run([program, "-Tsvg"], input=to_dot(outputs, **options), capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None
