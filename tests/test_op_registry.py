"""Every op in the registry, first and second order, against finite differences of numpy.

The oracle never runs symdiff code: it differentiates the case's plain numpy
reference numerically. Each derivative graph is evaluated at two points, so a
rule that baked a number into the graph instead of building nodes would fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops import REGISTRY

from . import oracles
from .op_cases import CASES, ZERO_DERIVATIVE, Case, build_case


def _build(case: Case):
    return build_case(case)


def _points(case: Case):
    """The case's inputs, and a nearby second point (small enough not to cross a kink)."""
    rng = np.random.default_rng(7)
    second = []
    for a in case.inputs:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a + 0.01 * rng.standard_normal(a.shape)
            if case.op == "cholesky":
                a = (a + a.T) / 2
        second.append(a)
    return [list(case.inputs), second]


def _bind(xs, point):
    return dict(zip(xs, point))


def _close(actual, expected, rtol, what):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_forward_matches_numpy(case):
    g, xs, y = _build(case)
    for point in _points(case):
        _close(sd.evaluate(y, _bind(xs, point)), case.reference(*point), 1e-12, "forward value")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jacobian_matches_finite_differences(case):
    g, xs, y = _build(case)
    wrt = case.differentiable_inputs()
    J = sd.jacobian(y, [xs[k] for k in wrt])
    for point in _points(case):
        values = sd.evaluate(J, _bind(xs, point))
        for k, value in zip(wrt, values):
            expected = oracles.jacobian(case.reference, point, k)
            _close(value, expected, case.rtol, f"d out / d x{k}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_vjp_and_jvp_match_finite_differences(case):
    """Reverse mode (grad with a random cotangent) and forward mode (jvp with a random tangent)."""
    g, xs, y = _build(case)
    rng = np.random.default_rng(1)
    wrt = case.differentiable_inputs()
    point = case.inputs
    out_shape = np.shape(case.reference(*point))
    v = rng.standard_normal(out_shape)
    vjps = sd.grad(y, [xs[k] for k in wrt], grad_output=v)
    tangents = [rng.standard_normal(np.shape(point[k])) for k in wrt]
    tangent_out = sd.jvp(y, [xs[k] for k in wrt], tangents)
    values = sd.evaluate([*vjps, tangent_out], _bind(xs, point))
    expected_tangent = np.zeros(out_shape)
    for k, vjp_value, t in zip(wrt, values, tangents):
        J = oracles.jacobian(case.reference, point, k)
        axes = tuple(range(len(out_shape)))
        _close(vjp_value, np.tensordot(v, J, axes=(axes, axes)), case.rtol, f"vjp for x{k}")
        expected_tangent = expected_tangent + np.tensordot(J, t, axes=t.ndim)
    _close(values[-1], expected_tangent, case.rtol, "jvp")


@pytest.mark.parametrize("case", [c for c in CASES if c.max_order >= 2], ids=lambda c: c.name)
def test_second_derivatives_match_finite_differences(case):
    """hessian (batched reverse over reverse), hvp (forward over reverse) and grad of grad."""
    g, xs, y = _build(case)
    rng = np.random.default_rng(2)
    wrt = case.differentiable_inputs()
    out_shape = np.shape(case.reference(*case.inputs))
    v = rng.standard_normal(out_shape)
    s = sd.sum(y * v) if out_shape else y * v.item()

    def s_ref(*args):
        full = list(case.inputs)
        for k, a in zip(wrt, args):
            full[k] = a
        return np.sum(case.reference(*full) * v)

    first_order = sd.grad(s, [xs[k] for k in wrt])
    directions = [rng.standard_normal(np.shape(case.inputs[k])) for k in wrt]
    # grad of grad: d/dx <grad s, u>
    inner = None
    for gk, u in zip(first_order, directions):
        term = sd.sum(gk * u)
        inner = term if inner is None else inner + term
    second = sd.grad(inner, [xs[k] for k in wrt])
    # A vectorised Hessian needs a static size; with unknown sizes grad of grad and hvp still run.
    static = all(None not in xs[k].shape for k in wrt)
    H_blocks = (
        [[sd.jacobian(first_order[i], xs[wrt[j]]) for j in range(len(wrt))] for i in range(len(wrt))]
        if static
        else None
    )
    hvps = [sd.hvp(s, xs[k], u) for k, u in zip(wrt, directions)]
    for point in _points(case):
        H = oracles.hessian(s_ref, [point[k] for k in wrt])
        sizes = [np.size(point[k]) for k in wrt]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        u_flat = np.concatenate([d.ravel() for d in directions])
        values = sd.evaluate(second, _bind(xs, point))
        Hu = H @ u_flat
        for i, k in enumerate(wrt):
            block = slice(offsets[i], offsets[i + 1])
            _close(np.ravel(values[i]), Hu[block], case.rtol * 10, f"grad of grad for x{k}")
            for j in range(len(wrt) if static else 0):
                Hij = sd.evaluate(H_blocks[i][j], _bind(xs, point))
                _close(
                    np.reshape(Hij, (sizes[i], sizes[j])),
                    H[block, offsets[j] : offsets[j + 1]],
                    case.rtol * 10,
                    f"hessian block x{k}, x{wrt[j]}",
                )
            # hvp along the direction of one input only: H restricted to that block
            hv = sd.evaluate(hvps[i], _bind(xs, point))
            _close(np.ravel(hv), H[block, block] @ directions[i].ravel(), case.rtol * 10, f"hvp for x{k}")


def test_every_registered_op_has_a_case():
    covered = set()
    for case in CASES:
        _, _, y = _build(case)
        stack, seen = [y], set()
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                covered.add(n.op)
                stack.extend(n.inputs)
    missing = sorted(set(REGISTRY) - covered - ZERO_DERIVATIVE)
    assert not missing, f"ops with no test case in tests/op_cases.py: {missing}"


@pytest.mark.parametrize("op", sorted(ZERO_DERIVATIVE))
def test_zero_derivative_ops_pass_no_gradient(op):
    g = sd.Graph()
    x = g.variable("x", shape=(None,))
    build = {
        "sign": sd.sign,
        "stop_gradient": sd.stop_gradient,
        "zeros_like": sd.zeros_like,
        "ones_like": sd.ones_like,
        "eye_like": sd.eye_like,
        "count": sd.count,
    }[op]
    y = build(x)
    y = sd.sum(y) if y.shape else y
    assert op in (y.op, y.inputs[0].op)
    gx = sd.grad(y, x)
    np.testing.assert_array_equal(sd.evaluate(gx, {x: [0.5, -2.0, 0.0]}), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rules_build_graph_nodes(case):
    """Every derivative rule returns nodes of the same graph (never numbers)."""
    g, xs, y = _build(case)
    out_shape = tuple(1 if d is None else d for d in y.shape)
    for k in case.differentiable_inputs():
        gk = sd.grad(y, xs[k], grad_output=np.ones(out_shape) if out_shape else None)
        assert isinstance(gk, sd.Node) and gk.graph is g
        tk = sd.jvp(y, xs[k], np.ones(np.shape(case.inputs[k])))
        assert isinstance(tk, sd.Node) and tk.graph is g


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_simplify_never_changes_a_value(case):
    g, xs, y = _build(case)
    wrt = case.differentiable_inputs()
    rng = np.random.default_rng(3)
    v = rng.standard_normal(np.shape(case.reference(*case.inputs)))
    s = sd.sum(y * v) if np.ndim(v) else y * float(v)
    first = sd.grad(s, [xs[k] for k in wrt])
    second = sd.grad(sd.sum(first[0] * rng.standard_normal(np.shape(case.inputs[wrt[0]]))), xs[wrt[0]])
    outputs = [y, *first, second]
    simpler = sd.simplify(outputs)
    before = sd.evaluate(outputs, _bind(xs, case.inputs))
    after = sd.evaluate(simpler, _bind(xs, case.inputs))
    for original, new, a, b in zip(outputs, simpler, before, after):
        assert new.shape == original.shape and new.dtype == original.dtype
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_compile_agrees_with_evaluate_to_the_last_bit(case):
    g, xs, y = _build(case)
    wrt = case.differentiable_inputs()
    out_shape = tuple(1 if d is None else d for d in y.shape)
    grads = sd.grad(y, [xs[k] for k in wrt], grad_output=np.ones(out_shape) if out_shape else None)
    outputs = [y, *grads]
    f = sd.compile(outputs, inputs=xs)
    for point in _points(case):
        compiled = f(*point)
        interpreted = sd.evaluate(outputs, _bind(xs, point))
        for a, b in zip(compiled, interpreted):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(a, b)  # bit for bit (nan == nan here)


def test_compile_agrees_with_evaluate_at_ieee_edges():
    g = sd.Graph()
    x = g.variable("x")
    outputs = [sd.log(x), 1 / x, sd.sqrt(x), sd.exp(x), x**-1.5, sd.sigmoid(x), sd.softplus(x), sd.log1p(x)]
    outputs += sd.grad(sd.log(x) + sd.sqrt(x) + sd.exp(x), [x])
    f = sd.compile(outputs, inputs=[x])
    for value in [0.0, -0.0, -1.0, 1e-320, 1000.0, -1000.0, np.inf, -np.inf, np.nan, 2.5]:
        with np.errstate(all="raise"):
            compiled = f(value)
            interpreted = sd.evaluate(outputs, {x: value})
        for a, b in zip(compiled, interpreted):
            np.testing.assert_array_equal(a, b, err_msg=f"x = {value}")
