"""Loops through every SHOW/SHARE pass (issue 22, item 4): text and its parser, LaTeX, DOT,
networkx, JSON save/load, sympy. Printing shows a body once however many steps the loop takes;
a drawing shows the body and the reverse body as clusters; a saved gradient of a loop loads.

Oracles: the loops written in numpy, closed forms (x squared k times is x**(2**k)), central
finite differences (tests/oracles.py), hand-written expected text.
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
from symdiff.export.dot import GRADIENT_EDGE
from symdiff.export.io import from_json, to_json
from symdiff.graph import ancestors
from symdiff.parse import parse
from symdiff.printing import to_latex

from .op_cases import _fori_reference as _fori_np
from .op_cases import _rnn, _two_carries
from .op_cases import _rnn_reference as _rnn_np
from .op_cases import _two_carries_reference as _two_carries_np
from .op_cases import _while_reference as _grow_np
from .oracles import gradient, hessian
from .test_edge_printing import _reread

RNG = np.random.default_rng(22)
H0, W0 = RNG.standard_normal(3), RNG.standard_normal(3)


def _xs(steps: int) -> np.ndarray:
    return np.random.default_rng(steps).standard_normal((steps, 3))


def _rnn_graph(steps: int = 4):
    g = sd.Graph()
    h, xs, w = g.variable("h", shape=(3,)), g.variable("xs", shape=(steps, 3)), g.variable("w", shape=(3,))
    return g, h, xs, w, _rnn(h, xs, w)


def _rnn_cost(h, xs, w):
    return np.sum(_rnn_np(h, xs, w) ** 2)


def _bound(graph: sd.Graph, values: dict) -> dict:
    return {graph[k]: v for k, v in values.items() if k in graph.variables}


# -- text --------------------------------------------------------------------------------------
def test_a_scan_prints_its_body_once_and_the_call_as_jax_writes_it():
    g, h, xs, w, y = _rnn_graph()
    assert str(y).splitlines() == [
        "rnn(carry, x, w) = (tanh(w*carry + x), sum(carry*carry))",
        "t1 = scan(rnn, h, xs, w)",
        "sum(t1.carry)*t1.ys",
    ]
    assert repr(y.inputs[1]).endswith(": scan(rnn, h, xs, w).ys>")  # repr: the expression alone


@pytest.mark.parametrize("order", [0, 1, 2])
def test_printed_loops_and_their_derivatives_do_not_grow_with_the_steps(order):
    texts = []
    for steps in (3, 200):
        g, h, xs, w, y = _rnn_graph(steps)
        f = sd.sum(y * y)
        node = f if order == 0 else sd.grad(f, w) if order == 1 else sd.hessian(f, w)
        text = re.sub(r"\(\d+,\)", "(T,)", str(node))  # a seed's shape names the steps
        texts.append(text)
        assert text.count("rnn(carry, x, w) =") == 1 and "tanh" in text
    assert texts[0] == texts[1] and len(texts[0].splitlines()) < 60


def test_a_gradient_defines_the_reverse_body_once_and_runs_it_the_other_way():
    g, h, xs, w, y = _rnn_graph()
    lines = str(sd.grad(sd.sum(y), w)).splitlines()
    assert lines[0] == "rnn(carry, x, w) = (tanh(w*carry + x), sum(carry*carry))"
    assert sum(line.startswith("rnn_vjp(") for line in lines) == 1
    call = next(line for line in lines if "scan(rnn_vjp," in line)
    assert "reverse=True" in call and ".stored" in call  # the carries each step started from


def test_loop_outputs_and_keywords_read_by_name():
    g = sd.Graph()
    x, w = g.variable("x", shape=(2,)), g.variable("w", shape=(2,))
    (a, b), ys = sd.scan(lambda c, s: ((c[0] * c[1] + s, c[1] * 0.9), sd.exp(-c[0]) * s), (x, w), sd.stack([x, w]))
    assert str(a + b + ys).splitlines()[1:] == [
        "t1 = scan(scan_body, (x, w), stack(x, w, axis=-2))",
        "t1.carry[0] + t1.carry[1] + t1.ys",
    ]
    c, _ = sd.scan(lambda c, _: (c * c, None), x, length=3, checkpoint=sd.checkpoint.every(2), reverse=True)
    assert str(c).splitlines() == [
        "scan_body(carry) = (carry*carry,)",  # a body named like the op it runs in prints as <op>_body
        'scan(scan_body, x, None, length=3, reverse=True, checkpoint=("every", 2)).carry',
    ]
    y = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25, x, max_steps=20, name="grow")
    assert str(y).splitlines() == [
        "grow_cond(carry) = sum(carry) < 4",
        "grow(carry, w) = (carry*w + 0.25,)",
        "while_loop(grow_cond, grow, x, w, max_steps=20).carry",
    ]
    back = str(sd.grad(sd.sum(y), w))
    assert "t1 = while_loop(grow_cond, grow, x, w, max_steps=20)" in back
    assert "t1.stored" in back and "steps=t1.steps" in back  # its reverse is a scan of the steps it took


def test_a_scalar_initial_value_keeps_its_dtype_in_the_text():
    g = sd.Graph()
    x = g.variable("x")
    i, c = sd.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[1] * x + 0.5), (0, 0.0), max_steps=5)
    text = str(c)
    assert "(0, 0.0)" in text
    back = _reread(c)
    (loop,) = [n for n in ancestors([back]) if n.op == "while_loop"]
    assert [u.dtype for u in loop.inputs[:2]] == [np.dtype(np.int64), np.dtype(np.float64)]
    np.testing.assert_allclose(sd.evaluate(back, {back.graph["x"]: 2.0}), ((0.5 * 2 + 0.5) * 2) + 0.5)


def _nested(x, w):
    def outer(c, _):
        inner, _ = sd.scan(lambda d, _: (sd.sin(d * w), None), c, length=2, name="inner")
        return inner * c, None

    return sd.scan(outer, x, length=3, name="outer")[0]


def _nested_np(x, w):
    for _ in range(3):
        d = x
        for _ in range(2):
            d = np.sin(d * w)
        x = d * x
    return x


def _every_np(x):
    for _ in range(5):
        x = np.sin(x) * 1.1
    return x


# name, build, numpy reference, values (the first is differentiated)
LOOPS = [
    ("rnn", _rnn, _rnn_np, {"h": H0, "xs": _xs(4), "w": W0}),
    ("two-carries", _two_carries, _two_carries_np, {"a": RNG.standard_normal(2), "b": 0.7, "xs": _xs(3)[:, :2]}),
    (
        "fori",
        lambda x, w: sd.fori_loop(0, 3, lambda i, c: sd.sin(c * w) + i * 0.5, x),
        _fori_np,
        {"x": RNG.standard_normal(2), "w": RNG.standard_normal(2)},
    ),
    (
        "while",
        lambda x, w: sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25, x, max_steps=20),
        _grow_np,
        {"x": np.array([0.3, 0.5]), "w": np.array([1.4, 1.2])},
    ),
    ("nested", _nested, _nested_np, {"x": RNG.standard_normal(2), "w": RNG.standard_normal(2)}),
    (
        "every",
        lambda x: sd.scan(lambda c, _: (sd.sin(c) * 1.1, None), x, length=5, checkpoint=sd.checkpoint.every(2))[0],
        _every_np,
        {"x": RNG.standard_normal(2)},
    ),
]


def _built(build, values):
    g = sd.Graph()
    vs = [g.variable(k, shape=np.shape(v)) for k, v in values.items()]
    y = build(*vs)
    return g, vs, y, sd.sum(y * y)


def _derivatives(f, x, values):
    """The cost, its gradient and its Hessian."""
    return [f, sd.grad(f, x), sd.hessian(f, x)]


@pytest.mark.parametrize(("name", "build", "reference", "values"), LOOPS, ids=[c[0] for c in LOOPS])
def test_loops_and_their_derivatives_print_and_read_back_as_loops(name, build, reference, values):
    g, vs, y, f = _built(build, values)
    np.testing.assert_allclose(sd.evaluate(y, _bound(g, values)), reference(*values.values()), rtol=1e-12)
    cost = lambda *a: np.sum(reference(*a) ** 2)  # noqa: E731
    for node in [y, *_derivatives(f, vs[0], values)]:
        back = _reread(node)
        assert any(n.op in ("scan", "while_loop") for n in ancestors([back]))  # a loop still, not unrolled
        np.testing.assert_allclose(
            sd.evaluate(back, _bound(back.graph, values)), sd.evaluate(node, _bound(g, values)), rtol=1e-12, atol=1e-14
        )
    back = _reread(f)  # the parsed loop differentiates
    got = sd.evaluate(sd.grad(back, back.graph[vs[0].name]), _bound(back.graph, values))
    np.testing.assert_allclose(got, gradient(cost, list(values.values()))[0], rtol=1e-6, atol=1e-8)


def test_a_forward_mode_while_loop_reads_back():
    g = sd.Graph()
    x, w = g.variable("x", shape=(2,)), g.variable("w", shape=(2,))
    y = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25, x)  # no max_steps: forward mode only
    t = sd.jvp(sd.sum(y * y), w, np.ones(2))
    assert "while_loop_cond_2(carry, t_carry) = sum(carry) < 4" in str(t)  # the condition, widened
    values = {"x": np.array([0.3, 0.5]), "w": np.array([1.4, 1.2])}
    back = _reread(t)
    np.testing.assert_allclose(sd.evaluate(back, _bound(back.graph, values)), sd.evaluate(t, _bound(g, values)))
    want = gradient(lambda x, w: np.sum(_grow_np(x, w) ** 2), list(values.values()))[1].sum()
    np.testing.assert_allclose(sd.evaluate(t, _bound(g, values)), want, rtol=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("f(c, x) = (c*x, c)\nscan(f, h)", "scan\\(body, init, xs"),
        ("scan(g, h, xs)", "name of a definition"),
        ("f(c) = (c,)\nscan(f, h, xs)", "takes 1 parameter"),
        ("f(c, x) = (sum(c*x), c)\nscan(f, h, xs).carry", "carry"),
        ("f(c, x) = (c*x, c)\nscan(f, h, xs, length=5)", "length 5"),
        ("f(c, x) = (c*x, c)\nscan(f, h, xs).extra", "no output 'extra'"),
        ('f(c, x) = (c*x, c)\nscan(f, h, xs, checkpoint=("often", 2))', "checkpoint="),
        ("c(u) = sum(u)\nb(u) = (u*2,)\nwhile_loop(c, b, h)", "boolean scalar"),
        ("scan(h, h, xs)", "name of a definition"),
        ("sum(h, steps=xs)", "needs a literal value"),
    ],
)
def test_the_parser_refuses_bad_loops_naming_the_problem(text, message):
    g = sd.Graph()
    g.variable("h", shape=(3,))
    g.variable("xs", shape=(4, 3))
    with pytest.raises(sd.SymdiffError, match=message):
        parse(text, g)
    assert set(g.variables) == {"h", "xs"}


def test_a_loop_reads_back_from_text_written_by_hand():
    g = sd.Graph()
    w = g.variable("w")
    text = "step(c, i) = (c*w + i, c)\nt1 = scan(step, 1.0, [1.0,2.0,3.0])\nt1.carry + sum(t1.ys)"
    y = parse(text, g)  # w is captured by the body, as tracing does
    (loop,) = [n for n in ancestors([y]) if n.op == "scan"]
    assert loop.inputs[-1] is w
    c, total = 1.0, 0.0
    for i in (1.0, 2.0, 3.0):
        total += c
        c = c * 0.5 + i
    np.testing.assert_allclose(sd.evaluate(y, {w: 0.5}), c + total)


# -- LaTeX -------------------------------------------------------------------------------------
def test_latex_writes_the_body_once_and_the_loop_call():
    g, h, xs, w, y = _rnn_graph()
    tex = to_latex(y)
    assert tex.count(r"\operatorname{rnn}\left(carry, x, w\right) &=") == 1
    assert r"\operatorname{scan}\left(\operatorname{rnn}, h, xs, w\right)" in tex
    x = g.variable("x")
    c, _ = sd.scan(lambda c, _: (c * c, None), x, length=40)
    assert sd.latex(c) == to_latex(c)  # a scalar loop: the operator form, not 40 steps written out
    assert r"\mathrm{length}=40" in sd.latex(c)


# -- DOT and networkx --------------------------------------------------------------------------
def _clusters(src: str) -> dict[str, str]:
    found = re.findall(r'subgraph cluster_body\d+ \{\n    label="([^"]+)"; style="rounded"; color="([^"]+)"', src)
    return dict(found)


def test_dot_draws_a_loop_body_as_a_cluster_and_a_gradient_beside_its_reverse_body():
    g, h, xs, w, y = _rnn_graph()
    src = sd.to_dot(y)
    assert list(_clusters(src)) == ["rnn(carry, x, w)"]
    assert 'label="scan rnn (4 steps)"' in src and src.count("lhead=cluster_body") == 1
    f = sd.sum(y)
    src = sd.to_dot([f, sd.grad(f, w)])
    clusters = _clusters(src)
    assert set(clusters) == {"rnn(carry, x, w)", "rnn_vjp(ct_carry, acc_w, carry, x, ct_y0, w)"}
    assert clusters["rnn_vjp(ct_carry, acc_w, carry, x, ct_y0, w)"] == GRADIENT_EDGE  # the reverse body
    assert 'label="scan rnn_vjp (4 steps, reversed)"' in src
    for name in ("carry", "ys", "stored"):
        assert f'label="{name}\\n' in src
    *_, w300, y300 = _rnn_graph(300)
    f300 = sd.sum(y300)
    assert len(sd.to_dot([f300, sd.grad(f300, w300)]).splitlines()) == len(src.splitlines())  # not 300 steps
    if shutil.which("dot"):
        result = subprocess.run(["dot", "-Tsvg"], input=src, capture_output=True, text=True)
        assert result.returncode == 0 and "<svg" in result.stdout


def test_dot_draws_a_while_loop_with_its_condition_and_nested_loops_inside_bodies():
    g = sd.Graph()
    x, w = g.variable("x", shape=(2,)), g.variable("w", shape=(2,))
    y = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25, x, max_steps=20, name="grow")
    src = sd.to_dot(y)
    assert set(_clusters(src)) == {"grow_cond(carry)", "grow(carry, w)"} and src.count("lhead=cluster_body") == 2
    src = sd.to_dot(_nested(x, w))
    assert set(_clusters(src)) == {"inner(carry, w)", "outer(carry, w)"}
    assert src.count("lhead=cluster_body") == 2  # the outer node runs outer; outer's scan runs inner


def test_networkx_keeps_loop_bodies_as_graphs():
    g, h, xs, w, y = _rnn_graph()
    G = g.to_networkx(sd.grad(sd.sum(y), w))
    loops = [k for k in G.nodes if G.nodes[k]["op"] == "scan"]
    names = sorted(G.nodes[k]["regions"][0].graph["name"] for k in loops)
    assert names == ["rnn", "rnn_vjp"] and nx.is_directed_acyclic_graph(G)
    scan = next(k for k in loops if G.nodes[k]["regions"][0].graph["name"] == "rnn")
    assert [shape for shape, _ in G.nodes[scan]["results"]] == [(3,), (4,), (4, 3)]
    x = g.variable("x", shape=(2,))
    G = g.to_networkx(sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * 2.0, x))
    (loop,) = [k for k in G.nodes if G.nodes[k]["op"] == "while_loop"]
    assert [r.graph["name"] for r in G.nodes[loop]["regions"]] == ["while_loop_cond", "while_loop"]
    G = g.to_networkx(_nested(x, x))
    (outer,) = [k for k in G.nodes if G.nodes[k]["op"] == "scan"]
    body = G.nodes[outer]["regions"][0]
    assert [body.nodes[k]["regions"][0].graph["name"] for k in body.nodes if body.nodes[k]["op"] == "scan"] == ["inner"]


# -- files -------------------------------------------------------------------------------------
def _round_trip(g: sd.Graph, outputs: dict) -> sd.Graph:
    return from_json(json.loads(json.dumps(to_json(g, outputs))))


def test_save_load_keeps_a_scan_its_gradient_and_hessian(tmp_path):
    g, h, xs, w, y = _rnn_graph()
    f = sd.sum(y * y)
    gw, hw = sd.grad(f, w), sd.hessian(f, w)
    path = tmp_path / "rnn.json"
    g.save(path, outputs={"f": f, "gw": gw, "hw": hw})
    data = json.loads(path.read_text())
    assert data["version"] == 3 and len(data["bodies"]) == 1  # the derivative bodies share the body's graph
    assert {"rnn", "rnn_vjp"} <= {r["name"] for r in data["regions"]}
    k = sd.load(path)
    assert [n.op for n in k.nodes] == [n.op for n in g.nodes] and sum(n.op == "scan" for n in k.nodes) >= 3
    values = {"h": H0, "xs": _xs(4), "w": W0}
    bound = _bound(k, values)
    args = [H0, _xs(4), W0]
    np.testing.assert_allclose(sd.evaluate(k.outputs["f"], bound), _rnn_cost(*args), rtol=1e-12)
    np.testing.assert_allclose(sd.evaluate(k.outputs["gw"], bound), gradient(_rnn_cost, args)[2], rtol=1e-6)
    want_h = hessian(lambda w: _rnn_cost(H0, _xs(4), w), [W0])
    np.testing.assert_allclose(sd.evaluate(k.outputs["hw"], bound), want_h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(sd.evaluate(k.outputs["hw"], bound), sd.evaluate(hw, _bound(g, values)), rtol=1e-13)
    assert str(k.outputs["gw"]) == str(gw)
    (body,) = {n.regions[0] for n in k.nodes if n.op == "scan" and n.regions[0].name == "rnn"}
    size = len(body.graph)
    again = sd.grad(k.outputs["f"], k["w"])  # the saved reverse body is reused, not built again
    assert len(body.graph) == size
    np.testing.assert_allclose(sd.evaluate(again, bound), sd.evaluate(gw, _bound(g, values)), rtol=1e-13)


def test_save_load_keeps_while_loops_nested_loops_and_checkpointing():
    g = sd.Graph()
    x, w = g.variable("x", shape=(2,)), g.variable("w", shape=(2,))
    grow = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25, x, max_steps=20)
    every, _ = sd.scan(lambda c, _: (sd.sin(c) * 1.1, None), x, length=5, checkpoint=sd.checkpoint.every(2))
    outs = {"grow": grow, "dgrow": sd.grad(sd.sum(grow * grow), w), "nested": _nested(x, w), "every": every}
    outs["dnested"] = sd.grad(sd.sum(outs["nested"]), x)
    k = _round_trip(g, outs)
    values = {"x": np.array([0.3, 0.5]), "w": np.array([1.4, 1.2])}
    for name, node in outs.items():
        got = sd.evaluate(k.outputs[name], _bound(k, values))
        np.testing.assert_allclose(got, sd.evaluate(node, _bound(g, values)), rtol=1e-13)
        assert str(k.outputs[name]) == str(node)
    np.testing.assert_allclose(sd.evaluate(k.outputs["grow"], _bound(k, values)), _grow_np(*values.values()))
    want = gradient(lambda x, w: np.sum(_grow_np(x, w) ** 2), list(values.values()))[1]
    np.testing.assert_allclose(sd.evaluate(k.outputs["dgrow"], _bound(k, values)), want, rtol=1e-6)
    (loop,) = [n for n in k.nodes if n.op == "scan" and dict(n._attrs)["checkpoint"] is not None]
    assert dict(loop._attrs)["checkpoint"] == ("every", 2)


def test_a_file_whose_loop_does_not_fit_its_body_is_refused():
    g, h, xs, w, y = _rnn_graph()
    data = json.loads(json.dumps(to_json(g, {"y": y})))
    scan = next(e for e in data["nodes"] if e["op"] == "scan")
    scan["inputs"] = [scan["inputs"][1], scan["inputs"][0], scan["inputs"][2]]  # xs as the carry
    with pytest.raises(sd.GraphError, match="do not fit the parameters of its body 'rnn'"):
        from_json(data)


# -- sympy -------------------------------------------------------------------------------------
def test_to_sympy_writes_a_scan_out_step_by_step_and_refuses_a_while_loop():
    g = sd.Graph()
    x = g.variable("x")
    c, ys = sd.scan(lambda c, _: (c * c, c), x, length=3)
    before = len(g)
    s = sympy.Symbol("x")
    assert sympy.simplify(sd.to_sympy(c) - s**8) == 0
    assert sympy.simplify(sd.to_sympy(ys) - sympy.Matrix([s, s**2, s**4])) == sympy.zeros(3, 1)
    assert len(g) == before  # writing a loop out leaves the graph as it was
    assert sympy.simplify(sd.to_sympy(sd.grad(c, x)) - 8 * s**7) == 0
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0, max_steps=50)
    with pytest.raises(sd.GraphError, match="no sympy translation .*known only at evaluation"):
        sd.to_sympy(y)


def test_to_sympy_of_a_small_rnn_is_its_numpy_value():
    g = sd.Graph()
    h, xs, w = g.variable("h", shape=(2,)), g.variable("xs", shape=(3, 2)), g.variable("w", shape=(2,))
    y = sd.sum(_rnn(h, xs, w))
    values = {"h": RNG.standard_normal(2), "xs": RNG.standard_normal((3, 2)), "w": RNG.standard_normal(2)}
    subs = {}
    for name, value in values.items():
        for i in np.ndindex(value.shape):
            subs[sympy.Symbol(f"{name}_{'_'.join(map(str, i))}")] = value[i]
    got = float(sympy.N(sd.to_sympy(y).subs(subs)))
    np.testing.assert_allclose(got, np.sum(_rnn_np(*values.values())), rtol=1e-12)
