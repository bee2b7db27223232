"""Random programs over the op registry, for property-based tests.

A program is data: variable shapes and a list of steps, each naming an op and the
earlier values it uses. Hypothesis draws and shrinks programs; ``build`` turns one
into nodes of any graph. Every op here is smooth (no kinks, ties or comparisons) and
keeps values moderate, so finite differences are a fair oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import symdiff as sd

SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1)]

UNARY = {
    "sin": sd.sin,
    "cos": sd.cos,
    "tanh": sd.tanh,
    "sigmoid": sd.sigmoid,
    "softplus": sd.softplus,
    "exp": lambda a: sd.exp(0.5 * sd.tanh(a)),  # bounded argument
    "log": lambda a: sd.log(1.0 + a * a),
    "sqrt": lambda a: sd.sqrt(1.0 + a * a),
    "square": lambda a: a**2,
    "neg": lambda a: -a,
    "scale": lambda a: 0.7 * a,
    "sum": sd.sum,
    "mean": sd.mean,
    "logsumexp": sd.logsumexp,
    "softmax": lambda a: sd.softmax(a) if a.ndim else a,
    "sum_axis0": lambda a: sd.sum(a, axis=0) if a.ndim else a,
    "transpose": lambda a: a.T,
    "slice": lambda a: a[..., :2] if a.ndim and a.shape[-1] >= 2 else a,
    "reshape": lambda a: sd.reshape(a, (-1,)),
    "expand": lambda a: sd.expand_dims(a, 0),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.0 + b * b),
    "pow": lambda a, b: (1.0 + a * a) ** (0.5 * sd.tanh(b)),
    "matmul": None,  # see _matmul
    "where": lambda a, b: sd.where(np.array(True), a, b),
}


def _matmul(a: sd.Node, b: sd.Node) -> sd.Node:
    """a @ b when the shapes allow, otherwise a product of their sums."""
    if a.ndim >= 1 and b.ndim >= 1:
        k = a.shape[-1]
        if b.ndim == 1 and b.shape[0] == k or b.ndim >= 2 and b.shape[-2] == k:
            return a @ b
        if b.ndim >= 2 and b.shape[-1] == k:
            return a @ sd.matrix_transpose(b)
    return sd.sum(a) * sd.sum(b)


@dataclass(frozen=True)
class Program:
    shapes: tuple[tuple[int, ...], ...]
    steps: tuple[tuple[str, int, int], ...]  # (op, first operand, second operand), indices into the pool

    def build(self, *variables: sd.Node) -> sd.Node:
        pool = list(variables)
        for op, i, j in self.steps:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            if op in UNARY:
                pool.append(UNARY[op](a))
            elif op == "matmul":
                pool.append(_matmul(a, b))
            else:
                try:
                    pool.append(BINARY[op](a, b))
                except sd.ShapeError:  # shapes that do not broadcast: combine with b's total
                    pool.append(BINARY[op](a, sd.sum(b)))
        return pool[-1]

    def inputs(self, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.uniform(-1.5, 1.5, shape) for shape in self.shapes]

    def graph(self, seed: int):
        g = sd.Graph()
        xs = [g.variable(f"x{k}", shape=shape) for k, shape in enumerate(self.shapes)]
        return g, xs, self.build(*xs), self.inputs(seed)


def programs(max_steps: int = 6, scalar_only: bool = False) -> st.SearchStrategy[Program]:
    shapes = st.just(()) if scalar_only else st.sampled_from(SHAPES)
    ops = sorted(UNARY) + sorted(BINARY)
    if scalar_only:
        ops = [
            op for op in ops if op not in ("softmax", "transpose", "slice", "reshape", "expand", "matmul", "sum_axis0")
        ]
    step = st.tuples(st.sampled_from(ops), st.integers(0, 10), st.integers(0, 10))
    return st.builds(
        Program,
        st.lists(shapes, min_size=1, max_size=3).map(tuple),
        st.lists(step, min_size=1, max_size=max_steps).map(tuple),
    )
