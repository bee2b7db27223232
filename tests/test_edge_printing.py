"""Printed text means what the graph means (issue 19, G3).

The contract: ``str(node)``, read back by symdiff's own parser (``symdiff.parse``, the one
the command line uses) on variables of the same names, shapes and dtypes, evaluates to
the node's value and shape; for infix expressions, Python's own reading of the text (its
binding strengths, with numpy arrays for the variables) is the node's value. Implicit
broadcasts are shown where a reduction would otherwise hide them, and LaTeX and sympy
work for graphs with unknown dimensions.

Oracles: numpy evaluating the same expression tree, Python's ``eval`` of the printed
text on numpy arrays (test code only), hand-derived values.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, note
from hypothesis import strategies as st

import symdiff as sd
from symdiff.graph import ancestors
from symdiff.parse import ParseError, parse
from symdiff.printing import to_latex

from .op_cases import CASES, build_case
from .programs import MODES, programs

seeds = st.integers(0, 2**32 - 1)


def _reread(node: sd.Node) -> sd.Node:
    """``str(node)`` parsed in a new graph with the node's variables (names, shapes, dtypes)."""
    g = sd.Graph()
    for n in ancestors([node]):
        if n.op == "variable":
            g.variable(n.name, shape=n.shape, dtype=n.dtype)
    return parse(str(node), g)


def _assert_same(got, want, rtol: float, where: str = "") -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{where}: shape {got.shape}, want {want.shape}"
    if want.dtype.kind in "fc" or got.dtype.kind in "fc":
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=rtol, equal_nan=True, err_msg=where
        )
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


def assert_reads_back(node: sd.Node, values: dict, rtol: float = 1e-9) -> None:
    """The printed form of ``node``, parsed back, has the node's value and shape."""
    names = {n.name for n in ancestors([node]) if n.op == "variable"}
    bound = {k: v for k, v in values.items() if k in names}
    parsed = _reread(node)
    with np.errstate(all="ignore"):
        want = sd.evaluate(node, bound)
        got = sd.evaluate(parsed, bound)
    _assert_same(got, want, rtol, f"text:\n{node}\nread back as:\n{parsed}")


# -- the examples of the issue ----------------------------------------------------------------
@pytest.fixture
def abv():
    g = sd.Graph()
    return g, g.variable("a"), g.variable("B", shape=(3, 3)), g.variable("v", shape=(3,))


def test_scalar_times_matrix_vector_product_keeps_its_parentheses(abv):
    g, a, B, v = abv
    A = np.arange(9.0).reshape(3, 3) - 4
    x = np.array([1.0, -2.0, 0.5])
    assert str(a * (B @ v)) == "a*(B@v)"
    assert str((a * B) @ v) == "(a*B)@v"  # Python reads a*B@v so too; readers of maths may not
    assert str(a / (B @ v)) == "a/(B@v)"
    assert str((a / B) @ v) == "(a/B)@v"
    assert str((B @ v) * a) == "(B@v)*a"
    for node, want in [(a * (B @ v), 2.0 * (A @ x)), (a / (B @ v), 2.0 / (A @ x)), ((a * B) @ v, (2.0 * A) @ x)]:
        got = sd.evaluate(_reread(node), {"a": 2.0, "B": A, "v": x})
        np.testing.assert_allclose(got, want)


def test_powers_negations_comparisons_and_primaries_print_as_python_reads_them(abv):
    g, a, B, v = abv
    assert str(-(a**2)) == "-a**2"
    assert str((-a) ** 2) == "(-a)**2"
    assert str(a ** (-a)) == "a**(-a)"
    assert str(sd.power(-2.0, a)) == "(-2)**a"  # not -2**a, which is -(2**a)
    assert str(a - (a - 1.0)) == "a - (a - 1)"
    assert str(a / (a * 2.0)) == "a/(a*2)"
    assert str(sd.where((a > 0) > (a < 1), a, 2 * a)) == "where((a > 0) > (a < 1), a, 2*a)"  # not a chain
    assert str(B.T[0]) == "B.T[0]"
    with pytest.raises(ParseError, match="chained comparison"):
        parse("a < a < 2", g)


def _gaussian():
    g = sd.Graph()
    x, mu, s = g.variable("x", shape=(None,)), g.variable("mu"), g.variable("s")
    loglik = sd.sum(-0.5 * ((x - mu) / s) ** 2 - sd.log(s))
    return x, mu, s, loglik


