"""Indices held in nodes, on every backend: in range (negative ones count from the end) every
backend computes numpy's gather and scatter-add (repeated indices accumulate); out of range, in
either direction, every backend raises the numpy backend's IndexError, naming the op, the node,
the index and the axis size: never a clamped, dropped or garbage number (XLA clamps a gather and
drops a scatter; numba does no bounds check).

Each case is a gather by an index node (getitem, take, take_along_axis; getitem by two or
three index arrays broadcast together, adjacent or separated) and, through sd.grad of
a weighted sum, its adjoint alone (unindex, untake, untake_along_axis: the gradient does not
compute the gather). The oracle is numpy itself (fancy indexing, np.take, np.take_along_axis,
np.add.at), not symdiff.
"""

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import symdiff as sd

BACKENDS = ["numpy"] + [b for b in ("numba", "jax") if importlib.util.find_spec(b) is not None]
# the sweeps (every case x value/adjoint x direction) compile a function per example: numba and jax
# run them under --runslow (CI's slow set); the single tests below run every backend by default
SWEEP = [b if b == "numpy" else pytest.param(b, marks=pytest.mark.slow) for b in BACKENDS]
RTOL = 1e-12


@dataclass(frozen=True)
class Case:
    name: str
    x_shape: tuple
    index_shape: tuple
    size: int  # the length of the axis the index values pick from
    gather: Callable[[Any, Any], Any]  # (x node, index node) -> node
    oracle: Callable[[np.ndarray, np.ndarray], np.ndarray]  # numpy's value
    scatter: Callable[[np.ndarray, np.ndarray, np.ndarray], None]  # np.add.at of w into zeros of x at the index

    @property
    def index_shapes(self) -> tuple:
        return (self.index_shape,)


def _rows(n: int, k: int) -> np.ndarray:
    return np.arange(n)[:, None] * np.ones(k, int)


CASES = [
    Case("getitem-vector", (5,), (4,), 5, lambda x, i: x[i], lambda x, i: x[i], lambda gr, i, w: np.add.at(gr, i, w)),
    Case(
        "getitem-axis1",
        (3, 4),
        (3,),
        4,
        lambda x, i: x[:, i],
        lambda x, i: x[:, i],
        lambda gr, i, w: np.add.at(gr, (slice(None), i), w),
    ),
    Case(
        "getitem-scalar-node", (3, 4), (), 3, lambda x, i: x[i], lambda x, i: x[i], lambda gr, i, w: np.add.at(gr, i, w)
    ),
    Case(
        "getitem-int-and-node",
        (3, 4),
        (5,),
        4,
        lambda x, i: x[1, i],
        lambda x, i: x[1, i],
        lambda gr, i, w: np.add.at(gr, (1, i), w),
    ),
    Case(
        "getitem-newaxis-node",
        (3, 4),
        (2,),
        4,
        lambda x, i: x[:, None, i],
        lambda x, i: x[:, None, i],
        lambda gr, i, w: np.add.at(gr, (slice(None), i), w[:, 0, :]),
    ),
    Case(
        "take-axis0-matrix-indices",
        (5, 3),
        (2, 3),
        5,
        lambda x, i: sd.take(x, i, axis=0),
        lambda x, i: np.take(x, i, axis=0),
        lambda gr, i, w: np.add.at(gr, i, w),
    ),
    Case(
        "take-axis1",
        (3, 5),
        (4,),
        5,
        lambda x, i: sd.take(x, i, axis=1),
        lambda x, i: np.take(x, i, axis=1),
        lambda gr, i, w: np.add.at(gr, (slice(None), i), w),
    ),
    Case(
        "take_along_axis-axis1",
        (3, 5),
        (3, 4),
        5,
        lambda x, i: sd.take_along_axis(x, i, 1),
        lambda x, i: np.take_along_axis(x, i, 1),
        lambda gr, i, w: np.add.at(gr, (_rows(3, 4), i), w),
    ),
    Case(
        "take_along_axis-axis0",
        (5, 3),
        (2, 3),
        5,
        lambda x, i: sd.take_along_axis(x, i, 0),
        lambda x, i: np.take_along_axis(x, i, 0),
        lambda gr, i, w: np.add.at(gr, (i, _rows(3, 2).T), w),
    ),
]
PARTS = ["value", "adjoint"]


