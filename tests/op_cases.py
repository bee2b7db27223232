"""A table of test cases covering every op in the registry.

Each case builds an expression from variables with ``sd`` and states the same
computation in plain numpy (the reference). Inputs keep away from kinks and ties
by more than the finite-difference step, and from singular matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.special

import symdiff as sd
from symdiff.ops.core import REGISTRY, apply
from symdiff.ops.indexing import _make_index, unindex

_rng = np.random.default_rng(20261122)


def normal(*shape):
    return _rng.standard_normal(shape)


def positive(*shape):
    return _rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    """Magnitudes in [0.2, 1.5] with random signs: no kink within reach of the FD step."""
    return _rng.uniform(0.2, 1.5, shape) * _rng.choice([-1.0, 1.0], shape)


def distinct(*shape):
    """Values at least 0.1 apart (no ties for max/min)."""
    n = int(np.prod(shape)) if shape else 1
    return (_rng.permutation(n) * 0.37 - n * 0.15).reshape(shape)


def well_conditioned(*shape):
    n = shape[-1]
    return _rng.standard_normal(shape) * 0.3 + np.eye(n) * 2.0


def spd(n):
    a = _rng.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


@dataclass
class Case:
    op: str
    id: str
    build: Callable  # (*nodes) -> node, with sd
    reference: Callable  # (*arrays) -> array, with numpy only
    inputs: list
    dtypes: list = field(default_factory=list)  # per input; float64 when missing
    wrt: list | None = None  # which inputs to differentiate (default: float inputs)
    rtol: float = 1e-6
    shapes: list | None = None  # declared variable shapes (None dims allowed); default: the inputs'
    max_order: int = 2

    @property
    def name(self) -> str:
        return f"{self.op}-{self.id}"

    def differentiable_inputs(self) -> list[int]:
        if self.wrt is not None:
            return self.wrt
        return [k for k in range(len(self.inputs)) if np.asarray(self.inputs[k]).dtype.kind == "f"]


def build_case(case: Case, graph: sd.Graph | None = None, prefix: str = ""):
    """The case's variables (its declared shapes, else its inputs') and its output: (graph, xs, y)."""
    graph = sd.Graph() if graph is None else graph
    shapes = case.shapes or [np.shape(a) for a in case.inputs]
    xs = [
        graph.variable(f"{prefix}x{k}", shape=shape, dtype=np.asarray(a).dtype)
        for k, (a, shape) in enumerate(zip(case.inputs, shapes))
    ]
    return graph, xs, case.build(*xs)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _index(shape, index):
    return _make_index(index, shape)


def _adjugate_jvp_reference(a, e):
    """d adj(a)[e] for invertible a: adj = det(a) a⁻¹, so d adj = det(a) (tr(a⁻¹ e) a⁻¹ - a⁻¹ e a⁻¹)."""
    inv = np.linalg.inv(a)
    trace = np.trace(inv @ e, axis1=-2, axis2=-1)[..., None, None]
    return np.linalg.det(a)[..., None, None] * (trace * inv - inv @ e @ inv)


def _times_x(op: str, build, reference, case_id: str = "times-x", points=None) -> Case:
    """A piecewise-constant function times x, so the product has a derivative to check: at
    points off the jumps (between integers by default)."""
    if points is None:
        points = _rng.uniform(0.1, 0.9, 4) + [-2, -1, 0, 3]
    return Case(op, case_id, lambda x: build(x) * x, lambda x: reference(x) * x, [points])


def _same_call(
    op: str, case_id: str, sd_fn: Callable, ref_fn: Callable, inputs: list, *args, shapes=None, **kwargs
) -> Case:
    """A case whose two sides are the same call: ``sd_fn(*xs, *args, **kwargs)`` against
    ``ref_fn(*arrays, *args, **kwargs)`` (``sd.flip(x, 0)`` and ``np.flip(x, 0)``); ``shapes`` as
    for ``Case``."""
    return Case(
        op,
        case_id,
        lambda *xs: sd_fn(*xs, *args, **kwargs),
        lambda *xs: ref_fn(*xs, *args, **kwargs),
        inputs,
        shapes=shapes,
    )


def _linalg_cases() -> list[Case]:
    """The adjugate (det's derivative), singular values and their helpers, from their own
    generator (the draws of the cases after them stay as they were)."""
    from symdiff.ops.linalg import ADJUGATE_JVP, TALL, adjugate

    rng = np.random.default_rng(1919)
    conditioned = lambda *shape: rng.standard_normal(shape) * 0.3 + np.eye(shape[-1]) * 2.0  # noqa: E731
    nuc = lambda x: np.linalg.norm(x, "nuc")  # noqa: E731
    return [
        Case("adjugate", "matrix", adjugate, lambda a: np.linalg.det(a) * np.linalg.inv(a), [conditioned(3, 3)]),
        Case(
            "adjugate",
            "stack",
            adjugate,
            lambda a: np.linalg.det(a)[:, None, None] * np.linalg.inv(a),
            [conditioned(2, 3, 3)],
        ),
        Case(
            "adjugate_jvp",
            "matrix",
            lambda a, e: apply(ADJUGATE_JVP, a, e),
            _adjugate_jvp_reference,
            [conditioned(3, 3), rng.standard_normal((3, 3))],
        ),
        Case(
            "singular_values",
            "wide-spectral",
            lambda x: sd.norm(x, -2),
            lambda x: np.linalg.norm(x, -2),
            [rng.standard_normal((2, 4))],
        ),
        Case("singular_values", "tall-nuc", lambda x: sd.norm(x, "nuc"), nuc, [rng.standard_normal((4, 3))]),
        Case(
            "singular_values",
            "wide-unknown",
            lambda x: sd.norm(x, "nuc"),
            nuc,
            [rng.standard_normal((2, 3))],
            shapes=[(None, None)],
        ),
        Case(
            "tall",
            "wide",
            lambda x: apply(TALL, x, x),
            np.transpose,
            [rng.standard_normal((2, 3))],
        ),
    ]


_ADJUGATE_CASES = _linalg_cases()
_SOFTCLIP = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
_POLAR = sd.composite(
    lambda v: (sd.norm(v, axis=-1, keepdims=True), v / sd.norm(v, axis=-1, keepdims=True)), name="polar"
)


def _rnn(h, xs, w):
    carry, ys = sd.scan(lambda c, x: (sd.tanh(w * c + x), sd.sum(c * c)), h, xs, name="rnn")
    return sd.sum(carry) * ys


def _rnn_reference(h, xs, w):
    ys = []
    for x in xs:
        ys.append(np.sum(h * h))
        h = np.tanh(w * h + x)
    return np.sum(h) * np.array(ys)


def _two_carries(a, b, xs):
    (ca, cb), ys = sd.scan(lambda c, x: ((c[0] * c[1] + x, c[1] * 0.9), sd.exp(-c[0]) * x), (a, b), xs, reverse=True)
    return ca + cb + ys


def _two_carries_reference(a, b, xs):
    ys = np.zeros_like(xs)
    for t in range(len(xs) - 1, -1, -1):
        ys[t] = np.exp(-a) * xs[t]
        a, b = a * b + xs[t], b * 0.9
    return a + b + ys


def _fori_reference(x, w):
    for i in range(3):
        x = np.sin(x * w) + i * 0.5
    return x


def _while_reference(x, w):
    steps = 0
    while np.sum(x) < 4.0:
        x = x * w + 0.25
        steps += 1
    assert steps <= 20
    return x


CASES: list[Case] = [
    # arithmetic, with broadcasting
    Case("add", "scalars", lambda x, y: x + y, np.add, [normal(), normal()]),
    Case("add", "vector+matrix", lambda x, y: x + y, np.add, [normal(3), normal(2, 3)]),
    Case("add", "col+row", lambda x, y: x + y, np.add, [normal(2, 1), normal(1, 3)]),
    Case("sub", "matrix-vector", lambda x, y: x - y, np.subtract, [normal(2, 3), normal(3)]),
    Case("sub", "scalar-vector", lambda x, y: x - y, np.subtract, [normal(), normal(3)]),
    Case("mul", "matrix*col", lambda x, y: x * y, np.multiply, [normal(2, 3), normal(2, 1)]),
    Case("mul", "scalar*vector", lambda x, y: x * y, np.multiply, [normal(), normal(3)]),
    Case("mul", "same", lambda x: x * x, lambda x: x * x, [normal(3)]),
    Case("div", "vector/matrix", lambda x, y: x / y, np.divide, [normal(3), positive(2, 3)]),
    Case("div", "scalars", lambda x, y: x / y, np.divide, [normal(), away_from_zero()]),
    Case("neg", "matrix", lambda x: -x, np.negative, [normal(2, 3)]),
    Case("pow", "both", lambda x, y: x**y, np.power, [positive(3), normal(3)]),
    Case("pow", "cube", lambda x: x**3, lambda x: x**3, [normal(2, 2)]),
    Case("pow", "scalar-base", lambda x, y: x**y, np.power, [positive(), normal(2)]),
    Case("pow", "negative-int-power", lambda x: x**-2, lambda x: x**-2.0, [away_from_zero(3)]),
    # unary functions
    Case("exp", "vector", sd.exp, np.exp, [normal(4)]),
    Case("log", "vector", sd.log, np.log, [positive(4)]),
    Case("sin", "matrix", sd.sin, np.sin, [normal(2, 2)]),
    Case("cos", "vector", sd.cos, np.cos, [normal(3)]),
    Case("tan", "vector", sd.tan, np.tan, [normal(3) * 0.5]),
    Case("tanh", "vector", sd.tanh, np.tanh, [normal(3)]),
    Case("sigmoid", "vector", sd.sigmoid, _sigmoid, [normal(4) * 2]),
    Case("sqrt", "vector", sd.sqrt, np.sqrt, [positive(3)]),
    Case("log1p", "vector", sd.log1p, np.log1p, [positive(3)]),
    Case("expm1", "vector", sd.expm1, np.expm1, [normal(3)]),
    Case("softplus", "vector", sd.softplus, lambda x: np.log(1 + np.exp(x)), [normal(4) * 2]),
    Case("abs", "vector", sd.abs, np.abs, [away_from_zero(4)]),
    Case("arcsin", "vector", sd.arcsin, np.arcsin, [_rng.uniform(-0.8, 0.8, 4)]),
    Case("arccos", "vector", sd.arccos, np.arccos, [_rng.uniform(-0.8, 0.8, 4)]),
    Case("arctan", "matrix", sd.arctan, np.arctan, [normal(2, 3)]),
    Case("sinh", "vector", sd.sinh, np.sinh, [normal(4)]),
    Case("cosh", "vector", sd.cosh, np.cosh, [normal(4)]),
    Case("arcsinh", "vector", sd.arcsinh, np.arcsinh, [normal(4) * 2]),
    Case("arccosh", "vector", sd.arccosh, np.arccosh, [_rng.uniform(1.3, 3.0, 4)]),
    Case("arctanh", "vector", sd.arctanh, np.arctanh, [_rng.uniform(-0.7, 0.7, 4)]),
    Case("erf", "vector", sd.erf, scipy.special.erf, [normal(4)]),
    Case("erfc", "vector", sd.erfc, scipy.special.erfc, [normal(4) * 2]),
    Case("log_sigmoid", "vector", sd.log_sigmoid, lambda x: -np.logaddexp(0, -x), [normal(4) * 3]),
    _times_x("floor", sd.floor, np.floor),
    _times_x("ceil", sd.ceil, np.ceil),
    _times_x(
        "round", lambda x: sd.round(x, 1), lambda x: np.round(x, 1), "decimals", np.array([0.12, -0.33, 1.07, 2.51])
    ),
    Case("arctan2", "broadcast", sd.arctan2, np.arctan2, [normal(2, 3), away_from_zero(3)]),
    Case("logaddexp", "broadcast", sd.logaddexp, np.logaddexp, [normal(2, 3) * 3, normal(3)]),
    Case("hypot", "broadcast", sd.hypot, np.hypot, [away_from_zero(2, 3), normal(3)]),
    Case(
        "clip",
        "variable-bounds",
        sd.clip,
        np.clip,
        [np.array([-1.3, -0.2, 0.4, 1.6]), np.array(-0.7), np.array([0.9, 0.9, -0.9, 0.9])],
    ),
    _same_call("clip_below", "lower-only", sd.clip, np.clip, [np.array([-1.3, -0.2, 0.4]), np.array(-0.7)], None),
    Case(
        "clip_above",
        "upper-only",
        lambda x, hi: sd.clip(x, None, hi),
        lambda x, hi: np.clip(x, None, hi),
        [np.array([-1.3, -0.2, 1.6]), np.array(0.9)],
    ),
    _same_call("flip", "axis0", sd.flip, np.flip, [normal(3, 2)], 0),
    Case("flip", "all", sd.flip, np.flip, [normal(2, 3)]),
    _same_call("roll", "axes", sd.roll, np.roll, [normal(3, 4)], (1, -2), (0, 1)),
    _same_call("roll", "flat", sd.roll, np.roll, [normal(2, 3)], 5),
    _same_call("cumsum", "axis1", sd.cumsum, np.cumsum, [normal(2, 3)], 1),
    Case("cumsum", "flat", sd.cumsum, np.cumsum, [normal(2, 2)]),
    _same_call("cumsum", "unknown", sd.cumsum, np.cumsum, [normal(3)], -1, shapes=[(None,)]),
    _same_call("cumprod", "axis1", sd.cumprod, np.cumprod, [normal(2, 3)], 1),
    Case("cumprod", "zeros", sd.cumprod, np.cumprod, [np.array([1.5, 0.0, -0.7, 0.0, 1.2])]),
    _same_call("cumprod", "unknown", sd.cumprod, np.cumprod, [normal(3, 2)], 0, shapes=[(None, 2)]),
    Case("prod", "all", sd.prod, np.prod, [normal(2, 3)]),
    _same_call("prod", "one-zero", sd.prod, np.prod, [np.array([[1.5, 0.0, -0.7], [0.3, 2.0, 1.1]])], axis=1),
    Case("prod", "two-zeros", sd.prod, np.prod, [np.array([0.0, 2.0, 0.0, -1.3])]),
    _same_call("prod", "axes-keepdims", sd.prod, np.prod, [normal(2, 2, 3)], (0, 2), keepdims=True),
    _same_call("var", "axis0-ddof1", sd.var, np.var, [normal(4, 3)], 0, ddof=1),
    Case("var", "all-unknown", sd.var, np.var, [normal(3, 2)], shapes=[(None, 2)]),
    _same_call("std", "keepdims", sd.std, np.std, [normal(2, 4)], -1, keepdims=True),
    Case(
        "concatenate",
        "axis0",
        lambda x, y: sd.concatenate([x, y]),
        lambda x, y: np.concatenate([x, y]),
        [normal(2, 3), normal(1, 3)],
    ),
    Case(
        "concatenate",
        "three-axis1-unknown",
        lambda x, y, z: sd.sum(sd.sin(sd.concatenate([x, y, z], axis=1)) * np.arange(6.0)),
        lambda x, y, z: np.sum(np.sin(np.concatenate([x, y, z], axis=1)) * np.arange(6.0)),
        [normal(2, 1), normal(2, 3), normal(2, 2)],
        shapes=[(None, 1), (2, None), (None, 2)],
    ),
    Case(
        "concatenate",
        "same-input",
        lambda x: sd.concatenate([x, x * x]),
        lambda x: np.concatenate([x, x * x]),
        [normal(3)],
    ),
    Case(
        "concat_part",
        "direct",
        lambda g, a, b: apply(REGISTRY["concat_part"], g, a, b, index=1, axis=-1),
        lambda g, a, b: g[..., 2:],
        [normal(2, 5), normal(2, 2), normal(2, 3)],
        wrt=[0],
    ),
    Case(
        "concat_place",
        "direct",
        lambda t, a, b: apply(REGISTRY["concat_place"], t, a, b, index=0, axis=-1),
        lambda t, a, b: np.concatenate([t, np.zeros((2, 3))], axis=-1),
        [normal(2, 2), normal(2, 2), normal(2, 3)],
        wrt=[0],
    ),
    Case(
        "stack",
        "scalars",
        lambda x, y: sd.stack([x * y, x, y]),
        lambda x, y: np.stack([x * y, x, y]),
        [normal(), normal()],
    ),
    Case(
        "stack",
        "axis-last",
        lambda x, y: sd.stack([x, y], axis=-1),
        lambda x, y: np.stack([x, y], axis=-1),
        [normal(2, 3), normal(2, 3)],
    ),
    Case(
        "split",
        "sections",
        lambda x: sd.split(x, 2, axis=1)[1] * 2.0,
        lambda x: np.split(x, 2, axis=1)[1] * 2.0,
        [normal(2, 4)],
    ),
    _same_call("pad", "constant", sd.pad, np.pad, [normal(2, 3)], ((1, 0), (2, 1)), constant_values=0.5),
    _same_call("pad", "reflect", sd.pad, np.pad, [normal(4)], 2, mode="reflect"),
    _same_call(
        "pad", "edge-unknown", sd.pad, np.pad, [normal(2, 3)], ((0, 0), (1, 2)), mode="edge", shapes=[(None, 3)]
    ),
    _same_call("tile", "2d", sd.tile, np.tile, [normal(2, 2)], (2, 3)),
    _same_call("tile", "promote", sd.tile, np.tile, [normal(3)], (2, 1, 2)),
    _same_call("repeat", "axis0", sd.repeat, np.repeat, [normal(2, 2)], 3, axis=0),
    Case(
        "tile",
        "unknown",
        lambda x: sd.tile(x, (2, 3)) * 1.5,
        lambda x: np.tile(x, (2, 3)) * 1.5,
        [normal(2, 2)],
        shapes=[(None, None)],
    ),
    Case(
        "untile",
        "direct",
        lambda g, x: apply(REGISTRY["untile"], g, x, reps=(2, 1)),
        lambda g, x: g[:2] + g[2:],
        [normal(4, 3), normal(2, 3)],
        wrt=[0],
    ),
    Case(
        "unrepeat",
        "direct",
        lambda g, x: apply(REGISTRY["unrepeat"], g, x, repeats=2, axis=-1),
        lambda g, x: g[:, 0::2] + g[:, 1::2],
        [normal(2, 6), normal(2, 3)],
        wrt=[0],
        shapes=[(None, None), (None, 3)],
    ),
    Case(
        "repeat",
        "unknown",
        lambda x: sd.repeat(x, 2, axis=0) ** 2,
        lambda x: np.repeat(x, 2, axis=0) ** 2,
        [normal(2, 3)],
        shapes=[(None, None)],
    ),
    _same_call("repeat", "flat", sd.repeat, np.repeat, [normal(2, 2)], 2),
    _same_call("repeat", "counts", sd.repeat, np.repeat, [normal(2, 3)], [2, 0, 1], axis=1),
    Case("kron", "matrices", sd.kron, np.kron, [normal(2, 3), normal(2, 2)]),
    Case("kron", "vector-matrix", sd.kron, np.kron, [normal(3), normal(2, 2)]),
    Case("relu", "vector", sd.relu, lambda x: np.maximum(x, 0), [away_from_zero(5)]),
    Case("sign", "times-x", lambda x: sd.sign(x) * x, lambda x: np.sign(x) * x, [away_from_zero(4)]),
    Case(
        "astype",
        "float32-roundtrip",
        lambda x: sd.astype(sd.astype(x, "float32"), "float64") * 2.0,
        lambda x: x.astype(np.float32).astype(np.float64) * 2.0,
        [normal(3)],
        rtol=1e-3,
        max_order=1,
    ),  # finite differences of float32 rounding are noise at second order
    Case("maximum", "broadcast", sd.maximum, np.maximum, [distinct(2, 3), distinct(3) + 0.05]),
    Case("minimum", "vectors", sd.minimum, np.minimum, [distinct(4), distinct(4)[::-1] + 0.05]),
    # where and comparisons (the condition carries no gradient)
    Case(
        "where",
        "const-cond",
        lambda x, y: sd.where(np.array([True, False, True]), x, y),
        lambda x, y: np.where([True, False, True], x, y),
        [normal(3), normal(3)],
    ),
    Case(
        "where",
        "cond-from-x",
        lambda x, y: sd.where(x > 0, x**2, y * x),
        lambda x, y: np.where(x > 0, x**2, y * x),
        [away_from_zero(4), normal(4)],
    ),
    Case(
        "where",
        "broadcast",
        lambda x, y: sd.where(x > 0, x, y),
        lambda x, y: np.where(x > 0, x, y),
        [away_from_zero(2, 3), normal(3)],
    ),
    Case(
        "greater",
        "in-where",
        lambda x: sd.where(sd.greater(x, 0.1), x, -x),
        lambda x: np.where(x > 0.1, x, -x),
        [away_from_zero(3) + 0.5],
    ),
    Case(
        "greater_equal",
        "in-where",
        lambda x: sd.where(sd.greater_equal(x, 0), x, 0.0),
        lambda x: np.where(x >= 0, x, 0.0),
        [away_from_zero(3)],
    ),
    Case(
        "less",
        "in-where",
        lambda x: sd.where(sd.less(x, 0), x, 2 * x),
        lambda x: np.where(x < 0, x, 2 * x),
        [away_from_zero(3)],
    ),
    Case(
        "less_equal",
        "in-where",
        lambda x: sd.where(sd.less_equal(x, 0), x, 2 * x),
        lambda x: np.where(x <= 0, x, 2 * x),
        [away_from_zero(3)],
    ),
    Case(
        "equal",
        "in-where",
        lambda x: sd.where(sd.equal(x, 0), 0.0, x**2),
        lambda x: np.where(x == 0, 0.0, x**2),
        [away_from_zero(3)],
    ),
    Case(
        "not_equal",
        "in-where",
        lambda x: sd.where(sd.not_equal(x, 0), x**2, 0.0),
        lambda x: np.where(x != 0, x**2, 0.0),
        [away_from_zero(3)],
    ),
    # reductions
    Case("sum", "all", sd.sum, np.sum, [normal(2, 3)]),
    _same_call("sum", "axis0", sd.sum, np.sum, [normal(2, 3)], axis=0),
    _same_call("sum", "axes-0-2", sd.sum, np.sum, [normal(2, 3, 2)], axis=(0, 2)),
    Case(
        "sum",
        "keepdims",
        lambda x: sd.sum(x, axis=1, keepdims=True) * x,
        lambda x: np.sum(x, axis=1, keepdims=True) * x,
        [normal(2, 3)],
    ),
    Case("mean", "all", sd.mean, np.mean, [normal(2, 3)]),
    _same_call("mean", "axis1", sd.mean, np.mean, [normal(2, 3)], axis=1),
    Case("max", "all", sd.max, np.max, [distinct(2, 3)]),
    _same_call("max", "axis1-keepdims", sd.max, np.max, [distinct(3, 4)], axis=1, keepdims=True),
    _same_call("min", "axis0", sd.min, np.min, [distinct(3, 2)], axis=0),
    Case("logsumexp", "all", sd.logsumexp, scipy.special.logsumexp, [normal(4)]),
    _same_call("logsumexp", "axis1", sd.logsumexp, scipy.special.logsumexp, [normal(2, 3)], axis=1),
    Case("softmax", "last", sd.softmax, lambda x: scipy.special.softmax(x, axis=-1), [normal(2, 3)]),
    _same_call("softmax", "axis0", sd.softmax, scipy.special.softmax, [normal(3, 2)], axis=0),
    Case("log_softmax", "last", sd.log_softmax, lambda x: scipy.special.log_softmax(x, axis=-1), [normal(2, 3)]),
    # linear algebra
    Case("matmul", "mat@mat", lambda x, y: x @ y, np.matmul, [normal(2, 3), normal(3, 2)]),
    Case("matmul", "vec@mat", lambda x, y: x @ y, np.matmul, [normal(3), normal(3, 2)]),
    Case("matmul", "mat@vec", lambda x, y: x @ y, np.matmul, [normal(2, 3), normal(3)]),
    Case("matmul", "vec@vec", lambda x, y: x @ y, np.matmul, [normal(3), normal(3)]),
    Case("matmul", "stack@mat", lambda x, y: x @ y, np.matmul, [normal(2, 2, 3), normal(3, 2)]),
    Case("matmul", "vec@stack", lambda x, y: x @ y, np.matmul, [normal(3), normal(2, 3, 2)]),
    Case("matmul", "stack@vec", lambda x, y: x @ y, np.matmul, [normal(2, 2, 3), normal(3)]),
    Case("solve", "vector", sd.solve, np.linalg.solve, [well_conditioned(3, 3), normal(3)]),
    Case("solve", "matrix", sd.solve, np.linalg.solve, [well_conditioned(3, 3), normal(3, 2)]),
    Case("solve", "stack-vector", sd.solve, np.linalg.solve, [well_conditioned(2, 2, 2), normal(2)]),
    Case("inv", "matrix", sd.inv, np.linalg.inv, [well_conditioned(3, 3)]),
    Case("inv", "stack", sd.inv, np.linalg.inv, [well_conditioned(2, 2, 2)]),
    Case("det", "matrix", sd.det, np.linalg.det, [well_conditioned(3, 3)]),
    Case("det", "stack", sd.det, np.linalg.det, [well_conditioned(2, 2, 2)]),
    *_ADJUGATE_CASES,
    Case("cholesky", "matrix", sd.cholesky, lambda a: np.linalg.cholesky((a + a.T) / 2), [spd(3)]),
    Case(
        "cholesky",
        "solve-chain",
        lambda a, b: sd.solve(sd.cholesky(a), b),
        lambda a, b: scipy.linalg.solve_triangular(np.linalg.cholesky((a + a.T) / 2), b, lower=True),
        [spd(3), normal(3)],
    ),
    _same_call("tensordot", "two-axes", sd.tensordot, np.tensordot, [normal(2, 3, 2), normal(3, 2, 2)], 2),
    _same_call("tensordot", "paired", sd.tensordot, np.tensordot, [normal(2, 3, 4), normal(4, 2, 2)], ([0, 2], [1, 0])),
    _same_call("tensordot", "outer", sd.tensordot, np.tensordot, [normal(2), normal(3)], 0),
    Case("logdet", "spd", sd.logdet, lambda a: np.linalg.slogdet(a)[1], [spd(3)]),
    Case("logdet", "stack", sd.logdet, lambda a: np.linalg.slogdet(a)[1], [well_conditioned(2, 3, 3)]),
    Case(
        "slogdet",
        "negative-det",
        lambda a: sd.slogdet(a)[1] * sd.slogdet(a)[0],
        lambda a: np.prod(np.linalg.slogdet(a)),
        [np.array([[0.3, 2.0, 0.1], [1.5, 0.2, 0.4], [0.1, 0.3, 1.7]])],
    ),
    Case(
        "eigh",
        "eigenvalues-weighted",
        lambda a: sd.eigh(a)[0] * np.array([1.0, 2.0, 3.0]),
        lambda a: np.linalg.eigvalsh((a + a.T) / 2) * [1, 2, 3],
        [normal(3, 3)],
    ),
    Case(
        "eigh",
        "eigenvectors-squared",  # the squares do not depend on each eigenvector's sign
        lambda a: sd.eigh(a)[1] ** 2,
        lambda a: np.linalg.eigh((a + a.T) / 2)[1] ** 2,
        [np.array([[2.0, 0.3, -0.4], [0.1, 1.0, 0.2], [-0.2, 0.5, -1.0]])],
    ),
    Case(
        "composite",
        "softclip",
        lambda x, y: _SOFTCLIP(x, 1.5) * y,
        lambda x, y: 1.5 * np.tanh(x / 1.5) * y,
        [normal(2, 3), normal(3)],
    ),
    Case(
        "composite",
        "two-outputs",
        lambda x: _POLAR(x)[0] + _POLAR(x)[1],
        lambda x: np.sqrt(np.sum(x * x, -1, keepdims=True)) + x / np.sqrt(np.sum(x * x, -1, keepdims=True)),
        [positive(2, 3)],
    ),
    # loops (sd.scan, sd.fori_loop, sd.while_loop): one node owning its body; derivatives are loops
    Case(
        "scan",
        "rnn",
        lambda h, xs, w: _rnn(h, xs, w),
        lambda h, xs, w: _rnn_reference(h, xs, w),
        [normal(3), normal(4, 3), normal(3)],
    ),
    Case(
        "scan",
        "reverse-two-carries",
        lambda a, b, xs: _two_carries(a, b, xs),
        lambda a, b, xs: _two_carries_reference(a, b, xs),
        [normal(2), positive(), normal(3, 2)],
    ),
    Case(
        "scan",
        "fori-loop",
        lambda x, w: sd.fori_loop(0, 3, lambda i, c: sd.sin(c * w) + i * 0.5, x),
        lambda x, w: _fori_reference(x, w),
        [normal(2, 2), normal(2)],
    ),
    Case(
        "while_loop",
        "grow",  # 1.3 -> ... while below 4: a trip count no finite-difference step changes
        lambda x, w: sd.while_loop(lambda c: sd.sum(c) < 4.0, lambda c: c * w + 0.25, x, max_steps=20),
        lambda x, w: _while_reference(x, w),
        [np.array([0.3, 0.5]), np.array([1.4, 1.2])],
    ),
    Case(
        "eigh_gaps",
        "direct",
        lambda w: apply(REGISTRY["eigh_gaps"], w),
        lambda w: np.where(
            np.eye(3, dtype=bool), 0.0, 1.0 / np.where(np.eye(3, dtype=bool), 1.0, w[None, :] - w[:, None])
        ),
        [np.array([-1.0, 0.5, 2.0])],
    ),
    _same_call(
        "solve_triangular",
        "lower-vector",
        sd.solve_triangular,
        scipy.linalg.solve_triangular,
        [well_conditioned(3, 3), normal(3)],
        lower=True,
    ),
    Case(
        "solve_triangular",
        "upper-trans-unit-stack",
        lambda a, b: sd.solve_triangular(a, b, trans="T", unit_diagonal=True),
        lambda a, b: np.stack(
            [scipy.linalg.solve_triangular(m, r, trans="T", unit_diagonal=True) for m, r in zip(a, b)]
        ),
        [well_conditioned(2, 3, 3), normal(2, 3, 2)],
    ),
    Case(
        "cho_solve",
        "lower-vector",
        lambda c, b: sd.cho_solve((c, True), b),
        lambda c, b: scipy.linalg.cho_solve((c, True), b),
        [np.linalg.cholesky(spd(3)), normal(3)],
    ),
    Case(
        "cho_solve",
        "upper-matrix",
        lambda c, b: sd.cho_solve((c, False), b),
        lambda c, b: scipy.linalg.cho_solve((c, False), b),
        [np.linalg.cholesky(spd(3)).T, normal(3, 2)],
    ),
    Case("expm", "matrix", sd.expm, scipy.linalg.expm, [normal(3, 3) * 0.5]),
    Case("expm", "stack", sd.expm, lambda a: np.stack([scipy.linalg.expm(m) for m in a]), [normal(2, 2, 2) * 0.5]),
    Case("norm", "vector", sd.norm, np.linalg.norm, [normal(4)]),
    _same_call("norm", "fro-axis-keepdims", sd.norm, np.linalg.norm, [normal(2, 3, 2)], axis=(0, 2), keepdims=True),
    _same_call("norm", "rows-unknown", sd.norm, np.linalg.norm, [normal(3, 2)], axis=1, shapes=[(None, 2)]),
    _same_call("norm", "p3", sd.norm, np.linalg.norm, [away_from_zero(4)], 3),
    _same_call("norm", "inf", sd.norm, np.linalg.norm, [distinct(4)], np.inf),
    _same_call("norm", "matrix-1", sd.norm, np.linalg.norm, [distinct(3, 3)], 1),
    _same_call("norm", "matrix-inf-axes", sd.norm, np.linalg.norm, [distinct(3, 2)], -np.inf, axis=(1, 0)),
    _same_call("norm", "nuc", sd.norm, np.linalg.norm, [well_conditioned(3, 3)], "nuc"),
    _same_call("norm", "spectral", sd.norm, np.linalg.norm, [well_conditioned(3, 3)], 2),
    _same_call("diagonal", "offset", sd.diagonal, np.diagonal, [normal(3, 4)], 1),
    _same_call("diagonal", "axes-stack", sd.diagonal, np.diagonal, [normal(3, 2, 3)], -1, 2, 0),
    Case("diagonal", "trace-unknown", sd.trace, np.trace, [normal(3, 3)], shapes=[(None, None)]),
    Case(
        "undiagonal",
        "direct",
        lambda g, x: apply(REGISTRY["undiagonal"], g, x, offset=0, axis1=-2, axis2=-1),
        lambda g, x: np.diag(g),
        [normal(3), normal(3, 3)],
        wrt=[0],
    ),
    Case("diag", "vector", sd.diag, np.diag, [normal(3)]),
    _same_call("diag", "offset", sd.diag, np.diag, [normal(2)], -2),
    Case("outer", "vectors", sd.outer, np.outer, [normal(3), normal(2)]),
    Case("outer", "flattened", sd.outer, np.outer, [normal(2, 2), normal(3)]),
    Case(
        "einsum", "matmul", lambda x, y: sd.einsum("ij,jk->ik", x, y), lambda x, y: x @ y, [normal(2, 3), normal(3, 2)]
    ),
    Case(
        "einsum",
        "three-operands-implicit",
        lambda x, a, y: sd.einsum("i,ij,j", x, a, y),
        lambda x, a, y: np.einsum("i,ij,j", x, a, y),
        [normal(3), normal(3, 2), normal(2)],
    ),
    Case(
        "einsum",
        "summed-index-transposed",
        lambda x, y: sd.einsum("ijk,kj->ik", x, y),
        lambda x, y: np.einsum("ijk,kj->ik", x, y),
        [normal(2, 3, 2), normal(2, 3)],
    ),
    Case(
        "einsum",
        "own-index-summed",
        lambda x: sd.einsum("ijk->j", x),
        lambda x: np.einsum("ijk->j", x),
        [normal(2, 3, 2)],
    ),
    Case(
        "einsum", "outer-same", lambda x: sd.einsum("i,j->ij", x, x), lambda x: np.einsum("i,j->ij", x, x), [normal(3)]
    ),
    # shape ops
    Case("transpose", "T", lambda x: x.T, np.transpose, [normal(2, 3)]),
    _same_call("transpose", "axes", sd.transpose, np.transpose, [normal(2, 3, 2)], (1, 2, 0)),
    Case("reshape", "2x3-3x2", lambda x: sd.reshape(x, (3, 2)), lambda x: x.reshape(3, 2), [normal(2, 3)]),
    Case("reshape", "minus-one", lambda x: x.reshape(2, -1), lambda x: x.reshape(2, -1), [normal(6)]),
    Case(
        "expand_dims", "middle", lambda x: sd.expand_dims(x, 1) * x, lambda x: np.expand_dims(x, 1) * x, [normal(2, 3)]
    ),
    _same_call("squeeze", "axis", sd.squeeze, np.squeeze, [normal(1, 3)], 0),
    _same_call("broadcast_to", "matrix", sd.broadcast_to, np.broadcast_to, [normal(3)], (2, 3)),
    Case(
        "broadcast_like",
        "rows",
        lambda x, y: sd.broadcast_like(x, y) * y,
        lambda x, y: np.broadcast_to(x, y.shape) * y,
        [normal(3), normal(2, 3)],
    ),
    Case(
        "reshape_like",
        "unknown-rows",
        lambda x, y: sd.sum(sd.reshape_like(x, y) * y),
        lambda x, y: np.sum(x.reshape(y.shape) * y),
        [normal(6), normal(2, 3)],
        shapes=[(None,), (None, 3)],
    ),
    Case("getitem", "slice", lambda x: x[1:3], lambda x: x[1:3], [normal(4)]),
    Case("getitem", "columns", lambda x: x[:, 1:], lambda x: x[:, 1:], [normal(2, 3)]),
    Case("getitem", "int", lambda x: x[1], lambda x: x[1], [normal(2, 3)]),
    Case("getitem", "repeated-rows", lambda x: x[[0, 0, 1]], lambda x: x[[0, 0, 1]], [normal(2, 3)]),
    Case("getitem", "newaxis-int", lambda x: x[None, :, 1], lambda x: x[None, :, 1], [normal(2, 3)]),
    Case("getitem", "ellipsis-reverse", lambda x: x[..., ::-1], lambda x: x[..., ::-1], [normal(2, 3)]),
    Case("getitem", "pairs", lambda x: x[[0, 1, 1], [2, 0, 2]], lambda x: x[[0, 1, 1], [2, 0, 2]], [normal(2, 3)]),
    Case(
        "getitem",
        "int-nodes",  # a cross-entropy's pick: one element per row by integer labels
        lambda x, i: x[sd.arange(sd.count(x, axis=0)), i],
        lambda x, i: x[np.arange(len(x)), i],
        [normal(3, 4), np.array([3, 0, 3])],
        shapes=[(None, 4), (None,)],
    ),
    Case(
        "getitem",
        "node-separated",
        lambda x, i: x[i, :, np.array([1, 0])],
        lambda x, i: x[i, :, [1, 0]],
        [normal(3, 2, 2), np.array([2, 2])],
    ),
    Case(
        "arange",
        "node-length",
        lambda x: x * sd.astype(sd.arange(sd.count(x)), "float64"),
        lambda x: x * np.arange(len(x)),
        [normal(4)],
        shapes=[(None,)],
    ),
    _same_call(
        "take_along_axis",
        "rows",
        sd.take_along_axis,
        np.take_along_axis,
        [normal(3, 4), np.array([[3, 1], [0, 0], [2, 3]])],
        1,
    ),
    _same_call(
        "take_along_axis",
        "broadcast-axis0",
        sd.take_along_axis,
        np.take_along_axis,
        [normal(3, 2), np.array([[2], [0], [2], [1]])],
        0,
    ),
    Case(
        "untake_along_axis",
        "direct",
        lambda g, x, i: apply(REGISTRY["untake_along_axis"], g, x, i, axis=-1),
        lambda g, x, i: np.stack([np.bincount(r, weights=w, minlength=3) for r, w in zip(i, g)]),
        [normal(2, 2), normal(2, 3), np.array([[2, 2], [0, 1]])],
        wrt=[0],
    ),
    Case(
        "one_hot",
        "weights",
        lambda x, y: sd.sum(sd.one_hot(y, 3) * x, axis=-1),
        lambda x, y: x[np.arange(4), y],
        [normal(4, 3), np.array([2, 0, 1, 2])],
    ),
    Case(
        "unindex",
        "slice",
        lambda g: unindex(g, g.graph.constant(np.zeros((2, 3))), _index((2, 3), (slice(None), 1))),
        lambda g: np.stack([np.zeros(2), g, np.zeros(2)], axis=1),
        [normal(2)],
    ),
    Case(
        "take", "axis0", lambda x: sd.take(x, np.array([2, 0, 2])), lambda x: np.take(x, [2, 0, 2], axis=0), [normal(3)]
    ),
    Case(
        "take",
        "axis1",
        lambda x: sd.take(x, np.array([1, 1]), axis=1),
        lambda x: np.take(x, [1, 1], axis=1),
        [normal(2, 3)],
    ),
    # take's transpose is unindex by the index node: repeated indices accumulate, 2-d indices
    # give two axes (take's own adjoint op, untake, went with transpose rules)
    Case(
        "take",
        "2d-index-node",
        lambda x, i: sd.take(x, i, axis=1),
        lambda x, i: np.take(x, i, axis=1),
        [normal(2, 3), np.array([[2, 0], [2, 2]])],
    ),
    Case("tril", "k0", sd.tril, np.tril, [normal(3, 3)]),
    _same_call("triu", "k1", sd.triu, np.triu, [normal(3, 3)], 1),
    Case(
        "match_shape",
        "unknown",
        lambda x: sd.sum(sd.match_shape(x * 2, x) ** 2),
        lambda x: np.sum((2 * x) ** 2),
        [normal(3)],
        shapes=[(None,)],
    ),
    Case(
        "eye_like",
        "unknown",
        lambda x: sd.sum((sd.eye_like(x) @ sd.tanh(x)) ** 2),
        lambda x: np.sum(np.tanh(x) ** 2),
        [normal(3)],
        shapes=[(None,)],
    ),
    Case("count", "mean-by-hand", lambda x: sd.sum(x) / sd.count(x), np.mean, [normal(2, 3)], shapes=[(None, 3)]),
    _same_call("mean", "unknown-rows", sd.mean, np.mean, [normal(4, 2)], axis=0, shapes=[(None, 2)]),
    Case(
        "sum",
        "unknown-rows",
        lambda x, b: sd.sum(sd.tanh(x + b), axis=0),
        lambda x, b: np.sum(np.tanh(x + b), axis=0),
        [normal(3, 2), normal(2)],
        shapes=[(None, 2), (2,)],
    ),
]

# Ops whose derivative is zero by definition, checked by the tests that say so.
ZERO_DERIVATIVE = {"sign", "stop_gradient", "zeros_like", "ones_like", "eye_like", "count"}