def test_gaussian_derivatives_show_the_broadcast_over_the_data():
    x, mu, s, loglik = _gaussian()
    data = np.array([0.3, -1.2, 2.0, 0.7, 1.1])
    n, sv, mv = data.size, 1.7, 0.4
    d2mu = sd.grad(sd.grad(loglik, mu), mu)
    ds = sd.grad(loglik, s)
    assert "ones_like(" in str(d2mu) and "ones_like(" in str(ds)  # broadcast_like(1, ...): ones over the data
    values = {"x": data, "mu": mv, "s": sv}
    np.testing.assert_allclose(sd.evaluate(_reread(d2mu), values), -n / sv**2)  # not -1/s**2
    np.testing.assert_allclose(sd.evaluate(_reread(ds), values), -n / sv + np.sum((data - mv) ** 2) / sv**3)


def test_latex_and_sympy_of_a_graph_with_unknown_dimensions():
    x, mu, s, loglik = _gaussian()
    dmu = sd.grad(loglik, mu)
    text = sd.latex(dmu)  # was a ShapeError: the scalar went through sympy, which needs static sizes
    assert r"\mathbf{1}" in text and "s" in text  # broadcast_like(1, ...): a vector of ones, typeset bold
    assert sd.latex(loglik).startswith(r"\sum")
    with pytest.raises(sd.ShapeError, match="unknown dimensions"):
        sd.to_sympy(dmu)  # element symbols need a known size: a clear error naming the variable
    assert to_latex(sd.grad(dmu, mu))


def test_implicit_broadcast_is_elided_only_where_the_consumer_broadcasts_the_same_way():
    g = sd.Graph()
    X, s = g.variable("X", shape=(None, 3)), g.variable("s")
    b = sd.broadcast_like(s, X)
    assert str(X * b) == "X*s"
    assert str(sd.sum(b)) == "sum(broadcast_like(s, X))"
    assert str(sd.sum(b * 2.0)) == "sum(broadcast_like(s, X)*2)"
    value = {"X": np.ones((4, 3)), "s": 2.0}
    assert sd.evaluate(_reread(sd.sum(b * 2.0)), value) == 48.0


def test_attributes_print_so_that_they_read_back():
    g = sd.Graph()
    x = g.variable("x", shape=(2, 3))
    assert str(sd.astype(x, np.float32)) == 'astype(x, dtype_to="float32")'  # was astype(x): float64?
    assert str(sd.sum(x, axis=1, keepdims=True)) == "sum(x, axis=-1, keepdims=True)"
    for node in [sd.astype(x, np.float32), sd.sum(x, axis=1, keepdims=True), sd.flip(x, 0), sd.cumsum(x, 1)]:
        assert_reads_back(node, {"x": np.arange(6.0).reshape(2, 3)})


def test_a_constant_array_without_its_values_is_refused():
    g = sd.Graph()
    x = g.variable("x", shape=(8,))
    node = x * np.arange(8.0)
    assert "const(8,)" in str(node)
    with pytest.raises(ParseError, match="values are not in the text"):
        _reread(node)


# -- every op of the table: its case and its gradient ----------------------------------------
def _case_outputs(case):
    g, xs, y = build_case(case)
    outs = [y]
    wrt = [xs[k] for k in case.differentiable_inputs()]
    if wrt and y.dtype.kind == "f":
        outs += sd.grad(sd.sum(y * y) if y.ndim else y, wrt)
    return xs, outs


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_op_case_and_its_gradient_print_and_read_back(case):
    xs, outs = _case_outputs(case)
    values = {x.name: np.asarray(a) for x, a in zip(xs, case.inputs)}
    for node in outs:
        if "const(" in str(node):  # an array constant of more than 6 non-uniform values
            continue
        assert_reads_back(node, values)


# -- random graphs and their derivatives ------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_printed_random_graphs_and_derivatives_read_back_to_their_values(mode, data):
    program = data.draw(programs(max_steps=5, mode=mode, algebra=mode == "float64"))
    seed = data.draw(seeds)
    g, xs, y, args = program.graph(seed)
    values = {x.name: a for x, a in zip(xs, args)}
    f = sd.sum(y * y) if y.ndim else y * y
    outs = [y, *sd.grad(f, xs[:1] if mode == "deep" else xs)]  # deep graphs: one gradient keeps it quick
    if mode != "deep" and xs[0].ndim <= 1 and None not in xs[0].shape:
        outs.append(sd.hessian(f, xs[0]))
    rtol = 1e-3 if mode == "float32" else 1e-7
    for node in outs:
        text = str(node)
        note(f"text:\n{text}")
        if "const(" in text:
            continue
        assert_reads_back(node, values, rtol)


# -- Python's own reading of infix text -------------------------------------------------------
_COMPARE = [">", ">=", "<", "<=", "==", "!="]
_LEAVES = st.sampled_from(["a", "b", "v", "w", "A", "B", 2.0, -0.5, 3.0])


