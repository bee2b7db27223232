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
