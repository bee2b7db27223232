"""Drawings of derivative graphs a person can read (issue 25, item 3): outputs named, small
constants beside each use, seeds folded, shared nodes drawn once, a size guard, simplify=True."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import symdiff as sd
from symdiff.export.dot import FAN_OUT, plan_drawing

HAS_DOT = shutil.which("dot") is not None


def _likelihood():
    """The Gaussian log-likelihood of data x in (mu, s = log sigma), and its 2 x 2 Hessian blocks."""
    g = sd.Graph()
    mu, s = g.variable("mu"), g.variable("s")
    x = g.variable("x", shape=(None,))
    L = sd.sum(-0.5 * ((x - mu) / sd.exp(s)) ** 2 - s - 0.5 * np.log(2 * np.pi))
    H = sd.hessian(L, [mu, s])
    return g, mu, s, x, L, H


def _node_ids(src: str) -> list[str]:
    """The drawn nodes (not the legend's)."""
    return re.findall(r"^\s+([nb]\w+) \[label=", src, re.M)


def _label(src: str, node: sd.Node) -> str:
    return re.search(rf"^\s+n{node.index} \[label=(.*)$", src, re.M).group(1)


def _graphviz_accepts(src: str) -> None:
    if HAS_DOT:
        result = subprocess.run(["dot", "-Tsvg"], input=src, capture_output=True, text=True)
        assert result.returncode == 0 and "<svg" in result.stdout, result.stderr


# -- names -----------------------------------------------------------------------------------
def test_outputs_are_labelled_by_the_names_given():
    g, mu, s, x, L, H = _likelihood()
    gmu = sd.grad(L, mu)
    src = sd.to_dot({"L": L, "dmu": gmu, "H01": H[0][1]})
    assert "<b>L</b>" in _label(src, L) and "<b>dmu</b>" in _label(src, gmu) and "<b>H01</b>" in _label(src, H[0][1])
    assert plan_drawing({"L": L, "g": gmu}).names == {L: "L", gmu: "g"}
    with pytest.raises(sd.GraphError, match="names each by a str"):
        sd.to_dot({1: L})
    # a saved graph's output names label its outputs
    g._outputs["loss"] = L
    assert plan_drawing(L).names == {L: "loss"}


def test_derivatives_of_a_drawn_cost_are_named_from_it():
    g, mu, s, x, L, H = _likelihood()
    gmu, gs = sd.grad(L, [mu, s])
    blocks = [h for row in H for h in row]
    n = len(g)
    names = plan_drawing({"L": L, "dmu": gmu}).names
    assert names == {L: "L", gmu: "dmu"}
    names = plan_drawing({"L": L, "H00": blocks[0], "g": gs}).names
    assert names == {L: "L", blocks[0]: "H00", gs: "g"}
    names = plan_drawing({"L": L, "x": L}).names
    assert names == {L: "L = x"}  # one node under two names
    names = plan_drawing([L, gmu, gs, *blocks]).names  # the one unnamed cost is f
    assert names[L] == "f" and names[gmu] == "∂f/∂mu" and names[gs] == "∂f/∂s"
    assert [names[h] for h in blocks] == ["∂²f/∂mu²", "∂²f/∂mu∂s", "∂²f/∂s∂mu", "∂²f/∂s²"]
    src = sd.to_dot([L, gmu])
    assert "∂f/∂mu" in _label(src, gmu) and "<b>f</b>" in _label(src, L)
    assert len(g) == n  # naming builds the derivatives on the side and appends nothing
    # no cost drawn: named after the graph's one scalar result they are the derivatives of
    assert plan_drawing([gmu, gs]).names == {gmu: "∂f/∂mu", gs: "∂f/∂s"}
    assert len(g) == n


def test_gradients_drawn_without_their_cost_are_named_after_it():
    """sd.to_dot(sd.grad(L, [a, b])) (issue 25): the outputs read ∂f/∂a, ∂f/∂b, or ∂L/∂a where
    the graph saved the cost as L; two unnamed scalar results leave them unnamed."""
    g = sd.Graph()
    a, b = g.variable("a"), g.variable("b")
    L = (a * b + sd.exp(a)) ** 2 / b
    ga, gb = sd.grad(L, [a, b])
    src = sd.to_dot(sd.grad(L, [a, b]))
    assert "<b>∂f/∂a</b>" in _label(src, ga) and "<b>∂f/∂b</b>" in _label(src, gb)
    g._outputs["L"] = L
    assert plan_drawing([ga, gb]).names == {ga: "∂L/∂a", gb: "∂L/∂b"}
    h = sd.Graph()
    a, b = h.variable("a"), h.variable("b")
    first, second = sd.sin(a) * b, sd.cos(a) * b
    gs = sd.grad(first, [a, b])
    assert plan_drawing(gs).names == {}  # f of which? two unnamed results: not named
    assert plan_drawing(sd.grad(second, a)).names == {}


def test_a_named_cost_names_its_derivatives_and_the_gradients_shown():
    g = sd.Graph()
    w, b = g.variable("w"), g.variable("b")
    L = (w * 3.0 + b - 1.0) ** 2
    gw, gb = sd.grad(L, [w, b])
    assert plan_drawing([{"L": L}, gw, gb]).names == {L: "L", gw: "∂L/∂w", gb: "∂L/∂b"}
    src = sd.to_dot([{"L": L}, gw])
    assert "<b>∂L/∂w</b>" in _label(src, gw)
    g._outputs["L"] = L  # a saved graph's name for the cost names its derivatives too
    assert plan_drawing([L, gw, gb]).names == {L: "L", gw: "∂L/∂w", gb: "∂L/∂b"}
    W = g.variable("W", shape=(3,))
    M = sd.sum(sd.exp(W) * W)
    assert plan_drawing([M, sd.hessian(M, W)]).names[sd.hessian(M, W)] == "∂²f/∂W²"
    # the classic figure says ∂L where the cost is called L, ∂f where it has no name
    values = {w: 1.0, b: 0.5}
    assert "∂L = " in sd.to_dot({"L": L}, values=values, cost=L)
    del g._outputs["L"]
    assert "∂f = " in sd.to_dot(L, values=values, cost=L) and "∂L" not in sd.to_dot(L, values=values, cost=L)


# -- constants, seeds, shared nodes ----------------------------------------------------------
def test_small_constants_are_drawn_beside_each_use_not_shared():
    g = sd.Graph()
    x, y = g.variable("x"), g.variable("y")
    f = 2.0 * sd.sin(x) + 2.0 * sd.cos(y) + x**2.0
    two = g.constant(2.0)
    uses = [n for n in sd.graph.ancestors([f]) if two in n.inputs]
    assert len(uses) == 3  # one constant node, three consumers
    src = sd.to_dot(f)
    assert f"n{two.index} [" not in src  # not one shared node
    assert len(re.findall(r'\[label="2", shape=box', src)) == 3  # one beside each use
    for n in uses:
        k = n.inputs.index(two)
        assert re.search(rf"nu{n.index}_{k} -> n{n.index} \[", src)
    # a data array is one shared node; a small literal array is written by value at each use
    A = g.constant(np.arange(12.0).reshape(3, 4))
    v = g.variable("v", shape=(4,))
    h = sd.sum(A @ v) + sd.sum(A @ (v * np.array([1.0, -0.0, 2.0, 3.0])))
    src = sd.to_dot(h)
    assert f'n{A.index} [label="const\\n(3, 4)"' in src and src.count(f"n{A.index} -> ") == 2
    assert 'label="[1, 0, 2, 3]"' in src and "-0" not in src
    _graphviz_accepts(src)


def test_seeds_are_folded_into_their_consumer_and_ones_like_is_one_node():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    H = sd.hessian(sd.sum(sd.exp(x)), x)  # eye(3)*exp(x): the identity seed survives
    seeds = [u for u in sd.graph.ancestors([H]) if u.op == "constant" and u.is_gradient]
    assert seeds
    src = sd.to_dot(H)
    for seed in seeds:
        assert f"n{seed.index} [" not in src
    assert "seed eye(3)" in _label(src, H)
    # broadcast_like(1, y) is drawn ones_like, its 1 not drawn
    *_, H = _likelihood()
    d = H[1][1]
    ones = next(n for n in sd.graph.ancestors([d]) if n.op == "broadcast_like" and n.inputs[0].op == "constant")
    assert ones.inputs[0].value == 1
    src = sd.to_dot(d)
    assert _label(src, ones).startswith('"ones_like\\n(?,)"')
    assert f"n{ones.inputs[0].index} [" not in src and not re.search(rf"u{ones.index}_0 ", src)
    # the 1 a rule wrote (1 - tanh**2) is a number, not a seed
    src = sd.to_dot(sd.grad(sd.tanh(g.variable("z")), g["z"]))
    assert "seed" not in src and 'label="1"' in src
    _graphviz_accepts(src)


def test_the_likelihood_hessian_keeps_shared_nodes_and_draws_fans_as_one_node():
    g, mu, s, x, L, H = _likelihood()
    blocks = [h for row in H for h in row]
    src = sd.to_dot([L, *blocks])
    exp = next(n for n in sd.graph.ancestors([L]) if n.op == "exp")
    consumers = {n for n in sd.graph.ancestors(blocks) if exp in n.inputs}
    assert len(consumers) >= FAN_OUT
    assert len(re.findall(rf"^\s+n{exp.index} \[", src, re.M)) == 1  # drawn once
    out_edges = re.findall(rf"^\s+n{exp.index} -> n\d+ \[(.*)\];", src, re.M)
    assert len(out_edges) == len(consumers)  # an edge to each use
    assert all("weight=0" in e and "color=" in e for e in out_edges)  # a fan, in its own colour
    assert "penwidth=2" in _label(src, exp)
    # node counts: before (one node per graph node) and after (constants by use, seeds folded)
    every = sd.graph.ancestors([L, *blocks])
    constants = [n for n in every if n.op == "constant"]
    drawing = plan_drawing([L, *blocks])
    ids = _node_ids(src)
    assert len(ids) == drawing.size and not any(i == f"n{c.index}" for c in constants for i in ids)
    assert drawing.size < len(every) + 8  # each of 6 constants once per use (they are used once to 3 times)
    simplified = plan_drawing({"L": L, **{f"H{k}": b for k, b in enumerate(blocks)}}, simplify=True)
    assert simplified.size <= drawing.size
    assert set(simplified.names.values()) == {"L", "H0", "H1", "H2", "H3"}
    _graphviz_accepts(src)


# -- simplify=True -------------------------------------------------------------------------
def test_render_simplify_draws_the_simplified_form_under_the_same_names(tmp_path):
    g = sd.Graph()
    t = g.variable("t")
    d2 = sd.grad(sd.grad(sd.sin(t) * t, t), t)
    simple = sd.simplify(d2)
    assert simple is not d2
    src = sd.to_dot({"d2": d2}, simplify=True)
    assert re.search(rf"n{simple.index} \[label=<.*<b>d2</b>", src) and f"n{d2.index} [" not in src
    assert sd.to_dot({"d2": d2}) != src
    n = len(g)
    out = sd.render({"d2": d2}, tmp_path / "d2.dot", simplify=True)
    assert out.read_text() == src and len(g) == n  # simplified already: simplify finds the same nodes


# -- the size guard -----------------------------------------------------------------------
def _chain(levels: int):
    g = sd.Graph()
    x = g.variable("x")
    y = x
    for _ in range(levels):
        y = sd.sin(y) * x
    return y


def test_size_guard_refuses_more_than_max_nodes_and_names_a_sub_graph(tmp_path, monkeypatch):
    y = _chain(120)
    size = plan_drawing(y).size
    assert 200 < size < 1000
    with pytest.raises(sd.GraphError, match=r"render: the drawing would have \d+ nodes, more than max_nodes=200"):
        sd.render(y, tmp_path / "big.svg")
    with pytest.raises(sd.GraphError, match=r"depth=3.*sub-graph.*simplify=True.*max_nodes=None"):
        sd.render(y, tmp_path / "big.svg")
    assert not list(tmp_path.iterdir())  # refused before anything is written
    with pytest.raises(sd.GraphError, match="max_nodes=50"):
        sd.render(_chain(30), tmp_path / "small.svg", max_nodes=50)
    assert sd.render(y, tmp_path / "all.dot").exists()  # DOT source only: no limit
    assert plan_drawing(y, depth=3).size <= 10
    with pytest.raises(sd.GraphError, match="unknown option 'dept'"):
        sd.render(y, tmp_path / "p.svg", dept=3)
    if HAS_DOT:
        assert sd.render(y, tmp_path / "near.svg", depth=3).exists()
        assert sd.render(y, tmp_path / "all.svg", max_nodes=None).exists()
        from symdiff.export.render import to_svg

        with pytest.warns(UserWarning, match="to_svg: the drawing would have .*depth="):
            assert to_svg(y) is None
        assert y._repr_svg_() is None  # a notebook shows the text instead
        assert "<svg" in to_svg(y, depth=2)


# -- Graphviz accepts what is drawn -------------------------------------------------------
@pytest.mark.skipif(not HAS_DOT, reason="Graphviz is not installed")
def test_graphviz_draws_named_outputs_constants_fans_and_bodies(tmp_path):
    g, mu, s, x, L, H = _likelihood()
    blocks = [h for row in H for h in row]
    out = sd.render({"L": L, "∂²L/∂mu²": blocks[0]}, tmp_path / "h.svg", simplify=True)
    assert "∂²L/∂mu²" in out.read_text()
    xs = g.variable("xs", shape=(4,))
    w = g.variable("w")
    ys = sd.scan(lambda c, xi: (sd.tanh(c * w + xi) * 2.0, c), mu, xs, name="step")
    f = sd.sum(ys[1] ** 2) + ys[0]
    src = sd.to_dot({"f": f, "∂f/∂w": sd.grad(f, w)})
    assert re.search(r"subgraph cluster_body\d+ \{", src)  # loops still drawn as clusters
    _graphviz_accepts(src)


@pytest.mark.parametrize("rankdir, ports", [("TB", ("nw", "ne")), ("LR", ("nw", "sw"))])
def test_operands_of_an_ordered_op_enter_at_their_own_side_without_numbers(rankdir, ports):
    """x - y, x / y, x ** 2: the first operand enters the op's node at the left (top) corner,
    the second at the right (bottom), as the text reads; commutative ops' edges carry nothing;
    no edge carries a number that would sit on its arrowhead (issue 25)."""
    g = sd.Graph()
    a, b, v = g.variable("a"), g.variable("b"), g.variable("v", shape=(3,))
    L = (a * b + sd.exp(a)) ** 2 / (b - a) + sd.mean((v - 1.0) ** 2)
    src = sd.to_dot({"L": L}, rankdir=rankdir)
    assert "headlabel" not in src
    for node, (first, second) in (
        (L.inputs[0], L.inputs[0].inputs),
        (L.inputs[0].inputs[1], (b, a)),
    ):
        assert re.search(rf"n{first.index} -> n{node.index} \[[^\]]*headport={ports[0]}", src), (node, src)
        assert re.search(rf"n{second.index} -> n{node.index} \[[^\]]*headport={ports[1]}", src), (node, src)
    mul = L.inputs[0].inputs[0].inputs[0].inputs[0]  # a*b: commutative
    assert mul.op == "mul" and not re.search(rf"-> n{mul.index} \[[^\]]*headport", src)
    if HAS_DOT:
        assert subprocess.run(["dot", "-Tsvg"], input=src, capture_output=True, text=True).returncode == 0