def _extend(children):
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/", "**", "@"]), children, children),
        st.tuples(st.sampled_from(["neg", "T", "row"]), children),
        st.tuples(st.just("where"), st.sampled_from(_COMPARE), children, children, children, children),
        st.tuples(st.just("where2"), st.sampled_from(_COMPARE), st.sampled_from(_COMPARE), children, children),
    )


TREES = st.recursive(_LEAVES, _extend, max_leaves=10)


def _build(tree, env: dict, where):
    """The tree with Python's operators on ``env``'s values (symdiff nodes or numpy arrays)."""
    if not isinstance(tree, tuple):
        return env[tree] if isinstance(tree, str) else env["number"](tree)
    op, *parts = tree
    if op == "neg":
        return -_build(parts[0], env, where)
    if op in ("T", "row"):
        x = _build(parts[0], env, where)
        return x if _ndim(x) == 0 else (x.T if op == "T" else x[0])
    if op in ("where", "where2"):
        if op == "where":
            c1, left, right, x, y = parts
            cond = _compare(c1, _build(left, env, where), _build(right, env, where))
        else:
            c1, c2, x, y = parts
            left, right = _build(x, env, where), _build(y, env, where)
            cond = _compare(c1, _compare(c2, left, right), _compare(c2, right, left))
        return where(cond, _build(x, env, where), _build(y, env, where))
    x, y = (_build(p, env, where) for p in parts)
    if op == "@" and (_ndim(x) == 0 or _ndim(y) == 0):
        op = "*"
    return {
        "+": lambda: x + y,
        "-": lambda: x - y,
        "*": lambda: x * y,
        "/": lambda: x / y,
        "**": lambda: x**y,
        "@": lambda: x @ y,
    }[op]()


def _ndim(x) -> int:
    return getattr(x, "ndim", 0)


def _compare(symbol: str, x, y):
    if symbol in ("==", "!="):  # on nodes, == is identity: the elementwise comparison by name
        symbolic = isinstance(x, sd.Node) or isinstance(y, sd.Node)
        equal = (sd.equal if symbolic else np.equal)(x, y)
        return equal if symbol == "==" else (sd.not_equal if symbolic else np.not_equal)(x, y)
    return {">": lambda: x > y, ">=": lambda: x >= y, "<": lambda: x < y, "<=": lambda: x <= y}[symbol]()


@given(TREES, seeds)
def test_infix_text_means_to_python_what_the_graph_computes(tree, seed):
    rng = np.random.default_rng(seed)
    arrays = {
        "a": np.float64(rng.uniform(0.5, 1.5)),
        "b": np.float64(-rng.uniform(0.5, 1.5)),
        "v": rng.uniform(-1.5, 1.5, 3),
        "w": rng.uniform(-1.5, 1.5, 3),
        "A": rng.uniform(-1.5, 1.5, (3, 3)),
        "B": rng.uniform(-1.5, 1.5, (3, 3)),
    }
    g = sd.Graph()
    nodes = {k: g.variable(k, shape=np.shape(v)) for k, v in arrays.items()}
    nodes["number"] = lambda v: g.constant(np.float64(v))
    try:
        node = _build(tree, nodes, sd.where)
    except sd.ShapeError:
        assume(False)
    text = str(node)
    note(f"text: {text}")
    assume("\n" not in text)  # one expression: Python reads it as is
    with np.errstate(all="ignore"):
        want = np.asarray(_build(tree, {**arrays, "number": np.float64}, np.where), dtype=np.float64)  # numpy
        value = sd.evaluate(node, arrays)
        python = eval(text, {"__builtins__": {}}, {"where": np.where, "inf": np.inf, "nan": np.nan, **arrays})
        parsed = sd.evaluate(_reread(node), arrays)
    _assert_same(value, want, 1e-9, "graph vs numpy")
    _assert_same(python, want, 1e-9, f"Python's reading of {text}")
    _assert_same(parsed, want, 1e-9, f"symdiff's reading of {text}")


# -- sympy of random graphs -------------------------------------------------------------------
@given(programs(max_steps=4, scalar_only=True), seeds)
def test_to_sympy_of_random_scalar_graphs_and_gradients_has_their_values(program, seed):
    g, xs, y, args = program.graph(seed)
    outs = [y, *sd.grad(y, xs)]
    subs = {sympy.Symbol(x.name): sympy.Float(float(a), 30) for x, a in zip(xs, args)}
    with np.errstate(all="ignore"):
        values = sd.evaluate(outs, dict(zip(xs, args)))
    for node, value in zip(outs, values):
        got = complex(sympy.N(sd.to_sympy(node).subs(subs), 20))
        assume(abs(got.imag) < 1e-12)  # sympy's principal branch where numpy gives nan
        note(f"{node}: sympy {got}, symdiff {value}")
        _assert_same(np.float64(got.real), value, 1e-8, str(node))
