"""Deep and wide graphs: no recursion anywhere, memory linear in the graph."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

import symdiff as sd


def _chain(depth: int):
    g = sd.Graph()
    x = g.variable("x")
    h = x
    for _ in range(depth):
        h = sd.sin(h)
    return g, x, h


def _chain_reference(x0: float, depth: int) -> tuple[float, float]:
    value, derivative = x0, 1.0
    for _ in range(depth):
        derivative *= np.cos(value)
        value = np.sin(value)
    return value, derivative


def test_100k_node_chain_differentiates_simplifies_compiles_and_evaluates():
    depth = 100_000
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # anything recursive on depth would fail at once
    try:
        g, x, h = _chain(depth)
        assert len(g) == depth + 1
        d = sd.grad(h, x)
        simple = sd.simplify([h, d])
        f = sd.compile(simple, inputs=[x])
        value, derivative = _chain_reference(0.5, depth)
        got = f(0.5)
        assert got[0] == pytest.approx(value, rel=1e-9) and got[1] == pytest.approx(derivative, rel=1e-6)
        evaluated = sd.evaluate([h, d], {x: 0.5})
        assert evaluated[0] == pytest.approx(value, rel=1e-9) and evaluated[1] == pytest.approx(derivative, rel=1e-6)
        assert len(str(d).splitlines()) > 1000  # printing is iterative too
        G = g.to_networkx(d)
        assert G.number_of_nodes() == len(sd.graph.ancestors([d]))
        assert len([line for line in sd.to_dot(d, depth=5).splitlines() if " -> n" in line]) < 50
    finally:
        sys.setrecursionlimit(old_limit)


def test_10k_node_wide_dag_with_many_paths_into_one_variable():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    total = None
    for k in range(1, 5001):
        term = sd.sin(x * float(k))
        total = term if total is None else total + term
    cost = sd.sum(total)
    assert len(g) >= 10_000
    gx = sd.grad(cost, x)
    xv = np.array([0.1, 0.2, 0.3])
    expected = np.sum([k * np.cos(k * xv) for k in range(1, 5001)], axis=0)
    np.testing.assert_allclose(sd.evaluate(gx, {x: xv}), expected, rtol=1e-10)
    f = sd.compile([cost, sd.simplify(gx)], inputs=[x])
    np.testing.assert_allclose(f(xv)[1], expected, rtol=1e-10)


def test_memory_grows_linearly_with_the_graph():
    def peak(depth):
        tracemalloc.start()
        g, x, h = _chain(depth)
        sd.compile([h, sd.grad(h, x)], inputs=[x])
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return used

    small, large = peak(1_000), peak(10_000)
    assert large < 14 * small, (small, large)  # 10x the nodes: about 10x the memory