def _weights(shape: tuple) -> np.ndarray:
    return np.linspace(0.5, 1.5, int(np.prod(shape, dtype=int))).reshape(shape)


_COMPILED: dict[tuple, Any] = {}


def _compiled(case: Any, part: str, backend: str) -> Any:
    """The case's gather (value) or the gradient of its weighted sum alone (adjoint), compiled
    once (a Case or a MultiCase: x, then its index nodes)."""
    key = (case.name, part, backend)
    if key not in _COMPILED:
        g = sd.Graph()
        x = g.variable("x", case.x_shape)
        idx = [g.variable(f"i{k}", s, dtype="int64") for k, s in enumerate(case.index_shapes)]
        y = case.gather(x, *idx)
        out = y if part == "value" else sd.grad(sd.sum(y * _weights(y.shape)), x)
        _COMPILED[key] = sd.compile(out, [x, *idx], backend=backend)
    return _COMPILED[key]


def _x(case: Any) -> np.ndarray:
    return np.linspace(-2.0, 3.0, int(np.prod(case.x_shape, dtype=int))).reshape(case.x_shape) ** 3


def _expected(case: Case, part: str, index: np.ndarray) -> np.ndarray:
    x = _x(case)
    y = case.oracle(x, index)
    if part == "value":
        return y
    gr = np.zeros_like(x)
    case.scatter(gr, index, _weights(np.shape(y)))
    return gr


def _in_range(case: Case) -> st.SearchStrategy:
    n = case.size
    return st.lists(st.integers(-n, n - 1), min_size=_count(case), max_size=_count(case))


def _count(case: Case) -> int:
    return int(np.prod(case.index_shape, dtype=int))


def _assert_values(got: Any, expected: np.ndarray) -> None:
    got = np.asarray(got)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


def _assert_same_index_error(numpy_call: Callable[[], Any], call: Callable[[], Any]) -> None:
    """``call`` raises the IndexError ``numpy_call`` (the numpy backend's) raises, message and all."""
    with pytest.raises(IndexError) as expected:
        numpy_call()
    with pytest.raises(IndexError) as got:
        call()
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)
    assert "is out of bounds for axis" in str(got.value)


@pytest.mark.parametrize("backend", SWEEP)
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_indices_in_range_give_numpys_values(case, part, backend, data):
    """In range, negative indices included, repeated ones accumulating in the adjoint: numpy's values."""
    index = np.array(data.draw(_in_range(case)), dtype=np.int64).reshape(case.index_shape)
    _assert_values(_compiled(case, part, backend)(_x(case), index), _expected(case, part, index))


@pytest.mark.parametrize("backend", SWEEP)
@pytest.mark.parametrize("direction", ["below", "above"])
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_indices_out_of_range_raise_numpys_index_error(case, part, direction, backend, data):
    """One index out of range (below -n or at n and past), the others anything: numpy's IndexError."""
    n = case.size
    values = data.draw(st.lists(st.integers(-n - 3, n + 2), min_size=_count(case), max_size=_count(case)))
    bad = data.draw(st.integers(-n - 1000, -n - 1) if direction == "below" else st.integers(n, n + 1000))
    values[data.draw(st.integers(0, _count(case) - 1))] = bad
    index = np.array(values, dtype=np.int64).reshape(case.index_shape)
    _assert_same_index_error(
        lambda: _compiled(case, part, "numpy")(_x(case), index), lambda: _compiled(case, part, backend)(_x(case), index)
    )


