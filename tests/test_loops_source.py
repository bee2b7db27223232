"""Loops in printed code: ``sd.to_source`` writes a scan or while_loop as a Python loop over its
body's function, and the numpy backend (``sd.compile``) runs that loop.

Oracles: ``sd.evaluate`` (the interpreter, itself checked against numpy loops and closed forms in
test_loops.py; the numpy backend must give its bits exactly, the standalone module agree to
1e-12), closed forms (x squared k times is x**(2**k), a linear recurrence a matrix power) and
the sizes of the printed text.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd

RNG = np.random.default_rng(2026_11_30)


def module(outputs, inputs):
    """The standalone module's namespace (it imports no symdiff)."""
    namespace: dict = {}
    exec(sd.to_source(outputs, inputs), namespace)
    return namespace


def agree(outputs, inputs, values):
    """to_source's module agrees with sd.evaluate to 1e-12, the numpy backend to the bit."""
    expected = sd.evaluate(outputs, dict(zip(inputs, values)))
    compiled = sd.compile(outputs, inputs)(*values)
    printed = module(outputs, inputs)["f"](*values)
    for k, (want, fast, text) in enumerate(zip(expected, compiled, printed)):
        want, fast, text = np.asarray(want), np.asarray(fast), np.asarray(text)
        assert fast.dtype == want.dtype and fast.shape == want.shape, k
        assert fast.tobytes() == want.tobytes(), f"output {k}: the numpy backend differs from sd.evaluate"
        assert text.dtype == want.dtype and text.shape == want.shape, k
        np.testing.assert_allclose(text, want, rtol=1e-12, atol=1e-12, err_msg=f"output {k}")
    return expected


def squaring(k: int):
    g = sd.Graph()
    x = g.variable("x")
    c, ys = sd.scan(lambda c, _: (c * c, c), x, length=k)
    return x, c, ys


# -- scans: values and every derivative ------------------------------------------------------------
def test_squaring_to_third_order_and_its_closed_form():
    x, c, ys = squaring(3)  # x**8, and x, x**2, x**4
    d1 = sd.grad(c, x)
    d2 = sd.grad(d1, x)
    d3 = sd.grad(d2, x)
    t = sd.jvp(c, x, 1.0)
    got = agree([c, ys, d1, d2, d3, t], [x], [1.1])
    np.testing.assert_allclose(got[0], 1.1**8, rtol=1e-14)
    np.testing.assert_allclose(got[1], [1.1, 1.1**2, 1.1**4], rtol=1e-14)
    np.testing.assert_allclose(got[2:5], [8 * 1.1**7, 56 * 1.1**6, 336 * 1.1**5], rtol=1e-12)
    np.testing.assert_allclose(got[5], 8 * 1.1**7, rtol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_linear_recurrence_with_xs_captures_tuples_and_its_hessian(reverse):
    g = sd.Graph()
    A, c0, xs, w = g.variable("A", (3, 3)), g.variable("c0", (3,)), g.variable("xs", (6, 3)), g.variable("w")

    def body(c, x):
        p, q = c
        return (A @ p + w * x, q + sd.sum(p * p)), (sd.sum(p), p * x)

    (p, q), (s, m) = sd.scan(body, (c0, 0.0), xs, reverse=reverse)
    loss = sd.sum(p * p) + q + sd.sum(m)
    outputs = [p, q, s, m, *sd.grad(loss, [A, c0, xs, w]), sd.hessian(loss, c0), sd.jvp(loss, w, 1.0)]
    values = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(6, 3)), 0.7]
    got = agree(outputs, [A, c0, xs, w], values)
    if not reverse:  # the closed form: p = A^6 c0 + sum_t A^(5-t) w xs[t]
        Am, expected = values[0], np.linalg.matrix_power(values[0], 6) @ values[1]
        for t in range(6):
            expected = expected + np.linalg.matrix_power(Am, 5 - t) @ (values[3] * values[2][t])
        np.testing.assert_allclose(got[0], expected, rtol=1e-12)


def test_fori_loop_with_its_index_and_gradient():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.fori_loop(1, 4, lambda i, c: c * x + i, 0.0)  # (1*x + 2)*x + 3
    got = agree([y, sd.grad(y, x), sd.hessian(y, x)], [x], [2.0])
    np.testing.assert_allclose(got, [11.0, 6.0, 2.0], rtol=1e-14)


def test_checkpointed_scans_give_the_same_gradient():
    g = sd.Graph()
    x = g.variable("x", (2,))
    grads = []
    for policy in (None, sd.checkpoint.every(3)):
        c, _ = sd.scan(lambda c, _: (sd.sin(c) * 1.1 + 0.1, None), x, length=10, checkpoint=policy)
        grads.append(sd.grad(sd.sum(c), x))
    got = agree(grads, [x], [np.array([0.3, -0.4])])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-14)


