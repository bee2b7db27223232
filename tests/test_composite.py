"""sd.composite: a function traced once into a body, called as one node (nodes that own bodies).

The contract (property): a program called through a composite computes what the same program
built inline computes (the oracle is the same computation unrolled): values, gradients,
Hessians, Hessian-vector products and forward-mode tangents, in every mode of
tests/programs.py. Examples: closed forms, central differences and sympy.diff.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

import symdiff as sd
from symdiff.graph import ancestors

from .programs import programs

seeds = st.integers(0, 2**32 - 1)


def _called(node: sd.Node) -> str:
    """The printed expression, without the bodies' definitions printed before it."""
    return str(node).splitlines()[-1]


def _tol(dtype):
    return (2e-4, 1e-4) if dtype == np.float32 else (1e-9, 1e-11)


def _close(a, b, dtype, what):
    rtol, atol = _tol(dtype)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    scale = max(1.0, float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=what)


@pytest.mark.parametrize("mode", ("float64", "float32", "unknown", "deep"))
@given(data=st.data())
def test_a_program_through_a_composite_equals_the_program_inline(mode, data):
    program, seed = data.draw(programs(mode=mode)), data.draw(seeds)
    g, xs, y, args = program.graph(seed)
    names = ", ".join(f"x{k}" for k in range(len(xs)))
    body = sd.composite(eval(f"lambda {names}: build({names})", {"build": program.build}), name="prog")
    yc = body(*xs)
    assert yc.op == "composite" and yc.dtype == y.dtype and len(yc.shape) == len(y.shape)
    # in "unknown" mode the inline program is rebuilt op for op from the static one, which can
    # know a size that the program built on None dimensions does not
    assert all(a == b or None in (a, b) for a, b in zip(yc.shape, y.shape))
    assert len(yc.regions) == 1 and _called(yc).startswith("prog(")

    def cost(v):
        return sd.sum(0.5 * v * v + 0.3 * v) if v.ndim else 0.5 * v * v + 0.3 * v

    bind = dict(zip(xs, args))
    c, cc = cost(y), cost(yc)
    x = xs[0]
    direction = np.random.default_rng(seed).standard_normal(args[0].shape).astype(program.dtype)
    inline = [y, *sd.grad(c, xs), sd.hessian(c, x), sd.hvp(c, x, direction), sd.jvp(c, xs, args)]
    through = [yc, *sd.grad(cc, xs), sd.hessian(cc, x), sd.hvp(cc, x, direction), sd.jvp(cc, xs, args)]
    with np.errstate(all="ignore"):
        want = sd.evaluate(inline, bind)
        got = sd.evaluate(through, bind)
        compiled = sd.compile(through, xs)(*args)
    for k, (a, b, cpl) in enumerate(zip(got, want, compiled)):
        if not np.all(np.isfinite(b)):
            continue  # the program overflows here; inline and composite may round the edge apart
        _close(a, b, program.dtype, f"output {k}")
        _close(cpl, b, program.dtype, f"compiled output {k}")


def test_softclip_prints_by_name_and_differentiates_to_third_order():
    g = sd.Graph()
    x = g.variable("x")
    softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    y = softclip(x, 2.0)
    assert _called(y) == "softclip(x, 2)"
    s = sympy.Symbol("x")
    expr = 2 * sympy.tanh(s / 2)
    d = y
    for order in range(1, 4):
        d = sd.grad(d, x)
        for x0 in (-1.3, 0.0, 0.4, 2.5):
            want = float(sympy.diff(expr, s, order).subs(s, x0))
            assert float(sd.evaluate(d, {x: x0})) == pytest.approx(want, rel=1e-12, abs=1e-14), (order, x0)


