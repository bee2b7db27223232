"""Check derivatives against central finite differences, for users writing their own ops.

``check_grads`` compares the reverse-mode (vjp) and forward-mode (jvp) derivatives
of a function along random directions with central differences of the function's
values, then repeats the check on the derivative itself, to any order. Higher
orders differentiate the symbolic derivative graph again: finite differences are
only ever taken once, so their error does not compound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symdiff.autodiff import add_all, grad, jvp
from symdiff.evaluate import evaluate
from symdiff.graph import Graph, Node, ancestors
from symdiff.ops import multiply, sum


def _vdot(graph_value: Node, weights: np.ndarray) -> Node:
    return sum(multiply(graph_value, graph_value.graph.constant(weights)))


def _directional_fd(
    y: Node, xs: list[Node], args: list[np.ndarray], u: list[np.ndarray], v: np.ndarray, eps: float
) -> float:
    def phi(h: float) -> float:
        value = evaluate(y, {x: a + h * d for x, a, d in zip(xs, args, u)})
        return float(np.sum(v * value))

    # Fourth-order central difference: error O(eps^4), so eps can be larger and rounding smaller.
    return (8 * (phi(eps) - phi(-eps)) - (phi(2 * eps) - phi(-2 * eps))) / (12 * eps)


def _worst_element(
    y: Node, xs: list[Node], args: list[np.ndarray], v: np.ndarray, grads: list[np.ndarray], eps: float
) -> str:
    """Where the reverse-mode gradient of <v, y> differs most from finite differences."""
    worst = (-1.0, "", 0.0, 0.0)
    for k, (x, a, gk) in enumerate(zip(xs, args, grads)):
        if a.size > 2000:
            continue
        for idx in np.ndindex(a.shape or ()):
            d = [np.zeros_like(b) for b in args]
            d[k][idx] = 1.0
            fd = _directional_fd(y, xs, args, d, v, eps)
            err = abs(fd - gk[idx])
            if err > worst[0]:
                worst = (err, f"input {k} ({x.name}) element {idx}", float(gk[idx]), fd)
    if worst[0] < 0:
        return ""
    return f"; worst element: {worst[1]}: symbolic {worst[2]!r} vs finite difference {worst[3]!r}"


def _ops_in(y: Node) -> str:
    return ", ".join(dict.fromkeys(n.op for n in ancestors([y]) if n.inputs))


def check_grads(
    f: Callable[..., Node],
    args: Sequence[Any],
    order: int = 2,
    *,
    modes: Sequence[str] = ("rev", "fwd"),
    eps: float = 1e-4,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
) -> None:
    """Raise AssertionError if ``f``'s derivatives disagree with finite differences.

    Parameters
    ----------
    f : callable
        Builds the function from nodes: ``f(*variables) -> Node``.
    args : sequence of arrays
        The point to check at, one array per argument of ``f``.
    order : int
        Check derivatives up to this order (1: gradients; 2: also Hessians; ...).
    modes : ("rev", "fwd")
        Check reverse mode (grad), forward mode (jvp), or both.
    eps, rtol, atol : float
        Finite-difference step and tolerances.
    seed : int
        For the random directions.

    The error names the ops in the checked graph, the mode, the order and, for
    reverse mode, the worst element of the gradient.

    >>> sd.check_grads(lambda x: sd.sin(x) * x, [np.array([0.3, 1.2])], order=3)
    """
    rng = np.random.default_rng(seed)
    points = [np.array(a, dtype=np.float64) for a in args]
    _check(f, points, order, tuple(modes), eps, rtol, atol, rng, 1)


def _check(f, args, order, modes, eps, rtol, atol, rng, level) -> None:
    g = Graph()
    xs = [g.variable(f"x{k}", shape=a.shape) for k, a in enumerate(args)]
    y = f(*xs)
    if not isinstance(y, Node):
        raise TypeError(f"check_grads: f must return a node, got {type(y).__name__}")
    u = [rng.standard_normal(a.shape) for a in args]
    v = rng.standard_normal(y.shape) if y.shape else np.array(1.0)
    fd = _directional_fd(y, xs, args, u, v, eps)
    bindings = dict(zip(xs, args))
    where = f"order {level} derivative of a graph with ops [{_ops_in(y)}]"
    tol = atol + rtol * max(1.0, abs(fd))
    if "rev" in modes:
        grads = grad(_vdot(y, v), xs)
        values = [np.asarray(val, dtype=np.float64) for val in evaluate(grads, bindings)]
        rev = _sum_products(values, u)
        if not abs(rev - fd) <= tol:
            detail = _worst_element(y, xs, args, v, values, eps)
            raise AssertionError(
                f"check_grads: reverse mode (grad) disagrees with finite differences at the {where}: "
                f"<grad, u> = {rev!r} but finite differences give {fd!r}{detail}"
            )
    if "fwd" in modes:
        tangent = jvp(y, xs, [g.constant(d) for d in u])
        fwd = float(np.sum(v * evaluate(tangent, bindings)))
        if not abs(fwd - fd) <= tol:
            raise AssertionError(
                f"check_grads: forward mode (jvp) disagrees with finite differences at the {where}: "
                f"<v, J u> = {fwd!r} but finite differences give {fd!r}"
            )
    if order > 1:

        def derivative(*vars_: Node) -> Node:
            inner = f(*vars_)
            gs = grad(_vdot(inner, v), list(vars_))
            return add_all([_vdot(gk, d) for gk, d in zip(gs, u)])

        _check(derivative, args, order - 1, modes, eps, rtol, atol, rng, level + 1)


def _sum_products(values: list[np.ndarray], directions: list[np.ndarray]) -> float:
    return float(np.sum([np.sum(a * d) for a, d in zip(values, directions)]))