def test_a_revolve_checkpointed_gradient():
    g = sd.Graph()
    x = g.variable("x", (2,))
    c, _ = sd.scan(
        lambda c, _: (sd.sin(c) * 1.1 + 0.1, None), x, length=12, checkpoint=sd.checkpoint.revolve(snapshots=3)
    )
    c_all, _ = sd.scan(lambda c, _: (sd.sin(c) * 1.1 + 0.1, None), x, length=12)
    got = agree([sd.grad(sd.sum(c), x), sd.grad(sd.sum(c_all), x)], [x], [np.array([0.3, -0.4])])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-14)


def loops_of(outputs):
    """Every loop node the outputs need, and every body they run, nested ones included."""
    nodes, bodies = set(), set()
    todo = [n for n in sd.graph.ancestors(outputs) if n.regions]
    while todo:
        node = todo.pop()
        nodes.add(node)
        for region in node.regions:
            if region not in bodies:
                bodies.add(region)
                todo += [n for n in sd.graph.ancestors(list(region.outputs)) if n.regions]
    return nodes, bodies


def test_each_body_is_compiled_once_however_many_loops_run_it(monkeypatch):
    import symdiff.backends.numpy as numpy_backend
    import symdiff.plan as plan

    made = {"numpy": [], "plan": []}
    for module, key in ((numpy_backend, "numpy"), (plan, "plan")):
        original = module._body_function
        monkeypatch.setattr(module, "_body_function", lambda r, *a, o=original, k=key: made[k].append(r) or o(r, *a))
    g = sd.Graph()
    x = g.variable("x", (2,))
    # revolve reverses its segments by loops over the same bodies: many loop nodes, few bodies
    c, _ = sd.scan(
        lambda c, _: (sd.sin(c) * 0.9 + 0.1, None), x, length=200, checkpoint=sd.checkpoint.revolve(snapshots=4)
    )
    loss = sd.sum(c)
    outputs = [sd.grad(loss, x), sd.hessian(loss, x)]
    loops, bodies = loops_of(outputs)
    f = sd.compile(outputs, [x])
    assert len(loops) > len(bodies)
    assert sorted(map(id, made["numpy"])) == sorted(map(id, bodies))  # each once
    assert sorted(map(id, made["plan"])) == sorted(map(id, bodies))
    value = np.array([0.3, -0.4])
    for got, want in zip(f(value), sd.evaluate(outputs, {x: value})):
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("loop", ["scan", "while_loop"])
def test_a_carry_whose_none_dimension_changes_raises_the_interpreters_shape_error(loop):
    g = sd.Graph()
    x = g.variable("x", (None,))
    if loop == "scan":
        c, _ = sd.scan(lambda c, _: (sd.concatenate([c[1:], c[1:]]), None), x, length=3)
    else:
        c = sd.while_loop(lambda c: sd.sum(c) < 100.0, lambda c: sd.concatenate([c, c]), x, max_steps=10)
    value = np.arange(1.0, 4.0)
    with pytest.raises(sd.ShapeError) as expected:
        sd.evaluate(c, {x: value})
    assert "carry item 0 of shape (3,) into shape (" in str(expected.value)
    f = sd.compile(c, [x])
    with pytest.raises(sd.ShapeError) as compiled:
        f._code(value)  # the generated code itself, not the interpreter it falls back to
    with pytest.raises(sd.ShapeError) as fallback:
        f(value)
    namespace = module(c, [x])
    with pytest.raises(namespace["ShapeError"]) as printed:
        namespace["f"](value)
    assert isinstance(printed.value, ValueError)
    for got in (compiled, fallback, printed):
        assert str(got.value) == str(expected.value)


def test_while_loop_its_gradient_hessian_and_jvp():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0, max_steps=50)  # x**5 at x = 3
    d1 = sd.grad(y, x)
    got = agree([y, d1, sd.grad(d1, x), sd.jvp(y, x, 1.0)], [x], [3.0])
    np.testing.assert_allclose(got, [243.0, 405.0, 540.0, 405.0], rtol=1e-14)


def test_a_while_loop_without_max_steps_runs_forward():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0)
    got = agree([y, sd.jvp(y, x, 1.0)], [x], [3.0])
    np.testing.assert_allclose(got, [243.0, 405.0], rtol=1e-14)


