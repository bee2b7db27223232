"""The C backend (``backend="c"``) and C export (``sd.to_c``): values against numpy, derivatives
against the numpy backend, the generated C compiled with warnings as errors and run under the
address and undefined-behaviour sanitizers, the disk cache, the batched entry point, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symdiff as sd

from .c_support import c_cache, needs_c  # noqa: F401 (c_cache: an autouse fixture)

pytestmark = needs_c


def _same(outputs, inputs, values, rtol=1e-12):
    """The c backend's results equal the numpy backend's (shape, dtype, values)."""
    got = sd.compile(outputs, inputs, backend="c")(*values)
    expected = sd.compile(outputs, inputs)(*values)
    if not isinstance(outputs, list):
        got, expected = [got], [expected]
    for k, (a, b) in enumerate(zip(got, expected)):
        assert np.shape(a) == np.shape(b), (k, np.shape(a), np.shape(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype, (k, np.asarray(a).dtype, np.asarray(b).dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=f"output {k}")
    return got


rng = np.random.default_rng(23)


def test_elementwise_values_with_broadcasting_against_numpy():
    g = sd.Graph()
    a, b, s = g.variable("a", (2, 3)), g.variable("b", (3,)), g.variable("s")
    c = g.variable("c", (2, 1))
    av, bv, sv, cv = rng.standard_normal((2, 3)), rng.standard_normal(3), 0.7, rng.standard_normal((2, 1))
    outputs = [a * sd.sin(b) + 2, sd.exp(a - c) / (1 + s), sd.where(a > b, a, c), sd.maximum(a, c), sd.clip(a, -0.5, b)]
    got = sd.compile(outputs, [a, b, s, c], backend="c")(av, bv, sv, cv)
    expected = [
        av * np.sin(bv) + 2,
        np.exp(av - cv) / (1 + sv),
        np.where(av > bv, av, cv),
        np.maximum(av, cv),
        np.clip(av, -0.5, bv),
    ]
    for x, y in zip(got, expected):
        np.testing.assert_allclose(x, y, rtol=1e-14)
    _same(outputs + [sd.logaddexp(a, c), sd.round(a * 10, 1), sd.sign(a), sd.abs(a)], [a, b, s, c], [av, bv, sv, cv])


def test_scalar_chain_is_straight_line_c_on_locals():
    g = sd.Graph()
    w = g.variable("w")
    h = w
    for _ in range(12):
        h = h * sd.sin(h) + w
    outputs = [h, sd.grad(h, w)]
    _same(outputs, [w], [0.3])
    body = sd.to_c(outputs, [w])["f.c"].split("int f(")[1].split("int f_batch")[0]
    assert "for (" not in body and "work +" not in body  # no loop, no memory: locals only


def test_float32_is_kept():
    g = sd.Graph()
    x = g.variable("x", (4,), dtype="float32")
    y = sd.sum(sd.tanh(x) * x)
    got = _same([y, sd.grad(y, x)], [x], [rng.standard_normal(4).astype(np.float32)], rtol=1e-6)
    assert got[0].dtype == np.float32 and got[1].dtype == np.float32
    assert "float" in sd.to_c(y, [x])["f.h"]


@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "uint8", "bool"])
def test_integer_and_boolean_dtypes(dtype):
    g = sd.Graph()
    i, j = g.variable("i", (5,), dtype=dtype), g.variable("j", (2, 5), dtype=dtype)
    iv = rng.integers(0, 2, 5).astype(dtype) if dtype == "bool" else rng.integers(-100, 100, 5).astype(dtype)
    jv = rng.integers(0, 2, (2, 5)).astype(dtype) if dtype == "bool" else rng.integers(-100, 100, (2, 5)).astype(dtype)
    outputs = [i + j, i * j, sd.maximum(i, j), sd.sum(j, axis=1), sd.max(j, axis=0), j > i, sd.astype(j, "float64")]
    if dtype != "bool":
        outputs += [i - j, -i, sd.abs(j), sd.prod(j, axis=1), sd.min(j), i @ sd.transpose(j)]
    _same(outputs, [i, j], [iv, jv])


def test_a_float32_round_trip_rounds():
    # gcc 12 at -O2 forwards the vectorized float32 store as the float64 values (a compiler bug);
    # the library is built with -fno-strict-aliasing, which avoids it
    g = sd.Graph()
    x = g.variable("x", (3,))
    y = sd.astype(sd.astype(x, "float32"), "float64") * 2.0
    xv = np.array([0.54203582895152125, 0.3, 0.7])
    np.testing.assert_array_equal(sd.compile(y, [x], backend="c")(xv), xv.astype(np.float32).astype(np.float64) * 2)


def test_a_float_cast_to_an_integer_has_no_undefined_behaviour():
    g = sd.Graph()
    x = g.variable("x", (4,))
    values = np.array([1.7, -2.5, 1e300, np.nan])
    with np.errstate(invalid="ignore"):
        _same([sd.astype(x, "int64"), sd.astype(x, "int32"), sd.astype(x, "bool")], [x], [values])


@pytest.mark.parametrize("op", ["sum", "prod", "max", "min"])
def test_every_reduction_over_axes_with_keepdims(op):
    g = sd.Graph()
    x = g.variable("x", (2, 3, 4))
    xv = rng.standard_normal((2, 3, 4))
    fn = getattr(sd, op)
    outputs = [fn(x), fn(x, axis=1), fn(x, axis=(0, 2), keepdims=True), fn(x, axis=-1, keepdims=True)]
    got = sd.compile(outputs, [x], backend="c")(xv)
    ref = getattr(np, op)
    expected = [ref(xv), ref(xv, axis=1), ref(xv, axis=(0, 2), keepdims=True), ref(xv, axis=-1, keepdims=True)]
    for a, b in zip(got, expected):
        assert np.shape(a) == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_max_and_min_propagate_nan_as_numpy():
    g = sd.Graph()
    x = g.variable("x", (2, 3))
    xv = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, -1.0]])
    got = sd.compile([sd.max(x, axis=1), sd.min(x, axis=1), sd.max(x)], [x], backend="c")(xv)
    np.testing.assert_array_equal(got[0], np.max(xv, axis=1))
    np.testing.assert_array_equal(got[1], np.min(xv, axis=1))
    assert np.isnan(got[2])


def test_matmul_batched_and_broadcast_and_mixed_dtypes():
    g = sd.Graph()
    A, B, v = g.variable("A", (2, 3, 4)), g.variable("B", (4, 5)), g.variable("v", (4,))
    i = g.variable("i", (4, 2), dtype="int32")
    Av, Bv, vv, iv = (
        rng.standard_normal((2, 3, 4)),
        rng.standard_normal((4, 5)),
        rng.standard_normal(4),
        rng.integers(-5, 5, (4, 2)).astype(np.int32),
    )
    outputs = [A @ B, A @ v, v @ B, v @ v, A @ i, sd.transpose(A, (2, 0, 1)), sd.reshape(A, (6, 4)) @ v]
    got = _same(outputs, [A, B, v, i], [Av, Bv, vv, iv])
    np.testing.assert_allclose(got[0], Av @ Bv, rtol=1e-13)
    np.testing.assert_allclose(got[4], Av @ iv, rtol=1e-13)


def test_structure_reshape_expand_squeeze_and_creation():
    g = sd.Graph()
    x = g.variable("x", (2, 3))
    xv = rng.standard_normal((2, 3))
    e = sd.expand_dims(x, 1)
    outputs = [
        sd.reshape(x, (3, 2)),
        e,
        sd.squeeze(e, 1),
        sd.zeros_like(x),
        sd.ones_like(x),
        sd.broadcast_to(x, (4, 2, 3)),
    ]
    outputs.append(sd.stop_gradient(x) * 2)
    _same(outputs, [x], [xv])


def _mlp():
    g = sd.Graph()
    X, y = g.variable("X", (8, 5)), g.variable("y", (8, 3))
    W1, b1, W2 = g.variable("W1", (5, 6)), g.variable("b1", (6,)), g.variable("W2", (6, 3))
    h = sd.tanh(X @ W1 + b1)
    loss = sd.mean(sd.sum((h @ W2 - y) ** 2, axis=1))
    params = [W1, b1, W2]
    values = [rng.standard_normal(s) for s in [(8, 5), (8, 3), (5, 6), (6,), (6, 3)]]
    return loss, [X, y, *params], params, values


def test_gradient_and_hessian_of_a_small_mlp_equal_the_numpy_backend():
    loss, inputs, params, values = _mlp()
    outputs = [loss, *sd.grad(loss, params), sd.hessian(loss, params[1])]
    _same(outputs, inputs, values)


def test_gradient_and_hessian_of_rosenbrock():
    g = sd.Graph()
    x = g.variable("x", (10,))
    f = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    xv = rng.uniform(-1, 1, 10)
    from scipy.optimize import rosen, rosen_der, rosen_hess

    got = _same([f, sd.grad(f, x), sd.hessian(f, x)], [x], [xv])
    np.testing.assert_allclose(got[0], rosen(xv), rtol=1e-12)
    np.testing.assert_allclose(got[1], rosen_der(xv), rtol=1e-12)
    np.testing.assert_allclose(got[2], rosen_hess(xv), rtol=1e-12, atol=1e-12)


_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "f.h"

int main(void)
{
    double x[%(n)d], y[1], out0[1], out1[%(n)d], out2[%(n)d * %(n)d];
    void *work = malloc(F_WORK_BYTES + 16);
    int i;
    for (i = 0; i < %(n)d; ++i) x[i] = 0.1 * i - 0.3;
    y[0] = 0.7;
    if (f(x, y, out0, out1, out2, work) != 0) return 2;
    printf("%%.17g\n", out0[0]);
    for (i = 0; i < %(n)d; ++i) printf("%%.17g\n", out1[i]);
    for (i = 0; i < %(n)d * %(n)d; ++i) printf("%%.17g\n", out2[i]);
    free(work);
    return 0;
}
"""


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_to_c_compiles_with_warnings_as_errors_and_runs_clean_under_sanitizers(compiler, tmp_path):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    g = sd.Graph()
    x, y = g.variable("x", (None,)), g.variable("y")
    f = sd.sum(sd.exp(-y * x) * sd.sin(x) ** 2) + sd.max(x) * y
    outputs = [f, sd.grad(f, x), sd.hessian(f, x)]
    n = 5
    files = sd.to_c(outputs, [x, y], name="f", shapes={"x": (n,)})
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.c").write_text(_MAIN % {"n": n})
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fno-strict-aliasing"]
    exe = tmp_path / "main"
    done = subprocess.run(
        [compiler, *flags, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", str(exe),
         str(tmp_path / "main.c"), str(tmp_path / "f.c"), "-lm"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = subprocess.run(
        [str(exe)], capture_output=True, text=True, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"}
    )
    assert run.returncode == 0 and not run.stderr, run.stderr
    got = np.array([float(v) for v in run.stdout.split()])
    xv = 0.1 * np.arange(n) - 0.3
    expected = sd.compile(outputs, [x, y])(xv, 0.7)
    np.testing.assert_allclose(got, np.concatenate([np.ravel(e) for e in expected]), rtol=1e-13)


def test_to_c_needs_concrete_shapes_and_a_c_name():
    g = sd.Graph()
    X = g.variable("X", (None, 3))
    with pytest.raises(sd.ShapeError, match="variable 'X' has shape \\(\\?, 3\\).*pass shapes="):
        sd.to_c(sd.sum(X), [X])
    with pytest.raises(sd.GraphError, match="not a C identifier"):
        sd.to_c(sd.sum(X), [X], name="my-f", shapes={X: (2, 3)})
    header = sd.to_c(sd.sum(X), [X], name="total", shapes={X: (2, 3)})["total.h"]
    assert "#define TOTAL_WORK_BYTES" in header and "int total_batch(long n, const double *X" in header
    assert "X: float64 double[2][3]" in header


_SECOND_PROCESS = r"""
import numpy as np, symdiff as sd
from symdiff.backends import c
g = sd.Graph()
w = g.variable("w", (3,))
h = sd.sum(sd.sin(w) * w)
f = sd.compile([h, sd.grad(h, w)], [w], backend="c")
print(c.STATS["compiled"], c.STATS["loaded"], *[repr(float(v)) for v in np.ravel(f(np.array([0.1, 0.2, 0.3]))[1])])
"""


def test_a_second_process_loads_the_library_from_the_disk_cache(tmp_path):
    env = {**os.environ, "SYMDIFF_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", _SECOND_PROCESS], capture_output=True, text=True, env=env, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = (run.stdout.split() for run in runs)
    assert first[:2] == ["1", "0"]  # compiled once
    assert second[:2] == ["0", "1"]  # loaded, not compiled
    assert first[2:] == second[2:]
    assert len(list((tmp_path / "c").glob("*.so"))) == 1


def test_batch_gives_the_per_call_results():
    loss, inputs, params, values = _mlp()
    outputs = [loss, sd.grad(loss, params[0])]
    f = sd.compile(outputs, inputs, backend="c")
    stacked = [np.stack([v + 0.1 * k for k in range(4)]) for v in values]
    got = f.batch(*stacked)
    for k in range(4):
        one = f(*[s[k] for s in stacked])
        for a, b in zip(got, one):
            np.testing.assert_array_equal(a[k], b)
    g = sd.Graph()
    w = g.variable("w")
    h = w * sd.sin(w) + w
    scalars = sd.compile(h, [w], backend="c").batch(np.linspace(0, 1, 7))
    np.testing.assert_allclose(scalars, np.linspace(0, 1, 7) * np.sin(np.linspace(0, 1, 7)) + np.linspace(0, 1, 7))


def test_batch_errors_name_the_input_set_and_the_stacked_shape():
    g = sd.Graph()
    A, b = g.variable("A", (2, 2)), g.variable("b", (2,))
    f = sd.compile(sd.solve(A, b), [A, b], backend="c")
    As = np.stack([np.eye(2), np.zeros((2, 2)), np.eye(2)])
    with pytest.raises(sd.LinAlgError) as raised:
        f.batch(As, np.ones((3, 2)))
    assert "input set 1 of the batch" in "".join(raised.value.__notes__)
    with pytest.raises(sd.ShapeError, match=r"variable 'b' was given a value of shape \(2,\); .*\(n, \*\(2,\)\)"):
        f.batch(As, np.ones(2))  # one b for every set: not stacked


def test_an_unusable_cache_folder_is_a_backend_error_naming_the_setting(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(blocker))
    g = sd.Graph()
    x = g.variable("x", (2,))
    with pytest.raises(sd.BackendError, match="SYMDIFF_CACHE_DIR"):
        sd.compile(sd.sum(sd.cos(x) * 3.0), [x], backend="c")


def test_bad_shapes_raise_the_numpy_backends_error():
    g = sd.Graph()
    X, w = g.variable("X", (None, 3)), g.variable("w", (None,))
    y = X @ w
    c = sd.compile(y, [X, w], backend="c")
    numpy = sd.compile(y, [X, w])
    np.testing.assert_allclose(c(np.ones((2, 3)), np.ones(3)), [3.0, 3.0])
    for bad in [(np.ones((2, 3)), np.ones(4)), (np.ones((2, 4)), np.ones(3))]:
        with pytest.raises(sd.ShapeError) as expected:
            numpy(*bad)
        with pytest.raises(sd.ShapeError) as got:
            c(*bad)
        assert str(got.value) == str(expected.value)


def test_an_op_c_cannot_print_is_refused_by_name_at_compile_time():
    sort = sd.define_op("sort_for_c_refusal", forward=np.sort, shape=lambda s: s, kind="other")
    try:
        g = sd.Graph()
        x = g.variable("x", shape=(4,))
        y = sd.sum(sd.ops.core.apply(sort, x) ** 2)
        with pytest.raises(sd.BackendError, match="c backend cannot run op 'sort_for_c_refusal' \\(node #"):
            sd.compile(y, [x], backend="c")
        with pytest.raises(sd.BackendError, match="c backend cannot run op 'sort_for_c_refusal'"):
            sd.to_c(y, [x])
    finally:  # registered for this test only: test_op_registry checks every registered op has a case
        sd.ops.core.REGISTRY.pop("sort_for_c_refusal")


def test_missing_compiler_or_cffi_says_what_to_install(monkeypatch):
    g = sd.Graph()
    x = g.variable("x")
    monkeypatch.setenv("CC", "no-such-compiler-for-symdiff")
    with pytest.raises(sd.BackendError, match="needs a C compiler: 'no-such-compiler-for-symdiff'.*\\$CC"):
        sd.compile(x * 2, backend="c")
    monkeypatch.delenv("CC")
    monkeypatch.setitem(sys.modules, "cffi", None)
    with pytest.raises(sd.BackendError, match=r"pip install 'symdiff\[c\]'"):
        sd.compile(x * 2, backend="c")


def test_to_c_of_a_sparse_hessian_gives_its_nonzeros_and_a_pattern_function(tmp_path):
    """The Rosenbrock Hessian (tridiagonal) as its 3n-2 stored values, the CSR structure from
    the companion function; rebuilt as scipy's csr_matrix it is scipy's rosen_hess."""
    cffi = pytest.importorskip("cffi")
    optimize = pytest.importorskip("scipy.optimize")
    n = 6
    g = sd.Graph()
    x = g.variable("x", (n,))
    f = sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    H = sd.sparse_hessian(f, x)
    files = sd.to_c([f, H], [x], name="rosen")
    header = files["rosen.h"]
    assert f"#define ROSEN_OUT1_NNZ {3 * n - 2}" in header and f"#define ROSEN_OUT1_ROWS {n}" in header
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    library = tmp_path / "librosen.so"
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fno-strict-aliasing", "-O2", "-shared", "-fPIC"]
    done = subprocess.run(["cc", *flags, "-o", str(library), str(tmp_path / "rosen.c"), "-lm"], capture_output=True)
    assert done.returncode == 0, done.stderr
    ffi = cffi.FFI()
    ffi.cdef(
        "size_t rosen_work_bytes(void);"
        "int rosen(const double *x, double *out0, double *out1, void *work);"
        "void rosen_out1_pattern(long *indptr, long *indices);"
    )
    lib = ffi.dlopen(str(library))
    xv = np.linspace(-1.2, 1.0, n)
    value, nonzeros = np.zeros(1), np.zeros(3 * n - 2)
    work = ffi.new("char[]", lib.rosen_work_bytes() + 16)
    assert lib.rosen(ffi.from_buffer("double[]", xv), ffi.from_buffer("double[]", value),
                     ffi.from_buffer("double[]", nonzeros), work) == 0  # fmt: skip
    indptr, indices = np.zeros(n + 1, dtype=np.dtype("long")), np.zeros(3 * n - 2, dtype=np.dtype("long"))
    lib.rosen_out1_pattern(ffi.from_buffer("long[]", indptr), ffi.from_buffer("long[]", indices))
    import scipy.sparse

    got = scipy.sparse.csr_matrix((nonzeros, indices, indptr), shape=(n, n))
    np.testing.assert_allclose(value[0], optimize.rosen(xv), rtol=1e-13)
    np.testing.assert_allclose(got.toarray(), optimize.rosen_hess(xv), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "bool"])
def test_large_constants_written_by_loops_are_exact(dtype):
    """Constants of 64+ values that are mostly one value are filled by loops (a diagonal by one
    loop, scattered exceptions from a table): every pattern gives numpy's values bit for bit."""
    rng = np.random.default_rng(5)
    patterns = [np.eye(9), np.tile(np.eye(4), (5, 1, 1)), np.zeros((10, 10)), np.full((8, 9), 2.5)]
    scattered = np.zeros((12, 7))
    scattered.flat[rng.choice(84, 9, replace=False)] = rng.standard_normal(9)
    patterns.append(scattered)
    if dtype.startswith("float"):
        special = np.ones(80)
        special[[3, 40, 77]] = [-0.0, np.nan, np.inf]
        patterns.append(special)
    for constant in patterns:
        constant = constant.astype(dtype)
        g = sd.Graph()
        x = g.variable("x", constant.shape, dtype)
        y = x + constant if dtype != "bool" else sd.not_equal(x, constant)
        xv = np.zeros(constant.shape, dtype)
        got = sd.compile(y, [x], backend="c")(xv)
        expected = xv + constant if dtype != "bool" else constant
        np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8))