def test_the_issue_example_raises_on_every_backend():
    """The issue's graph: index 100 of a 5-vector, numpy's message from every backend."""
    for backend in BACKENDS:
        g = sd.Graph()
        x = g.variable("x", (5,))
        i = g.variable("i", (2,), dtype="int64")
        with pytest.raises(IndexError, match=r"getitem \(node #2\): index 100 is out of bounds for axis 0 with size 5"):
            sd.compile(x[i], [x, i], backend=backend)(np.arange(5.0), np.array([1, 100]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_indices_out_of_range_raise_too(backend):
    """take and take_along_axis by constant indices out of range: numpy's IndexError, not a number."""
    g = sd.Graph()
    x = g.variable("x", (2, 3))
    for y, op in (
        (sd.take(x, np.array([0, 3]), axis=1), "take"),
        (sd.take_along_axis(x, np.array([[0], [-4]]), 1), "take_along_axis"),
    ):
        with pytest.raises(IndexError, match=f"{op} .*out of bounds for axis 1 with size 3"):
            sd.compile(y, [x], backend=backend)(np.ones((2, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_integer_on_a_none_axis_is_checked_when_run(backend):
    """x[2] and x[[0, -3]] on an axis declared None and bound to 2 values: the numpy backend's
    ShapeError (the bound size does not fit the index), never a number read past the end."""
    g = sd.Graph()
    x = g.variable("x", (None,))
    f = sd.compile([x[2] * 2.0, x[np.array([0, -3])]], [x], backend=backend)
    got = f(np.array([1.0, 2.0, 3.0]))
    assert float(got[0]) == 6.0 and np.asarray(got[1]).tolist() == [1.0, 1.0]
    with pytest.raises(sd.ShapeError, match="index 2 is out of bounds for axis 0 with size 2"):
        f(np.array([1.0, 2.0]))
    f = sd.compile(x[np.array([0, -3])], [x], backend=backend)
    with pytest.raises(sd.ShapeError, match=r"index array \[0, -3\] is out of bounds for axis 0 with size 2"):
        f(np.array([1.0, 2.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_through_a_scatter_with_batch_axes(backend):
    """The Hessian of sum(x[i]^3) (a scatter of batched tangents): diag(6 x_k * count_k), numpy's
    IndexError for an index out of range."""
    g = sd.Graph()
    x = g.variable("x", (5,))
    i = g.variable("i", (4,), dtype="int64")
    f = sd.compile(sd.hessian(sd.sum(x[i] ** 3), x), [x, i], backend=backend)
    xv = np.array([0.5, -1.0, 2.0, 3.0, -0.25])
    index = np.array([1, -1, 1, 2])
    counts = np.bincount(index % 5, minlength=5)
    np.testing.assert_allclose(np.asarray(f(xv, index)), np.diag(6 * xv * counts), rtol=RTOL, atol=RTOL)
    with pytest.raises(IndexError, match="out of bounds for axis 0 with size 5"):
        f(xv, np.array([1, -6, 0, 0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_index_inside_a_scan_body_is_checked(backend):
    """x[i_t] in a scan's body and its reverse pass: the loop's values in range; numpy's IndexError,
    naming the scan and the body's node, out of range (JAX reports it after the jitted call)."""
    g = sd.Graph()
    x = g.variable("x", (5,))
    i = g.variable("i", (3,), dtype="int64")
    c, _ = sd.scan(lambda c, it: (c + x[it] * c, None), g.constant(1.0), i)
    f = sd.compile([c, sd.grad(c, x)], [x, i], backend=backend)
    xv = np.arange(5.0) / 10
    value, grad = f(xv, np.array([1, -1, 2]))
    # c = (1 + x1)(1 + x4)(1 + x2); its gradient by hand
    np.testing.assert_allclose(float(value), 1.1 * 1.4 * 1.2, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(grad), [0, 1.4 * 1.2, 1.1 * 1.4, 0, 1.1 * 1.2], rtol=RTOL, atol=RTOL)
    message = (
        r"scan \(node #\d+\): while evaluating getitem \(node #\d+\): index 7 is out of bounds for axis 0 with size 5"
    )
    with pytest.raises(IndexError, match=message):
        f(xv, np.array([1, 7, 2]))
    if backend == "jax":  # the plain function on values raises too; under the user's jit, nan
        import jax

        with pytest.raises(IndexError, match=message):
            f.jax_function(xv, np.array([1, 7, 2]))
        with jax.enable_x64(True):
            assert np.isnan(float(jax.jit(f.jax_function)(xv, np.array([1, 7, 2]))[0]))


# -- several index arrays: numba merges the indexed axes into one and gathers (or scatter-adds)
# by one flat position array; each index is still checked against its own axis
@dataclass(frozen=True)
class MultiCase:
    name: str
    x_shape: tuple
    index_shapes: tuple  # of the index nodes, in order
    sizes: tuple  # the length of the axis each index node picks from
    gather: Callable[..., Any]  # (x node, *index nodes) -> node
    key: Callable[..., tuple]  # (*index arrays) -> numpy's index: the oracle is x[key], np.add.at


_S = slice(None)
MULTI = [
    MultiCase("pair-adjacent", (4, 5), ((3, 1), (2,)), (4, 5), lambda x, i, j: x[i, j], lambda i, j: (i, j)),
    MultiCase(
        "pair-after-slice", (2, 4, 5), ((3, 1), (2,)), (4, 5), lambda x, i, j: x[:, i, j], lambda i, j: (_S, i, j)
    ),
    MultiCase("pair-separated", (4, 3, 5), ((3, 1), (2,)), (4, 5), lambda x, i, j: x[i, :, j], lambda i, j: (i, _S, j)),
    MultiCase(
        "three-adjacent",
        (3, 4, 5),
        ((2, 1, 1), (3, 1), (2,)),
        (3, 4, 5),
        lambda x, i, j, k: x[i, j, k],
        lambda i, j, k: (i, j, k),
    ),
    MultiCase(
        "three-separated",
        (3, 4, 2, 5),
        ((2, 1), (2,), (1, 2)),
        (3, 4, 5),
        lambda x, i, j, k: x[i, j, 1:, k],
        lambda i, j, k: (i, j, slice(1, None), k),
    ),
    MultiCase(
        "node-and-constant",
        (4, 5, 3),
        ((3,),),
        (4,),
        lambda x, i: x[i, np.array([[0], [-5]]), ::-1],
        lambda i: (i, np.array([[0], [-5]]), slice(None, None, -1)),
    ),
    MultiCase(
        "newaxis-int-and-nodes",
        (3, 4, 5),
        ((2, 1), (3,)),
        (3, 5),
        lambda x, i, j: x[None, i, -2, j],
        lambda i, j: (None, i, -2, j),
    ),
    MultiCase(
        "separated-by-newaxis", (3, 4), ((2,), (2, 1)), (3, 4), lambda x, i, j: x[i, None, j], lambda i, j: (i, None, j)
    ),
    MultiCase("matrix-index", (4, 3), ((2, 3),), (4,), lambda x, i: x[i], lambda i: (i,)),
]


def _multi_indices(case: MultiCase, data: Any, low: int = 0, high: int = 0) -> list[np.ndarray]:
    """Index arrays in range, negative ones included (widened by ``low``/``high`` past each end)."""
    return [
        np.array(
            data.draw(st.lists(st.integers(-n - low, n - 1 + high), min_size=c, max_size=c)), dtype=np.int64
        ).reshape(s)
        for s, n, c in ((s, n, int(np.prod(s, dtype=int))) for s, n in zip(case.index_shapes, case.sizes))
    ]


def _expected_multi(case: MultiCase, part: str, indices: list[np.ndarray]) -> np.ndarray:
    x = _x(case)
    y = x[case.key(*indices)]
    if part == "value":
        return y
    gr = np.zeros_like(x)
    np.add.at(gr, case.key(*indices), _weights(y.shape))
    return gr


@pytest.mark.parametrize("backend", SWEEP)
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("case", MULTI, ids=lambda c: c.name)
@given(data=st.data())
def test_several_index_arrays_in_range_give_numpys_values(case, part, backend, data):
    """Two or three index arrays broadcast together, adjacent or separated (numpy moves the
    broadcast axes first), with slices, integers and None: numpy's gather and np.add.at."""
    indices = _multi_indices(case, data)
    got = _compiled(case, part, backend)(_x(case), *indices)
    _assert_values(got, _expected_multi(case, part, indices))


@pytest.mark.parametrize("backend", SWEEP)
@pytest.mark.parametrize("direction", ["below", "above"])
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("case", MULTI, ids=lambda c: c.name)
@given(data=st.data())
def test_several_index_arrays_out_of_range_raise_numpys_index_error(case, part, direction, backend, data):
    """One value of one index array (each in turn) out of range, the others anything: the numpy
    backend's IndexError, never an element found through another axis's index."""
    indices = _multi_indices(case, data, 3, 3)
    which = data.draw(st.integers(0, len(indices) - 1))
    n = case.sizes[which]
    bad = data.draw(st.integers(-n - 1000, -n - 1) if direction == "below" else st.integers(n, n + 1000))
    indices[which].reshape(-1)[data.draw(st.integers(0, indices[which].size - 1))] = bad
    _assert_same_index_error(
        lambda: _compiled(case, part, "numpy")(_x(case), *indices),
        lambda: _compiled(case, part, backend)(_x(case), *indices),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_index_pairs(backend):
    """x[[0, 1, 1], [2, 0, -1]] and x[[[0], [-2]], 1:, [1, 0]] by constants: numpy's values and np.add.at."""
    g = sd.Graph()
    x = g.variable("x", (2, 3, 3))
    keys = [([0, 1, 1], [2, 0, -1]), (np.array([[0], [-2]]), slice(1, None), [1, 0])]
    ys = [x[k] for k in keys]
    xv = np.arange(18.0).reshape(2, 3, 3) ** 2
    got = sd.compile([*ys, *(sd.grad(sd.sum(y * _weights(y.shape)), x) for y in ys)], [x], backend=backend)(xv)
    for k, key in enumerate(keys):
        np.testing.assert_allclose(np.asarray(got[k]), xv[key], rtol=RTOL, atol=RTOL)
        gr = np.zeros_like(xv)
        np.add.at(gr, key, _weights(xv[key].shape))
        np.testing.assert_allclose(np.asarray(got[len(keys) + k]), gr, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_through_a_scatter_by_two_arrays(backend):
    """The Hessian of sum(x[i, j]^3) (a scatter-add of batched tangents by two arrays): 6 x_kl
    times how often (k, l) is picked, on the diagonal of x's flattened elements."""
    g = sd.Graph()
    x = g.variable("x", (3, 4))
    i = g.variable("i", (3, 1), dtype="int64")
    j = g.variable("j", (2,), dtype="int64")
    f = sd.compile(sd.hessian(sd.sum(x[i, j] ** 3), x), [x, i, j], backend=backend)
    xv = np.linspace(-1.0, 2.0, 12).reshape(3, 4)
    iv, jv = np.array([[0], [-1], [0]]), np.array([1, -4])
    counts = np.zeros((3, 4))
    np.add.at(counts, (iv, jv), 1.0)
    expected = np.diag((6 * xv * counts).reshape(-1)).reshape(3, 4, 3, 4)
    np.testing.assert_allclose(np.asarray(f(xv, iv, jv)), expected, rtol=RTOL, atol=RTOL)
    with pytest.raises(IndexError, match="out of bounds for axis 1 with size 4"):
        f(xv, iv, np.array([1, 4]))


# jax: arange of a length known only at evaluation is refused there (issue 21 names it too)
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "numba"])
def test_cross_entropy_pick_matches_the_numpy_backend(backend):
    """The README's cross-entropy -sum(log_softmax(z)[arange(n), labels]): its value, gradient
    and Hessian-vector product equal the numpy backend's; a label out of range raises its IndexError."""
    g = sd.Graph()
    z = g.variable("z", (None, 5))
    labels = g.variable("labels", (None,), dtype="int64")
    v = g.variable("v", (None, 5))
    n = sd.count(z, axis=0)
    loss = -sd.sum(sd.log_softmax(z, axis=-1)[sd.arange(n), labels])
    outputs = [loss, sd.grad(loss, z), sd.hvp(loss, z, v)]
    rng = np.random.default_rng(21)
    zv, vv = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    lv = np.array([0, 4, -1, 2, 2, -5, 3])
    expected = sd.compile(outputs, [z, labels, v], backend="numpy")(zv, lv, vv)
    f = sd.compile(outputs, [z, labels, v], backend=backend)
    for got, want in zip(f(zv, lv, vv), expected):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=RTOL)
    # the value against numpy itself
    logp = zv - np.log(np.sum(np.exp(zv), axis=1, keepdims=True))
    np.testing.assert_allclose(float(expected[0]), -np.sum(logp[np.arange(7), lv]), rtol=RTOL)
    with pytest.raises(IndexError, match="index 5 is out of bounds for axis 1 with size 5"):
        f(zv, np.array([0, 1, 2, 3, 4, 5, 0]), vv)
