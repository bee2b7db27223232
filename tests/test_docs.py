"""The docs stay true: their code runs, and they name every op and public name."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

import symdiff as sd
from symdiff.ops import REGISTRY

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def python_blocks(path: pathlib.Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_code_blocks_run(path):
    code = python_blocks(path)
    if not code:
        pytest.skip("no python code")
    missing = [m for m in ("numba", "jax", "dask", "sklearn") if m in code and importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{path.name}'s code needs {', '.join(missing)} (the test extra installs them)")
    # A fresh interpreter per page: pages may register ops, which must not leak into other tests.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, f"{path.name}:\n{result.stderr}"


def test_op_table_lists_every_op():
    text = (ROOT / "docs" / "ops.md").read_text()
    missing = [name for name in REGISTRY if f"| `{name}` |" not in text]
    assert not missing, f"docs/ops.md does not list {missing}"


def test_api_reference_names_every_public_name():
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in sd.__all__ if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, f"docs/api.md does not mention {missing}"


def test_command_line_page_lists_every_function_the_parser_takes():
    from symdiff.parse import FUNCTIONS

    text = (ROOT / "docs" / "command-line.md").read_text()
    missing = [name for name in FUNCTIONS if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"docs/command-line.md does not list {missing}"


def support_table() -> str:
    """docs/ops.md's table of how each op has each aspect, made from the op table."""
    from symdiff.backends import dask, load
    from symdiff.backends.numpy import OVERRIDES
    from symdiff.ops.core import aspects

    numba, jax, c = load("numba"), load("jax"), load("c")  # the test extra installs them, and dask
    rows = [
        "| op | kind | vjp | jvp | sympy | numpy backend | any array module | numba backend | jax backend "
        "| C backend | dask arrays | sparsity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(REGISTRY):
        op = REGISTRY[name]
        a = aspects(op)
        numpy = "override" if name in OVERRIDES else (f"`np.{op.numpy}`" if "forward" in op.derived else "forward")
        sparsity = f"{op.sparsity} ({'from its kind' if 'sparsity' in op.derived else 'declared'})"
        backends = [numba.support(op), jax.support(op), c.support(op), dask.support(op)]
        cells = [a["vjp"], a["jvp"], a["sympy"], numpy, a["array_module"], *backends, sparsity]
        rows.append(f"| `{name}` | {op.kind} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("numba", "jax", "dask", "cffi")),
    reason="the support table has a column per backend: needs numba, jax, cffi and dask (the test extra installs them)",
)
def test_op_support_table_is_the_op_tables():
    text = (ROOT / "docs" / "ops.md").read_text()
    table = support_table()
    assert table in text, "docs/ops.md's support table is out of date; it should read:\n" + table
