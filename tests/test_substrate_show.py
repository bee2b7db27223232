"""Nodes with several outputs and nodes that run bodies, through every SHOW/SHARE pass:
text and its parser, LaTeX, DOT, networkx, JSON save/load, sympy (issue 20, items 2 and 3).

Oracles: numpy (np.linalg.eigh, slogdet, tanh written out), central differences, sympy's own
expressions, hand-written expected text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import networkx as nx
import numpy as np
import pytest
import sympy

import symdiff as sd
from symdiff.export.io import from_json, to_json
from symdiff.graph import ancestors
from symdiff.parse import ParseError, parse

from .oracles import gradient

X0 = np.array([0.3, -1.0, 2.0])
A0 = np.array([[2.0, 0.3, -0.4], [0.1, 1.0, 0.2], [-0.2, 0.5, -1.0]])
WEIGHTS = np.array([1.0, -2.0, 0.5])  # printed as a list, so the text reads back


def softclip_np(x, c=2.0):
    return c * np.tanh(x / c)


def cost_np(x, a):
    """The cost ``_model`` builds, in numpy."""
    s = (a + a.T) / 2
    w, v = np.linalg.eigh(s)
    return (
        np.sum(softclip_np(x) + softclip_np(2 * x))
        + np.sum(w * [1.0, 2.0, 3.0])
        + np.sum(v**2 * WEIGHTS)
        + np.linalg.slogdet(a)[1]
    )


def _model():
    g = sd.Graph()
    x, A = g.variable("x", shape=(3,)), g.variable("A", shape=(3, 3))
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    w, v = sd.eigh(A)
    _, logabs = sd.slogdet(A)
    f = sd.sum(softclip(x, 2.0) + softclip(2 * x, 2.0)) + sd.sum(w * np.array([1.0, 2.0, 3.0]))
    f = f + sd.sum(v**2 * WEIGHTS) + logabs
    return g, x, A, f


def _reread(node):
    g = sd.Graph()
    for n in ancestors([node]):
        if n.op == "variable":
            g.variable(n.name, shape=n.shape, dtype=n.dtype)
    return parse(str(node), g)


# -- text ------------------------------------------------------------------------------------
def test_a_node_with_several_outputs_prints_once_when_several_are_used():
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3))
    w, v = sd.eigh(A)
    assert str(sd.sum(w)) == "sum(eigh(A).eigenvalues)"
    assert str(sd.sum(w) + sd.sum(v)) == "t1 = eigh(A)\nsum(t1.eigenvalues) + sum(t1.eigenvectors)"
    sign, logabs = sd.slogdet(A)
    assert str(sign * logabs) == "t1 = slogdet(A)\nt1.sign*t1.logabsdet"


def test_a_body_is_defined_once_before_the_expression():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    y = sd.sum(softclip(x, 2.0) + softclip(2 * x, 2.0))
    assert str(y) == "softclip(x, c) = c*tanh(x/c)\nsum(softclip(x, 2) + softclip(2*x, 2))"
    lines = str(sd.grad(y, x)).splitlines()
    assert lines[0].startswith("softclip_vjp(x, c, ") and len(lines) == 2  # the primal body is not called
    assert lines[1].count("softclip_vjp(") == 2
    assert repr(y).endswith("sum(softclip(x, 2) + softclip(2*x, 2))>")  # repr: the expression alone


def test_several_outputs_of_a_body_and_bodies_inside_bodies_print():
    g = sd.Graph()
    x, s = g.variable("x", shape=(3,)), g.variable("s")
    two = sd.composite(lambda u: (sd.sin(u), sd.cos(u)), name="two")
    a, b = two(x)
    assert str(sd.sum(a * b)) == "two(u) = (sin(u), cos(u))\nt1 = two(x)\nsum(t1[0]*t1[1])"
    inner = sd.composite(lambda u: sd.exp(s * u), name="inner")
    outer = sd.composite(lambda u: inner(u) + inner(2.0 * u), name="outer")
    assert str(outer(x)).splitlines() == [
        "inner(u, s) = exp(s*u)",
        "outer(u, s) = inner(u, s) + inner(2*u, s)",
        "outer(x, s)",
    ]


def test_two_bodies_of_one_name_that_differ_are_told_apart():
    g = sd.Graph()
    x, v = g.variable("x"), g.variable("v", shape=(2,))
    f = sd.composite(lambda u: sd.sum(u * u) if u.ndim else u * u, name="f")
    text = str(f(x) + sd.sum(f(v)))
    assert text.splitlines() == ["f(u) = u*u", "f_2(u) = sum(u*u)", "f(x) + f_2(v)"]
    same = sd.composite(lambda u: sd.sin(u), name="same")
    assert str(same(x) + sd.sum(same(v))).splitlines()[:2] == ["same(u) = sin(u)", "same(x) + sum(same(v))"]


@pytest.mark.parametrize("order", [0, 1, 2])
def test_print_parse_evaluate_round_trips_through_bodies_and_outputs(order):
    g, x, A, f = _model()
    node = f if order == 0 else sd.grad(f, x) if order == 1 else sd.hvp(f, x, np.array([1.0, -0.5, 0.25]))
    back = _reread(node)
    bound = {"x": X0, "A": A0}
    np.testing.assert_allclose(sd.evaluate(back, bound), sd.evaluate(node, {x: X0, A: A0}), rtol=1e-12)
    if order == 0:
        np.testing.assert_allclose(sd.evaluate(back, bound), cost_np(X0, A0), rtol=1e-12)
        gx = sd.evaluate(sd.grad(back, back.graph["x"]), bound)  # the parsed body differentiates
        np.testing.assert_allclose(gx, gradient(cost_np, [X0, A0])[0], rtol=1e-7)


def test_the_parser_reads_definitions_blocks_outputs_and_captures():
    g = sd.Graph()
    x, w = g.variable("x", shape=(3,)), g.variable("w", shape=(3,))
    text = "f(u) =\n    t1 = tanh(u*w)\n    (t1, t1*t1)\nt1 = f(x)\nsum(t1[0] + t1[1])"
    y = parse(text, g)
    want = np.tanh(X0 * 2.0)
    np.testing.assert_allclose(sd.evaluate(y, {x: X0, w: np.full(3, 2.0)}), np.sum(want + want**2))
    (call,) = [n for n in ancestors([y]) if n.op == "composite"]
    assert call.inputs == (x, w)  # w captured, passed as an input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("f(u) = u*zz\nf(x)", "neither a parameter nor a variable"),
        ("f(u) = u\n", "ends without an expression"),
        ("eigh(A)", "several outputs"),
        ("eigh(A).values", "no output 'values'"),
        ("f(u) = (u, u)\nf(x)[2]", "no output 2"),
        ("x\nf(u) = u", "definitions and indented lines come first"),
        ("  x\ny", "outside a definition"),
        ("full(u) = u\nfull(x)", "cannot be defined"),
    ],
)
def test_the_parser_refuses_bad_definitions_and_outputs(text, message):
    g = sd.Graph()
    g.variable("x", shape=(3,))
    g.variable("A", shape=(3, 3))
    with pytest.raises(ParseError, match=message):
        parse(text, g)
    assert set(g.variables) == {"x", "A"}


# -- LaTeX -----------------------------------------------------------------------------------
def test_latex_writes_outputs_and_bodies():
    g = sd.Graph()
    A, x, v = g.variable("A", shape=(2, 2)), g.variable("x"), g.variable("v", shape=(2,))
    w, vec = sd.eigh(A)
    assert sd.latex(w + 1) == r"{\operatorname{eigh}\left(A\right)}_{\mathrm{eigenvalues}} + 1"
    shared = sd.latex(sd.sum(w) + sd.sum(vec))
    assert shared.startswith(r"\begin{aligned}t_{1} &= \operatorname{eigh}\left(A\right)")
    assert r"{t_{1}}_{\mathrm{eigenvectors}}" in shared
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="soft_clip")
    assert sd.latex(softclip(x, 2.0)) == sympy.latex(2 * sympy.tanh(sympy.Symbol("x") / 2))  # scalar: sympy
    tensor = sd.latex(softclip(v, 2.0))
    assert tensor.startswith(r"\begin{aligned}\operatorname{soft\_clip}\left(x, c\right) &= c \tanh")
    assert tensor.endswith(r"& \operatorname{soft\_clip}\left(v, 2\right)\end{aligned}")


# -- DOT and networkx ------------------------------------------------------------------------
def test_dot_draws_each_body_once_as_a_cluster_and_outputs_under_their_node():
    g, x, A, f = _model()
    src = sd.to_dot([f, sd.grad(f, x)])
    clusters = re.findall(r'subgraph (cluster_body\d+) \{\n    label="([^"]+)"', src)
    assert sorted(label for _, label in clusters) == ["softclip(x, c)", "softclip_vjp(x, c, g_out0)"]
    assert src.count("lhead=cluster_body") == 4  # two calls of the body, two of its derivative
    assert "compound=true;" in src
    eigh = next(n for n in ancestors([f]) if n.op == "eigh")
    assert f'n{eigh.index} [label="eigh", shape=box' in src
    assert len(re.findall(rf"n{eigh.index} -> n\d+ \[arrowhead=none", src)) == 2
    assert 'label="eigenvalues\\n(3,)"' in src
    values = sd.to_dot(f, values={x: X0, A: A0}, cost=f)  # outputs show values; the node of both does not
    assert f"= {cost_np(X0, A0):.4g}" in values
    if shutil.which("dot"):
        result = subprocess.run(["dot", "-Tsvg"], input=src, capture_output=True, text=True)
        assert result.returncode == 0 and "<svg" in result.stdout


def test_networkx_keeps_bodies_as_graphs_and_the_results_of_a_node_of_several_outputs():
    g, x, A, f = _model()
    G = g.to_networkx(f)
    calls = [k for k in G.nodes if G.nodes[k]["op"] == "composite"]
    bodies = [G.nodes[k]["regions"][0] for k in calls]
    assert len(calls) == 2 and bodies[0] is bodies[1]
    assert bodies[0].graph["name"] == "softclip" and len(bodies[0].graph["params"]) == 2
    assert sorted(bodies[0].nodes[k]["op"] for k in bodies[0].nodes) == ["div", "mul", "tanh", "variable", "variable"]
    eigh = next(k for k in G.nodes if G.nodes[k]["op"] == "eigh")
    assert G.nodes[eigh]["results"] == [((3,), "float64"), ((3, 3), "float64")] and G.nodes[eigh]["shape"] is None
    assert nx.is_directed_acyclic_graph(G)


# -- files -----------------------------------------------------------------------------------
def test_save_load_keeps_outputs_and_bodies_and_they_evaluate_and_differentiate(tmp_path):
    g, x, A, f = _model()
    gx = sd.grad(f, x)
    path = tmp_path / "model.json"
    g.save(path, outputs={"f": f, "gx": gx})
    data = json.loads(path.read_text())
    assert data["version"] == 3 and len(data["bodies"]) == 1  # the derivative body lives in the same body graph
    assert sorted(r["name"] for r in data["regions"]) == ["softclip", "softclip_vjp"]
    h = sd.load(path)
    assert len(h) == len(g) and [n.op for n in h.nodes] == [n.op for n in g.nodes]
    hx, hA, hf = h["x"], h["A"], h.outputs["f"]
    bound = {hx: X0, hA: A0}
    np.testing.assert_allclose(sd.evaluate(hf, bound), cost_np(X0, A0), rtol=1e-12)
    want_gx = gradient(cost_np, [X0, A0])[0]
    np.testing.assert_allclose(sd.evaluate(h.outputs["gx"], bound), want_gx, rtol=1e-7)
    np.testing.assert_allclose(sd.evaluate(sd.grad(hf, hx), bound), want_gx, rtol=1e-7)
    want_gA = gradient(cost_np, [X0, A0])[1]
    np.testing.assert_allclose(sd.evaluate(sd.grad(hf, hA), bound), want_gA, rtol=1e-6, atol=1e-8)
    hess = sd.evaluate(sd.hessian(hf, hx), bound)
    np.testing.assert_allclose(hess, sd.evaluate(sd.hessian(f, x), {x: X0, A: A0}), rtol=1e-12)
    jvp = sd.evaluate(sd.jvp(hf, hx, np.ones(3)), bound)  # forward mode through the loaded body
    np.testing.assert_allclose(jvp, want_gx.sum(), rtol=1e-7)
    assert str(h.outputs["gx"]) == str(gx)


def test_a_loaded_body_keeps_its_derivative_bodies_for_the_next_derivative():
    g, x, A, f = _model()
    sd.grad(f, x)
    h = from_json(json.loads(json.dumps(to_json(g))))
    (call,) = {n.regions[0] for n in h.nodes if n.regions and n.regions[0].name == "softclip"}
    assert len(call.derived) == 1
    before = len(call.graph)
    f2 = next(n for n in reversed(h.nodes) if n.shape == () and not n.is_gradient and n.op == "add")
    sd.grad(f2, h["x"])
    assert len(call.graph) == before  # the saved derivative body was reused, not built again


def test_version_2_files_load_their_split_decompositions_as_outputs():
    data = {
        "format": "symdiff-graph",
        "version": 2,
        "nodes": [
            {"op": "variable", "name": "A", "shape": [3, 3], "dtype": "float64", "is_gradient": False},
            {"op": "eigvalsh", "inputs": [0], "attrs": {}, "is_gradient": False},
            {"op": "eigh_vectors", "inputs": [0], "attrs": {}, "is_gradient": False},
            {"op": "logabsdet", "inputs": [0], "attrs": {}, "is_gradient": False},
            {"op": "signdet", "inputs": [0], "attrs": {}, "is_gradient": False},
        ],
        "outputs": {"w": 1, "v": 2, "l": 3, "s": 4},
    }
    h = from_json(data)
    w, v, logabs, sign = (h.outputs[k] for k in "wvls")
    assert w.inputs[0] is v.inputs[0] and logabs.inputs[0] is sign.inputs[0]  # one node each
    got = sd.evaluate([w, v, logabs, sign], {"A": A0})
    ww, vv = np.linalg.eigh((A0 + A0.T) / 2)
    np.testing.assert_allclose(got[0], ww, rtol=1e-12)
    np.testing.assert_allclose(np.abs(got[1]), np.abs(vv), rtol=1e-12)
    np.testing.assert_allclose(got[2:], np.linalg.slogdet(A0)[::-1], rtol=1e-12)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["regions"][0].update(params=[99]), "params must be indices"),
        (lambda d: d["bodies"][0].update(parent=0), "cycle"),
        (lambda d: d["nodes"][-1].update(regions=[7]), "indices of the file's regions"),
        (lambda d: d["regions"][0].update(outputs=[]), "outputs must be value nodes"),
    ],
)
def test_load_rejects_malformed_bodies(mutate, message):
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    sd.composite(lambda u: sd.sin(u), name="s")(x)
    data = to_json(g)
    mutate(data)
    with pytest.raises(sd.GraphError, match=message):
        from_json(data)


# -- sympy -----------------------------------------------------------------------------------
def test_to_sympy_writes_slogdet_refuses_eigh_and_inlines_bodies():
    g = sd.Graph()
    A, x = g.variable("A", shape=(2, 2)), g.variable("x")
    sign, logabs = sd.slogdet(A)
    M = sympy.Matrix(2, 2, lambda i, j: sympy.Symbol(f"A_{i}_{j}"))
    assert sympy.simplify(sd.to_sympy(sign * logabs) - sympy.sign(M.det()) * sympy.log(sympy.Abs(M.det()))) == 0
    w, _ = sd.eigh(A)
    with pytest.raises(sd.GraphError, match="eigh.*no numpy order or sign convention"):
        sd.to_sympy(sd.sum(w))
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    s = sympy.Symbol("x")
    assert sd.to_sympy(softclip(x, 2.0)) == 2 * sympy.tanh(s / 2)
    assert sympy.simplify(sd.to_sympy(sd.grad(softclip(x, 2.0), x)) - sympy.diff(2 * sympy.tanh(s / 2), s)) == 0
    two = sd.composite(lambda u: (sd.sin(u), sd.cos(u)), name="two")
    a, b = two(x)
    assert sd.to_sympy(a * b) == sympy.sin(s) * sympy.cos(s)
