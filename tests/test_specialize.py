"""symdiff.specialize: a graph rebuilt for concrete input shapes from primitives only (what the C
backend prints). Every op case, its gradient and a second derivative, specialized at the case's
input shapes, computes what the original graph computes; composite calls are inlined, loops keep
their node with bodies of concrete shapes, and the user's graph gains no node."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.graph import ancestors, regions_in
from symdiff.lower import primitive_ops
from symdiff.specialize import specialized

from .op_cases import CASES
from .test_backends import _build

PRIMITIVES = set(primitive_ops()) - {"composite"}  # composite calls are inlined
LEAVES = {"variable", "constant"}


def _check_primitive(outputs):
    """Every node the outputs reach, in the graph and in every body it runs, is a primitive (not
    a composite call) or a leaf, of a concrete shape; and so is every node of those graphs."""
    reached = ancestors(outputs)
    graphs = {outputs[0].graph} | {r.graph for r in regions_in(reached)}
    for graph in graphs:
        for n in graph.nodes:
            assert n.op in PRIMITIVES | LEAVES, (n.op, n.index, graph.name)
            shapes = [s for s, _ in n.results] if n.is_multi else [n.shape]
            for shape in shapes:
                assert all(isinstance(d, int) for d in shape), (n.op, shape)


def _specialize_and_compare(outputs, xs, values, tol=1e-12):
    g = outputs[0].graph
    before = len(g)
    expected = sd.evaluate(outputs, dict(zip(xs, values)))
    new_outs, new_xs = specialized(outputs, xs, [np.shape(v) for v in values])
    assert len(g) == before  # the user's graph gains no node
    assert all(n.graph is not g for n in new_outs)
    assert [x.name for x in new_xs] == [x.name for x in xs]
    assert [x.dtype for x in new_xs] == [x.dtype for x in xs]
    assert [x.shape for x in new_xs] == [np.shape(v) for v in values]
    _check_primitive(new_outs)
    got = sd.evaluate(new_outs, dict(zip(new_xs, values)))
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"output {k}")
    return new_outs, new_xs


# one case in four by the README's test command, every case in CI's slow set
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=[pytest.mark.slow] if i % 4 else []) for i, c in enumerate(CASES)],
    ids=[c.name for c in CASES],
)
def test_every_op_case_and_its_derivatives(case):
    xs, outputs = _build(case)
    _specialize_and_compare(outputs, xs, case.inputs)


def _least_squares():
    """Variables X (?, 3), b (?,), w (3,) and the residual X@w - b."""
    g = sd.Graph()
    X, b, w = g.variable("X", (None, 3)), g.variable("b", (None,)), g.variable("w", (3,))
    return X, b, w, X @ w - b


def test_none_dimensions_at_two_sizes():
    X, b, w, r = _least_squares()
    loss = sd.mean(r**2) + sd.logsumexp(r)
    outputs = [loss, sd.grad(loss, w), sd.hessian(loss, w)]
    rng = np.random.default_rng(0)
    for n in (4, 7):
        Xv, bv, wv = rng.standard_normal((n, 3)), rng.standard_normal(n), rng.standard_normal(3)
        new_outs, new_xs = _specialize_and_compare(outputs, [X, b, w], [Xv, bv, wv])
        assert new_xs[0].shape == (n, 3) and new_outs[2].shape == (3, 3)
        # the closed form, by hand: mean(r^2) + logsumexp(r)
        rv = Xv @ wv - bv
        s = np.exp(rv - rv.max()) / np.exp(rv - rv.max()).sum()
        np.testing.assert_allclose(
            sd.evaluate(new_outs[0], dict(zip(new_xs, [Xv, bv, wv]))),
            np.mean(rv**2) + np.log(np.exp(rv).sum()),
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            sd.evaluate(new_outs[1], dict(zip(new_xs, [Xv, bv, wv]))), Xv.T @ (2 * rv / n + s), rtol=1e-12
        )


def test_composites_are_inlined():
    g = sd.Graph()
    x = g.variable("x", (None,))
    c = g.variable("c")
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    twice = sd.composite(lambda x: softclip(x, 2.0) + softclip(2 * x, c), name="twice")  # captures c
    y = sd.sum(twice(x) * softclip(x, c))
    outputs = [y, sd.grad(y, x), sd.grad(y, c)]
    xv, cv = np.array([0.3, -1.2, 2.0, 0.7]), 1.5
    new_outs, _ = _specialize_and_compare(outputs, [x, c], [xv, cv])
    assert all(n.op != "composite" for n in new_outs[0].graph.nodes)

    def by_hand(x, c):
        return np.sum((2 * np.tanh(x / 2) + c * np.tanh(2 * x / c)) * c * np.tanh(x / c))

    assert np.isclose(sd.evaluate(new_outs[0], {"x": xv, "c": cv}), by_hand(xv, cv), rtol=1e-12)


def test_a_composite_with_several_outputs():
    g = sd.Graph()
    x = g.variable("x", (3,))
    both = sd.composite(lambda x: (sd.sin(x), sd.cumsum(x)), name="both")
    s, c = both(x)
    y = sd.sum(s * c)
    _specialize_and_compare([y, sd.grad(y, x)], [x], [np.array([0.1, 0.5, -0.4])])


def test_loops_keep_their_node_with_concrete_bodies():
    g = sd.Graph()
    h0 = g.variable("h0", (None,))
    xs = g.variable("xs", (5, None))
    w = g.variable("w")
    step = sd.composite(lambda h, x: sd.tanh(w * h + x), name="step")
    h, ys = sd.scan(lambda h, x: (step(h, x), sd.mean(h)), h0, xs)
    k, _ = sd.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * 0.5 + sd.sin(c[1])), (0, h))
    y = sd.sum(ys) + sd.sum(k)
    outputs = [y, sd.grad(y, w), sd.grad(y, h0)]
    values = [np.array([0.1, -0.3]), np.linspace(-1, 1, 10).reshape(5, 2), 0.7]
    new_outs, _ = _specialize_and_compare(outputs, [h0, xs, w], values)
    loops = [n for n in ancestors(new_outs) if n.op in ("scan", "while_loop")]
    assert loops and all(r.graph.parent is n.graph for n in loops for r in n.regions)


def test_a_large_gradient_graph():
    g = sd.Graph()
    w = g.variable("w")
    h = w
    for _ in range(300):
        h = h * sd.sin(h) + w
    outputs = [h, sd.grad(h, w), sd.grad(sd.grad(h, w), w)]
    assert len(g) > 3000
    new_outs, new_xs = specialized(outputs, [w], [()])
    got = sd.evaluate(new_outs, {new_xs[0]: 0.3})
    np.testing.assert_allclose(got, sd.evaluate(outputs, {w: 0.3}), rtol=1e-12)


def test_bad_shapes():
    X, b, w, r = _least_squares()
    with pytest.raises(sd.GraphError, match="2 shape"):
        specialized([r], [X, b, w], [(4, 3), (4,)])
    with pytest.raises(sd.ShapeError, match=r"variable 'X' has shape \(\?, 3\)"):
        specialized([r], [X, b, w], [(4, 2), (4,), (3,)])
    with pytest.raises(sd.ShapeError, match="variable 'b'"):
        specialized([r], [X, b, w], [(4, 3), (None,), (3,)])
    with pytest.raises(sd.ShapeError, match="sub"):  # values that do not fit each other
        specialized([r], [X, b, w], [(4, 3), (5,), (3,)])
    with pytest.raises(sd.GraphError, match="variable 'b', which is not among its inputs"):
        specialized([r], [X, w], [(4, 3), (3,)])
    with pytest.raises(sd.GraphError, match="not a variable"):
        specialized([r], [X, r, w], [(4, 3), (4,), (3,)])


def test_shapes_known_from_values_only():
    g = sd.Graph()
    X = g.variable("X", (None, 2))
    n = g.variable("n", dtype="int64")
    rows = sd.arange(sd.count(X, axis=0))  # its length is X's: a constant once X's shape is
    (out,), (X2,) = specialized([sd.sum(X[rows, 1])], [X], [(3, 2)])
    reached = ancestors([out])
    assert "arange" not in {u.op for u in reached} and all(None not in u.shape for u in reached)
    assert sd.evaluate(out, {X2: np.arange(6.0).reshape(3, 2)}) == 1.0 + 3.0 + 5.0
    with pytest.raises(sd.BackendError, match=r"arange.*shape \(\?,\), which depends on the values"):
        specialized([sd.arange(n)], [n], [()])