def test_review_regressions_relu_of_int64_integer_scalars_float32_sums_unused_tables(tmp_path):
    g = sd.Graph()
    y = g.variable("y", (2,), dtype="int64")
    v = np.array([2**53 + 1, 2**63 - 1])
    np.testing.assert_array_equal(sd.compile(sd.relu(y), [y], backend="c")(v), v)  # exact above 2**53
    count = sd.compile(sd.sum(y > 0), [y], backend="c")(v)
    assert type(count) is np.int64 and count == 2  # a numpy scalar, as the numpy backend gives
    z = g.variable("z", (100_000,), dtype="float32")
    total = sd.compile(sd.sum(z), [z], backend="c")(np.full(100_000, 0.1, np.float32))
    assert total.dtype == np.float32 and abs(float(total) - 100_000 * float(np.float32(0.1))) < 1e-3
    x = g.variable("x", (3,))
    (tmp_path / "f.c").write_text(sd.to_c(sd.grad(sd.sum(sd.diag(x) ** 2), x), [x])["f.c"])  # ref: its shape only
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", "-o", str(tmp_path / "f.o")]
    done = subprocess.run(["cc", *flags, str(tmp_path / "f.c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_damaged_cached_library_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path))
    from symdiff.backends import c

    g = sd.Graph()
    x = g.variable("x", (2,))
    y = sd.sum(sd.tanh(x) * 1.25)
    sd.compile(y, [x], backend="c")
    (library,) = (tmp_path / "c").glob("*.so")
    cut = tmp_path / "cut.so"  # a build cut short (a new file: this process still maps the old one)
    cut.write_bytes(library.read_bytes()[:100])
    os.replace(cut, library)
    c._OPEN.clear()  # as a new process
    np.testing.assert_allclose(sd.compile(y, [x], backend="c")(np.ones(2)), 2.5 * np.tanh(1.0))
