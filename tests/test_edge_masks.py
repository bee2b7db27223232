"""An untaken where-branch and an unselected element contribute exactly 0 to every derivative.

A derivative pass multiplies the zero cotangent of a branch that is not taken (or of an element
that is not selected) by that branch's local derivative, which may be inf or nan there
(sqrt'(0), exp(1000), log of a negative number): 0 * inf would be nan. symdiff's mask rules
(symdiff/rules.py, "masks") make the product happen inside the where or on the selected
elements only. Oracles: hand-derived values, and the same computation built without the where.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import symdiff as sd

from .programs import programs, with_unknown_dims


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- the examples, each with its right first and second derivative ------------------------------
def _branch_sqrt(g):
    s = g.variable("s")
    return sd.where(s >= 0, s, sd.sqrt(-s)), s, {"s": 1.0}, 1.0, 0.0


def _branch_expm1(g):
    s = g.variable("s")
    return sd.where(s > 0, s, sd.expm1(s)), s, {"s": 1000.0}, 1.0, 0.0


def _branch_at_zero(g):
    s = g.variable("s")
    return sd.where(sd.equal(s, 0), 0, s * sd.sqrt(sd.abs(s))), s, {"s": 0.0}, 0.0, 0.0


def _row_norms(g):
    X = g.variable("X", shape=(3, 2))
    n = sd.sqrt(sd.sum(X * X, axis=1))
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    norms = np.linalg.norm(x, axis=1)
    right = np.zeros_like(x)
    hess = np.zeros((3, 2, 3, 2))
    for i in (0, 2):  # d|x|/dx = x/|x|; its Hessian (I - u uᵀ)/|x|; the zero row: 0
        u = x[i] / norms[i]
        right[i] = u
        hess[i, :, i, :] = (np.eye(2) - np.outer(u, u)) / norms[i]
    return sd.sum(sd.where(n > 0, n, 0.0)), X, {"X": x}, right, hess


def _selected_element(g):
    c, d = g.variable("c", shape=(2, 2)), g.variable("d", shape=(2, 2))
    a = g.variable("a", shape=(1,))
    y = sd.sqrt(c + a * d)[0, 0]
    u = 1.0 + 1.0 * 2.0  # c00 + a d00 at a = 1, d00 = 2
    bind = {"c": np.array([[1.0, 0.0], [0.0, 0.0]]), "d": np.array([[2.0, 0.0], [0.0, 0.0]]), "a": np.array([1.0])}
    # d/da sqrt(c00 + a d00) = d00 / (2 sqrt u); again: -d00² / (4 u^1.5)
    return y, a, bind, np.array([2.0 / (2 * np.sqrt(u))]), np.array([[-4.0 / (4 * u**1.5)]])


def _log_branch(g):
    x = g.variable("x", shape=(3,))
    y = sd.sum(sd.where(x > 0, x * sd.log(x), 0.0))  # x log x, continued by 0 at and below 0
    p = np.array([-1.0, 0.0, 2.0])
    return y, x, {"x": p}, np.array([0.0, 0.0, np.log(2.0) + 1.0]), np.diag([0.0, 0.0, 0.5])


def _reciprocal_branch(g):
    x = g.variable("x", shape=(2,))
    y = sd.sum(sd.where(sd.not_equal(x, 0), 1.0 / x, 0.0))
    return y, x, {"x": np.array([0.0, 2.0])}, np.array([0.0, -0.25]), np.diag([0.0, 0.25])


def _taken(g):
    x = g.variable("x", shape=(3,))
    y = sd.sum(sd.take(sd.sqrt(x), np.array([0, 2])))  # x[1] = 0 is not taken
    p = np.array([4.0, 0.0, 1.0])
    return y, x, {"x": p}, np.array([0.25, 0.0, 0.5]), np.diag([-1 / 32, 0.0, -0.25])


def _taken_along(g):
    X = g.variable("X", shape=(2, 2))
    y = sd.sum(sd.take_along_axis(sd.sqrt(X), np.array([[0], [1]]), axis=1))
    p = np.array([[4.0, 0.0], [0.0, 1.0]])
    hess = np.zeros((2, 2, 2, 2))
    hess[0, 0, 0, 0], hess[1, 1, 1, 1] = -1 / 32, -0.25
    return y, X, {"X": p}, np.array([[0.25, 0.0], [0.0, 0.5]]), hess


def _through_moves(g):
    # the mask of a where on a reshaped, transposed, broadcast value
    X = g.variable("X", shape=(2, 3))
    T = sd.reshape(sd.transpose(X), (3, 2))
    r = sd.sum(sd.sqrt(T), axis=1, keepdims=True)  # (3, 1): broadcast back over 2 columns
    y = sd.sum(sd.where(r > 0, r, 0.0) * np.ones((3, 2)))
    p = np.array([[0.0, 1.0, 4.0], [0.0, 4.0, 9.0]])  # T's first row is [0, 0]: r = 0 there
    grad = np.where(p > 0, 2 * 0.5 / np.sqrt(np.where(p > 0, p, 1)), 0.0)
    hess = np.diag(np.where(p > 0, -2 * 0.25 * np.where(p > 0, p, 1) ** -1.5, 0.0).ravel()).reshape(2, 3, 2, 3)
    return y, X, {"X": p}, grad, hess


EXAMPLES = {
    "where_sqrt_branch": _branch_sqrt,
    "where_expm1_branch": _branch_expm1,
    "where_at_zero": _branch_at_zero,
    "where_row_norms": _row_norms,
    "getitem_sqrt0": _selected_element,
    "where_log_branch": _log_branch,
    "where_reciprocal": _reciprocal_branch,
    "take_sqrt0": _taken,
    "take_along_axis_sqrt0": _taken_along,
    "where_through_moves": _through_moves,
}


def _build(name):
    g = sd.Graph()
    y, x, bind, right, hess = EXAMPLES[name](g)
    return g, y, x, bind, [np.asarray(right, dtype=float), np.asarray(hess, dtype=float)]


def _assert_right(values, right, where: str) -> None:
    for got, want, what in zip(values, right, ("gradient", "Hessian")):
        got = np.asarray(got, dtype=float)
        assert np.all(np.isfinite(got)), f"{where}: {what} is not finite: {got}"
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"{where}: {what}")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_evaluate_simplify_save_load_and_sparse(name):
    g, y, x, bind, right = _build(name)
    outputs = [sd.grad(y, x), sd.hessian(y, x)]
    _assert_right(sd.evaluate(outputs, bind), right, "evaluate")
    _assert_right(sd.compile(outputs, list(bind)).__call__(*bind.values()), right, "compile")
    _assert_right(sd.compile(outputs, list(bind), simplify=True)(*bind.values()), right, "simplify=True")
    _assert_right(sd.evaluate(sd.simplify(outputs), bind), right, "sd.simplify")
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "g.json"
        g.save(path, outputs={"grad": outputs[0], "hess": outputs[1]})
        h = sd.load(path)
    _assert_right(sd.evaluate([h.outputs["grad"], h.outputs["hess"]], bind), right, "save/load")
    # differentiating the loaded gradient again gives the same Hessian
    again = sd.jacobian(h.outputs["grad"], h[x.name])
    np.testing.assert_allclose(sd.evaluate(again, bind), right[1], rtol=1e-12, atol=1e-15)
    n = int(np.prod(x.shape))
    H = sd.evaluate(sd.sparse_hessian(y, x), bind).toarray()
    assert np.all(np.isfinite(H))
    np.testing.assert_allclose(H, right[1].reshape(n, n), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_forward_mode(name):
    """jvp of the gradient (forward over reverse) and a Hessian-vector product."""
    g, y, x, bind, right = _build(name)
    v = np.linspace(0.5, 1.5, int(np.prod(x.shape))).reshape(x.shape)
    Hv = sd.hvp(y, x, v)
    want = right[1].reshape(v.size, v.size) @ v.ravel()
    got = np.asarray(sd.evaluate(Hv, bind), dtype=float).ravel()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# numba builds the (3, 2, 3, 2) Hessian of the row norms for minutes (with or without masks): scalars there
@pytest.mark.parametrize(
    "name, backend",
    [(name, "numba") for name in ("where_sqrt_branch", "where_expm1_branch", "where_at_zero")]
    + [(name, "jax") for name in ("where_sqrt_branch", "where_expm1_branch", "where_row_norms", "getitem_sqrt0")],
)
def test_example_other_backends(name, backend):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    g, y, x, bind, right = _build(name)
    outputs = [sd.grad(y, x), sd.hessian(y, x)]
    f = sd.compile(outputs, list(bind), backend=backend)
    _assert_right([np.asarray(v) for v in f(*bind.values())], right, backend)


def test_forward_values_stay_as_built():
    """The rules rewrite derivative nodes only: a forward where(c, v, 0)*p keeps numpy's value."""
    g = sd.Graph()
    x = g.variable("x", shape=(2,))
    y = sd.where(x > 0, x, 0.0) * sd.log(x)
    assert y.op == "mul"
    with np.errstate(all="ignore"):
        want = np.where(np.array([-1.0, 2.0]) > 0, [-1.0, 2.0], 0.0) * np.log([-1.0, 2.0])
    np.testing.assert_array_equal(sd.evaluate(y, {x: [-1.0, 2.0]}), want)