def test_nested_loops_and_their_gradient():
    g = sd.Graph()
    x, v = g.variable("x"), g.variable("v", (2,))

    def outer(c, _):
        inner = sd.fori_loop(0, 3, lambda i, d: d * x + sd.sin(v), c)  # a loop in the body
        return inner * 0.5, sd.sum(inner)

    c, ys = sd.scan(outer, v, length=4)
    loss = sd.sum(c) + sd.sum(ys)
    agree([c, ys, *sd.grad(loss, [x, v]), sd.hessian(loss, v)], [x, v], [0.9, np.array([0.2, -0.3])])
    source = sd.to_source(sd.grad(loss, x), [x, v])
    assert source.count("for ") >= 4  # forward and reverse, each over a loop inside


def test_a_carry_with_an_unknown_dimension_and_a_scan_of_no_steps():
    g = sd.Graph()
    v = g.variable("v", (None,))
    c, ys = sd.scan(lambda c, _: (c * 0.5 + 1.0, c * c), v, length=4)
    agree([c, ys, sd.grad(sd.sum(c) + sd.sum(ys), v)], [v], [np.array([1.0, 2.0, 3.0])])
    c0, ys0 = sd.scan(lambda c, _: (c * 0.5, c), v, length=0)
    got = agree([c0, ys0], [v], [np.array([1.0, 2.0])])
    assert got[1].shape == (0, 0)  # no step ran: the item's static shape, a None dimension 0


def test_an_ieee_edge_in_a_body_gives_the_interpreters_result():
    g = sd.Graph()
    x = g.variable("x")
    c, ys = sd.scan(lambda c, _: (c + sd.log(x), 1.0 / x), 0.0, length=3)
    got = agree([c, ys], [x], [0.0])  # log(0) raises in math: numpy's -inf, as evaluate gives
    assert got[0] == -np.inf and np.all(got[1] == np.inf)


# -- the printed loop -----------------------------------------------------------------------------
def test_the_module_prints_the_body_once_and_a_loop():
    x, c, _ = squaring(1000)
    source = sd.to_source([c, sd.grad(c, x)], [x])
    assert source.count("def _body0_scan(") == 1 and source.count("def _body1_scan_vjp(") == 1
    assert "for t1_t in range(1000):" in source and "range(999, -1, -1)" in source
    assert source.count("t1 = carry * carry") == 1  # the fast body (the careful one calls _scalar_mul)
    main = source[source.index("\ndef compiled(") : source.index("\ndef _compiled_careful(")]
    assert main.count("_body0_scan(") == 1  # one call, in the loop


def test_the_module_of_a_long_loop_is_the_module_of_a_short_one():
    def printed(steps):
        g = sd.Graph()
        x = g.variable("x", (3,))
        c, ys = sd.scan(lambda c, _: (sd.sin(c) * 0.9, sd.sum(c)), x, length=steps)
        k = sd.fori_loop(0, steps, lambda i, d: d * 0.5 + sd.sum(x), 1.0)
        loss = sd.sum(c) + sd.sum(ys) + k
        return sd.to_source([loss, sd.grad(loss, x), sd.hessian(loss, x)], [x])

    short, long = printed(10), printed(1000)
    assert re.sub(r"\d+", "N", short) == re.sub(r"\d+", "N", long)  # equal up to the numbers in it
    assert len(long) <= len(short) + 2 * long.count("1000") + 2 * long.count("999")


def test_the_compiled_source_is_a_loop_too():
    x, c, _ = squaring(1000)
    f = sd.compile([c, sd.grad(c, x)], [x])
    assert "for " in f.source and len(f.source) < 2000
    assert f(1.0) == [1.0, 2.0**1000] or np.isinf(f(1.0)[1])  # 2**1000 overflows nothing: 1.0**k


# -- errors ----------------------------------------------------------------------------------------
def test_a_while_loop_past_max_steps_raises_loop_error_everywhere():
    g = sd.Graph()
    x = g.variable("x")
    y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0, max_steps=3)
    with pytest.raises(sd.LoopError) as expected:
        sd.evaluate(y, {x: 3.0})
    with pytest.raises(sd.LoopError) as got:
        sd.compile(y, [x])(3.0)
    assert str(got.value) == str(expected.value)
    namespace = module([y, sd.grad(y, x)], [x])
    with pytest.raises(namespace["LoopError"]) as printed:
        namespace["f"](3.0)
    assert str(printed.value) == str(expected.value) and "max_steps=3" in str(expected.value)
    assert isinstance(printed.value, RuntimeError)
    np.testing.assert_allclose(namespace["f"](10.0), [100.0, 20.0], rtol=1e-14)  # two steps: x**2, 2x