def test_the_body_is_traced_once_however_many_calls():
    calls = []

    def body(x):
        calls.append(x)
        return sd.sin(x) * x

    f = sd.composite(body)
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    y = x
    for _ in range(20):
        y = f(y)
    assert len(calls) == 1
    assert _called(y).startswith("body(body(")
    nodes = ancestors([y])
    assert sum(n.op == "composite" for n in nodes) == 20
    regions = {r for n in nodes for r in n.regions}
    assert len(regions) == 1
    # the derivative of 20 calls is 20 calls of one derivative body, not 20 copies of the body
    gy = sd.grad(sd.sum(y), x)
    derivative_regions = {r for n in ancestors([gy]) for r in n.regions} - regions
    assert len(derivative_regions) == 1
    x0 = np.array([0.1, -0.4, 0.7, 1.2])
    v, step = x0.copy(), 1e-6

    def chain(a):
        for _ in range(20):
            a = np.sin(a) * a
        return a.sum()

    fd = np.array([(chain(x0 + step * e) - chain(x0 - step * e)) / (2 * step) for e in np.eye(4)])
    np.testing.assert_allclose(sd.evaluate(gy, {x: v}), fd, rtol=1e-6, atol=1e-9)


def test_a_new_shape_traces_a_new_body():
    calls = []
    f = sd.composite(lambda x: calls.append(1) or x * 2.0, name="double")
    g = sd.Graph()
    a, b = g.variable("a", shape=(2,)), g.variable("b", shape=(3,))
    f(a), f(b), f(a * 3.0)
    assert len(calls) == 2
    h = sd.Graph()
    f(h.variable("a", shape=(2,)))
    assert len(calls) == 3  # one body per graph


def test_captured_nodes_are_inputs_and_receive_gradients():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    w = g.variable("w", shape=(3,))
    layer = sd.composite(lambda x: sd.tanh(w * x), name="layer")
    y = layer(x)
    assert y.inputs == (x, w)
    assert _called(y) == "layer(x, w)"
    cost = sd.sum(y**2)
    x0, w0 = np.array([0.5, -1.0, 2.0]), np.array([0.3, 0.2, -0.1])
    gx, gw = sd.evaluate(sd.grad(cost, [x, w]), {x: x0, w: w0})
    t = np.tanh(w0 * x0)
    np.testing.assert_allclose(gw, 2 * t * (1 - t**2) * x0, rtol=1e-13)
    np.testing.assert_allclose(gx, 2 * t * (1 - t**2) * w0, rtol=1e-13)


def test_a_composite_inside_a_composite_captures_through_both_bodies():
    g = sd.Graph()
    x = g.variable("x")
    s = g.variable("s")
    inner = sd.composite(lambda u: sd.exp(s * u), name="inner")
    outer = sd.composite(lambda u: inner(u) + inner(2.0 * u), name="outer")
    y = outer(x)
    assert _called(y) == "outer(x, s)"
    x0, s0 = 0.3, -0.7
    value = float(sd.evaluate(y, {x: x0, s: s0}))
    assert value == pytest.approx(np.exp(s0 * x0) + np.exp(2 * s0 * x0), rel=1e-14)
    gs = sd.grad(y, s)
    assert float(sd.evaluate(gs, {x: x0, s: s0})) == pytest.approx(
        x0 * np.exp(s0 * x0) + 2 * x0 * np.exp(2 * s0 * x0), rel=1e-13
    )
    h = sd.hessian(y, [x, s])
    hx = float(sd.evaluate(h[0][1], {x: x0, s: s0}))
    want = (1 + s0 * x0) * np.exp(s0 * x0) + (2 + 4 * s0 * x0) * np.exp(2 * s0 * x0)
    assert hx == pytest.approx(want, rel=1e-12)