def test_unmasked_gradients_keep_their_form():
    """Nothing changes where no where or selection is in the way (chain and MLP graphs)."""
    g = sd.Graph()
    x = g.variable("x")
    assert str(sd.grad(sd.sin(x) * x, x)) == "sin(x) + x*cos(x)"
    w = g.variable("w", shape=(3,))
    assert str(sd.grad(sd.sum(sd.relu(w) ** 2), w)) == "where(w > 0, 2*relu(w), 0)"


# -- the contract, over random programs -----------------------------------------------------------
def _zero_arg(y):  # 0 wherever y is finite, with a derivative that flows (relu' = 0 there)
    return sd.relu(-1.0 - y * y)


POISONS = {  # a branch that is nan or inf, or has an infinite derivative, at every point
    "sqrt_negative": lambda y: sd.sqrt(-1.0 - y * y),
    "log_negative": lambda y: sd.log(-1.0 - y * y),
    "log_zero": lambda y: sd.log(_zero_arg(y)),
    "sqrt_zero": lambda y: sd.sqrt(_zero_arg(y)),
    "reciprocal_zero": lambda y: 1.0 / _zero_arg(y),
    "expm1_large": lambda y: sd.expm1(800.0 + y * y),
    "pow_zero": lambda y: _zero_arg(y) ** 0.5 * y,
}


