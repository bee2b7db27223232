"""The numba backend's own kernels against scipy: expm (scipy.linalg.expm's algorithm written in
numba) and the triangular solve (substitution loops), on stacks of matrices and in float32.

One compiled function per dtype, on stacks of any size (None dimensions), called on many
matrices: numba compiles the expm kernel for seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import installed

pytestmark = pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")
scipy_linalg = pytest.importorskip("scipy.linalg")
scipy_sparse_linalg = pytest.importorskip("scipy.sparse.linalg")


def _compiled_expm(dtype):
    g = sd.Graph()
    a = g.variable("a", shape=(None, None, None), dtype=dtype)
    return sd.compile(sd.expm(a), [a], backend="numba")


def _normwise(got, want):
    return np.max(np.abs(got - want)) / np.max(np.abs(want))


def _matrices(rng, n, norm):
    """Random, upper, lower triangular and diagonal n x n matrices of 1-norm ``norm``."""
    a = rng.standard_normal((n, n))
    out = []
    for m in (a, np.triu(a), np.tril(a), np.diag(np.diag(a))):
        out.append(m * (norm / np.linalg.norm(m, 1)))
    return out


def test_expm_agrees_with_scipy_from_tiny_to_large_norms():
    f = _compiled_expm("float64")
    rng = np.random.default_rng(0)
    for norm in np.logspace(-3, 2, 11):
        for n in (1, 2, 3, 5, 8):
            stack = np.stack(_matrices(rng, n, norm))
            got = f(stack)
            assert got.dtype == np.float64 and got.shape == stack.shape
            for a, e in zip(stack, got):
                want = scipy_linalg.expm(a)
                err = _normwise(e, want)
                if norm <= 1:
                    assert err <= 1e-12, (norm, n, err)
                else:
                    # past norm 1 the squarings amplify rounding by the condition of exp(A): scipy's
                    # own two implementations differ by 2e-12 there, and this one is as close to
                    # scipy.linalg.expm as scipy.sparse.linalg.expm is
                    spread = _normwise(scipy_sparse_linalg.expm(a), want)
                    assert err <= max(1e-12, 4 * spread), (norm, n, err, spread)
                # a triangular input keeps its other triangle exactly zero, as scipy's
                np.testing.assert_array_equal(e == 0, want == 0)


def test_expm_stacks_nonfinite_and_empty_inputs_as_scipy():
    f = _compiled_expm("float64")
    stack = np.array([[[1.0, np.nan], [0.5, 1.0]], [[np.nan, 0.0], [0.0, 1.0]], [[0.0, 1.0], [-1.0, 0.0]]])
    got = f(stack)
    want = np.stack([scipy_linalg.expm(a) for a in stack])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)  # nan where scipy's is nan
    assert f(np.zeros((2, 0, 0))).shape == (2, 0, 0)


def test_expm_keeps_float32():
    f = _compiled_expm("float32")
    rng = np.random.default_rng(1)
    for norm in (1e-3, 0.5, 5.0, 50.0):
        stack = np.stack(_matrices(rng, 4, norm)).astype(np.float32)
        got = f(stack)
        assert got.dtype == np.float32
        for a, e in zip(stack, got):
            # float32's Pade degree and squarings, computed in float64: float32's rounding of the truth
            want = scipy_linalg.expm(a.astype(np.float64))
            assert _normwise(e.astype(np.float64), want) <= 1e-6 * max(1.0, norm)


@pytest.mark.parametrize("vector", [False, True])
def test_solve_triangular_agrees_with_scipy_on_stacks(vector):
    g = sd.Graph()
    a = g.variable("a", shape=(None, None, None))
    b = g.variable("b", shape=(None,) if vector else (None, None, None))
    forms = [(lower, trans, unit) for lower in (True, False) for trans in (0, 1) for unit in (False, True)]
    outs = [sd.solve_triangular(a, b, trans=t, lower=lo, unit_diagonal=u) for lo, t, u in forms]
    f = sd.compile(outs, [a, b], backend="numba")
    rng = np.random.default_rng(2)
    for n, k in ((1, 1), (3, 2), (6, 4)):
        am = rng.standard_normal((3, n, n)) + 4 * np.eye(n)
        bm = rng.standard_normal(n) if vector else rng.standard_normal((3, n, k))
        for got, (lo, t, u) in zip(f(am, bm), forms):
            for i in range(3):
                want = scipy_linalg.solve_triangular(am[i], bm if vector else bm[i], trans=t, lower=lo, unit_diagonal=u)
                np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-14, err_msg=str((n, lo, t, u)))


def test_solve_triangular_float32_and_singular():
    g = sd.Graph()
    a = g.variable("a", shape=(3, 3), dtype="float32")
    b = g.variable("b", shape=(3, 2), dtype="float32")
    f = sd.compile(sd.solve_triangular(a, b, lower=True), [a, b], backend="numba")
    rng = np.random.default_rng(3)
    am = (rng.standard_normal((3, 3)) + 4 * np.eye(3)).astype(np.float32)
    bm = rng.standard_normal((3, 2)).astype(np.float32)
    got = f(am, bm)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scipy_linalg.solve_triangular(am, bm, lower=True), rtol=1e-5)
    am[1, 1] = 0.0  # a zero on the diagonal: scipy's LinAlgError, as the numpy backend raises
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        f(am, bm)


def test_running_products_decompositions_keep_float32():
    g = sd.Graph()
    x = g.variable("x", shape=(2, 3, 3), dtype="float32")
    w, v = sd.eigh(x)
    sign, logabs = sd.slogdet(x)
    outs = [sd.cumsum(x, 1), sd.cumprod(x, 0), sd.prod(x, (0, 2)), sd.cholesky(x), w, v * v, sign, logabs]
    f = sd.compile(outs, [x], backend="numba")
    m = np.random.default_rng(4).standard_normal((2, 3, 3))
    value = (m @ m.transpose(0, 2, 1) + 3 * np.eye(3)).astype(np.float32)
    want = sd.compile(outs, [x])(value)
    for k, (got, ref) in enumerate(zip(f(value), want)):
        assert np.asarray(got).dtype == np.float32, k
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6, err_msg=f"output {k}")


@pytest.mark.parametrize(
    "dtypes",
    [
        ("int32", "int32"),
        ("int64", "int32"),
        ("int8", "int8"),
        ("uint8", "int16"),
        ("bool", "bool"),
        ("bool", "int64"),
        ("int32", "float32"),
        ("float32", "float64"),
    ],
)
def test_matmul_of_integers_and_mixed_dtypes_is_numpys(dtypes):
    """numba's np.dot multiplies floats of one dtype only; every numpy matmul runs, exactly
    (integers wrap around as numpy's: int8 products overflow here), in numpy's result dtype."""
    dx, dy = dtypes
    rng = np.random.default_rng(3)
    shapes = [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,))]
    shapes += [((2, 3, 4), (4, 5)), ((None, 4), (2, 4, 3))]
    for sx, sy in shapes:
        g = sd.Graph()
        x, y = g.variable("x", shape=sx, dtype=dx), g.variable("y", shape=sy, dtype=dy)
        vx = (rng.integers(-100, 100, size=[d or 2 for d in sx]) * 3).astype(dx)
        vy = rng.integers(-100, 100, size=[d or 2 for d in sy]).astype(dy)
        got, want = sd.compile(x @ y, [x, y], backend="numba")(vx, vy), vx @ vy
        assert got.dtype == want.dtype and got.shape == want.shape, (sx, sy, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want, err_msg=f"{dx} @ {dy}, shapes {sx} @ {sy}")


def test_integer_relu_and_clip_stay_integers():
    """relu and clip of integers print their scalar expressions with integral constants as ints:
    numba's maximum of an int64 and 0.0 went through a float (2**53 + 1 lost, 2**63 - 1 wrapped)."""
    g = sd.Graph()
    y = g.variable("y", (3,), dtype="int64")
    v = np.array([2**53 + 1, 2**63 - 1, -7])
    for out in (sd.relu(y), sd.clip(y, -3, 2**62), sd.relu(y) + y):
        np.testing.assert_array_equal(sd.compile(out, [y], backend="numba")(v), sd.evaluate(out, {y: v}))


def test_layout_kernels_agree_with_numpy_on_random_shapes():
    """numba_kernels.permuted, transposed, batch_index and sum_axis (which stand in for
    np.transpose, np.broadcast_to over stacks and np.sum with an axis) against numpy."""
    from symdiff.backends import numba_kernels as k

    rng = np.random.default_rng(3)
    for _ in range(20):
        nd = int(rng.integers(1, 5))
        shape = tuple(int(s) for s in rng.integers(0, 4, nd))
        x = rng.standard_normal(shape)
        perm = tuple(int(p) for p in rng.permutation(nd))
        got = k.permuted(x.reshape(-1), np.array(shape, np.int64), np.array(perm, np.int64))
        np.testing.assert_array_equal(got.reshape([shape[p] for p in perm]), np.transpose(x, perm))
        # two stacks' batch axes broadcast: each result's matrix at its positions in both
        a = tuple(int(s) if rng.random() < 0.6 else 1 for s in shape)
        b = tuple(int(s) if rng.random() < 0.6 else 1 for s in shape)[int(rng.integers(0, nd + 1)) :]
        padded = (1,) * (nd - len(b)) + b
        idx, out = k.batch_index(np.array(a + padded, np.int64), 2)
        want = np.broadcast_shapes(a, b)
        assert tuple(out) == want
        pa = np.arange(int(np.prod(a))).reshape(a)
        pb = np.arange(int(np.prod(b))).reshape(b)
        np.testing.assert_array_equal(idx[0], np.broadcast_to(pa, want).reshape(-1))
        np.testing.assert_array_equal(idx[1], np.broadcast_to(pb, want).reshape(-1))
        # the sum over one axis, in order along it
        axis = int(rng.integers(0, nd))
        pre, post = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1 :]))
        summed = k.sum_axis(x.reshape(pre, shape[axis], post), np.zeros((pre, post)))
        np.testing.assert_allclose(
            summed.reshape(shape[:axis] + shape[axis + 1 :]), x.sum(axis), rtol=1e-13, atol=1e-15
        )
    m = rng.standard_normal((3, 5))
    np.testing.assert_array_equal(k.transposed(m), m.T)
    np.testing.assert_array_equal(k.transposed(m[:, ::2]), m[:, ::2].T)
    with pytest.raises(ValueError, match="broadcast"):
        k.batch_index(np.array([2, 3], np.int64), 2)


