"""sd.explain: back-propagation step by step (issue 25 item 4), on the worked examples of SEEDS.md,
with hand-derived values; its page in headless Chromium (skipped where Chromium or Graphviz is missing)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import symdiff as sd

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
CHROMIUM = shutil.which("chromium")


def gates():
    g = sd.Graph()
    x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
    q = x + y
    f = q * z
    return g, (x, y, z, q, f), {x: -2.0, y: 5.0, z: -4.0}


def by_node(ex, kind):
    return {s.node: s for s in ex.steps if s.kind == kind}


# 1. f = (x + y) z at (-2, 5, -4): q = 3, f = -12; df/dz = q = 3, df/dq = z = -4, df/dx = df/dy = -4
def test_gates_step_by_step():
    g, (x, y, z, q, f), at = gates()
    before = list(g.nodes)
    ex = sd.explain(f, [x, y, z], at)
    assert list(g.nodes) == before  # the learner's graph is left as it was
    forward, backward = by_node(ex, "forward"), by_node(ex, "backward")
    assert [s.kind for s in ex.steps] == ["forward"] * 5 + ["backward"] * 5
    assert {n: float(s.value) for n, s in forward.items()} == {x: -2.0, y: 5.0, z: -4.0, q: 3.0, f: -12.0}
    assert {n: float(s.gradient) for n, s in backward.items()} == {f: 1.0, q: -4.0, z: 3.0, x: -4.0, y: -4.0}
    # the grad_table is filled in reverse topological order, starting at the cost
    order = [s.node.index for s in ex.backward]
    assert order == sorted(order, reverse=True) and ex.backward[0].node is f
    # the multiply gate passes the *other* input; the add gate passes its gradient on unchanged
    (cz,) = backward[z].contributions
    assert (cz.consumer, cz.position, float(cz.upstream), float(cz.local), float(cz.value)) == (f, 1, 1.0, 3.0, 3.0)
    (cq,) = backward[q].contributions
    assert (cq.consumer, float(cq.local), float(cq.value)) == (f, -4.0, -4.0)
    (cx,) = backward[x].contributions
    assert (cx.consumer, float(cx.upstream), float(cx.local), float(cx.value)) == (q, -4.0, 1.0, -4.0)
    assert [float(v) for v in ex.gradients] == [-4.0, -4.0, 3.0]
    assert not backward[f].contributions  # grad_table[f] = 1: the start


def test_print_is_one_line_a_step():
    _, (x, y, z, _, f), at = gates()
    ex = sd.explain(f, [x, y, z], at)
    lines = str(ex).splitlines()
    assert len(lines) == len(ex.steps) == 10
    assert lines[4].strip() == "5. forward   f = (x + y)*z = -12"
    assert lines[6].strip() == "7. backward  ∂f/∂(x + y) = 1 × -4 [via f] = -4"
    assert lines[8].strip() == "9. backward  ∂f/∂y = -4 × 1 [via x + y] = -4"
    assert "forward steps" in repr(ex)
    assert str(sd.explain(f, z, at, name="L")).splitlines()[-1].endswith("∂L/∂z = 1 × 3 [via L] = 3")


# 2. The sigmoid neuron w = [2, -3, -3], x = [-1, -2]: 0.73; [-0.2, -0.39, 0.2] on w, [0.39, -0.59] on x
def neuron(fused=False):
    g = sd.Graph()
    w, x = g.variable("w", shape=(3,)), g.variable("x", shape=(2,))
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = sd.sigmoid(dot) if fused else 1.0 / (1.0 + sd.exp(-dot))
    return (w, x, dot, f), {w: np.array([2.0, -3.0, -3.0]), x: np.array([-1.0, -2.0])}


@pytest.mark.parametrize("fused", [False, True])
def test_sigmoid_neuron(fused):
    (w, x, dot, f), at = neuron(fused)
    ex = sd.explain(f, [w, x], at)
    forward, backward = by_node(ex, "forward"), by_node(ex, "backward")
    assert round(float(forward[f].value), 2) == 0.73 and float(forward[dot].value) == 1.0
    np.testing.assert_array_equal(np.round(backward[w].gradient, 2), [-0.2, -0.39, 0.2])
    np.testing.assert_array_equal(np.round(backward[x].gradient, 2), [0.39, -0.59])
    sigma = 1 / (1 + np.exp(-1.0))
    assert float(backward[dot].gradient) == pytest.approx(sigma * (1 - sigma), rel=1e-14)  # dσ = σ(1 - σ)
    if not fused:  # the tutorial's gates: 1/x gives -0.53, exp -0.2, the negation 0.2
        (c,) = backward[f.inputs[1]].contributions
        assert round(float(c.local), 2) == -0.53
        assert round(float(backward[-dot].gradient), 2) == -0.2
    # w reaches f along three edges, one per element: each contribution is a row of the local Jacobian
    assert [float(np.asarray(c.local).sum()) for c in backward[w].contributions] == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(backward[w].contributions[-1].total, backward[w].gradient)
    # exactly sd.grad's numbers
    dw, dx = sd.evaluate(sd.grad(f, [w, x]), at)
    np.testing.assert_array_equal(ex.gradients[0], dw)
    np.testing.assert_array_equal(ex.gradients[1], dx)
    np.testing.assert_array_equal(backward[w].gradient, dw)


# 3. z = f(f(f(w))): dz/dw = f'(y) f'(x) f'(w), each local derivative at a stored forward value
def test_chain_rule_steps():
    g = sd.Graph()
    w = g.variable("w")
    x = sd.sin(w)
    y = sd.sin(x)
    z = sd.sin(y)
    ex = sd.explain(z, w, {w: 0.7}, name="z")
    wv = 0.7
    xv = np.sin(wv)
    yv = np.sin(xv)
    assert [s.node for s in ex.backward] == [z, y, x, w]
    locals_ = [float(s.contributions[0].local) for s in ex.backward[1:]]
    np.testing.assert_allclose(locals_, [np.cos(yv), np.cos(xv), np.cos(wv)], rtol=1e-15)
    gradients = [float(s.gradient) for s in ex.backward]
    expected = np.cumprod([1.0, np.cos(yv), np.cos(xv), np.cos(wv)])
    np.testing.assert_allclose(gradients, expected, rtol=1e-15)
    assert str(ex).splitlines()[-1].strip().startswith("8. backward  ∂z/∂w = 0.6597 × 0.7648 [via sin(w)]")
    assert float(ex.gradients[0]) == sd.evaluate(sd.grad(z, w), {w: wv})


# Two paths into w (the weight-decay example): the gradients add, one contribution per edge
def test_sum_of_paths():
    g = sd.Graph()
    w, x = g.variable("w"), g.variable("x")
    f = w * x + w * w
    ex = sd.explain(f, w, {w: 2.0, x: 3.0})
    (step,) = [s for s in ex.backward if s.node is w]
    assert [float(c.value) for c in step.contributions] == [2.0, 2.0, 3.0]  # w*w twice, then w*x
    assert [float(c.total) for c in step.contributions] == [2.0, 4.0, 7.0]  # the sum of paths so far
    assert float(step.gradient) == 7.0 == 3.0 + 2 * 2.0


def test_tensors_local_jacobians_and_exact_gradients():
    g = sd.Graph()
    W, x = g.variable("W", shape=(2, 3)), g.variable("x", shape=(3,))
    h = sd.tanh(W @ x)
    f = sd.sum(h * h)
    at = {W: np.arange(6.0).reshape(2, 3) / 10, x: np.array([1.0, -2.0, 0.5])}
    ex = sd.explain(f, [W, x], at)
    backward = by_node(ex, "backward")
    (c,) = backward[W @ x].contributions
    a = np.tanh(at[W] @ at[x])
    np.testing.assert_allclose(c.local, np.diag(1 - a**2), rtol=1e-15)  # consumer.shape + node.shape
    gW, gx = sd.evaluate(sd.grad(f, [W, x]), at)
    np.testing.assert_array_equal(ex.gradients[0], gW)
    np.testing.assert_array_equal(ex.gradients[1], gx)
    assert len(str(ex).splitlines()) == len(ex.steps)


def test_every_contribution_shows_upstream_times_local():
    """The chain rule written out on every edge (issue 25): for a scalar consumer 1 × local, for
    an elementwise one upstream ⊙ the local derivative of each element, for a selection
    upstream · J. Values by hand: f = mean((v - 1)²) at v = (1, 2, 4): ∂f/∂(v - 1)² = 1/3,
    ∂f/∂(v - 1) = 1/3 · 2(v - 1) = (0, 2/3, 2)."""
    g = sd.Graph()
    v = g.variable("v", shape=(3,))
    ex = sd.explain(sd.mean((v - 1.0) ** 2), v, {v: [1.0, 2.0, 4.0]})
    lines = str(ex).splitlines()
    step7 = "7. backward  ∂f/∂(v - 1) = [0.3333, 0.3333, 0.3333] ⊙ [0, 2, 6] [via (v - 1)**2] = [0, 0.6667, 2]"
    assert lines[6] == step7
    assert lines[7] == "8. backward  ∂f/∂v = [0, 0.6667, 2] ⊙ [1, 1, 1] [via v - 1] = [0, 0.6667, 2]"
    # the sigmoid neuron with w as one vector: w[:2] passes its gradient back through a selection
    w, x = g.variable("w", shape=(3,)), g.variable("x", shape=(2,))
    f = sd.sigmoid(sd.sum(w[:2] * x) + w[2])
    ex = sd.explain(f, w, {w: [2.0, -3.0, -3.0], x: [-1.0, -2.0]})
    last = str(ex).splitlines()[-1]
    assert "[via w[2]]" in last and "· [[1, 0, 0], [0, 1, 0]] [via w[:2]]" in last, last
    # each product's numbers are the contribution: upstream ⊙ diagonal, upstream · J
    for step in ex.backward:
        for c in step.contributions:
            if c.local is not None:
                up, local = np.asarray(c.upstream), np.asarray(c.local)
                want = up * local if up.ndim == 0 else up.reshape(-1) @ local.reshape(up.size, -1)
                np.testing.assert_allclose(np.reshape(want, np.shape(c.value)), c.value, rtol=1e-15)


def test_a_variable_the_cost_does_not_reach_gets_zeros():
    g = sd.Graph()
    x, y = g.variable("x"), g.variable("y")
    ex = sd.explain(sd.sin(x), [x, y], {x: 0.0, y: 1.0})
    assert [float(v) for v in ex.gradients] == [1.0, 0.0]
    assert y not in by_node(ex, "backward")


def test_bad_input_is_refused_and_leaves_the_graph_as_it_was():
    g, (x, y, z, q, f), at = gates()
    v = g.variable("v", shape=(2,))
    c = g.variable("c")
    doubled, step = v * 2.0, (c > 0).astype("float64") * x
    before = list(g.nodes)
    with pytest.raises(sd.ShapeError, match=r"explain: cost has shape \(2,\), not a scalar"):
        sd.explain(doubled, v, {v: [1.0, 2.0]})
    with pytest.raises(sd.GraphError, match=r"explain: wrt\[0\] is node #\d+ \(add\), not a variable"):
        sd.explain(f, q, at)
    with pytest.raises(sd.GraphError, match="explain: wrt"):
        sd.explain(f, "x", at)
    with pytest.raises(sd.GraphError, match="explain: cost must be a node"):
        sd.explain(1.0, x, at)
    with pytest.raises(sd.UnboundVariableError, match="explain: no value bound for variable 'z'") as info:
        sd.explain(f, x, {x: -2.0, y: 5.0})
    assert info.value.missing == ("z",)
    with pytest.raises(sd.NonDifferentiableError, match="explain"):
        sd.explain(step, c, {c: 1.0, x: 1.0})
    other = sd.Graph().variable("x")
    with pytest.raises(sd.GraphError, match="different graph"):
        sd.explain(f, other, at)
    assert list(g.nodes) == before


def test_to_html_without_graphviz_names_it(tmp_path, monkeypatch):
    _, (x, y, z, _, f), at = gates()
    ex = sd.explain(f, [x, y, z], at)
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    with pytest.raises(sd.BackendError, match="Graphviz 'dot' program, which is not installed"):
        ex.to_html(tmp_path / "page.html")
    assert not (tmp_path / "page.html").exists()


@needs_dot
def test_page_is_self_contained_with_a_frame_a_step(tmp_path):
    _, (x, y, z, _, f), at = gates()
    ex = sd.explain(f, [x, y, z], at)
    page = ex.to_html(tmp_path / "gates.html").read_text(encoding="utf-8")
    assert page.count('<section class="frame"') == len(ex.steps) == 10
    assert "<svg" in page and "<script" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "<link" not in page
    assert "∂f/∂(x + y) = 1 × -4 [via f] = -4" in page
    # the cost is drawn under its name, its op beside it (not a bare *)
    assert re.search(r"<text[^>]*>f</text>", page), "the output node is not labelled f"


@needs_dot
def test_the_page_draws_the_cost_under_its_name(tmp_path):
    g = sd.Graph()
    a, b = g.variable("a"), g.variable("b")
    ex = sd.explain(a / b, [a, b], {a: 1.0, b: 2.0}, name="L")
    page = ex.to_html(tmp_path / "ratio.html").read_text(encoding="utf-8")
    assert re.search(r"<text[^>]*>L</text>", page)


def chromium_dom(path, fragment, tmp_path):
    """The page's DOM after its script ran, and Chromium's console lines (errors among them)."""
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            path.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, [line for line in result.stderr.splitlines() if "CONSOLE" in line]


@needs_dot
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("example", ["gates", "neuron"])
def test_page_in_headless_chromium(example, tmp_path):
    if example == "gates":
        _, (x, y, z, _, f), at = gates()
        ex = sd.explain(f, [x, y, z], at)
    else:
        (w, x, _, f), at = neuron()
        ex = sd.explain(f, [w, x], at)
    path = ex.to_html(tmp_path / "page.html")
    n = len(ex.steps)
    dom, console = chromium_dom(path, "#check", tmp_path)  # the script draws every frame once
    assert console == []
    assert f'data-frames="{n}"' in dom and f'data-checked="{n}"' in dom
    assert dom.count('class="frame"') == n
    # a gradient step: the current node is highlighted, its contributions are written on the edges
    k = next(i for i, s in enumerate(ex.steps) if s.kind == "backward" and s.contributions)
    dom, console = chromium_dom(path, f"#frame={k}", tmp_path)
    assert console == [] and f'data-frame="{k}"' in dom
    current = re.search(r'<g id="node\d+" class="node current">\s*<title>(n\d+)</title>', dom)
    assert current and current.group(1) == f"n{ex.steps[k].node.index}"
    assert dom.count('class="edge arriving"') == len(ex.steps[k].contributions)
    assert 'class="contribution"' in dom


def test_long_intermediate_nodes_are_named_t1_t2_in_the_order_they_are_computed():
    g = sd.Graph()
    w0, x0, w1, x1, w2 = (g.variable(n) for n in ("w0", "x0", "w1", "x1", "w2"))
    f = 1 / (1 + sd.exp(-(w0 * x0 + w1 * x1 + w2)))
    ex = sd.explain(f, [w0, x0, w1, x1, w2], {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0})
    text = str(ex)
    assert "#" not in text  # no node index: a learner reads "#10" as step 10
    named = [s for s in ex.forward if s.name.startswith("t")]
    assert [s.name for s in named] == ["t1", "t2"] and str(named[0].node) == "exp(-(w0*x0 + w1*x1 + w2))"
    assert "forward   t1 = exp(-(w0*x0 + w1*x1 + w2)) = 0.3679" in text  # e^-1, the tutorial's 0.37
    assert "∂f/∂t2 = 1 × -0.5344 [via f] = -0.5344" in text  # -1/1.368**2, the tutorial's -0.53
