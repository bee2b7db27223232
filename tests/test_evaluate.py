"""The evaluator and compile: bindings, checks, errors, agreement."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import symdiff as sd


@pytest.fixture
def g():
    return sd.Graph()


def test_bindings_by_node_or_name_and_unused_ignored(g):
    x, y = g.variable("x"), g.variable("y")
    f = x * 2
    assert sd.evaluate(f, {x: 1.5}) == 3.0
    assert sd.evaluate(f, {"x": 1.5, "y": 9.0, "z": 1.0}) == 3.0
    assert sd.evaluate([f, f + 1], {"x": 1.0}) == [2.0, 3.0]
    del y


def test_only_needed_nodes_run(g):
    x, y = g.variable("x"), g.variable("y")
    boom = sd.log(y)
    assert sd.evaluate(x + 1, {x: 1.0}) == 2.0  # y is not needed, so not required
    del boom


def test_unbound_variables_are_all_named(g):
    x, y = g.variable("x", shape=(3,)), g.variable("yy")
    with pytest.raises(sd.UnboundVariableError, match=r"'x' \(shape \(3,\)\), 'yy'") as info:
        sd.evaluate(sd.sum(x) * y, {})
    assert info.value.missing == ("x", "yy")
    with pytest.raises(sd.UnboundVariableError, match="did you mean 'yy'"):
        sd.evaluate(y, {"y": 1.0})


def test_bound_values_are_checked(g):
    X = g.variable("X", shape=(None, 3))
    with pytest.raises(
        sd.ShapeError, match=r"variable 'X' has shape \(\?, 3\) but was bound to a value of shape \(2, 4\)"
    ):
        sd.evaluate(X, {X: np.ones((2, 4))})
    with pytest.raises(sd.DTypeError, match="complex"):
        sd.evaluate(X, {X: np.ones((2, 3), complex)})
    with pytest.raises(sd.DTypeError):
        sd.evaluate(X, {X: [["a", "b", "c"]]})
    i = g.variable("i", dtype="int64")
    with pytest.raises(sd.DTypeError, match="'i' has dtype int64"):
        sd.evaluate(i, {i: 1.5})
    assert sd.evaluate(X, {X: [[1, 2, 3]]}).dtype == np.float64  # ints cast to float variables


def test_none_dimensions_never_broadcast_silently(g):
    a, b = g.variable("a", shape=(None,)), g.variable("b", shape=(None,))
    s = sd.sum(a * b)
    assert sd.evaluate(s, {a: [1.0, 2.0], b: [3.0, 4.0]}) == 11.0
    with pytest.raises(sd.ShapeError, match="None dimension never broadcasts"):
        sd.evaluate(sd.grad(s, b), {a: [1.0, 2.0], b: [3.0]})


def test_ieee_results_without_exceptions(g):
    x = g.variable("x")
    with np.errstate(all="raise"):
        assert sd.evaluate(sd.log(x), {x: 0.0}) == -np.inf
        assert sd.evaluate(1 / x, {x: 0.0}) == np.inf
        assert np.isnan(sd.evaluate(sd.log(x), {x: -1.0}))
        assert np.isnan(sd.evaluate(x * 1.0 + np.nan, {x: 1.0}))


def test_errors_inside_ops_name_the_node(g):
    A = g.variable("A", shape=(2, 2))
    with pytest.raises(np.linalg.LinAlgError, match=r"while evaluating inv \(node #1\)"):
        sd.evaluate(sd.inv(A), {A: np.zeros((2, 2))})


def test_binding_an_intermediate_node_overrides_it(g):
    x = g.variable("x")
    h = sd.exp(x)
    assert sd.evaluate(h + 1, {h: 2.0}) == 3.0


def test_results_are_fresh_arrays(g):
    w = g.variable("w", shape=(3,))
    out = sd.evaluate(sd.broadcast_to(g.variable("s"), (3,)) + 0 * w, {"s": 1.0, w: np.zeros(3)})
    out[0] = 5.0  # writable


def test_compile_agrees_with_evaluate_and_takes_names(g):
    X, w = g.variable("X", shape=(None, 3)), g.variable("w", shape=(3,))
    loss = sd.sum(sd.tanh(X @ w) ** 2)
    gw = sd.grad(loss, w)
    f = sd.compile([loss, gw], inputs=[X, w])
    rng = np.random.default_rng(0)
    Xv, wv = rng.standard_normal((5, 3)), rng.standard_normal(3)
    a = f(Xv, wv)
    b = sd.evaluate([loss, gw], {X: Xv, w: wv})
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    c = f(w=wv, X=Xv)
    assert np.array_equal(c[1], b[1])
    single = sd.compile(loss, inputs=["X", "w"])
    assert single(Xv, wv) == b[0]
    with pytest.raises(sd.UnboundVariableError, match="'X'"):
        sd.compile(loss, inputs=[w])
    with pytest.raises(sd.UnboundVariableError):
        f(Xv)
    with pytest.raises(sd.ShapeError):
        f(Xv, np.ones(4))
    default = sd.compile(loss)
    assert [n.name for n in default.inputs] == ["X", "w"]


def test_compiled_function_is_thread_safe(g):
    x = g.variable("x", shape=(None,))
    f = sd.compile([sd.sum(sd.sin(x) ** 2), sd.grad(sd.sum(sd.sin(x) ** 2), x)], inputs=[x])
    inputs = [np.linspace(0, k, 50) for k in range(32)]
    expected = [(np.sum(np.sin(v) ** 2), 2 * np.sin(v) * np.cos(v)) for v in inputs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(f, inputs))
    for (value, grad), (ev, eg) in zip(results, expected):
        assert value == pytest.approx(ev) and np.allclose(grad, eg)


def test_where_against_zero_keeps_where_semantics_on_large_arrays(g):
    x = g.variable("x", shape=(None,))
    z = g.variable("z", shape=(None,))
    rng = np.random.default_rng(0)
    values = rng.standard_normal(10_000)
    values[[3, 70, 900]] = [np.inf, np.nan, -np.inf]
    mask_from = rng.standard_normal(10_000)
    out = sd.evaluate([sd.where(z > 0, x, 0.0), sd.where(z > 0, 0.0, x)], {x: values, z: mask_from})
    np.testing.assert_array_equal(out[0], np.where(mask_from > 0, values, 0.0))
    np.testing.assert_array_equal(out[1], np.where(mask_from > 0, 0.0, values))
    finite = rng.standard_normal(10_000)
    out = sd.evaluate(sd.where(z > 0, x, 0.0), {x: finite, z: mask_from})
    np.testing.assert_array_equal(out, np.where(mask_from > 0, finite, 0.0))
