"""Kinks whose square is smooth (issue 19, A): |x|, norm(x), hypot(a, b), std(x) and sqrt(s) have
a kink where they are 0, but |x|² = x², norm(x)² = sum(x²), hypot(a, b)² = a² + b², std(x)² =
var(x) and sqrt(s)² = s (s >= 0) are smooth. Their derivatives at the kink, at every order, are
those of the smooth form, in every path: evaluate, compile on each backend, simplify, a saved and
loaded graph, sparse_hessian.

Oracles: Hessians derived by hand at the kink, and central differences of the smooth form written
in plain numpy (no symdiff code) composed with a random smooth program.
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import symdiff as sd
from symdiff.backends import installed

from . import oracles
from .programs import programs

N = 4  # the length of the vector v (std's cases)
CENTER = (np.eye(N) - 1.0 / N) / N  # the Hessian of var(v) over 2: (I - 11ᵀ/n) / n


@dataclass
class Case:
    name: str
    f: sd.Node  # a scalar with a squared kink at the point below
    wrt: sd.Node
    expected: np.ndarray  # its Hessian there, derived by hand (the smooth form's)
    numba: bool = False  # compiled by numba too (its builds take seconds: the examples and a few)


def _cases() -> tuple[sd.Graph, list[Case], dict[str, np.ndarray]]:
    """Every case in one graph (one compilation per backend), at one point: all on a kink."""
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    X = g.variable("X", shape=(2, 3))
    v = g.variable("v", shape=(N,))
    V = g.variable("V", shape=(3, N))
    s, t, w = g.variable("s"), g.variable("t"), g.variable("w")
    s32 = g.variable("s32", dtype=np.float32)
    at = {
        "x": np.zeros(3),
        "X": np.zeros((2, 3)),
        "v": np.full(N, 2.0),  # constant: std(v) = 0
        "V": np.full((3, N), -1.5),
        "s": 0.0,
        "t": 0.0,
        "w": 3.0,
        "s32": np.float32(0.0),
    }
    eye3, eye6 = np.eye(3), np.eye(6).reshape(2, 3, 2, 3)
    cases = [
        # the examples
        Case("norm(x)**2", sd.norm(x) ** 2, x, 2 * eye3, numba=True),
        Case("exp(-norm(x)**2)", sd.exp(-(sd.norm(x) ** 2)), x, -2 * eye3, numba=True),
        Case("abs(s)**2", sd.abs(s) ** 2, s, np.array(2.0), numba=True),
        Case("hypot(s, t)**2 along s", sd.hypot(s, t) ** 2, s, np.array(2.0), numba=True),
        Case("hypot(s, t)**2 along t", sd.hypot(s, t) ** 2, t, np.array(2.0)),
        Case("std(v)**2 at a constant v", sd.std(v) ** 2, v, 2 * CENTER, numba=True),
        # powers and products of the same kinks
        Case("norm(x)*norm(x)", sd.norm(x) * sd.norm(x), x, 2 * eye3),
        Case("abs(s)*abs(s)", sd.abs(s) * sd.abs(s), s, np.array(2.0)),
        Case("square(abs(s))", sd.square(sd.abs(s)), s, np.array(2.0)),
        Case("(-norm(x))**2", (-sd.norm(x)) ** 2, x, 2 * eye3),
        Case("norm(x, 2)**2", sd.norm(x, 2) ** 2, x, 2 * eye3),
        Case("norm(X)**2 (Frobenius)", sd.norm(X) ** 2, X, 2 * eye6),
        Case("norm(X, 'fro')**2", sd.norm(X, "fro") ** 2, X, 2 * eye6),
        Case("sum(norm(X, axis=1, keepdims=True)**2)", sd.sum(sd.norm(X, axis=1, keepdims=True) ** 2), X, 2 * eye6),
        Case("sum(norm(X, axis=0)**2)", sd.sum(sd.norm(X, axis=0) ** 2), X, 2 * eye6),
        Case("norm(x)**4 + norm(x)**2", sd.norm(x) ** 4 + sd.norm(x) ** 2, x, 2 * eye3),
        Case("norm(x, 4)**4", sd.norm(x, 4) ** 4, x, 0 * eye3),
        Case("norm(x, 3)**3", sd.norm(x, 3) ** 3, x, 0 * eye3),
        Case("abs(s)**4 + abs(s)**2", sd.abs(s) ** 4 + sd.abs(s) ** 2, s, np.array(2.0)),
        Case("w*abs(s)*abs(s)", w * sd.abs(s) * sd.abs(s), s, np.array(6.0)),
        Case("abs(s)*(w*abs(s))", sd.abs(s) * (w * sd.abs(s)), s, np.array(6.0)),
        Case("(w*abs(s))**2", (w * sd.abs(s)) ** 2, s, np.array(18.0)),
        Case("(abs(s)/w)**2", (sd.abs(s) / w) ** 2, s, np.array(2.0 / 9.0)),
        Case("w*norm(x)*norm(x)", w * sd.norm(x) * sd.norm(x), x, 6 * eye3),
        Case("0.5*norm(x)*norm(x)", 0.5 * sd.norm(x) * sd.norm(x), x, eye3),
        Case("hypot(s, t)*hypot(s, t)", sd.hypot(s, t) * sd.hypot(s, t), s, np.array(2.0)),
        Case("hypot(s, 2*t)**4", sd.hypot(s, 2 * t) ** 4, t, np.array(0.0)),
        Case("std(v)*std(v)", sd.std(v) * sd.std(v), v, 2 * CENTER),
        Case("std(v, ddof=1)**2", sd.std(v, ddof=1) ** 2, v, 2 * CENTER * N / (N - 1)),
        Case(
            "sum(std(V, axis=1, ddof=1, keepdims=True)**2)",
            sd.sum(sd.std(V, axis=1, ddof=1, keepdims=True) ** 2),
            V,
            np.einsum("ik,jl->ijkl", np.eye(3), 2 * CENTER * N / (N - 1)),
        ),
        Case("sqrt(s*s + t*t)**2", sd.sqrt(s * s + t * t) ** 2, s, np.array(2.0)),
        Case("sqrt(sum(x**2))**2", sd.sqrt(sd.sum(x**2)) ** 2, x, 2 * eye3),
        Case("sqrt(abs(s))**4", sd.sqrt(sd.abs(s)) ** 4, s, np.array(2.0)),
        Case("abs(s32)**2 (float32)", sd.abs(s32) ** 2, s32, np.array(2.0, dtype=np.float32), numba=True),
    ]
    return g, cases, at


@pytest.fixture(scope="module")
def built():
    g, cases, at = _cases()
    hessians = [sd.hessian(c.f, c.wrt) for c in cases]
    return g, cases, at, hessians


def _check(cases: list[Case], values: list, path: str, dtypes: bool = True) -> None:
    for case, value in zip(cases, values):
        value = value.toarray() if hasattr(value, "toarray") else np.asarray(value)
        expected = case.expected
        if path == "sparse_hessian":
            expected = expected.reshape(value.shape)
        elif dtypes:
            assert value.dtype == case.f.dtype, f"{path}: {case.name}: dtype {value.dtype}"
        assert value.shape == expected.shape, f"{path}: {case.name}: shape {value.shape}"
        rtol = 1e-6 if case.f.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=rtol, err_msg=f"{path}: {case.name}")


def test_hessian_at_a_squared_kink_is_the_smooth_forms_when_evaluated(built):
    g, cases, at, hessians = built
    _check(cases, sd.evaluate(hessians, at), "evaluate")


@pytest.mark.parametrize("backend", ["numpy", "numba", "jax"])
def test_hessian_at_a_squared_kink_is_the_smooth_forms_when_compiled(built, backend):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (the test extra installs it)")
    g, cases, at, hessians = built
    if backend == "numba":
        cases, hessians = zip(*[(c, h) for c, h in zip(cases, hessians) if c.numba])
    names = sorted(at)
    f = sd.compile(list(hessians), inputs=[g[n] for n in names], backend=backend)
    # numba's float32 scalars are a separate matter (issue 19, G4): values only there
    _check(cases, f(*(at[n] for n in names)), f"compile({backend})", dtypes=backend != "numba")


def test_hessian_at_a_squared_kink_is_the_smooth_forms_when_simplified(built):
    g, cases, at, hessians = built
    names = sorted(at)
    f = sd.compile(hessians, inputs=[g[n] for n in names], simplify=True)
    _check(cases, f(*(at[n] for n in names)), "compile(simplify=True)")
    _check(cases, sd.evaluate(sd.simplify(hessians), at), "simplify")


def test_hessian_at_a_squared_kink_is_the_smooth_forms_after_save_and_load(built):
    g, cases, at, hessians = built
    path = pathlib.Path(tempfile.mkdtemp()) / "kinks.json"
    g.save(path, outputs={c.name: h for c, h in zip(cases, hessians)})
    h = sd.load(path)
    _check(cases, sd.evaluate([h.outputs[c.name] for c in cases], at), "save/load")


def test_hessian_at_a_squared_kink_is_the_smooth_forms_when_sparse(built):
    g, cases, at, _ = built
    sparse = [sd.sparse_hessian(c.f, c.wrt) for c in cases]
    _check(cases, sd.evaluate(sparse, at), "sparse_hessian")


def test_the_square_is_built_smooth():
    g = sd.Graph()
    x, s, t = g.variable("x", shape=(3,)), g.variable("s"), g.variable("t")
    v = g.variable("v", shape=(2, 4))
    assert sd.norm(x) ** 2 is sd.sum(x**2)
    assert sd.norm(x) * sd.norm(x) is sd.sum(x**2)
    assert sd.abs(s) ** 2 is s**2
    assert sd.abs(s) ** 6 is s**6  # bit for bit |s|**6: an even power drops the sign
    assert sd.hypot(s, t) ** 2 is s**2 + t**2
    assert sd.std(v, axis=1, ddof=1) ** 2 is sd.var(v, axis=1, ddof=1)
    assert sd.sqrt(sd.exp(s)) ** 2 is sd.exp(s)  # sqrt(e)**2 = e where e >= 0
    # where the base may be negative, sqrt(s)**2 is nan there and stays as built
    for y in (sd.sqrt(s) ** 2, (s**0.5) ** 2):
        assert y.op == "pow" and y.inputs[0].op in ("sqrt", "pow") and y.inputs[0].inputs[0] is s
    # an odd power keeps its kink (its second derivative 6|s| is 0 there anyway), and so does a
    # product of two different kinks
    assert (sd.abs(s) ** 3).inputs[0].op == "abs"
    assert {u.op for u in (sd.norm(x) * sd.abs(s)).inputs} == {"norm", "abs"}


def test_float32_stays_float32_and_a_float64_exponent_promotes_first():
    g = sd.Graph()
    x = g.variable("x", shape=(3,), dtype=np.float32)
    y = sd.norm(x) ** 2
    assert y.dtype == np.float32 and sd.hessian(y, x).dtype == np.float32
    # a float64 exponent makes the result float64: the square is then taken in float64, as the
    # original's power was (a float32 square of 1e20 would overflow)
    z = sd.abs(x) ** np.float64(2.0)
    assert z.dtype == np.float64
    big = np.array([1e20, 0.0, -3.0], dtype=np.float32)
    np.testing.assert_allclose(sd.evaluate(z, {x: big}), np.abs(big.astype(np.float64)) ** 2, rtol=1e-15)
    np.testing.assert_allclose(sd.evaluate(sd.hessian(sd.sum(z), x), {x: np.zeros(3, np.float32)}), 2 * np.eye(3))


def test_even_powers_of_abs_are_the_same_bits():
    g = sd.Graph()
    x, w = g.variable("x", shape=(7,)), g.variable("w", shape=(7,))
    xv = np.array([-3.7, -1e-200, -0.0, 0.0, 2.5e150, -1e160, np.nan])
    wv = np.array([1.1, 1e300, -2.0, 3.0, 1e-300, 0.5, 1.0])
    with np.errstate(all="ignore"):
        for k, (node, reference) in enumerate(
            [
                (sd.abs(x) ** 2, np.abs(xv) ** 2),
                (sd.abs(x) ** 4, np.abs(xv) ** 4),
                (sd.abs(x) ** -2, np.abs(xv) ** -2.0),
                (w * sd.abs(x) * sd.abs(x), wv * np.abs(xv) * np.abs(xv)),
                ((sd.abs(x) / w) ** 2, (np.abs(xv) / wv) ** 2),
                (sd.abs(x) * sd.abs(x), np.abs(xv) * np.abs(xv)),
            ]
        ):
            np.testing.assert_array_equal(sd.evaluate(node, {x: xv, w: wv}), reference, err_msg=f"case {k}")


def test_sqrt_of_a_square_is_abs_with_its_kink_convention():
    g = sd.Graph()
    s = g.variable("s")
    for y in (sd.sqrt(s * s), sd.sqrt(s**2), (s**2) ** 0.5, (s * s) ** 0.5):
        assert y.op == "abs" and y.inputs[0] is s
        assert float(sd.evaluate(sd.grad(y, s), {s: 0.0})) == 0.0  # d|s| = 0 at 0, not 0/0
        assert float(sd.evaluate(sd.grad(y, s), {s: -2.0})) == -1.0
    assert sd.sqrt(s * 2.0 * s).inputs[0].op == "mul"  # not a square of one node: as built


def test_values_away_from_the_kink_are_unchanged():
    g = sd.Graph()
    x, a, b = g.variable("x", shape=(2, 3)), g.variable("a", shape=(3,)), g.variable("b", shape=(2, 1))
    xv = np.array([[0.3, -1.2, 2.0], [4.0, 0.5, -0.7]])
    av, bv = np.array([1.0, -2.0, 0.25]), np.array([[3.0], [-0.5]])
    bind = {x: xv, a: av, b: bv}
    for k, (y, reference) in enumerate(
        [
            (sd.norm(x, axis=1, keepdims=True) ** 2, np.linalg.norm(xv, axis=1, keepdims=True) ** 2),
            (sd.norm(x) ** -2, np.linalg.norm(xv) ** -2.0),
            (sd.hypot(a, b) ** 2, np.hypot(av, bv) ** 2),
            (sd.std(x, axis=0, ddof=1) ** 4, np.std(xv, axis=0, ddof=1) ** 4),
            (sd.exp(-(sd.norm(a) ** 2)), np.exp(-(np.linalg.norm(av) ** 2))),
        ]
    ):
        assert y.shape == reference.shape, f"case {k}"
        np.testing.assert_allclose(sd.evaluate(y, bind), reference, rtol=1e-13, err_msg=f"case {k}")


# -- the contract over random graphs ------------------------------------------------------------
@dataclass(frozen=True)
class Kink:
    """A squared kink of u (a node) and its smooth form in plain numpy (of u's value)."""

    build: Callable[[sd.Node], sd.Node]
    smooth: Callable[[np.ndarray], np.ndarray]
    vector: bool = False  # needs u.ndim >= 1 (and 2 elements or more)


KINKS = {
    "abs**2": Kink(lambda u: sd.abs(u) ** 2, lambda u: u * u),
    "abs*abs": Kink(lambda u: sd.abs(u) * sd.abs(u), lambda u: u * u),
    "abs**4": Kink(lambda u: sd.abs(u) ** 4, lambda u: u**4),
    "(c*abs)**2": Kink(lambda u: (0.5 * sd.abs(u)) ** 2, lambda u: 0.25 * u * u),
    "c*abs*abs": Kink(lambda u: 1.5 * sd.abs(u) * sd.abs(u), lambda u: 1.5 * u * u),
    "norm**2": Kink(lambda u: sd.norm(u) ** 2, lambda u: np.sum(u * u)),
    "norm*norm": Kink(lambda u: sd.norm(u) * sd.norm(u), lambda u: np.sum(u * u)),
    "c*norm*norm": Kink(lambda u: 0.7 * sd.norm(u) * sd.norm(u), lambda u: 0.7 * np.sum(u * u)),
    "norm**4": Kink(lambda u: sd.norm(u) ** 4, lambda u: np.sum(u * u) ** 2),
    "(-norm)**2": Kink(lambda u: (-sd.norm(u)) ** 2, lambda u: np.sum(u * u)),
    "exp(-norm**2)": Kink(lambda u: sd.exp(-(sd.norm(u) ** 2)), lambda u: np.exp(-np.sum(u * u))),
    "norm(axis=-1, keepdims)**2": Kink(
        lambda u: sd.norm(u, axis=-1, keepdims=True) ** 2, lambda u: np.sum(u * u, axis=-1, keepdims=True), True
    ),
    "norm(u, 4)**4": Kink(lambda u: sd.norm(sd.reshape(u, (-1,)), 4) ** 4, lambda u: np.sum(u**4)),
    "hypot**2": Kink(lambda u: sd.hypot(u, 0.5 * u) ** 2, lambda u: 1.25 * u * u),
    "hypot*hypot": Kink(lambda u: sd.hypot(0.5 * u, u) * sd.hypot(0.5 * u, u), lambda u: 1.25 * u * u),
    "std**2": Kink(lambda u: sd.std(1.0 + u) ** 2, lambda u: np.var(1.0 + u), True),
    "std(ddof=1)*std": Kink(lambda u: sd.std(u, ddof=1) * sd.std(u, ddof=1), lambda u: np.var(u, ddof=1), True),
    "std(axis=-1)**2": Kink(lambda u: sd.std(u - 2.0, axis=-1) ** 2, lambda u: np.var(u - 2.0, axis=-1), True),
    "sqrt(nonneg)**2": Kink(lambda u: sd.sqrt(u * u + (0.5 * u) ** 2) ** 2, lambda u: 1.25 * u * u),
    "sqrt(abs)**4": Kink(lambda u: sd.sqrt(sd.abs(u)) ** 4, lambda u: u * u),
}
SHAPES = [(), (3,), (2, 2)]


@given(
    kink=st.sampled_from(sorted(KINKS)),
    shape=st.sampled_from(SHAPES),
    outer=programs(max_steps=4),
    scale=st.sampled_from([1.0, -0.6, 2.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_squared_kink_has_the_derivatives_of_its_smooth_form(kink, shape, outer, scale, seed):
    """Contract: wherever a function is built from the square (or an even power) of a kink at
    its kink (u = 0, or a constant vector for std), its gradient and Hessian are those of the
    same function written smooth: here a random smooth program of a squared kink of u = a*x at
    x = 0, against central differences of the program of the smooth form written in numpy."""
    form = KINKS[kink]
    if form.vector and not shape:
        shape = (3,)
    g = sd.Graph()
    x, a = g.variable("x", shape=shape), g.variable("a")
    q = form.build(a * x)
    # the outer program reads the squared kink as its first value; the oracle binds q's value
    others = [g.variable(f"z{k}", shape=sh) for k, sh in enumerate(outer.shapes[1:])]
    y = outer.build(q, *others)
    cost = sd.sum(0.5 * y * y + 0.3 * y)
    note(f"kink {kink}, shape {shape}, scale {scale}")
    rng = np.random.default_rng(seed)
    zs = [rng.uniform(-1.5, 1.5, z.shape) for z in others]
    bind = {x: np.zeros(shape), a: scale, **dict(zip(others, zs))}

    Q = g.variable("Q", shape=q.shape)  # the same program of a free value, for the oracle
    cost_q = sd.sum(0.5 * outer.build(Q, *others) ** 2 + 0.3 * outer.build(Q, *others))

    def smooth_cost(xv: np.ndarray) -> float:
        qv = np.asarray(form.smooth(scale * xv), dtype=np.float64).reshape(q.shape)
        return float(sd.evaluate(cost_q, {Q: qv, **dict(zip(others, zs))}))

    grad, hess = sd.evaluate([sd.grad(cost, x), sd.hessian(cost, x)], bind)
    n = int(np.prod(shape))
    fd_grad = oracles.gradient(smooth_cost, [np.zeros(shape)])[0]
    fd_hess = oracles.hessian(smooth_cost, [np.zeros(shape)])
    big = max(1.0, float(np.max(np.abs(fd_hess), initial=0.0)))
    np.testing.assert_allclose(grad, fd_grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.reshape(hess, (n, n)), fd_hess, rtol=1e-5, atol=1e-6 * big)
    # simplify keeps them
    simpler = sd.evaluate(sd.simplify(sd.hessian(cost, x)), bind)
    np.testing.assert_allclose(simpler, hess, rtol=1e-9, atol=1e-9 * big)
