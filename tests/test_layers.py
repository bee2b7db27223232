"""The layers import one way (issue 20): import-linter's contracts in pyproject.toml hold, and
what the layers above install on Node and Graph is all there once symdiff is imported."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

import symdiff as sd
from symdiff.graph import Graph, Node, not_installed

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is not installed (it is in the dev and test extras)")
    run = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    result = subprocess.run([sys.executable, "-c", run], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_installed_method_is_installed():
    assert not_installed(Node) == [] and not_installed(Graph) == []
    g = sd.Graph()
    x = g.variable("x", shape=(2,))
    assert repr(x.sum()) == "<Node #1 sum: sum(x)>"
    assert Node.__add__.__module__ == "symdiff.ops.methods" and Node.__add__.__qualname__ == "Node.__add__"
    assert "astype" in Node.__dict__ and Node.astype.__doc__.startswith("This node converted")
    assert Graph.save.__doc__.startswith("Write the graph")


def _bare_graph_module():
    """symdiff/graph.py loaded on its own: a Node no layer above has installed anything on."""
    spec = importlib.util.spec_from_file_location("_bare_symdiff_graph", ROOT / "symdiff" / "graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_before_installation_an_operator_says_what_installs_it():
    bare = _bare_graph_module()
    g = bare.Graph()
    x = g.variable("x", shape=(2,))
    assert repr(x) == "<Node #0 variable shape=(2,)>"  # repr works: messages may name the node
    for build, by in [
        (lambda: x + 1, "symdiff.ops"),
        (lambda: 1 - x, "symdiff.ops"),
        (lambda: x[0], "symdiff.ops"),
        (lambda: x.T, "symdiff.ops"),
        (lambda: x.sum(), "symdiff.ops"),
        (lambda: g.save("unused.json"), "symdiff.export.io"),
        (lambda: g.to_networkx(), "symdiff.export.nx"),
    ]:
        with pytest.raises(sd.GraphError, match=f"installed by {by}, which is not imported yet"):
            build()
    assert sorted(bare.not_installed(bare.Graph)) == ["save", "to_networkx"]


def test_only_declared_methods_can_be_installed():
    bare = _bare_graph_module()
    with pytest.raises(sd.GraphError, match="Node.frobnicate is not among the methods"):
        bare.install(bare.Node, {"frobnicate": lambda self: None})
