"""Printed derivatives show no machinery (issue 25, item 2, the printing half).

A seed or a Hessian that is c times an identity prints as ``c*eye(n)``, a vector of ones as
``ones(n)``, ``-0.0`` never prints, and the text still reads back to the node's value; LaTeX
typesets ones as a bold 1, identities as ``I_n``, sums as ``\\sum``, a scalar factor beside a
vector without ``\\odot``; the command line's ``--latex`` typesets its labels too.

Oracles: hand-derived derivatives (the Hessian of mean(x**2) over n elements is 2/n I), numpy
values of the constants, the text the issue asks for.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import symdiff as sd
from symdiff.cli import main
from symdiff.printing import latex_name, to_latex
from tests.test_edge_printing import _reread


def _reads_back(node: sd.Node, values: dict | None = None) -> None:
    values = values or {}
    got, want = sd.evaluate(_reread(node), values), sd.evaluate(node, values)
    assert np.asarray(got).shape == np.asarray(want).shape
    np.testing.assert_array_equal(got, want)


# -- the examples -----------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 5, 7])
def test_the_hessian_of_a_mean_of_squares_prints_as_its_scalar_times_eye(n):
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    h = sd.simplify(sd.hessian(sd.mean(x**2), x))
    np.testing.assert_allclose(h.value, 2 / n * np.eye(n))  # d2/dx2 of sum(x**2)/n: 2/n I
    c = {2: "", 5: "0.4*", 7: "0.2857142857142857*"}[n]
    assert str(h) == f"{c}eye({n})"  # not const(5, 5), nor a list of 0.0s
    assert sd.latex(h) == f"{c.replace('*', ' ')}I_{{{n}}}"
    _reads_back(h)


def test_seeds_print_as_the_identity_they_are_and_never_as_minus_zero():
    g = sd.Graph()
    v = g.variable("v", shape=(2,))
    jac = sd.jacobian(-v, v)  # -I, its zeros -0.0
    assert str(jac) == "-eye(2)" and str(sd.simplify(jac)) == "-eye(2)"
    assert to_latex(jac) == "-I_{2}"
    _reads_back(jac)
    assert str(g.constant(np.array([-0.0, -1.0]))) == "[0.0,-1.0]"
    assert str(g.constant(np.eye(2))) == "eye(2)" and str(g.constant(np.eye(3, dtype=np.float32))) == (
        'eye(3, dtype="float32")'
    )
    three = g.constant(np.eye(2) * 3.0)
    assert str(v * three) == "v*3*eye(2)"  # as Python reads it: (v*3)*I, the same numbers
    assert str(v / three) == "v/(3*eye(2))" and str(v**three) == "v**(3*eye(2))" and str(v - -three) == "v + 3*eye(2)"
    A = g.variable("A", shape=(2, 2))
    assert str(A @ three) == "A@(3*eye(2))" and to_latex(A @ three) == r"A \left(3 I_{2}\right)"
    for node in (v * three, v / three, v**three, A @ three, v - -three):
        _reads_back(node, {"v": np.array([0.5, -2.0]), "A": np.array([[1.0, 2.0], [3.0, 4.0]])})


def test_ones_print_as_ones_and_uniform_arrays_as_full():
    g = sd.Graph()
    x = g.variable("x", shape=(5,))
    assert str(g.constant(np.ones(5))) == "ones(5)" and str(g.constant(np.ones((3, 4)))) == "ones((3, 4))"
    assert str(g.constant(np.full((3, 4), 2.0))) == "full((3, 4), 2)"
    assert to_latex(g.constant(np.ones(5))) == r"\mathbf{1}" and to_latex(g.constant(np.full(4, 2.5))) == (
        r"2.5 \mathbf{1}"
    )
    for node in (g.constant(np.ones(5)), g.constant(np.ones((3, 4), dtype=np.float32)), x * g.constant(np.ones(5))):
        _reads_back(node, {"x": np.arange(5.0)})


def test_minus_ones_and_zeros_print_as_a_person_writes_them():
    """-ones(3) (the gradient of -sum(v)), not full((3,), -1); a zero array is a bold 0 in LaTeX."""
    g = sd.Graph()
    v = g.variable("v", shape=(3,))
    d = sd.grad(-sd.sum(v), v)
    assert str(d) == "-ones(3)" and to_latex(d) == r"-\mathbf{1}"
    assert str(g.constant(-np.ones((2, 3)))) == "-ones((2, 3))"
    assert str(v * g.constant(-np.ones(3))) == "-v"  # built as the negation
    zero = sd.jacobian(0.0 * v + 1.0, v)
    assert to_latex(zero) == r"\mathbf{0}" and to_latex(g.constant(np.zeros(4))) == r"\mathbf{0}"
    for node in (d, g.constant(-np.ones((2, 3))), sd.stack([g.constant(-np.ones(3)), v])):
        _reads_back(node, {"v": np.array([0.5, 2.0, 3.0])})


def test_ones_shaped_like_data_of_unknown_size_print_as_ones_like():
    g = sd.Graph()
    x, mu = g.variable("x", shape=(None,)), g.variable("mu")
    d2 = sd.grad(sd.grad(sd.sum(-0.5 * (x - mu) ** 2), mu), mu)  # -n: a sum over ones shaped like the data
    assert "ones_like(" in str(d2) and "broadcast_like(1," not in str(d2)
    data = np.array([0.3, -1.2, 2.0])
    assert sd.evaluate(_reread(d2), {"x": data, "mu": 0.5}) == -3.0


def test_a_scalar_times_a_vector_typesets_without_machinery():
    g = sd.Graph()
    x, v = g.variable("x"), g.variable("v", shape=(3,))
    dv = sd.grad(x * sd.sum(sd.sin(v)), v)  # x's broadcast over v times cos(v)
    for node in (dv, sd.expand_dims(x, -1) * sd.cos(v), sd.broadcast_like(sd.expand_dims(x, -1), v) * sd.cos(v)):
        text = sd.latex(node)
        assert r"\mathbf{1}" not in text and r"\odot" not in text and "expand" not in text, text
        assert text == r"x \cos\left(v\right)" and str(node) == "x*cos(v)"
        _reads_back(node, {"x": 1.5, "v": np.array([0.1, 0.2, 0.3])})
    text = sd.latex(sd.simplify(dv))
    assert r"\mathbf{1}" not in text and r"\odot" not in text and "expand" not in text, text


def test_leading_axes_of_length_one_are_elided_only_where_broadcasting_reads_them_so():
    g = sd.Graph()
    x, v, M = g.variable("x"), g.variable("v", shape=(2,)), g.variable("M", shape=(2, 2))
    assert str(sd.expand_dims(x, -1) * v) == "x*v"
    kept = sd.expand_dims(v, -1) * M  # v as a column: not v*M, which broadcasts v along rows
    assert str(kept) == "expand_dims(v, axis=-1)*M"
    values = {"x": 2.0, "v": np.array([1.0, -3.0]), "M": np.array([[1.0, 2.0], [3.0, 4.0]])}
    _reads_back(kept, values)
    _reads_back(sd.expand_dims(x, -1) * v, values)


def test_the_gaussian_log_likelihood_gradient_typesets_as_a_person_writes_it():
    g = sd.Graph()
    x, mu, s = g.variable("x", shape=(5,)), g.variable("mu"), g.variable("s")
    loglik = sd.sum(-0.5 * ((x - mu) / s) ** 2 - sd.log(s))
    dmu, ds = (sd.simplify(sd.grad(loglik, w)) for w in (mu, s))
    tex_mu, tex_s = sd.latex(dmu), sd.latex(ds)
    for tex in (tex_mu, tex_s):
        assert r"\sum" in tex and r"\mu" in tex and "x_{0}" not in tex and "x_0" not in tex, tex
        assert "broadcast" not in tex and "const" not in tex and "-0.0" not in tex
    squares = sd.latex(sd.sum(((x - mu) / s) ** 2))
    assert squares == r"\sum \left(\frac{x - \mu}{s}\right)^{2}"  # not \frac{x - \mu}{s}^{2}: x - mu over s**2
    data = np.array([0.3, -1.2, 2.0, 0.7, 1.1])
    values = {"x": data, "mu": 0.4, "s": 1.7}
    np.testing.assert_allclose(sd.evaluate(ds, values), -5 / 1.7 + np.sum((data - 0.4) ** 2) / 1.7**3)
    _reads_back(dmu, values)


def test_latex_names_take_greek_letters_and_subscripts():
    assert latex_name("mu") == r"\mu" and latex_name("sigma2") == r"\sigma_{2}" and latex_name("W1") == "W_{1}"
    assert latex_name("theta_in") == r"\theta_{in}" and latex_name("mux") == "mux"


# -- the command line ---------------------------------------------------------------------------
def _run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_cli_latex_typesets_its_labels(capsys):
    out = _run(capsys, "grad", "x**2*sin(y)", "--wrt", "x", "y", "--order", "2", "--latex")
    assert r"\frac{\partial f}{\partial x} = 2 x \sin{\left(y \right)}" in out
    assert r"\frac{\partial^{2} f}{\partial x^{2}} = 2 \sin{\left(y \right)}" in out
    assert r"\frac{\partial^{2} f}{\partial x \partial y} = 2 x \cos{\left(y \right)}" in out
    assert "d2f" not in out and "df/" not in out
    out = _run(capsys, "grad", "mu**3", "--wrt", "mu", "--order", "3", "--latex", "--at", "mu=2")
    assert r"\frac{\partial^{3} f}{\partial \mu^{3}} = 6" in out and "= 6\n" in out


def test_cli_plain_output_keeps_its_labels(capsys):
    out = _run(capsys, "grad", "x**2*sin(y)", "--wrt", "x", "y", "--order", "2")
    assert "df/dx = 2*x*sin(y)" in out and "d2f/dx dy = 2*x*cos(y)" in out and "d2f/dy dy = -x**2*sin(y)" in out


# -- property: constants of these kinds never print -0.0 or const( and read back --------------
_SCALARS = st.sampled_from([1.0, -1.0, 0.4, -0.5, 2.0, -0.0, 0.0, 1e-3, -7.25, 1 / 3])


@st.composite
def _constants(draw):
    c = draw(_SCALARS)
    n = draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["eye", "full", "full2", "small", "seed"]))
    if kind == "eye":
        return np.eye(n) * c
    if kind == "full":
        return np.full(n, c)
    if kind == "full2":
        return np.full((n, draw(st.integers(1, 4))), c)
    if kind == "seed":  # a one-hot row of a (negated) Jacobian seed
        value = np.zeros(n) * c
        value[draw(st.integers(0, n - 1))] = c or 1.0
        return value if n <= 6 else np.eye(n) * (c or 1.0)
    return np.array(draw(st.lists(_SCALARS, min_size=1, max_size=6)))


@given(value=_constants())
def test_constants_of_these_kinds_print_readably_and_read_back(value):
    g = sd.Graph()
    x = g.variable("x", shape=value.shape)
    node = g.constant(value)
    for shown in (node, x * node, node - x):
        text = str(shown)
        assert "-0.0" not in text and "const(" not in text, text
        latex = to_latex(shown)
        assert "-0.0" not in latex and "const" not in latex, latex
        _reads_back(shown, {"x": np.linspace(-1.0, 2.0, value.size).reshape(value.shape)})


# -- booleans and masks (issue 25: clip's derivative printed where(where(...), 1, 0)) ------------
def _unit_interval(g: sd.Graph):
    x, y = g.variable("x", shape=(4,)), g.variable("y")
    return x, y


def test_clips_derivative_prints_the_interval_as_a_person_writes_it():
    g = sd.Graph()
    x, y = _unit_interval(g)
    dy = sd.simplify(sd.grad(sd.clip(y, 0.0, 1.0), y))
    assert str(dy) == "astype((y >= 0) & (y <= 1))"  # the mask as numbers, not where(where(..), 1, 0)
    assert to_latex(dy) == r"\mathbb{1}\left[0 \leq y \leq 1\right]"
    assert sd.latex(dy) == (  # through sympy: its Piecewise, with an And, not an ITE
        r"\begin{cases} 1 & \text{for}\: y \geq 0 \wedge y \leq 1 \\0 & \text{otherwise} \end{cases}"
    )
    dx = sd.simplify(sd.grad(sd.sum(sd.clip(x, 0.0, 1.0) ** 2), x))
    assert str(dx) == "where((x >= 0) & (x <= 1), 2*clip(x, 0, 1), 0)"
    assert sd.latex(dx) == (
        r"\begin{cases} 2 \operatorname{clip}\left(x, 0, 1\right) & \text{if } 0 \leq x \leq 1 \\ "
        r"0 & \text{otherwise} \end{cases}"
    )
    data = np.array([-0.5, 0.0, 0.25, 1.5])
    np.testing.assert_array_equal(sd.evaluate(dx, {"x": data}), np.where((data >= 0) & (data <= 1), 2 * data, 0))
    for y_value in (-0.5, 0.0, 0.5, 1.0, 2.0):
        assert sd.evaluate(dy, {"y": y_value}) == float(0 <= y_value <= 1)  # hand-derived: 1 on [0, 1]
        _reads_back(dy, {"y": y_value})
    _reads_back(dx, {"x": data})
    reread = _reread(dy)
    assert reread.dtype == dy.dtype == np.float64 and str(reread) == str(dy)


def test_every_connective_prints_with_python_operators_and_reads_back():
    g = sd.Graph()
    x, w = g.variable("x", shape=(5,)), g.variable("w", shape=(5,))
    a, b, c = x > 0, w > 0, x < -1
    cases = {
        "(x > 0) & (w > 0)": (sd.where(a, b, False), r"x > 0 \land w > 0"),
        "(x > 0) | (w > 0)": (sd.where(a, True, b), r"x > 0 \lor w > 0"),
        "~(x > 0)": (sd.where(a, False, True), r"\lnot \left(x > 0\right)"),
        "~(x > 0) & (w > 0)": (sd.where(a, False, b), r"\lnot \left(x > 0\right) \land w > 0"),
        "~(x > 0) | (w > 0)": (sd.where(a, b, True), r"\lnot \left(x > 0\right) \lor w > 0"),
        "(x > 0) & (w > 0) | (x < -1)": (sd.where(sd.where(a, b, False), True, c), None),
        "((x > 0) | (x < -1)) & (w > 0)": (sd.where(sd.where(a, True, c), b, False), None),
        "astype(~(x > 0))": (sd.where(a, 0.0, 1.0), r"\mathbb{1}\left[\lnot \left(x > 0\right)\right]"),
        "w*(x > 0)": (w * sd.where(a, 1.0, 0.0), r"w \odot \mathbb{1}\left[x > 0\right]"),
        "(x >= -1) & (x < 2)": (sd.where(x >= -1.0, x < 2.0, False), None),
    }
    values = {"x": np.array([-2.0, -1.0, 0.0, 0.5, 3.0]), "w": np.array([1.0, -1.0, 2.0, -3.0, 0.0])}
    for text, (node, tex) in cases.items():
        assert str(node) == text
        if tex is not None:
            assert to_latex(node) == tex
        _reads_back(node, values)
    chain = sd.where(x >= -1.0, x < 2.0, False)  # LaTeX chains it: -1 <= x < 2
    assert to_latex(chain) == "-1 \\leq x < 2"


def test_a_mask_beside_a_constant_stays_a_selection():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    twice = 2.0 * sd.where(x > 0, 1.0, 0.0)  # 2*(x > 0) would read back as integers
    assert "(x > 0)" in str(twice) and "2*(x > 0)" not in str(twice)
    _reads_back(twice, {"x": np.array([-1.0, 0.0, 1.0])})


def test_the_parser_refuses_logical_operators_on_numbers():
    from symdiff.parse import ParseError, parse

    g = sd.Graph()
    g.variable("x", shape=(3,))
    for text, symbol in (("x & (x > 0)", "'&'"), ("(x > 0) | 1", "'|'"), ("~x", "'~'")):
        with pytest.raises(ParseError, match=symbol):
            parse(text, g)


comparisons = st.sampled_from([("x", ">", 0.0), ("x", "<=", 1.0), ("w", ">=", -0.5), ("w", "<", 2.0)])


@st.composite
def _conditions(draw, depth: int = 3):
    """A random connective of comparisons, built as symdiff.scalar builds them (where of booleans)."""
    name, symbol, bound = draw(comparisons)
    if depth == 0 or draw(st.booleans()):
        return (name, symbol, bound)
    kind = draw(st.sampled_from(["and", "or", "not", "and_not", "or_not"]))
    if kind == "not":
        return (kind, draw(_conditions(depth - 1)))
    return (kind, draw(_conditions(depth - 1)), draw(_conditions(depth - 1)))


def _built(tree, nodes):
    if len(tree) == 3 and isinstance(tree[1], str):
        name, symbol, bound = tree
        u = nodes[name]
        return {">": u > bound, "<=": u <= bound, ">=": u >= bound, "<": u < bound}[symbol]
    if tree[0] == "not":
        return sd.where(_built(tree[1], nodes), False, True)
    a, b = _built(tree[1], nodes), _built(tree[2], nodes)
    return {
        "and": lambda: sd.where(a, b, False),
        "or": lambda: sd.where(a, True, b),
        "and_not": lambda: sd.where(a, False, b),
        "or_not": lambda: sd.where(a, b, True),
    }[tree[0]]()


@given(_conditions(), st.booleans())
def test_printed_connectives_and_masks_read_back_to_the_same_values(tree, as_mask):
    g = sd.Graph()
    nodes = {"x": g.variable("x", shape=(7,)), "w": g.variable("w", shape=(7,))}
    node = _built(tree, nodes)
    if as_mask:
        node = nodes["w"] * sd.where(node, 1.0, 0.0)
    text = str(node)
    assert "where(" not in text and "False" not in text and "True" not in text, text
    values = {"x": np.linspace(-1.5, 2.5, 7), "w": np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0])}
    _reads_back(node, values)


def test_connectives_go_to_sympy_as_and_or_not_and_come_back():
    import sympy

    g = sd.Graph()
    y, z = g.variable("y"), g.variable("z")
    node = sd.where(sd.where(y >= 0.0, y <= 1.0, False), True, sd.where(z > 0.0, False, True))
    expr = sd.to_sympy(node)
    Y, Z = sympy.symbols("y z")
    assert expr == sympy.Or(sympy.And(Y >= 0, Y <= 1), sympy.Not(Z > 0))
    back = sd.from_sympy(expr, g)
    for values in ({"y": 0.5, "z": 1.0}, {"y": 2.0, "z": 1.0}, {"y": 2.0, "z": -1.0}):
        assert sd.evaluate(back, values) == sd.evaluate(node, values)


def test_the_command_line_pages_latex_example_is_what_the_command_prints(capsys):
    import pathlib

    page = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "command-line.md").read_text()
    block = page.split('symdiff grad "x/y" --wrt y --order 3 --latex\n', 1)[1].split("\n\n", 1)[0]
    shown = [line.removeprefix("# ") for line in block.splitlines() if line.startswith("# ")]
    out = _run(capsys, "grad", "x/y", "--wrt", "y", "--order", "3", "--latex")
    assert out.splitlines() == shown
    assert shown[-1] == r"\frac{\partial^{3} f}{\partial y^{3}} = - \frac{6 x}{y^{4}}"  # d3/dy3 x/y = -6x/y**4


# -- relations on a line of their own (issue 25: t_{2} &= t_{1} = 0 read as a chain) -------------
@pytest.mark.parametrize(
    "compare, relation",
    [
        (sd.equal, "="),
        (sd.not_equal, r"\neq"),
        (sd.greater, ">"),
        (sd.greater_equal, r"\geq"),
        (sd.less, "<"),
        (sd.less_equal, r"\leq"),
    ],
)
def test_a_comparison_assigned_to_a_line_is_bracketed(compare, relation):
    g = sd.Graph()
    v = g.variable("v", shape=(3,))
    a = sd.abs(v - 1.0)
    c = compare(a, sd.max(a))
    e = sd.where(c, sd.sign(v - 1.0) / sd.sum(sd.astype(c, np.float64), keepdims=True), 0.0)
    text = to_latex(e)
    rows = text.removeprefix(r"\begin{aligned}").removesuffix(r"\end{aligned}").split(r" \\ ")
    line = next(r for r in rows if r.startswith("t_") and relation in r.split(" &= ")[1])
    name, assigned = line.split(" &= ")
    assert assigned == rf"\left[t_{{2}} {relation} \operatorname{{max}}\left(t_{{2}}\right)\right]", line
    # a line assigning a number is not bracketed, and a relation inside cases is not either
    assert all(not r.split(" &= ")[1].startswith(r"\left[") for r in rows if " &= " in r and r is not line)
    assert r"\text{if } t_{" in text
    # a whole boolean result on the last row of aligned lines is bracketed too
    t = sd.exp(v) * sd.sin(v) + sd.cos(v) * sd.tanh(v) - sd.log(v) * v  # shared, on a line
    both = to_latex(compare(t, sd.max(t)))
    assert both.startswith(r"\begin{aligned}") and both.endswith(r"\right]\end{aligned}"), both
