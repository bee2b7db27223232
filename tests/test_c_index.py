"""The C backend (sd.compile(..., backend="c")) on indexing and the structural primitives its
printers in symdiff.backends.c_index compute: getitem (basic slices with steps, ints, None,
Ellipsis, constant integer arrays, boolean masks, integer nodes of every integer dtype,
broadcast together), unindex (the gradient of getitem: repeated indices accumulate),
concatenate, arange, cumsum and cumprod.

Oracles: numpy on the same values (fancy indexing, np.add.at, np.concatenate, np.cumsum), and
the numpy backend's sd.evaluate; an index out of range, either side and for every integer dtype,
raises the numpy backend's IndexError, message and all. Each printed function also compiles
alone (sd.to_c) with -std=c99 -Wall -Wextra -Werror -pedantic.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops.indexing import _getitem_shape, _make_index, unindex

from . import test_index_bounds as bounds
from .op_cases import CASES, build_case

pytest.importorskip("cffi")
CC = os.environ.get("CC", "cc")
pytestmark = pytest.mark.skipif(shutil.which(CC) is None, reason="no C compiler")

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"]
RNG = np.random.default_rng(0)
X34 = RNG.normal(size=(3, 4))
X345 = RNG.normal(size=(3, 4, 5))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("c_index")


def _strict(outputs, inputs, values, folder):
    """sd.to_c's source for these shapes compiles with every warning an error."""
    files = sd.to_c(outputs, inputs, shapes={x: np.shape(v) for x, v in zip(inputs, values)})
    path = folder / f"f{abs(hash(files['f.c']))}"
    path.with_suffix(".c").write_text(files["f.c"])
    (folder / "f.h").write_text(files["f.h"])
    source, target = str(path.with_suffix(".c")), str(path.with_suffix(".o"))
    done = subprocess.run([CC, *STRICT, source, "-o", target], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def check(outputs, inputs, values, oracles, folder=None):
    """The C backend's outputs for ``values``: numpy's ``oracles`` exactly (dtype and shape
    too) and the numpy backend's."""
    outputs = outputs if isinstance(outputs, list) else [outputs]
    oracles = oracles if isinstance(oracles, list) else [oracles]
    values = [np.asarray(v, dtype=x.dtype) for x, v in zip(inputs, values)]
    got = sd.compile(outputs, inputs, backend="c")(*values)
    evaluated = sd.evaluate(outputs, dict(zip(inputs, values)))
    for c, want, numpy_backend in zip(got, oracles, evaluated):
        want = np.asarray(want)
        assert np.shape(c) == want.shape and np.asarray(c).dtype == want.dtype, (np.shape(c), want.shape)
        np.testing.assert_array_equal(c, want)
        np.testing.assert_array_equal(c, numpy_backend)
    if folder is not None:
        _strict(outputs, inputs, values, folder)
    return got


def check_raises(outputs, inputs, values):
    """Out of range: the C backend raises the numpy backend's IndexError."""
    values = [np.asarray(v, dtype=x.dtype) for x, v in zip(inputs, values)]
    with pytest.raises(IndexError) as numpy_error:
        sd.evaluate(outputs, dict(zip(inputs, values)))
    with pytest.raises(IndexError) as c_error:
        sd.compile(outputs, inputs, backend="c")(*values)
    assert str(c_error.value) == str(numpy_error.value)


def _scattered(shape, key, weights):
    """np.add.at of ``weights`` into zeros of ``shape`` at ``key``: the gradient of sum(x[key] * weights)."""
    out = np.zeros(shape, np.result_type(weights))
    np.add.at(out, key, weights)
    return out


def check_gather(x_values, key, folder=None, dtype="float64"):
    """x[key] and the gradient of sum(x[key] * w) (an unindex) for a constant key."""
    g = sd.Graph()
    x = g.variable("x", shape=np.shape(x_values), dtype=dtype)
    x_values = np.asarray(x_values, dtype)
    y = x[key]
    want = x_values[key]
    weights = np.linspace(0.5, 1.5, want.size).reshape(want.shape).astype(dtype)
    grad = sd.grad(sd.sum(y * weights), x)
    check([y, grad], [x], [x_values], [want, _scattered(x_values.shape, key, weights)], folder)


# -- getitem by constant keys, and its gradient ---------------------------------------------
BASIC = [
    (slice(1, 3),),
    (slice(None, None, -1),),
    (slice(None, None, 2), slice(3, 0, -2)),
    (1,),
    (-1, 2),
    (None, slice(None), 1),
    (Ellipsis, slice(None, None, -1)),
    (1, Ellipsis, None),
    (slice(5, 9),),  # empty
    (slice(None), slice(2, 2)),  # empty
    (-3, -4),  # a scalar
    (None,),
    (Ellipsis, 1),
]


@pytest.mark.parametrize("key", BASIC, ids=str)
def test_getitem_basic(key, folder):
    check_gather(X34, key, folder)


BASIC_3D = [(slice(None), 1, slice(None, None, -2)), (0, Ellipsis, 3), (slice(1, None), None)]


@pytest.mark.parametrize("key", BASIC_3D, ids=str)
def test_getitem_basic_3d(key):
    check_gather(X345, key)


CONSTANT = [
    ([0, 0, 2],),
    ([[1, -1], [0, 2]],),
    ([0, 2, 2], [3, -4, 0]),
    (slice(None), [3, 1]),
    ([2, 0], 1),
    (np.array(1), [0, 3]),
    ([[0], [2]], [1, 3, 0]),  # broadcast together
    (1, slice(None), [0, 0]),  # separated by a slice: numpy puts the indexed axes first
    ([[0, 1], [1, 2]], slice(None), [2, 3]),
    (np.array([True, False, True]),),
    (np.array([[True, False, False, True], [False] * 4, [True] * 4]),),
    (slice(None), np.array([False, True, True, False])),
    (np.array([], int),),
    (slice(None), np.array([], int), 1),
]


@pytest.mark.parametrize("key", CONSTANT, ids=str)
def test_getitem_constant_arrays_and_masks(key, folder):
    check_gather(X345, key, folder)


def test_getitem_float32_kept():
    check_gather(X34, (slice(None), [3, 3, 0]), dtype="float32")


def test_getitem_of_integers():
    g = sd.Graph()
    n = g.variable("n", shape=(5,), dtype="int16")
    v = np.arange(5, dtype=np.int16) - 2
    check([n[[4, 0, 0]], n[::-2]], [n], [v], [v[[4, 0, 0]], v[::-2]])


def test_getitem_of_a_scalar():
    g = sd.Graph()
    s = g.variable("s")
    check([s[None, None], sd.grad(sd.sum(s[None, None] * 3.0), s)], [s], [2.5], [np.full((1, 1), 2.5), np.float64(3.0)])


# -- getitem by integer nodes --------------------------------------------------------------
def _node_gather(x_shape, i_shape, dtype, key):
    g = sd.Graph()
    x = g.variable("x", shape=x_shape)
    i = g.variable("i", shape=i_shape, dtype=dtype)
    y = key(x, i)
    weights = np.linspace(0.5, 1.5, int(np.prod(y.shape))).reshape(y.shape)
    return [y, sd.grad(sd.sum(y * weights), x)], [x, i], weights


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_getitem_node_every_dtype(dtype, folder):
    outputs, inputs, weights = _node_gather((3, 4), (5,), dtype, lambda x, i: x[:, i])
    signed = not dtype.startswith("u")
    iv = np.array([-4 if signed else 0, 3, 0, 3, -1 if signed else 1]).astype(dtype)
    grad = _scattered((3, 4), (slice(None), iv.astype(np.int64)), weights)
    check(outputs, inputs, [X34, iv], [X34[:, iv], grad], folder)
    # out of range by one on either side, anywhere in the array
    for bad in [4] + ([-5] if signed else []):
        for at in (0, 4):
            wrong = iv.copy()
            wrong[at] = bad
            check_raises(outputs, inputs, [X34, wrong])
            check_raises(outputs[1:], inputs, [X34, wrong])  # the gradient alone: the scatter checks too


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_getitem_scalar_node(dtype):
    outputs, inputs, weights = _node_gather((3, 4), (), dtype, lambda x, i: x[i])
    for k in (2, -3) if not dtype.startswith("u") else (0, 2):
        iv = np.array(k, dtype)
        check(outputs, inputs, [X34, iv], [X34[k], _scattered((3, 4), k, weights)])
    check_raises(outputs, inputs, [X34, np.array(3, dtype)])
    if not dtype.startswith("u"):
        check_raises(outputs, inputs, [X34, np.array(-4, dtype)])


def test_getitem_uint64_past_int64_counts_from_the_end_as_numpy():
    # numpy reads an index as intp: 2**64 - 1 is -1 (the last element), 2**63 is out of range
    outputs, inputs, weights = _node_gather((4,), (2,), "uint64", lambda x, i: x[i])
    iv = np.array([0, 2**64 - 1], np.uint64)
    want = X34[0][[0, -1]]
    check(outputs, inputs, [X34[0], iv], [want, _scattered((4,), [0, -1], weights)])
    for big in (2**63, 2**63 + 1, 2**64 - 5):
        check_raises(outputs, inputs, [X34[0], np.array([0, big], np.uint64)])


def test_getitem_nodes_broadcast_with_constants_slices_and_none(folder):
    g = sd.Graph()
    x = g.variable("x", shape=(3, 4, 5))
    i = g.variable("i", shape=(2, 1), dtype="int32")
    j = g.variable("j", shape=(3,), dtype="uint16")
    iv, jv = np.array([[2], [-3]], np.int32), np.array([0, 3, 2], np.uint16)
    ys = [x[i, j], x[:, i, j], x[i, [1, 2, 0]], x[None, i, 2, ::-2], x[i, :, j], x[::-1, i]]
    want = [X345[iv, jv], X345[:, iv, jv], X345[iv, [1, 2, 0]], X345[None, iv, 2, ::-2]]
    want += [X345[iv, :, jv], X345[::-1, iv]]
    weights = [np.linspace(0.5, 1.5, w.size).reshape(w.shape) for w in want]
    grads = [sd.grad(sd.sum(y * w), x) for y, w in zip(ys, weights)]
    keys = [(iv, jv), (slice(None), iv, jv), (iv, [1, 2, 0]), (iv, 2, slice(None, None, -2))]
    keys += [(iv, slice(None), jv), (slice(None, None, -1), iv)]
    # None adds an axis of length 1 to the gather; its weights lose it in the scatter
    scatters = [_scattered((3, 4, 5), k, w if n != 3 else w[0]) for n, (k, w) in enumerate(zip(keys, weights))]
    check(ys + grads, [x, i, j], [X345, iv, jv], want + scatters, folder)
    check_raises(ys[1:2], [x, i, j], [X345, iv, np.array([0, 1, 5], np.uint16)])
    check_raises(grads[4:5], [x, i, j], [X345, np.array([[0], [3]], np.int32), jv])


def test_getitem_pick_per_row_with_a_batch_of_unknown_size():
    g = sd.Graph()
    logp = g.variable("logp", shape=(None, 3))
    y = g.variable("y", shape=(None,), dtype="int64")
    picked = logp[sd.arange(sd.count(logp, axis=0)), y]
    loss = -sd.sum(picked)
    f = sd.compile([picked, sd.grad(loss, logp)], [logp, y], backend="c")
    for n in (4, 1, 6):
        lv, yv = RNG.normal(size=(n, 3)), RNG.integers(-3, 3, n)
        got = f(lv, yv)
        np.testing.assert_array_equal(got[0], lv[np.arange(n), yv])
        np.testing.assert_array_equal(got[1], -_scattered((n, 3), (np.arange(n), yv), np.ones(n)))
    with pytest.raises(IndexError):
        f(lv, np.array([0, 1, 2, 3, 0, 1]))


def test_getitem_empty_result_still_checks_the_indices():
    g = sd.Graph()
    x = g.variable("x", shape=(3, 0))
    i = g.variable("i", shape=(2,), dtype="int64")
    check([x[i]], [x, i], [np.zeros((3, 0)), [0, 2]], [np.zeros((2, 0))])
    check_raises([x[i]], [x, i], [np.zeros((3, 0)), [0, 3]])


# -- unindex built directly: batched, float32, integers and booleans -------------------------
def _unindex(shape, key, batch=(), dtype="float64", nodes=()):
    """unindex(g, ref, key) with variables for g, ref and the index nodes (("node", k) in key)."""
    g = sd.Graph()
    ref = g.variable("ref", shape=shape)
    index_nodes = [g.variable(f"i{k}", shape=np.shape(v), dtype=np.asarray(v).dtype) for k, v in enumerate(nodes)]
    key = tuple(index_nodes[k[1]] if isinstance(k, tuple) and k[0] == "node" else k for k in key)
    found: list = []
    index = _make_index(key, shape, found)
    gathered = _getitem_shape(shape, *(n.shape for n in found), index=index)
    gv = g.variable("g", shape=tuple(batch) + gathered, dtype=dtype)
    return unindex(gv, ref, index, found), [gv, ref, *found]


def test_unindex_batched_and_float32(folder):
    iv = np.array([2, 2, 2, 0])
    node, inputs = _unindex((3, 4), (slice(None), ("node", 0)), batch=(2,), dtype="float32", nodes=[iv])
    gv = RNG.normal(size=inputs[0].shape).astype(np.float32)
    want = np.zeros((2, 3, 4), np.float32)
    np.add.at(want, (slice(None), slice(None), iv), gv)
    check([node], inputs, [gv, X34, iv], [want], folder)


def test_unindex_keeps_negative_zero_where_written_once():
    node, inputs = _unindex((3,), (slice(None, None, -1),))
    (got,) = check([node], inputs, [[-0.0, 1.0, -0.0], np.zeros(3)], [np.array([-0.0, 1.0, -0.0])])
    assert np.signbit(got[0]) and np.signbit(got[2])


@pytest.mark.parametrize("dtype", ["int8", "uint64", "bool"])
def test_unindex_of_integers_wraps_and_of_booleans_ors(dtype):
    iv = np.array([0, 0, 1, 0])
    node, inputs = _unindex((2,), (("node", 0),), dtype=dtype, nodes=[iv])
    gv = np.array([100, 100, -128, 100]).astype(dtype) if dtype != "bool" else np.array([True, True, False, False])
    want = np.zeros(2, dtype)
    np.add.at(want, iv, gv)
    check([node], inputs, [gv, np.zeros(2), iv], [want])


# -- concatenate, arange, cumsum, cumprod --------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concatenate_each_axis(axis, folder):
    g = sd.Graph()
    a = axis % 3
    shapes = [tuple(n if k == a else s for k, s in enumerate((2, 3, 4))) for n in (1, 3, 2)]
    xs = [g.variable(f"x{k}", shape=s) for k, s in enumerate(shapes)]
    vals = [RNG.normal(size=s) for s in shapes]
    y = sd.concatenate(xs, axis=axis)
    weights = np.linspace(0.5, 1.5, y.size).reshape(y.shape)
    grads = sd.grad(sd.sum(y * weights), xs)
    parts = np.split(weights, np.cumsum([s[a] for s in shapes])[:-1], axis=a)
    check([y, *grads], xs, vals, [np.concatenate(vals, axis=axis), *parts], folder)


def test_concatenate_float32_empty_parts_and_integers():
    g = sd.Graph()
    shapes = ((2, 0), (2, 3), (2, 1))
    a, b, c = (g.variable(n, shape=s, dtype="float32") for n, s in zip("abc", shapes))
    vals = [RNG.normal(size=s).astype(np.float32) for s in shapes]
    i = g.variable("i", shape=(3,), dtype="int8")
    j = g.variable("j", shape=(2,), dtype="int8")
    ints = [np.array([1, -2, 3], np.int8), np.array([-128, 127], np.int8)]
    check(
        [sd.concatenate([a, b, c], axis=1), sd.concatenate([i, j])],
        [a, b, c, i, j],
        [*vals, *ints],
        [np.concatenate(vals, axis=1), np.concatenate(ints)],
    )


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "float64", "float32"])
def test_arange_of_a_length_known_at_evaluation(dtype, folder):
    g = sd.Graph()
    x = g.variable("x", shape=(None,), dtype="float32")
    y = sd.arange(sd.count(x), dtype=dtype)
    f = sd.compile([y], [x], backend="c")
    for n in (5, 1, 0):
        (got,) = f(np.zeros(n, np.float32))
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, np.arange(n, dtype=dtype))
    _strict([y], [x], [np.zeros(3, np.float32)], folder)


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_running_each_axis(op, axis, folder):
    g = sd.Graph()
    x = g.variable("x", shape=(3, 4, 5))
    y = getattr(sd, op)(x, axis=axis)
    check([y], [x], [X345], [getattr(np, op)(X345, axis=axis)], folder)
    weights = np.linspace(0.5, 1.5, 60).reshape(3, 4, 5)
    grad = sd.grad(sd.sum(y * weights), x)
    got = sd.compile([grad], [x], backend="c")(X345)[0]
    np.testing.assert_allclose(got, sd.evaluate(grad, {x: X345}), rtol=1e-13)


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
@pytest.mark.parametrize("dtype", ["float32", "int32", "uint8", "int64", "uint64", "bool"])
def test_running_in_numpys_accumulator_dtype(op, dtype):
    g = sd.Graph()
    x = g.variable("x", shape=(2, 40), dtype=dtype)
    scale = 1.5 if dtype == "float32" else 30  # integers past their range: they wrap around as numpy's
    values = (RNG.normal(size=(2, 40)) * scale).astype(dtype) if dtype != "bool" else RNG.normal(size=(2, 40)) > 0
    # float32 accumulates in float32, in numpy's order: the same bits
    check([getattr(sd, op)(x, axis=1)], [x], [values], [getattr(np, op)(values, axis=1)])


