"""An element that stack, concatenate, pad, split or tril joins or keeps but the result does not
use contributes exactly 0 to every derivative.

The adjoint of a join picks its input's part out of a cotangent that a selection scattered into
zeros (stack(...)[1]: the part of stack's input 0 is a slice of zeros), and a selection's tangent
places a part into zeros; a zero there times an infinite local derivative (sqrt'(0) of the unused
element) would be nan. symdiff's mask rules (symdiff/rules.py, "masks") fold a selection of
places a scatter left zero to 0, and move a product with a selection of a scatter onto the
scattered elements. Oracles: hand-derived values, and the same program built without the join.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import symdiff as sd

from .programs import programs, with_unknown_dims
from .test_edge_masks import POISONS


# -- the examples, each with its right gradient and Hessian --------------------------------------
def _stack_unused(g):
    a, b = g.variable("a", shape=(2,)), g.variable("b", shape=(2,))
    y = sd.sum(sd.stack([sd.sqrt(a), b * b])[1]) + sd.sum(a * a)  # sqrt(a) is not used; a = 0 there
    return y, a, {"a": np.zeros(2), "b": np.array([1.0, 2.0])}, np.zeros(2), 2 * np.eye(2)


def _concat_unused(g):
    c, x = g.variable("c", shape=(3,)), g.variable("x", shape=(2,))
    y = sd.sum(sd.concatenate([sd.sqrt(c), x * x])[3:])
    return y, c, {"c": np.zeros(3), "x": np.ones(2)}, np.zeros(3), np.zeros((3, 3))


def _concat_partly_used(g):
    c = g.variable("c", shape=(3,))
    y = sd.sum(sd.concatenate([sd.sqrt(c), c * c])[2:])  # sqrt(c2) + sum(c²); sqrt(c0), sqrt(c1) unused
    # d/dc: [2 c0, 2 c1, 1/(2 sqrt c2) + 2 c2]; d²: diag(2, 2, -c2^-1.5/4 + 2)
    return y, c, {"c": np.array([0.0, 0.0, 4.0])}, [0.0, 0.0, 0.25 + 8.0], np.diag([2.0, 2.0, 2.0 - 1 / 32])


def _pad_unused(g):
    c = g.variable("c", shape=(3,))
    y = sd.sum(sd.pad(sd.sqrt(c), 1)[:2])  # the border and sqrt(c0)
    return y, c, {"c": np.array([4.0, 0.0, 0.0])}, [0.25, 0.0, 0.0], np.diag([-1 / 32, 0.0, 0.0])


def _split_unused(g):
    c = g.variable("c", shape=(4,))
    y = sd.sum(sd.split(sd.sqrt(c), 2)[1])
    return y, c, {"c": np.array([0.0, 0.0, 4.0, 1.0])}, [0.0, 0.0, 0.25, 0.5], np.diag([0, 0, -1 / 32, -0.25])


def _stack_columns(g):
    X = g.variable("X", shape=(2, 2))
    y = sd.sum(sd.stack([sd.sqrt(X[0]), X[1] ** 2], axis=1)[:, 1])  # sum(X[1]²); X[0] = 0
    hess = np.zeros((2, 2, 2, 2))
    hess[1, 0, 1, 0] = hess[1, 1, 1, 1] = 2.0
    return y, X, {"X": np.array([[0.0, 0.0], [1.0, 2.0]])}, [[0.0, 0.0], [2.0, 4.0]], hess


def _concat_columns(g):
    A, B = g.variable("A", shape=(2, 2)), g.variable("B", shape=(2, 1))
    M = sd.concatenate([sd.sqrt(A), B * A[:, :1]], axis=1)[:, 2:]  # B*A[:, 0]; sqrt(A) unused, A = 0 there
    y = sd.sum(M * M)  # sum(B² A[:, 0]²): d/dA[i, 0] = 2 B_i² A_i0, d² = 2 B_i²
    hess = np.zeros((2, 2, 2, 2))
    hess[0, 0, 0, 0], hess[1, 0, 1, 0] = 2 * 9.0, 2 * 4.0
    bind = {"A": np.array([[1.0, 0.0], [0.0, 0.0]]), "B": np.array([[3.0], [2.0]])}
    return y, A, bind, [[18.0, 0.0], [0.0, 0.0]], hess


def _tril_unused(g):
    A = g.variable("A", shape=(2, 2))
    y = sd.sum(sd.tril(sd.sqrt(A)))  # A[0, 1] = 0 is not kept
    return (
        y,
        A,
        {"A": np.array([[4.0, 0.0], [1.0, 1.0]])},
        [[0.25, 0.0], [0.5, 0.5]],
        np.diag([-1 / 32, 0.0, -0.25, -0.25]).reshape(2, 2, 2, 2),
    )


EXAMPLES = {
    "stack_unused": _stack_unused,
    "concatenate_unused": _concat_unused,
    "concatenate_partly_used": _concat_partly_used,
    "pad_unused": _pad_unused,
    "split_unused": _split_unused,
    "stack_columns": _stack_columns,
    "concatenate_columns": _concat_columns,
    "tril_unused": _tril_unused,
}


def _assert_right(values, right, where: str) -> None:
    for got, want, what in zip(values, right, ("gradient", "Hessian")):
        got = np.asarray(got, dtype=float)
        assert np.all(np.isfinite(got)), f"{where}: {what} is not finite: {got}"
        np.testing.assert_allclose(got, np.asarray(want, dtype=float), rtol=1e-12, atol=1e-15, err_msg=where)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_evaluate_compile_simplify(name):
    g = sd.Graph()
    y, x, bind, grad, hess = EXAMPLES[name](g)
    n = int(np.prod(x.shape))
    outputs = [sd.grad(y, x), sd.hessian(y, x)]
    right = [grad, hess]
    _assert_right(sd.evaluate(outputs, bind), right, "evaluate")
    _assert_right(sd.compile(outputs, list(bind))(*bind.values()), right, "compile")
    _assert_right(sd.compile(outputs, list(bind), simplify=True)(*bind.values()), right, "simplify=True")
    _assert_right(sd.evaluate(sd.simplify(outputs), bind), right, "sd.simplify")
    v = np.linspace(0.5, 1.5, n).reshape(x.shape)  # forward over reverse
    Hv = np.asarray(sd.evaluate(sd.hvp(y, x, v), bind), dtype=float).ravel()
    np.testing.assert_allclose(Hv, np.reshape(hess, (n, n)) @ v.ravel(), rtol=1e-12, atol=1e-15)


def test_a_selection_of_unwritten_places_is_zero():
    """stack(...)[1]'s adjoint for input 0 is a slice of zeros: a constant 0, not an array op."""
    g = sd.Graph()
    a, b = g.variable("a"), g.variable("b")
    assert str(sd.grad(sd.stack([sd.sqrt(a), b])[1], a)) == "0"
    c, x = g.variable("c", shape=(3,)), g.variable("x", shape=(2,))
    assert sd.grad(sd.sum(sd.concatenate([sd.sqrt(c), x])[3:]), c).uniform == 0