def _masked(form: str, y: sd.Node, poison) -> tuple[sd.Node, sd.Node]:
    """(the program's output behind a mask, the same computation without it)."""
    always = y * y >= -1.0  # true, but only known when evaluated
    never = y * y < -1.0
    if form == "where":
        return sd.where(always, y, poison(y)), y
    if form == "where_not":
        return sd.where(never, poison(y), y), y
    if form == "nested":
        return sd.where(always, sd.where(never, poison(y), y) * 2.0, poison(-y)), y * 2.0
    if form == "scaled":  # the where inside a product and a quotient
        return sd.sin(y) * sd.where(always, y, poison(y)) / (2.0 + y * y), sd.sin(y) * y / (2.0 + y * y)
    flat = sd.reshape(y, (-1,))
    good = 1.0 + flat * flat
    both = sd.stack([good, _zero_arg(flat)])  # row 1: sqrt'(0) = inf, never selected
    if form == "getitem":
        return sd.sqrt(both)[0], sd.sqrt(good)
    return sd.take(sd.sqrt(both), np.array([0]), axis=0), sd.expand_dims(sd.sqrt(good), 0)


FORMS = ("where", "where_not", "nested", "scaled", "getitem", "take")


@pytest.mark.parametrize("mode", ["float64", "unknown"])
@given(
    program=programs(max_steps=4),
    poison=st.sampled_from(sorted(POISONS)),
    form=st.sampled_from(FORMS),
    seed=st.integers(0, 2**16),
)
def test_an_untaken_branch_contributes_exactly_zero(mode, program, poison, form, seed):
    """where(c, program, poison) and a selection that leaves poison out have the derivatives of
    the program alone, to second order, reverse and forward mode, simplified or not."""
    g, xs, y, args = program.graph(seed)
    if mode == "unknown":
        g, xs, y = with_unknown_dims(xs, y)
    masked, plain = _masked(form, y, POISONS[poison])
    costs = [sd.sum(out * out) + sd.sum(sd.sin(out)) for out in (masked, plain)]
    x = xs[0]
    bind = {v: a for v, a in zip(xs, args)}
    v = np.cos(np.arange(np.size(args[0])) + 0.5).reshape(np.shape(args[0]))
    with np.errstate(all="ignore"):
        want = sd.evaluate([sd.grad(costs[1], x), sd.hessian(costs[1], x), sd.hvp(costs[1], x, v)], bind)
    assume(all(np.all(np.isfinite(w)) for w in want))
    outs = [sd.grad(costs[0], x), sd.hessian(costs[0], x), sd.hvp(costs[0], x, v)]
    for where, got in (
        ("evaluate", sd.evaluate(outs, bind)),
        ("simplify", sd.evaluate(sd.simplify(outs), bind)),
    ):
        for a, b, what in zip(got, want, ("gradient", "Hessian", "Hessian-vector product")):
            assert np.all(np.isfinite(a)), f"{where}: {what} of {form}/{poison} is not finite"
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{where}: {what}")