def test_running_flat_empty_and_length_one():
    g = sd.Graph()
    x = g.variable("x", shape=(3, 0))
    y = g.variable("y", shape=(1, 3))
    z = g.variable("z", shape=(2, 3))
    v, u = RNG.normal(size=(1, 3)), RNG.normal(size=(2, 3))
    check(
        [sd.cumsum(x, axis=0), sd.cumprod(y, axis=0), sd.cumsum(z)],
        [x, y, z],
        [np.zeros((3, 0)), v, u],
        [np.zeros((3, 0)), v, np.cumsum(u)],
    )


# -- the op table's cases of these ops ------------------------------------------------------
OPS = {"getitem", "take", "take_along_axis", "untake", "untake_along_axis", "one_hot", "unindex", "arange"}
OPS |= {"concatenate", "cumsum", "cumprod"}


@pytest.mark.parametrize("case", [c for c in CASES if c.op in OPS], ids=lambda c: c.name)
def test_op_cases(case):
    """Each case's value against its numpy reference, and its gradient against the numpy backend's."""
    g, xs, y = build_case(case)
    outputs = [y]
    if y.dtype.kind == "f" and case.differentiable_inputs():
        reference = np.asarray(case.reference(*case.inputs))
        weights = np.linspace(0.5, 1.5, reference.size or 1)[: reference.size].reshape(reference.shape)
        grads = sd.grad(sd.sum(y * weights), [xs[k] for k in case.differentiable_inputs()])
        outputs += grads if isinstance(grads, list) else [grads]
    got = sd.compile(outputs, xs, backend="c")(*case.inputs)
    np.testing.assert_allclose(got[0], case.reference(*case.inputs), rtol=case.rtol)
    for c, want in zip(got, sd.evaluate(outputs, dict(zip(xs, case.inputs)))):
        np.testing.assert_allclose(c, want, rtol=1e-13)


