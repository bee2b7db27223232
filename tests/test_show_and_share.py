"""Drawings with values, rendering, LaTeX, shared sympy form, files, the parser, the command line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sympy

import symdiff as sd
from symdiff.parse import ParseError, parse

HAS_DOT = shutil.which("dot") is not None


@pytest.fixture
def g():
    return sd.Graph()


# -- Graphviz -------------------------------------------------------------------------------
def test_classic_figure_shows_values_and_gradients(g):
    x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
    f = (x + y) * z
    n = len(g)
    src = sd.to_dot(f, values={x: -2.0, y: 5.0, z: -4.0}, cost=f)
    assert len(g) == n  # drawing appended nothing
    labels = dict(re.findall(r"n(\d+) \[label=<(.*?)>, shape", src))
    assert "= -12" in labels[str(f.index)] and "∂f = 1" in labels[str(f.index)]
    assert "= -2" in labels[str(x.index)] and "∂f = -4" in labels[str(x.index)]
    assert "∂f = -4" in labels[str(y.index)] and "∂f = 3" in labels[str(z.index)]
    assert "= 3" in labels[str(f.inputs[0].index)]


def test_dot_labels_use_symbols_and_shapes(g):
    X, w = g.variable("X", shape=(None, 3)), g.variable("w", shape=(3,))
    src = sd.to_dot(sd.sum(sd.tanh(X @ w) ** 2))
    assert 'label="@\\n(?,)"' in src and 'label="tanh\\n(?,)"' in src and 'label="**\\n(?,)"' in src


def test_depth_limits_large_drawings(g):
    x = g.variable("x")
    h = x
    for _ in range(500):
        h = sd.sin(h)
    src = sd.to_dot(h, depth=3)
    assert len(re.findall(r"\bn\d+ \[label=", src)) == 4 and 'label="...", shape=plaintext' in src


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz is not installed")
def test_render_writes_a_picture_and_the_dot(g, tmp_path):
    x = g.variable("x")
    out = sd.render(sd.grad(sd.sin(x) * x, x), tmp_path / "d.svg", title="d/dx x sin x")
    assert out == tmp_path / "d.svg" and "<svg" in out.read_text()
    assert (tmp_path / "d.dot").read_text().startswith("digraph")
    for suffix in (".png", ".pdf"):
        assert sd.render(x * 2, tmp_path / f"p{suffix}").stat().st_size > 100


def test_render_without_graphviz_says_how_to_install(g, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    x = g.variable("x")
    with pytest.warns(UserWarning, match="apt-get install graphviz"):
        out = sd.render(x * 2, tmp_path / "p.svg")
    assert out == tmp_path / "p.dot" and out.read_text().startswith("digraph")
    assert x._repr_svg_() is None
    with pytest.raises(sd.GraphError, match="svg, .png, .pdf"):
        sd.render(x, tmp_path / "p.jpg")


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz is not installed")
def test_every_kind_of_graph_renders(g):
    X, w = g.variable("X", shape=(None, 3)), g.variable("w", shape=(3,))
    loss = sd.sum(sd.softmax(X @ sd.reshape(w, (3, 1)) * w) ** 2) + sd.max(w[1:])
    H = sd.hessian(sd.sum(w**3) + sd.det(sd.reshape(w, (3, 1)) * w + np.eye(3)), w)
    for outputs in ([loss, *sd.grad(loss, [w, X])], H):
        src = sd.to_dot(outputs)
        result = subprocess.run(["dot", "-Tsvg"], input=src, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


# -- sympy, LaTeX ------------------------------------------------------------------------------
def test_shared_form_stays_small(g):
    x = g.variable("x")
    h = x
    for _ in range(16):
        h = h * sd.sin(h)
    replacements, expr = sd.to_sympy(h, cse=True)
    assert len(replacements) == 15 and sympy.count_ops(expr) < 10
    # substituting back gives the same function
    full = expr
    for sym, value in reversed(replacements):
        full = full.subs(sym, value)
    assert abs(float(full.subs(sympy.Symbol("x"), 0.3)) - sd.evaluate(h, {x: 0.3})) < 1e-12


def test_latex_scalar_and_tensor(g):
    x = g.variable("x")
    assert sd.latex(sd.exp(x) * x) == "x e^{x}"
    X, w, y = g.variable("X", shape=(None, 3)), g.variable("w", shape=(3,)), g.variable("y", shape=(None,))
    assert sd.latex(sd.grad(sd.sum((X @ w - y) ** 2), w)) == r"X^{\top} \left(2 \left(X w - y\right)\right)"
    h = x * sd.sin(x)
    assert sd.latex(h * sd.sin(h)).startswith(r"\begin{aligned}t_{1} &=")


def test_from_sympy_round_trip(g):
    X, Y = sympy.symbols("x y")
    expr = sympy.exp(-X * Y) * sympy.cos(X) / (1 + Y**2) + sympy.Abs(X - Y)
    node = sd.from_sympy(expr, g)
    assert sympy.simplify(sd.to_sympy(node) - expr) == 0
    with pytest.raises(sd.GraphError, match="no symdiff op for sympy"):
        sd.from_sympy(sympy.gamma(X), g)


# -- files ------------------------------------------------------------------------------------
def test_save_load_round_trip(g, tmp_path):
    X, w = g.variable("X", shape=(None, 3)), g.variable("w", shape=(3,), dtype="float32")
    c = g.constant(np.array([1.0, np.inf, -np.nan]))
    loss = sd.sum((X @ sd.astype(w, "float64")) ** 2) + sd.sum(w[[0, 0, 2]] * c[1:].sum())
    grads = sd.grad(loss, [w, X])
    g.save(tmp_path / "g.json")
    h = sd.load(tmp_path / "g.json")
    assert len(h) == len(g)
    for a, b in zip(g.nodes, h.nodes):
        assert (a.op, a.name, a.shape, a.dtype, a.is_gradient) == (b.op, b.name, b.shape, b.dtype, b.is_gradient)
    values = {"X": np.ones((2, 3)), "w": np.array([1.0, 2.0, 3.0], np.float32)}
    for node in grads:
        np.testing.assert_array_equal(sd.evaluate(node, values), sd.evaluate(h.nodes[node.index], values))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="pickle"), "not a symdiff graph"),
        (lambda d: d["nodes"][2].update(op="__import__"), "unknown op '__import__'"),
        (lambda d: d["nodes"][2].update(inputs=[0, 7]), "indices of earlier nodes"),
        (lambda d: d["nodes"][2].update(inputs=[0, 0, 0]), "node 2"),
        (lambda d: d["nodes"][0].update(shape=[3, "3"]), "shape"),
        (lambda d: d["nodes"][0].update(dtype="object"), "dtype object is not supported"),
        (lambda d: d["nodes"][1].update(value=[1.0]), "has 1 values"),
        (lambda d: d["nodes"][1].update(value=["os.system('x')", 1, 2]), "is not a number"),
        (lambda d: d["nodes"][2].update(attrs={"axis": {"__reduce__": []}}), "unknown attribute kind"),
        (lambda d: d["nodes"].append("junk"), "not a node object"),
    ],
)
def test_load_rejects_malformed_and_hostile_files(tmp_path, mutate, message):
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    sd.sum(x * g.constant([1.0, 2.0, 3.0]))
    g.save(tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    mutate(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(sd.GraphError, match=message):
        sd.load(tmp_path / "bad.json")


def test_load_rejects_truncated_and_non_json_files(tmp_path):
    g = sd.Graph()
    sd.exp(g.variable("x"))
    g.save(tmp_path / "g.json")
    text = (tmp_path / "g.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(sd.GraphError, match="cannot read"):
        sd.load(tmp_path / "cut.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(sd.GraphError):
        sd.load(tmp_path / "deep.json")
    (tmp_path / "nan.json").write_text('{"format": NaN}')
    with pytest.raises(sd.GraphError, match="not JSON"):
        sd.load(tmp_path / "nan.json")


# -- parser and command line -----------------------------------------------------------------
def test_parser_builds_arithmetic(g):
    f = parse("x**2*sin(y) - exp(-x^2/2) + max(x, 1)", g)
    assert sd.evaluate(f, {"x": 1.5, "y": 0.5}) == pytest.approx(1.5**2 * np.sin(0.5) - np.exp(-(1.5**2) / 2) + 1.5)
    assert str(parse("-x**2", g)) == "-x**2"
    assert sd.evaluate(parse("2^3^2", g), {}) == 512.0


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo hacked > /tmp/symdiff_hacked')",
        "x.__class__",
        "open('/etc/passwd')",
        "exec('1')",
        "[x for x in ()]",
        "x; y",
        "lambda: 0",
        "f'{x}'",
        "(x",
        "x)",
        "x y",
        "sin",
        "",
    ],
)
def test_parser_rejects_code(g, text):
    n = len(g)
    with pytest.raises(ParseError):
        parse(text, g)
    assert len(g) == n  # nothing was left behind


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symdiff", *args], capture_output=True, text=True, timeout=120)


def test_cli_grad_with_values_and_second_order():
    out = _cli("grad", "x**2*sin(y)", "--wrt", "x", "y", "--order", "2", "--at", "x=1", "y=2")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "df/dx = 2*x*sin(y)" in text and "df/dy = x**2*cos(y)" in text
    assert "d2f/dx dy = 2*x*cos(y)" in text
    assert f"{2 * np.cos(2.0):.12g}" in text


def test_cli_emits_a_module_that_runs_without_symdiff(tmp_path):
    target = tmp_path / "grad.py"
    out = _cli("grad", "x**2*sin(y)", "--wrt", "x", "y", "--order", "2", "--emit", "python", "--out", str(target))
    assert out.returncode == 0, out.stderr
    assert "f(x, y) returns [f, df/dx, df/dy, d2f/dx dx, d2f/dx dy, d2f/dy dy]" in out.stdout
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.modules['symdiff'] = None; exec(open({str(target)!r}).read()); "
            "print(*[float(v) for v in f(1.0, 2.0)])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    x, y = 1.0, 2.0
    closed = [
        x**2 * np.sin(y),
        2 * x * np.sin(y),
        x**2 * np.cos(y),
        2 * np.sin(y),
        2 * x * np.cos(y),
        -(x**2) * np.sin(y),
    ]
    np.testing.assert_allclose([float(v) for v in run.stdout.split()], closed, rtol=1e-15)
    printed = _cli("grad", "x*y", "--wrt", "x", "--emit", "python")
    assert printed.returncode == 0 and "def f(x, y):" in printed.stdout and "import symdiff" not in printed.stdout


def test_cli_latex_dot_and_help(tmp_path):
    out = _cli("grad", "exp(-x^2/2)", "--wrt", "x", "--latex", "--dot", str(tmp_path / "d.svg"))
    assert out.returncode == 0, out.stderr
    assert r"- x e^{- \frac{x^{2}}{2}}" in out.stdout
    assert (tmp_path / "d.dot").exists()
    assert "symdiff grad" in _cli("--help").stdout and "example" in _cli("grad", "--help").stdout


def test_cli_rejects_hostile_expressions(tmp_path):
    marker = tmp_path / "hacked"
    out = _cli("grad", f"__import__('os').system('touch {marker}')", "--wrt", "x")
    assert out.returncode == 2 and "unexpected character" in out.stderr
    assert not marker.exists()
    out = _cli("grad", "x*y", "--wrt", "z")
    assert out.returncode == 2 and "no variable 'z'" in out.stderr