def test_several_outputs():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    polar = sd.composite(lambda v: (sd.sqrt(sd.sum(v * v)), v / sd.sqrt(sd.sum(v * v))), name="polar")
    r, u = polar(x)
    assert r.op == u.op == "output" and r.inputs[0] is u.inputs[0] and r.inputs[0].op == "composite"
    x0 = np.array([3.0, 0.0, 4.0])
    got_r, got_u = sd.evaluate([r, u], {x: x0})
    assert got_r == pytest.approx(5.0) and np.allclose(got_u, x0 / 5)
    # d r = u; d (u . c) = (c - (u.c) u) / r
    c = np.array([1.0, 2.0, -1.0])
    gr, gu = sd.evaluate(sd.grad(r, x), {x: x0}), sd.evaluate(sd.grad(sd.sum(u * c), x), {x: x0})
    np.testing.assert_allclose(gr, x0 / 5, rtol=1e-15)
    np.testing.assert_allclose(gu, (c - (x0 / 5 @ c) * x0 / 5) / 5, rtol=1e-14, atol=1e-16)
    one = sd.composite(lambda v: (sd.sum(v),), name="one")(x)
    assert isinstance(one, tuple) and len(one) == 1 and one[0].shape == ()


def test_a_vjp_rule_replaces_the_body_in_reverse_mode():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    # a straight-through rounding: value round(x), gradient the identity
    st_round = sd.composite(lambda x: sd.round(x), name="st_round", vjp=lambda gr, out, x: (gr,))
    y = sd.sum(st_round(x) * np.array([1.0, 2.0, 3.0]))
    x0 = np.array([0.4, 1.6, -2.2])
    assert float(sd.evaluate(y, {x: x0})) == pytest.approx(0.0 + 4.0 - 6.0)
    np.testing.assert_array_equal(sd.evaluate(sd.grad(y, x), {x: x0}), [1.0, 2.0, 3.0])


def test_a_vjp_rule_cannot_silently_drop_a_captured_nodes_gradient():
    g = sd.Graph()
    x = g.variable("x")
    w = g.variable("w")
    f = sd.composite(lambda x: w * x, name="scaled", vjp=lambda gr, out, x: (gr * w,))
    y = f(x)
    assert float(sd.evaluate(sd.grad(y, x), {x: 2.0, w: 3.0})) == 3.0
    before = len(g)
    with pytest.raises(sd.NonDifferentiableError, match="captured variable 'w'"):
        sd.grad(y, w)
    assert len(g) == before


def test_bad_definitions_and_calls_are_refused_clearly():
    with pytest.raises(sd.GraphError, match="positional parameters only"):
        sd.composite(lambda *xs: xs[0], name="f")
    with pytest.raises(sd.GraphError, match="not an identifier"):
        sd.composite(lambda x: x, name="not a name")
    f = sd.composite(lambda x, y: x * y, name="f")
    g = sd.Graph()
    x = g.variable("x")
    with pytest.raises(TypeError, match=r"f\(\) takes 2 argument"):
        f(x)
    with pytest.raises(sd.GraphError, match="no input is a symdiff node"):
        f(1.0, 2.0)


def test_a_failing_body_leaves_the_graph_unchanged():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    before = len(g)
    bad = sd.composite(lambda v: v @ np.ones((4, 2)), name="bad")
    with pytest.raises(sd.ShapeError, match="matmul"):
        bad(x)
    assert len(g) == before
    f = sd.composite(lambda v: sd.sum(v) * 2.0, name="ok")  # the graph still builds and evaluates
    assert float(sd.evaluate(f(x), {x: [1.0, 2.0, 3.0]})) == 12.0


def test_a_bodys_node_used_outside_it_is_refused():
    leaked = []
    f = sd.composite(lambda v: leaked.append(v) or v * 2.0, name="f")
    g = sd.Graph()
    x = g.variable("x")
    f(x)
    before = len(g)
    with pytest.raises(sd.GraphError, match="can only be used while that body is traced"):
        x + leaked[0]
    assert len(g) == before


def test_a_decorator_with_and_without_arguments():
    @sd.composite
    def smooth(x):
        return sd.log(1.0 + sd.exp(x))

    @sd.composite(name="sq")
    def square_it(x):
        return x * x

    g = sd.Graph()
    x = g.variable("x")
    assert _called(smooth(x)) == "smooth(x)" and _called(square_it(x)) == "sq(x)"
    assert float(sd.evaluate(sd.grad(smooth(x), x), {x: 0.0})) == pytest.approx(0.5)