# -- test_index_bounds.py's sweeps and single tests, on the C backend ----------------------------
# the sweeps build a function per case and part: slow, as the numba and jax sweeps are (CI runs them)
@pytest.mark.slow
@pytest.mark.parametrize("part", bounds.PARTS)
@pytest.mark.parametrize("case", bounds.CASES, ids=lambda c: c.name)
def test_index_bounds_sweep(case, part):
    """In range (negative and repeated indices): numpy's values; one index out of range, either
    side: the numpy backend's IndexError (hypothesis draws the values)."""
    bounds.test_indices_in_range_give_numpys_values(case, part, "c")
    for direction in ("below", "above"):
        bounds.test_indices_out_of_range_raise_numpys_index_error(case, part, direction, "c")


@pytest.mark.slow
@pytest.mark.parametrize("part", bounds.PARTS)
@pytest.mark.parametrize("case", bounds.MULTI, ids=lambda c: c.name)
def test_index_bounds_sweep_several_arrays(case, part):
    bounds.test_several_index_arrays_in_range_give_numpys_values(case, part, "c")
    for direction in ("below", "above"):
        bounds.test_several_index_arrays_out_of_range_raise_numpys_index_error(case, part, direction, "c")


@pytest.mark.parametrize(
    "name",
    [
        "test_constant_indices_out_of_range_raise_too",
        "test_an_integer_on_a_none_axis_is_checked_when_run",
        "test_hessian_through_a_scatter_with_batch_axes",
        "test_constant_index_pairs",
        "test_hessian_through_a_scatter_by_two_arrays",
        "test_cross_entropy_pick_matches_the_numpy_backend",
    ],
)
def test_index_bounds_single(name):
    getattr(bounds, name)("c")