def test_forward_values_stay_as_built():
    """The rules rewrite derivative nodes only: a forward product with a join keeps numpy's value."""
    g = sd.Graph()
    x = g.variable("x", shape=(2,))
    y = sd.pad(x, 1)[:2] * sd.log(sd.concatenate([x, x])[:2])
    with np.errstate(all="ignore"):
        p = np.array([-1.0, 2.0])
        want = np.pad(p, 1)[:2] * np.log(p)
    np.testing.assert_array_equal(sd.evaluate(y, {x: p}), want)


# -- the contract, over random programs -----------------------------------------------------------
def _joined(form: str, y: sd.Node, poison) -> tuple[sd.Node, sd.Node]:
    """(the program's output next to a poisoned part that is joined but not used, the output alone)."""
    flat = sd.reshape(y, (-1,))
    good, bad = 1.0 + flat * flat, poison(flat)
    if form == "stack":
        return sd.sqrt(sd.stack([good, bad]))[0] * 1.0, sd.sqrt(good)
    if form == "stack_last":
        return sd.stack([bad, good], axis=1)[:, 1], good
    if form == "concatenate":  # rows of one element along axis 0: sizes known in every mode
        rows = sd.concatenate([sd.expand_dims(bad, 0), sd.expand_dims(good, 0)], axis=0)
        return sd.sin(rows)[1], sd.sin(good)
    if form == "pad":  # only the border is used
        return good + sd.pad(sd.expand_dims(bad, 0), ((1, 0), (0, 0)))[0], good
    return sd.split(sd.stack([good, bad]), 2)[0][0], good  # split


FORMS = ("stack", "stack_last", "concatenate", "pad", "split")


@pytest.mark.parametrize("mode", ["float64", "unknown"])
@given(
    program=programs(max_steps=3),
    poison=st.sampled_from(sorted(POISONS)),
    form=st.sampled_from(FORMS),
    seed=st.integers(0, 2**16),
)
def test_a_joined_unused_part_contributes_exactly_zero(mode, program, poison, form, seed):
    """A part that stack/concatenate/pad/split joins but the output does not use leaves the
    derivatives of the program alone, to second order, reverse and forward mode, simplified or not."""
    g, xs, y, args = program.graph(seed)
    if mode == "unknown":
        g, xs, y = with_unknown_dims(xs, y)
    masked, plain = _joined(form, y, POISONS[poison])
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


@pytest.mark.xfail(
    strict=True,
    reason="known gap: with a None size the scatter's zero places are not decided at build time, so a "
    "stacked part that is nan in the forward still reaches the Hessian (found by the property above "
    "with other examples drawn); the gradient is right",
)
def test_a_stacked_nan_part_with_an_unknown_size_leaves_the_hessian_finite():
    g = sd.Graph()
    x = g.variable("x", shape=(None,))
    good, bad = 1.0 + x * x, sd.sqrt(-1.0 - x * x)  # bad is nan everywhere
    cost = sd.sum(sd.sqrt(sd.stack([good, bad]))[0])  # = sum(sqrt(1 + x**2))
    at = {x: np.array([0.1, 0.2])}
    np.testing.assert_allclose(sd.evaluate(sd.grad(cost, x), at), at[x] / np.sqrt(1 + at[x] ** 2))
    want = np.diag((1 + at[x] ** 2) ** -1.5)  # d2/dx2 sqrt(1 + x**2) = (1 + x**2)**-1.5
    np.testing.assert_allclose(sd.evaluate(sd.hessian(cost, x), at), want)
