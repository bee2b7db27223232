"""Graphviz DOT, networkx and sympy exports."""

from __future__ import annotations

import shutil
import subprocess

import networkx as nx
import numpy as np
import pytest
import sympy

import symdiff as sd


@pytest.fixture
def g():
    return sd.Graph()


def test_dot_marks_derivative_nodes_and_is_deterministic(g):
    w = g.variable("w")
    z = sd.sin(sd.sin(sd.sin(w)))
    dz = sd.grad(z, w)
    src = sd.to_dot([z, dz])
    assert src.startswith("digraph") and src.rstrip().endswith("}")
    assert "cluster_derivative" in src and "legend" in src
    drawn = g.to_networkx([z, dz])
    gradient_ids = {f"n{i} [" for i, data in drawn.nodes(data=True) if data["is_gradient"]}
    assert gradient_ids and all(i in src for i in gradient_ids)
    assert src == sd.to_dot([z, dz])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_dot_renders(g):
    x = g.variable("x", shape=(3,))
    src = sd.to_dot(sd.grad(sd.sum(sd.tanh(x) ** 2), x))
    out = subprocess.run(["dot", "-Tsvg"], input=src, capture_output=True, text=True, check=True)
    assert "<svg" in out.stdout


def test_networkx_export(g):
    x = g.variable("x")
    y = x * x + sd.sin(x)
    dy = sd.grad(y, x)
    G = g.to_networkx()
    assert isinstance(G, nx.DiGraph) and G.number_of_nodes() == len(g)
    assert nx.is_directed_acyclic_graph(G)
    assert G.nodes[x.index]["op"] == "variable" and G.nodes[x.index]["name"] == "x"
    assert G.nodes[dy.index]["is_gradient"] is True
    mul = next(n for n in g.nodes if n.op == "mul" and n.inputs == (x, x))
    assert G.edges[x.index, mul.index]["positions"] == [0, 1]
    sub = g.to_networkx(y)
    assert dy.index not in sub and set(nx.ancestors(sub, y.index)) >= {x.index}


def test_to_sympy_scalars_and_matrices(g):
    x = g.variable("x")
    assert sd.to_sympy(sd.grad(sd.sin(x) * x, x)) == sympy.sin(sympy.Symbol("x")) + sympy.Symbol("x") * sympy.cos(
        sympy.Symbol("x")
    )
    w = g.variable("w", shape=(2,))
    A = g.constant(np.array([[1.0, 2.0], [3.0, 4.0]]))
    m = sd.to_sympy(A @ w)
    w0, w1 = sympy.symbols("w_0 w_1")
    assert m == sympy.Matrix([w0 + 2 * w1, 3 * w0 + 4 * w1])
    H = sd.to_sympy(sd.hessian(sd.sum(w**3), w))
    assert H == sympy.Matrix([[6 * w0, 0], [0, 6 * w1]])


def test_from_sympy_maps_symbols_to_variables(g):
    x = g.variable("x")
    X, Y = sympy.symbols("x y")
    node = sd.from_sympy(sympy.sin(X) * Y / (1 + X**2) - sympy.sqrt(Y), g)
    assert g["y"].shape == () and "y" in g.variables
    assert sd.evaluate(node, {x: 0.5, "y": 2.0}) == pytest.approx(np.sin(0.5) * 2 / 1.25 - np.sqrt(2))
    back = sd.to_sympy(node)
    assert sympy.simplify(back - (sympy.sin(X) * Y / (1 + X**2) - sympy.sqrt(Y))) == 0


def test_latex(g):
    x = g.variable("x")
    assert sd.latex(sd.exp(x) ** 2) == "e^{2 x}"


def test_a_saved_untake_node_loads_as_takes_transpose(tmp_path):
    """untake (the adjoint of take until take declared its transpose) is read from version 3
    files as take's transpose: the same scatter-add into zeros shaped like x."""
    import json

    x = np.arange(12.0).reshape(3, 4)
    ct = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    nodes = [
        {"op": "variable", "name": "A", "shape": [3, 4], "dtype": "float64", "is_gradient": False},
        {"op": "constant", "dtype": "int64", "shape": [3], "value": [2, 0, 2], "is_gradient": False},
        {"op": "constant", "dtype": "float64", "shape": [3, 3], "value": ct.ravel().tolist(), "is_gradient": True},
        {"op": "untake", "inputs": [2, 0, 1], "attrs": {"axis": -1}, "is_gradient": True},
    ]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "symdiff-graph", "version": 3, "nodes": nodes, "outputs": {"g": 3}}))
    loaded = sd.load(path)
    want = np.zeros_like(x)
    np.add.at(want, (slice(None), [2, 0, 2]), ct)  # columns 2 and 0; column 2 twice
    np.testing.assert_array_equal(sd.evaluate(loaded.outputs["g"], {"A": x}), want)
