"""Checkpointed reverse mode through sd.scan: every(k) and revolve(snapshots=s) give the
derivatives of storing every carry (to second order, and a third), the body runs as often as
the schedule says (Griewank & Walther's minimum for revolve), and the carries kept stay within
the policy's budget."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

import symdiff as sd
from symdiff import loops, plan
from symdiff.graph import ancestors, regions_in

T = 12
POLICIES = [
    sd.checkpoint.every(1),
    sd.checkpoint.every(3),  # a divisor of T
    sd.checkpoint.every(5),  # not a divisor
    sd.checkpoint.every(12),
    sd.checkpoint.every(20),  # k > T
    sd.checkpoint.revolve(snapshots=1),
    sd.checkpoint.revolve(snapshots=2),
    sd.checkpoint.revolve(snapshots=3),
    sd.checkpoint.revolve(snapshots=5),
    sd.checkpoint.revolve(snapshots=12),
]
W = np.array([0.3, -0.2, 0.5])


def _problem(checkpoint, reverse=False, length=T):
    """A tanh recurrence with a captured matrix, xs that depend on w, and ys."""
    rng = np.random.default_rng(0)
    g = sd.Graph()
    w = g.variable("w", (3,))
    a = g.constant(rng.normal(size=(3, 3)) * 0.5)
    xs = g.constant(rng.normal(size=(length, 3))) * sd.sum(w)

    def body(c, x):
        n = sd.tanh(a @ c + x * w)
        return n, sd.sum(n * n * w)

    c, ys = sd.scan(body, w, xs=xs, checkpoint=checkpoint, reverse=reverse)
    f = sd.sum(c * c) + sd.sum(ys * ys)
    return g, w, c, f


def _derivatives(w, c, f):
    v = np.array([1.0, 0.5, -2.0])
    grad = sd.grad(f, w)
    return [f, grad, sd.hessian(f, w), sd.hvp(f, w, v), sd.jacobian(c, w), sd.grad(sd.sum(sd.hvp(f, w, v) ** 2), w)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_same_derivatives_as_storing_every_carry_and_as_unrolled(policy, reverse):
    _, w, c, f = _problem(policy, reverse)
    got = sd.evaluate(_derivatives(w, c, f), {w: W})
    _, w0, c0, f0 = _problem(None, reverse)
    stored = sd.evaluate(_derivatives(w0, c0, f0), {w0: W})
    _, w1, c1, f1 = _problem(None, reverse)
    unrolled = sd.evaluate(_derivatives(w1, *sd.unroll([c1, f1])), {w1: W})
    for a, b, u in zip(got, stored, unrolled):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a, u, rtol=0, atol=1e-12)


def _counting(monkeypatch, region):
    """Count the runs of ``region``'s function in every plan made from now on."""
    calls = [0]
    made = plan.body_function

    def body_function(r, function, scalars):
        run = made(r, function, scalars)
        if r is not region:
            return run

        def counted(*args, **kw):
            calls[0] += 1
            return run(*args, **kw)

        return counted

    monkeypatch.setattr(plan, "body_function", body_function)
    return calls


def _scan_node(c):
    return c.inputs[0]


def _beta(s, r):
    return math.comb(s + r, s) if r >= 0 else 0


def griewank_steps(steps, snapshots):
    """Griewank's minimal number of forward steps reversing ``steps`` steps with ``snapshots``
    checkpoints: r l - beta(s+1, r-1), with beta(s, r-1) < l <= beta(s, r)."""
    r = 0
    while _beta(snapshots, r) < steps:
        r += 1
    return r * steps - _beta(snapshots + 1, r - 1)


@lru_cache(None)
def _fewest(steps, snapshots):
    """The same minimum by brute force over the first advance (the recursion it solves)."""
    if steps == 1:
        return 0
    if snapshots == 1:
        return steps * (steps - 1) // 2
    return min(j + _fewest(steps - j, snapshots - 1) + _fewest(j, snapshots) for j in range(1, steps))


def test_griewank_formula_is_the_minimum():
    for s in range(1, 6):
        for steps in range(1, 40):
            assert griewank_steps(steps, s) == _fewest(steps, s)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5, 12, 20])
def test_every_runs_the_body_once_more_per_step_not_stored(monkeypatch, k, reverse):
    _, w, c, f = _problem(sd.checkpoint.every(k), reverse)
    node = _scan_node(c)
    stored = sd.loops.outputs_of(node)[-1]
    assert stored.shape == (math.ceil(T / k), 3)  # ceil(T/k) carries kept
    calls = _counting(monkeypatch, node.regions[0])
    sd.evaluate(sd.grad(f, w), {w: W})
    # the forward scan runs T steps; the reverse recomputes every carry but the stored ones
    assert calls[0] == T + (T - math.ceil(T / k))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("s", [1, 2, 3, 4, 5, 12])
def test_revolve_runs_the_body_as_often_as_griewanks_minimum(monkeypatch, s, reverse):
    _, w, c, f = _problem(sd.checkpoint.revolve(snapshots=s), reverse)
    node = _scan_node(c)
    stored = sd.loops.outputs_of(node)[-1]
    kept = loops.kept_positions(T, ("revolve", s))
    assert stored.shape == (len(kept), 3) and len(kept) <= s
    calls = _counting(monkeypatch, node.regions[0])
    gradient = sd.grad(f, w)
    sd.evaluate(gradient, {w: W})
    # the forward scan runs T steps and keeps the schedule's first-sweep snapshots (the last at
    # step kept[-1]), which the reverse then need not advance to: Griewank's minimum less those
    assert calls[0] == T + griewank_steps(T, s) - kept[-1]
    assert calls[0] - T <= griewank_steps(T, s)
    # no recomputing scan of the reverse keeps more carries than there are snapshots
    recomputing = 0
    everywhere = ancestors([gradient])
    for n in [*everywhere, *(m for r in regions_in(everywhere) for m in r.graph.nodes)]:
        if n.op == "scan" and dict(n._attrs)["name"].endswith("_recompute"):
            assert n.results[-1][0][0] <= s
            recomputing += 1
    assert recomputing


def test_revolve_graph_stays_small_for_long_scans():
    sizes = {}
    for steps in (100, 1000, 10000):
        g = sd.Graph()
        x = g.variable("x")
        c, _ = sd.scan(
            lambda c, _: (sd.sin(c) * x, None), x, length=steps, checkpoint=sd.checkpoint.revolve(snapshots=8)
        )
        gradient = sd.grad(c, x)
        bodies = regions_in(ancestors([gradient]))
        sizes[steps] = len(g) + sum(len(r.graph) for r in {r.graph: r for r in bodies}.values())
    # the bodies are shared by segments of one (length, snapshots): a few per level, not one per step
    assert sizes[10000] < 4 * sizes[100]
    assert sizes[10000] < 3000


def test_checkpointed_loops_save_and_load(tmp_path):
    g, w, c, f = _problem(sd.checkpoint.revolve(snapshots=3))
    gradient = sd.grad(f, w)
    path = tmp_path / "g.json"
    g.save(path, outputs={"g": gradient})
    h = sd.load(path)
    np.testing.assert_allclose(sd.evaluate(h.outputs["g"], {h["w"]: W}), sd.evaluate(gradient, {w: W}), atol=1e-12)
