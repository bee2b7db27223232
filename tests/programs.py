"""Random programs over the op registry, for property-based tests.

A program is data: variable shapes, a list of steps, each naming an op and the earlier
values it uses, and a mode. Hypothesis draws and shrinks programs; ``build`` turns one
into nodes of any graph. The ops of ``SMOOTH`` have no kinks, ties or comparisons and
keep values moderate, so finite differences are a fair oracle; ``ALGEBRA`` adds what
only a value-preserving rewrite must get right (powers of negations, fractional and
negative powers, raw division, extreme constants).

Modes (``MODES``): "float64"; "float32" (variables and values in float32); "unknown"
(every dimension above 1 declared None, known only at evaluation); "integer" (inputs
are small integers, so ties and exact zeros happen); "deep" (long chains, each step on
the most recent values).
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
    "arctan": sd.arctan,
    "arcsinh": sd.arcsinh,
    "sinh": lambda a: sd.sinh(sd.tanh(a)),  # bounded argument
    "cosh": lambda a: sd.cosh(sd.tanh(a)),
    "arcsin": lambda a: sd.arcsin(0.5 * sd.tanh(a)),  # inside (-1, 1)
    "log_sigmoid": sd.log_sigmoid,
    "erf": sd.erf,
    "concat": lambda a: sd.concatenate([a, sd.sin(a)], axis=-1) if a.ndim else a,
    "rejoin": lambda a: sd.concatenate([a[..., :1], a[..., 1:]], axis=-1) if a.ndim else a,
    "stack_rows": lambda a: sd.stack([a[k] for k in range(a.shape[0])]) if a.ndim and a.shape[0] else a,
    "pad": lambda a: sd.pad(a, 1, constant_values=0.5) if a.ndim else a,
    "tile": lambda a: sd.tile(a, 2) if a.ndim else a,
    "prod": lambda a: sd.prod(1.0 + 0.3 * sd.tanh(a), axis=-1) if a.ndim else a,
    "cumprod": lambda a: sd.cumprod(1.0 + 0.3 * sd.tanh(a), -1) if a.ndim else a,
    "norm": lambda a: sd.norm(1.0 + a * a) if a.ndim else a,  # away from 0, where it has a kink
    "repeat": lambda a: sd.repeat(a, 2, axis=-1) if a.ndim else a,
    "erfc": sd.erfc,
    "flip": sd.flip,
    "roll": lambda a: sd.roll(a, 1),
    "cumsum": lambda a: sd.cumsum(a, -1) if a.ndim else a,
    "var": lambda a: sd.var(a) if a.ndim else a,
    "std": lambda a: sd.std(1.0 + a) if a.ndim and (a.size or 0) > 1 else a,
}
# Scalar constants the steps "cmul" and "cadd" draw from (by their second operand).
MODERATE = (2.0, -0.5, 3.0, 0.1, -1.0)
EXTREME = MODERATE + (1e300, 1e-300, 1e200, -1e-200, 1e308, 1e-308, 10.0, 1e150)

# Smooth additions: powers of negations (where a wrong sign shows), cubes, constant factors.
UNARY.update(
    {
        "negsq": lambda a: (-a) ** 2,
        "cube": lambda a: a**3,
        "negcube": lambda a: (-a) ** 3,
        "sqsq": lambda a: (a**2) ** 2,
    }
)
# Value-preserving rewrites only: not smooth, or not finite everywhere.
ALGEBRA_UNARY = {
    "inv_sq": lambda a: a**-2,
    "sqrt_sq": lambda a: (a * a) ** 0.5,
    "sq_sqrt": lambda a: (a**0.5) ** 2,
    "pow_frac": lambda a: a**1.5,
    "neg_half": lambda a: (-a) ** 0.5,
    "abs": sd.abs,
    "exp_raw": sd.exp,
    "log_raw": sd.log,
}
MODES = ("float64", "float32", "unknown", "integer", "deep")

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.0 + b * b),
    "pow": lambda a, b: (1.0 + a * a) ** (0.5 * sd.tanh(b)),
    "matmul": None,  # see _matmul
    "where": lambda a, b: sd.where(np.array(True), a, b),
    "negmul": lambda a, b: (-a) * b,
    "logaddexp": sd.logaddexp,
    "hypot": lambda a, b: sd.hypot(1.0 + a * a, b),  # away from the origin
    "arctan2": lambda a, b: sd.arctan2(a, 1.0 + b * b),
    "stack": lambda a, b: sd.stack([sd.sum(a), sd.mean(b), sd.sum(a * a)]),
}
ALGEBRA_BINARY = {"div_raw": lambda a, b: a / b, "mul_neg_sq": lambda a, b: a * (-b) ** 2}


def _spd(a: sd.Node) -> tuple[sd.Node, sd.Node]:
    """A's elements as a vector v, and a well-conditioned symmetric matrix 2 I + 0.1 t tᵀ (t = tanh v)."""
    v = sd.reshape(a, (-1,))
    t = sd.tanh(v)
    return v, 2.0 * sd.eye_like(v) + 0.1 * sd.expand_dims(t, -1) * sd.expand_dims(t, 0)


