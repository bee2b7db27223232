"""Property-based tests over random graphs (hypothesis).

Profiles (tests/conftest.py): "ci", the default, bounded for CI, and "long":
``python -m pytest tests/test_properties.py --hypothesis-profile=long``. A failure
shrinks to a minimal program, whose graph is printed.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import pytest
import sympy
from hypothesis import given, note
from hypothesis import strategies as st

import symdiff as sd

from .programs import Program, programs

seeds = st.integers(0, 2**32 - 1)


def _show(program: Program, seed: int) -> tuple:
    g, xs, y, args = program.graph(seed)
    note(f"program: {program}\ngraph:\n{y}\nshapes: {[x.shape for x in xs]} -> {y.shape}")
    return g, xs, y, args


@given(programs(), seeds)
def test_derivatives_to_third_order_match_finite_differences(program, seed):
    _show(program, seed)
    sd.check_grads(program.build, program.inputs(seed), order=3, rtol=2e-5, atol=1e-6, seed=seed % 1000)


@given(programs(), seeds)
def test_reverse_and_forward_mode_agree(program, seed):
    g, xs, y, args = _show(program, seed)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(y.shape)
    u = [rng.standard_normal(a.shape) for a in args]
    grads = sd.grad(y, xs, grad_output=v)
    tangent = sd.jvp(y, xs, u)
    bind = dict(zip(xs, args))
    reverse = sum(float(np.sum(gk * uk)) for gk, uk in zip(sd.evaluate(grads, bind), u))
    forward = float(np.sum(v * sd.evaluate(tangent, bind)))
    assert reverse == pytest.approx(forward, rel=1e-9, abs=1e-10)


@given(programs(), seeds)
def test_hessian_is_symmetric_and_hvp_matches_it(program, seed):
    g, xs, y, args = _show(program, seed)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(y.shape)
    f = sd.sum(y * weights) if y.shape else y
    x = xs[0]
    H = sd.hessian(f, x)
    v = rng.standard_normal(x.shape)
    Hv = sd.hvp(f, x, v)
    bind = dict(zip(xs, args))
    H_value, Hv_value = sd.evaluate([H, Hv], bind)
    n = args[0].size
    matrix = np.reshape(H_value, (n, n))
    np.testing.assert_allclose(matrix, matrix.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.ravel(Hv_value), matrix @ v.ravel(), rtol=1e-9, atol=1e-10)


@given(programs(), seeds)
def test_compile_matches_evaluate_and_simplify_keeps_values(program, seed):
    g, xs, y, args = _show(program, seed)
    weights = np.random.default_rng(seed).standard_normal(y.shape)
    outputs = [y, *sd.grad(sd.sum(y * weights) if y.shape else y, xs)]
    bind = dict(zip(xs, args))
    interpreted = sd.evaluate(outputs, bind)
    for a, b in zip(sd.compile(outputs, inputs=xs)(*args), interpreted):
        np.testing.assert_array_equal(a, b)
    simpler = sd.simplify(outputs)
    for node, original, a, b in zip(simpler, outputs, sd.evaluate(simpler, bind), interpreted):
        assert node.shape == original.shape and node.dtype == original.dtype
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@given(programs(), seeds)
def test_save_load_round_trip(program, seed):
    g, xs, y, args = _show(program, seed)
    gradient = sd.grad(sd.sum(y), xs[0])
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "g.json"
        g.save(path)
        h = sd.load(path)
    assert [(n.op, n.shape, n.is_gradient) for n in h.nodes] == [(n.op, n.shape, n.is_gradient) for n in g.nodes]
    values = {x.name: a for x, a in zip(xs, args)}
    np.testing.assert_array_equal(sd.evaluate(h.nodes[gradient.index], values), sd.evaluate(gradient, values))


@given(programs(max_steps=5, scalar_only=True), seeds)
def test_scalar_programs_against_sympy(program, seed):
    g, xs, y, args = _show(program, seed)
    expr = sd.to_sympy(y)
    point = {sympy.Symbol(x.name): float(a) for x, a in zip(xs, args)}
    bind = dict(zip(xs, args))
    for x in xs:
        expected = float(sympy.diff(expr, sympy.Symbol(x.name)).subs(point).evalf())
        assert float(sd.evaluate(sd.grad(y, x), bind)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    back = sd.from_sympy(expr, g)  # and the sympy form builds back into the same function
    assert float(sd.evaluate(back, bind)) == pytest.approx(float(sd.evaluate(y, bind)), rel=1e-12, abs=1e-14)