def test_a_vjp_rule_survives_simplify_and_refuses_forward_mode():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    clip = sd.composite(lambda v: sd.minimum(sd.maximum(v, -0.5), 0.5), name="clip", vjp=lambda gr, out, v: [gr])
    y = sd.sum(clip(x + x - x) * x)
    x0 = np.array([0.3, -0.7, 1.1])
    want = np.clip(x0, -0.5, 0.5) + x0  # the rule says d clip(v) = dv: clip(x) + x
    np.testing.assert_allclose(sd.evaluate(sd.grad(y, x), {x: x0}), want, rtol=1e-15)
    np.testing.assert_allclose(sd.evaluate(sd.grad(sd.simplify(y), x), {x: x0}), want, rtol=1e-15)
    cost = sd.sum(clip(x) ** 2)
    before = len(g)
    with pytest.raises(sd.NonDifferentiableError, match="serves reverse mode only"):
        sd.hvp(cost, x, np.ones(3))
    assert len(g) == before


@pytest.mark.parametrize(
    ("rule", "error", "match"),
    [
        (lambda gr, out, v: [sd.sum(v)], sd.ShapeError, r"returned shape \(\) for argument 0, which needs \(3,\)"),
        (lambda gr, out, v: [2.0], sd.GraphError, "returned float for argument 0"),
        (lambda gr, out, v: [gr, gr], sd.GraphError, "returned 2 cotangents for 1 arguments"),
    ],
)
def test_what_a_vjp_rule_returns_is_checked(rule, error, match):
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    f = sd.composite(lambda v: v * 2.0, name="f", vjp=rule)
    before = len(g)
    y = sd.sum(f(x))
    n = len(g)
    with pytest.raises(error, match=match):
        sd.grad(y, x)
    assert len(g) == n and n > before


def test_a_parameter_reached_only_without_a_derivative_is_as_inline():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    q = sd.composite(lambda v, s: v * sd.astype(sd.astype(s, np.int64), np.float64), name="q")
    y = sd.sum(q(x, 2 * x) ** 2)
    x0 = np.array([0.5, -1.0, 2.5])
    k = np.trunc(2 * x0)
    np.testing.assert_allclose(sd.evaluate(sd.grad(y, x), {x: x0}), 2 * x0 * k**2, rtol=1e-15)
    assert float(sd.evaluate(sd.jvp(y, x, np.ones(3)), {x: x0})) == pytest.approx(float(np.sum(2 * x0 * k**2)))
    only = sd.composite(lambda s: sd.astype(sd.astype(s, np.int64), np.float64), name="only")
    with pytest.raises(sd.NonDifferentiableError, match="no derivative"):
        sd.grad(sd.sum(only(x)), x)


def test_a_failed_trace_removes_the_outer_nodes_it_built():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    w = g.variable("w")
    before = len(g)

    def boom(v):
        sd.exp(w) * 3.0  # noqa: B018 (an outer node built, then the body fails)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        sd.composite(boom)(x)
    assert len(g) == before


def test_nested_composites_save_and_load(tmp_path):
    g = sd.Graph()
    x, s = g.variable("x"), g.variable("s")
    inner = sd.composite(lambda u: sd.exp(s * u), name="inner")
    outer = sd.composite(lambda u: inner(u) + inner(2.0 * u), name="outer")
    y = outer(x)
    g.save(tmp_path / "m.json", outputs={"y": y, "dy": sd.grad(y, s)})
    h = sd.load(tmp_path / "m.json")
    bind = {h["x"]: 0.3, h["s"]: -0.7}
    want = 0.3 * np.exp(-0.21) + 0.6 * np.exp(-0.42)
    assert float(sd.evaluate(h.outputs["dy"], bind)) == pytest.approx(want, rel=1e-14)
    assert float(sd.evaluate(sd.grad(h.outputs["y"], h["s"]), bind)) == pytest.approx(want, rel=1e-14)
