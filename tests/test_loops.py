"""sd.scan, sd.fori_loop, sd.while_loop, sd.unroll: semantics, and derivatives that are loops.

Oracles: the same loop written in numpy, closed forms (x squared k times is x**(2**k); a linear
recurrence is a matrix power), the loop unrolled (sd.unroll, itself checked against numpy) and
central finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symdiff as sd

from .test_multi_output import _fd

RNG = np.random.default_rng(2026_11_30)


def fd_grad(f, x, eps=1e-6):
    return _fd(f, np.asarray(x, dtype=float), eps)


# -- semantics ---------------------------------------------------------------------------------
def test_scan_is_the_python_loop_with_tuples_reverse_and_captures():
    g = sd.Graph()
    a, b, xs, w = g.variable("a", (2,)), g.variable("b"), g.variable("xs", (5, 2)), g.variable("w", (2,))

    def body(c, x):
        p, q = c
        return (p * q + w * x, q * 0.5), (sd.sum(p), p * x)

    for reverse in (False, True):
        (p, q), (s, m) = sd.scan(body, (a, b), xs, reverse=reverse)
        vals = {a: RNG.normal(size=2), b: 1.3, xs: RNG.normal(size=(5, 2)), w: RNG.normal(size=2)}
        got = sd.evaluate([p, q, s, m], vals)
        pp, qq = vals[a].copy(), vals[b]
        ss, mm = np.zeros(5), np.zeros((5, 2))
        for t in range(4, -1, -1) if reverse else range(5):
            x = vals[xs][t]
            ss[t], mm[t] = np.sum(pp), pp * x
            pp, qq = pp * qq + vals[w] * x, qq * 0.5
        np.testing.assert_allclose(got[0], pp, rtol=1e-14)
        np.testing.assert_allclose(got[1], qq, rtol=1e-14)
        np.testing.assert_allclose(got[2], ss, rtol=1e-14)
        np.testing.assert_allclose(got[3], mm, rtol=1e-14)


def test_scan_with_no_xs_no_ys_numbers_and_int_carries():
    g = sd.Graph()
    x = g.variable("x")
    (i, c), ys = sd.scan(lambda c, _: ((c[0] + 1, c[1] * x + c[0]), None), (0, 1.0), length=4)
    assert ys is None and i.dtype == np.int64 and c.dtype == np.float64
    got = sd.evaluate([i, c], {x: 2.0})
    cc = 1.0
    for k in range(4):
        cc = cc * 2.0 + k
    assert got == [4, cc]


def test_zero_steps_give_the_initial_carry_and_empty_ys():
    g = sd.Graph()
    x = g.variable("x", (3,))
    c, ys = sd.scan(lambda c, _: (c * 2.0, c), x, length=0)
    got = sd.evaluate([c, ys, sd.grad(sd.sum(c), x)], {x: [1.0, 2.0, 3.0]})
    np.testing.assert_array_equal(got[0], [1.0, 2.0, 3.0])
    assert got[1].shape == (0, 3)
    np.testing.assert_array_equal(got[2], np.ones(3))


def test_fori_loop_matches_python_and_node_bounds_run_forward():
    g = sd.Graph()
    x, n = g.variable("x"), g.variable("n", dtype=np.int64)
    y = sd.fori_loop(2, 6, lambda i, c: c * x + i, 1.0)
    val = 1.0
    for i in range(2, 6):
        val = val * 1.5 + i
    assert sd.evaluate(y, {x: 1.5}) == pytest.approx(val, rel=1e-15)
    z = sd.fori_loop(0, n, lambda i, c: c * x, 1.0)
    assert sd.evaluate(z, {x: 1.5, n: 3}) == pytest.approx(1.5**3)
    assert sd.evaluate(sd.jvp(z, x, 1.0), {x: 1.5, n: 3}) == pytest.approx(3 * 1.5**2)
    with pytest.raises(sd.NonDifferentiableError, match="max_steps"):
        sd.grad(z, x)


def test_while_loop_runs_until_the_condition_fails_and_refuses_more_than_max_steps():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0, max_steps=5)
    assert sd.evaluate(y, {x: 3.0}) == 243.0
    with pytest.raises(sd.LoopError, match="max_steps=5"):
        sd.evaluate(y, {x: 2.0})  # 2**7 = 128 needs 7 steps
    unbounded = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0)
    assert sd.evaluate(unbounded, {x: 2.0}) == 128.0


# -- closed forms, to third order ----------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 5])
def test_repeated_squaring_is_a_power_to_third_order(k):
    g = sd.Graph()
    x = g.variable("x")
    c, _ = sd.scan(lambda c, _: (c * c, None), x, length=k)
    d1 = sd.grad(c, x)
    d2 = sd.grad(d1, x)
    d3 = sd.grad(d2, x)
    p, v = 2**k, 1.07
    got = sd.evaluate([c, d1, d2, d3], {x: v})
    want = [v**p, p * v ** (p - 1), p * (p - 1) * v ** (p - 2), p * (p - 1) * (p - 2) * v ** (p - 3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # forward mode and forward-over-reverse agree
    assert sd.evaluate(sd.jvp(c, x, 1.0), {x: v}) == pytest.approx(want[1], rel=1e-12)
    assert sd.evaluate(sd.hessian(c, x), {x: v}) == pytest.approx(want[2], rel=1e-12)
    assert sd.evaluate(sd.jvp(d2, x, 1.0), {x: v}) == pytest.approx(want[3], rel=1e-12)


def test_a_linear_recurrence_is_a_matrix_power():
    g = sd.Graph()
    A, c0 = g.variable("A", (3, 3)), g.variable("c0", (3,))
    T = 6
    cT, _ = sd.scan(lambda c, _: (A @ c, None), c0, length=T)
    Av, cv = RNG.normal(size=(3, 3)) * 0.6, RNG.normal(size=3)
    P = np.linalg.matrix_power(Av, T)
    np.testing.assert_allclose(sd.evaluate(cT, {A: Av, c0: cv}), P @ cv, rtol=1e-12)
    np.testing.assert_allclose(sd.evaluate(sd.jacobian(cT, c0), {A: Av, c0: cv}), P, rtol=1e-12)
    # d sum(A^T c0) / dA = sum_k (A^k)^T 1 c0^T (A^(T-1-k))^T  (Matrix Cookbook, derivative of a power)
    ones = np.ones(3)
    want = sum(
        np.outer(np.linalg.matrix_power(Av, k).T @ ones, np.linalg.matrix_power(Av, T - 1 - k) @ cv) for k in range(T)
    )
    np.testing.assert_allclose(sd.evaluate(sd.grad(sd.sum(cT), A), {A: Av, c0: cv}), want, rtol=1e-11)


# -- derivatives against the unrolled loop and finite differences --------------------------------
def _rnn(g, T, reverse=False, name="rnn"):
    W, U, h0, xs = g.variable("W", (3, 3)), g.variable("U", (3, 2)), g.variable("h0", (3,)), g.variable("xs", (T, 2))

    def body(h, x):
        h2 = sd.tanh(W @ h + U @ x)
        return h2, sd.sum(h2 * h2)

    h, ys = sd.scan(body, h0, xs, reverse=reverse, name=name)
    loss = sd.sum(h) + sd.sum(ys * sd.arange(T, dtype=np.float64))
    vals = {
        W: RNG.normal(size=(3, 3)) * 0.5,
        U: RNG.normal(size=(3, 2)),
        h0: RNG.normal(size=3),
        xs: RNG.normal(size=(T, 2)),
    }
    return loss, [W, U, h0, xs], vals


@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_derivatives_equal_the_unrolled_loops(reverse):
    g = sd.Graph()
    loss, wrt, vals = _rnn(g, 5, reverse)
    W, U, h0, xs = wrt
    flat = sd.unroll(loss)
    assert not any(n.op == "scan" for n in sd.graph.ancestors([flat]))
    np.testing.assert_allclose(sd.evaluate(loss, vals), sd.evaluate(flat, vals), rtol=1e-13)
    for a, b in zip(sd.grad(loss, wrt), sd.grad(flat, wrt)):
        np.testing.assert_allclose(sd.evaluate(a, vals), sd.evaluate(b, vals), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        sd.evaluate(sd.hessian(loss, W), vals), sd.evaluate(sd.hessian(flat, W), vals), rtol=1e-11, atol=1e-13
    )
    v = RNG.normal(size=(3, 2))
    np.testing.assert_allclose(
        sd.evaluate(sd.hvp(loss, U, v), vals), sd.evaluate(sd.hvp(flat, U, v), vals), rtol=1e-11, atol=1e-13
    )
    np.testing.assert_allclose(
        sd.evaluate(sd.jacobian(sd.grad(loss, h0), xs), vals),
        sd.evaluate(sd.jacobian(sd.grad(flat, h0), xs), vals),
        rtol=1e-11,
        atol=1e-13,
    )


def test_gradient_matches_finite_differences():
    g = sd.Graph()
    loss, (W, U, h0, xs), vals = _rnn(g, 4)
    f = sd.compile(loss, [W, U, h0, xs])
    got = sd.evaluate(sd.grad(loss, W), vals)

    def of_w(w):
        return f(w, vals[U], vals[h0], vals[xs])

    np.testing.assert_allclose(got, fd_grad(of_w, vals[W]), rtol=1e-6, atol=1e-8)


def test_while_loop_derivatives_to_second_order():
    g = sd.Graph()
    x, w = g.variable("x", (2,)), g.variable("w", (2,))
    y = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25 * sd.sin(c), x, max_steps=30)
    loss = sd.sum(y * y)
    vals = {x: np.array([0.3, 0.5]), w: np.array([1.4, 1.2])}

    def f(xv, wv):
        steps = 0
        while np.sum(xv) < 4.0:
            xv = xv * wv + 0.25 * np.sin(xv)
            steps += 1
        return np.sum(xv * xv)

    np.testing.assert_allclose(sd.evaluate(loss, vals), f(vals[x], vals[w]), rtol=1e-14)
    gx, gw = sd.evaluate(sd.grad(loss, [x, w]), vals)
    np.testing.assert_allclose(gx, fd_grad(lambda v: f(v, vals[w]), vals[x]), rtol=1e-6)
    np.testing.assert_allclose(gw, fd_grad(lambda v: f(vals[x], v), vals[w]), rtol=1e-6)
    H = sd.evaluate(sd.hessian(loss, w), vals)
    Hfd = np.array([fd_grad(lambda v: fd_grad(lambda u: f(vals[x], u), v, 1e-4)[i], vals[w], 1e-4) for i in range(2)])
    np.testing.assert_allclose(H, Hfd, rtol=1e-4)
    # the reverse loop runs the steps taken, not max_steps: same value with a larger bound
    y2 = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25 * sd.sin(c), x, max_steps=300)
    np.testing.assert_allclose(sd.evaluate(sd.grad(sd.sum(y2 * y2), w), vals), gw, rtol=1e-14)


def nested_loops(g):
    """A scan whose body runs a scan whose body calls a composite: (x, w, loss)."""
    x, w = g.variable("x", (2,)), g.variable("w")
    wave = sd.composite(lambda c, w: sd.sin(c * w), name="wave")

    def outer(c, _):
        inner, ys = sd.scan(lambda d, _: (wave(d, w) + 0.5 * d, sd.sum(d)), c, length=3)
        return inner * 0.9, sd.sum(ys)

    c, ys = sd.scan(outer, x, length=4)
    return x, w, sd.sum(c) + sd.sum(ys * ys)


def test_nested_loops_and_composites_differentiate_to_second_order():
    g = sd.Graph()
    x, w, loss = nested_loops(g)
    flat = sd.unroll(loss)
    vals = {x: np.array([0.4, -0.7]), w: 1.3}
    for a, b in [(loss, flat), (sd.grad(loss, w), sd.grad(flat, w)), (sd.hessian(loss, x), sd.hessian(flat, x))]:
        np.testing.assert_allclose(sd.evaluate(a, vals), sd.evaluate(b, vals), rtol=1e-11, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(0, 6),
    reverse=st.booleans(),
    ops=st.lists(st.sampled_from(["sin", "mul", "tanh", "add_x", "square", "exp"]), min_size=1, max_size=4),
)
def test_property_loop_derivatives_equal_the_unrolled_computations(T, reverse, ops):
    """Contract: for any body, a scan's value, gradient and Hessian (forward over reverse) equal
    those of the same computation unrolled."""
    g = sd.Graph()
    c0, xs, w = g.variable("c0", (2,)), g.variable("xs", (T, 2)), g.variable("w", (2,))

    def body(c, x):
        for op in ops:
            c = {
                "sin": lambda c: sd.sin(c),
                "mul": lambda c: c * w,
                "tanh": lambda c: sd.tanh(c + w),
                "add_x": lambda c: c + x,
                "square": lambda c: 0.5 * c * c,
                "exp": lambda c: sd.exp(-c * c),
            }[op](c)
        return c, c * x

    c, ys = sd.scan(body, c0, xs, reverse=reverse)
    loss = sd.sum(c * c) + sd.sum(ys)
    flat = sd.unroll(loss)
    rng = np.random.default_rng(T + 7 * len(ops))
    vals = {c0: rng.normal(size=2) * 0.5, xs: rng.normal(size=(T, 2)) * 0.5, w: rng.normal(size=2) * 0.5}
    pairs = [(loss, flat)]
    pairs += list(zip(sd.grad(loss, [c0, xs, w]), sd.grad(flat, [c0, xs, w])))
    pairs.append((sd.hessian(loss, w), sd.hessian(flat, w)))
    for a, b in pairs:
        np.testing.assert_allclose(sd.evaluate(a, vals), sd.evaluate(b, vals), rtol=1e-10, atol=1e-12)


# -- the graph stays the size of the body ----------------------------------------------------
def test_build_size_does_not_grow_with_the_number_of_steps():
    sizes = []
    for T in (10, 1000):
        g = sd.Graph()
        loss, (W, U, h0, xs), _ = _rnn(g, T)
        sd.grad(loss, [W, U])
        sd.hessian(loss, W)
        sizes.append(sum(len(r.graph) for r in sd.graph.regions_in(g.nodes)) + len(g))
    assert sizes[0] == sizes[1]


def test_a_value_alone_stores_no_carries(monkeypatch):
    import symdiff.loops as loops

    made = []
    original = loops._buffer
    monkeypatch.setattr(loops, "_buffer", lambda result, shape: made.append(result) or original(result, shape))
    g = sd.Graph()
    x = g.variable("x", (4,))
    c, ys = sd.scan(lambda c, _: (sd.sin(c), None), x, length=50)
    sd.evaluate(c, {x: np.ones(4)})
    assert made == []  # no stored carries, no ys
    sd.evaluate(sd.grad(sd.sum(c), x), {x: np.ones(4)})
    assert [r[0] for r in made] == [(50, 4)]  # the carries the reverse loop reads, once


# -- errors ----------------------------------------------------------------------------------
def test_a_carry_that_changes_shape_or_dtype_is_refused_by_item_and_the_graph_is_unchanged():
    g = sd.Graph()
    x, v = g.variable("x"), g.variable("v", (3,))
    before = len(g)
    with pytest.raises(sd.ShapeError, match="carry item 1 has shape \\(3,\\)"):
        sd.scan(lambda c, _: ((c[0], c[1] * v), None), (x, x), length=2)
    with pytest.raises(sd.ShapeError, match="dtype"):
        sd.scan(lambda c, _: (c * 0.5, None), 1, length=2)
    with pytest.raises(sd.ShapeError, match="different lengths"):
        sd.scan(lambda c, x: (c, None), x, (g.variable("a", (3,)), g.variable("b", (4,))))
    with pytest.raises(sd.GraphError, match="length="):
        sd.scan(lambda c, _: (c, None), x)
    with pytest.raises(sd.GraphError, match=r"\(new_carry, y\)"):
        sd.scan(lambda c, _: c, x, length=2)
    with pytest.raises(ZeroDivisionError):
        sd.scan(lambda c, _: (c * (1 / 0), None), x, length=2)
    assert len(g) == before + 2  # the variables a and b, nothing else


def test_while_loop_refusals():
    g = sd.Graph()
    x = g.variable("x")
    with pytest.raises(sd.ShapeError, match="boolean scalar"):
        sd.while_loop(lambda c: c, lambda c: c * 2.0, x)
    with pytest.raises(sd.ShapeError, match="dtype"):
        sd.while_loop(lambda c: c < 3, lambda c: c * 0.5, 1)
    y = sd.while_loop(lambda c: c < 10.0, lambda c: c * x, 1.0)
    with pytest.raises(sd.NonDifferentiableError, match="max_steps"):
        sd.grad(y, x)


def test_a_loop_started_from_numbers_is_built_in_the_graph_its_body_reads():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.fori_loop(0, 3, lambda i, c: c * x + 1.0, 0.0)
    assert y.graph is g
    with pytest.raises(sd.GraphError, match="no graph"):
        sd.fori_loop(0, 3, lambda i, c: c * 2.0, 1.0)


# -- review findings: each kind with its regression ---------------------------------------------
def test_a_failed_call_leaves_the_graph_unchanged_even_for_nodes_built_from_outer_nodes_alone():
    g = sd.Graph()
    x, a = g.variable("x", (3,)), g.variable("a", (2,))
    before = len(g)
    with pytest.raises(sd.ShapeError):  # sd.exp(a) is built in g, then the body fails
        sd.scan(lambda c, _: (sd.sum(sd.exp(a) * c), None), x, length=3)
    with pytest.raises(sd.ShapeError):
        sd.while_loop(lambda c: sd.sum(c) < sd.sum(a) * 2.0, lambda c: c[:2], x)
    assert len(g) == before
    # a loop started from numbers adopts the graph its body reads: rolled back the same way
    with pytest.raises(sd.ShapeError):
        sd.fori_loop(0, 3, lambda i, c: c * sd.exp(a), 1.0)
    assert len(g) == before


def test_a_carry_whose_none_dimension_changes_is_refused_at_evaluation():
    g = sd.Graph()
    x = g.variable("x", (None,))
    c, _ = sd.scan(lambda c, _: (sd.concatenate([c[1:], c[1:]]), None), x, length=3)
    with pytest.raises(sd.ShapeError, match=r"carry item 0 of shape \(3,\) into shape \(4,\)"):
        sd.evaluate(c, {x: np.arange(3.0)})
    w = sd.while_loop(lambda c: sd.sum(c) < 100.0, lambda c: sd.concatenate([c, c]), x)
    with pytest.raises(sd.ShapeError, match="keeps its shape"):
        sd.evaluate(w, {x: np.ones(2)})


def test_a_static_fori_loop_holds_nothing_the_size_of_its_trip_count():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.fori_loop(0, 100_000, lambda i, c: c * 0.5 + x, 0.0)
    sizes = [n.value.size for r in sd.graph.regions_in([y]) for n in r.graph.nodes if n.op == "constant"]
    sizes += [n.value.size for n in g.nodes if n.op == "constant"]
    assert max(sizes) == 1
    assert sd.evaluate(y, {x: 1.0}) == pytest.approx(2.0)


def test_names_and_policies_are_checked():
    g = sd.Graph()
    x = g.variable("x")
    with pytest.raises(sd.GraphError, match="identifier"):
        sd.scan(lambda c, _: (c, None), x, length=2, name="my loop")
    with pytest.raises(sd.GraphError, match="sd.checkpoint.every"):
        sd.Checkpoint("foo", 2)
    with pytest.raises(sd.GraphError, match="positive"):
        sd.checkpoint.every(0)


def test_a_jacobian_through_a_loop_reverse_mode_refuses_is_built_in_forward_mode():
    """An unbounded while_loop has no reverse mode; a square Jacobian (which picks reverse mode)
    goes forward instead, and the graph keeps nothing of the refused attempt."""
    g = sd.Graph()
    x = g.variable("x", (2,))
    y = sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * 1.5 + sd.sin(c[::-1]), x)
    J = sd.jacobian(y, x)

    def f(v):
        while np.sum(v) < 4.0:
            v = v * 1.5 + np.sin(v[::-1])
        return v

    v0 = np.array([0.3, 0.5])
    want = np.stack([fd_grad(lambda u, i=i: f(u)[i], v0) for i in range(2)])
    np.testing.assert_allclose(sd.evaluate(J, {x: v0}), want, rtol=1e-6)
    with pytest.raises(sd.NonDifferentiableError, match="max_steps"):
        sd.grad(sd.sum(y), x)