def _distinct(a: sd.Node) -> sd.Node:
    """diag(1, ..., n) + 0.1 t tᵀ: symmetric, eigenvalues apart (their second derivatives divide by the gaps)."""
    v = sd.reshape(a, (-1,))
    t = sd.tanh(v)
    n = v.shape[0]
    steps = 1.0 + (np.arange(n, dtype=v.dtype) if n is not None else sd.astype(sd.arange(sd.count(v)), v.dtype))
    return sd.eye_like(v) * steps + 0.1 * sd.expand_dims(t, -1) * sd.expand_dims(t, 0)


UNARY.update(
    {
        "logdet": lambda a: sd.logdet(_spd(a)[1]),
        "expm": lambda a: sd.sum(sd.expm(0.2 * _spd(a)[1]), axis=-1),  # a's size: chained steps do not grow
        "eigvalsh": lambda a: sd.eigh(_distinct(a))[0],
        "solve_triangular": lambda a: sd.solve_triangular(_spd(a)[1], _spd(a)[0], lower=True),
    }
)


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
    mode: str = "float64"
    constants: tuple[float, ...] = MODERATE

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.mode == "float32" else np.float64)

    def _operand(self, pool: list, i: int):
        # deep programs chain: each step uses one of the two newest values
        return pool[-1 - i % min(2, len(pool))] if self.mode == "deep" else pool[i % len(pool)]

    def build(self, *variables: sd.Node) -> sd.Node:
        pool = list(variables)
        for op, i, j in self.steps:
            a, b = self._operand(pool, i), self._operand(pool, j)
            c = self.constants[j % len(self.constants)]
            if op == "cmul":
                pool.append(a * c)
            elif op == "cadd":
                pool.append(a + c)
            elif op in UNARY or op in ALGEBRA_UNARY:
                pool.append({**UNARY, **ALGEBRA_UNARY}[op](a))
            elif op == "matmul":
                pool.append(_matmul(a, b))
            else:
                fn = {**BINARY, **ALGEBRA_BINARY}[op]
                try:
                    pool.append(fn(a, b))
                except sd.ShapeError:  # shapes that do not broadcast: combine with b's total
                    pool.append(fn(a, sd.sum(b)))
        return pool[-1]

    def inputs(self, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        if self.mode == "integer":
            return [rng.integers(-3, 4, shape).astype(self.dtype) for shape in self.shapes]
        return [rng.uniform(-1.5, 1.5, shape).astype(self.dtype) for shape in self.shapes]

    def graph(self, seed: int):
        """A graph of the program: its variables, output and input values.

        In "unknown" mode the program is built with static shapes (which decide how its
        steps combine) and then rebuilt, op for op, on variables whose dimensions above 1
        are None: the same graph, with sizes known only at evaluation.
        """
        g = sd.Graph()
        xs = [g.variable(f"x{k}", shape=shape, dtype=self.dtype) for k, shape in enumerate(self.shapes)]
        y = self.build(*xs)
        if self.mode == "unknown":
            g, xs, y = with_unknown_dims(xs, y)
        return g, xs, y, self.inputs(seed)


def with_unknown_dims(xs: list[sd.Node], y: sd.Node):
    """``y`` rebuilt in a new graph on variables whose dimensions above 1 are None."""
    from symdiff.graph import ancestors
    from symdiff.ops.core import rebuild

    g = sd.Graph()
    new = {}
    for x in xs:
        shape = tuple(None if d > 1 else d for d in x.shape)
        new[x] = g.variable(x.name, shape=shape, dtype=x.dtype)
    for n in ancestors([y]):
        if n in new:
            continue
        if n.op == "constant":
            new[n] = g.constant(n.value)
        elif n.op == "variable":
            new[n] = g.variable(n.name, shape=n.shape, dtype=n.dtype)
        else:
            new[n] = rebuild(n, [new[u] for u in n.inputs])
    return g, [new[x] for x in xs], new[y]


def programs(
    max_steps: int = 6,
    scalar_only: bool = False,
    mode: str = "float64",
    algebra: bool = False,
    constants: tuple[float, ...] = MODERATE,
) -> st.SearchStrategy[Program]:
    shapes = st.just(()) if scalar_only else st.sampled_from(SHAPES)
    ops = sorted(UNARY) + sorted(BINARY) + ["cmul", "cadd"]
    if algebra:
        ops += sorted(ALGEBRA_UNARY) + sorted(ALGEBRA_BINARY)
    if scalar_only:
        ops = [
            op
            for op in ops
            if op not in ("softmax", "transpose", "slice", "reshape", "expand", "matmul", "sum_axis0", "stack")
            and op not in ("expm", "eigvalsh", "solve_triangular")
        ]
    step = st.tuples(st.sampled_from(ops), st.integers(0, 10), st.integers(0, 20))
    min_steps, max_steps = (15, max(max_steps, 30)) if mode == "deep" else (1, max_steps)
    return st.builds(
        Program,
        st.lists(shapes, min_size=1, max_size=3).map(tuple),
        st.lists(step, min_size=min_steps, max_size=max_steps).map(tuple),
        st.just(mode),
        st.just(constants),
    )