def test_elementwise_ops_of_many_axes_broadcast_as_numpy():
    """Elementwise ops over 3- and 4-axis arrays (loops, flattened ufuncs, gathered operands
    where sizes are known only at evaluation) and sums over single axes agree with numpy."""
    g = sd.Graph()
    x = g.variable("x", shape=(2, 3, 1, 4))
    y = g.variable("y", shape=(None, None, 4))  # sizes known at evaluation: gathered
    z = g.variable("z", shape=(None, 1, 4))
    i = g.variable("i", shape=(2, 3, 4), dtype="int32")
    outputs = [
        sd.hypot(y, z),  # a ufunc, broadcast at run time
        sd.softplus(y) * z,  # a scalar expression, looped, broadcast at run time
        sd.where(x > 0, sd.sin(x), y[0]),
        sd.sum(y, axis=1),
        sd.sum(i, axis=(0, 2)),
        sd.mean(x, axis=(1, 3), keepdims=True),
        sd.var(y, axis=0),
        sd.clip(y, -0.5, z),
        sd.transpose(x, (2, 0, 3, 1)) * 2.0,
    ]
    rng = np.random.default_rng(4)
    values = [rng.standard_normal((2, 3, 1, 4)), rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 1, 4))]
    values.append(rng.integers(-50, 50, (2, 3, 4)).astype(np.int32))
    got = sd.compile(outputs, [x, y, z, i], backend="numba")(*values)
    want = sd.compile(outputs, [x, y, z, i])(*values)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_numba_a_long_plan_split_into_chained_functions_gives_the_same_values(monkeypatch):
    """Past SEGMENT_LINES lines the compiled function is several njit functions called in turn,
    each passed the values it reads that earlier ones made: forced here on a short chain (its
    value and gradient, scalars and arrays) and checked against the numpy backend bit for bit."""
    from symdiff.backends import numba as numba_backend

    monkeypatch.setattr(numba_backend, "SEGMENT_LINES", 8)
    g = sd.Graph()
    w, v = g.variable("w"), g.variable("v", shape=(3,))
    h = w
    for _ in range(12):
        h = h * sd.sin(h) + w + sd.sum(v * h)
    outputs = [h, *sd.grad(h, [w, v])]
    f = sd.compile(outputs, [w, v], backend="numba")
    assert "_part1(" in f.source  # split, or the test shows nothing
    args = (0.3, np.array([0.1, -0.2, 0.05]))
    for got, want in zip(f(*args), sd.compile(outputs, [w, v])(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
