"""The C backend's dense linear-algebra kernels (symdiff.backends.c_linalg), compiled alone with
the system C compiler and called through cffi, against numpy and scipy: random, ill-conditioned,
triangular, diagonal, singular and non-finite matrices of sizes 0..8, float64 and float32; once
more under -fsanitize=address,undefined. Then each op end to end through sd.compile(backend="c")
on stacks of matrices, with gradients, against the numpy backend (when the backend runs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

cffi = pytest.importorskip("cffi")

from symdiff.backends import c_linalg  # noqa: E402

CC = os.environ.get("CC", "cc")
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC"]
pytestmark = pytest.mark.skipif(shutil.which(CC) is None, reason="no C compiler")

SIZES = range(9)
KINDS = ["random", "ill", "lower", "upper", "diagonal", "singular", "rank2", "zero", "nan", "inf"]
DTYPES = {"float64": (np.float64, "double", 1e-12), "float32": (np.float32, "float", 2e-5)}


def _build(tmp: str, extra: tuple[str, ...] = ()) -> tuple[object, object]:
    """Every kernel of both dtypes as exported functions, in a shared library; (ffi, lib)."""
    source = c_linalg.all_kernels().replace("\nstatic ", "\n")
    path = os.path.join(tmp, "kernels")
    with open(path + ".c", "w") as f:
        f.write(source)
    subprocess.run([CC, *FLAGS, "-O2", *extra, path + ".c", "-o", path + ".so", "-lm"], check=True)
    ffi = cffi.FFI()
    prototypes = re.findall(r"^((?:int|void|double|float) sd_\w+\([^{;]*?\))\s*\{", source, re.M)
    ffi.cdef("\n".join(p + ";" for p in prototypes))
    return ffi, ffi.dlopen(path + ".so")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return Kernels(*_build(str(tmp_path_factory.mktemp("c_kernels"))))


class Kernels:
    """numpy-facing calls of the compiled kernels (one matrix each)."""

    def __init__(self, ffi, lib):
        self.ffi, self.lib = ffi, lib

    def _p(self, x: np.ndarray, dtype) -> object:
        return self.ffi.from_buffer(DTYPES[np.dtype(dtype).name][1] + "[]", x, require_writable=True)

    def _fn(self, name: str, dtype) -> object:
        return getattr(self.lib, f"sd_{name}_{c_linalg._TYPES[np.dtype(dtype).name]['s']}")

    def _work(self, nbytes: int) -> np.ndarray:
        return np.zeros(max(nbytes, 16) // 8 + 2, np.float64)

    def _in(self, a, dtype):
        return np.ascontiguousarray(a, dtype)

    def solve(self, a, b):
        dt = a.dtype
        n = a.shape[0]
        k = 1 if b.ndim == 1 else b.shape[1]
        x = np.zeros(b.shape, dt)
        work = self._work(8 * n + dt.itemsize * n * n)
        code = self._fn("solve", dt)(
            n, k, self._p(a.copy(), dt), self._p(b.copy(), dt), self._p(x, dt), self.ffi.from_buffer(work)
        )
        return code, x

    def inv(self, a):
        n, dt = a.shape[0], a.dtype
        x = np.zeros((n, n), dt)
        work = self._work(8 * n + dt.itemsize * n * n)
        code = self._fn("solve", dt)(
            n, n, self._p(a.copy(), dt), self.ffi.NULL, self._p(x, dt), self.ffi.from_buffer(work)
        )
        return code, x

    def slogdet(self, a):
        n, dt = a.shape[0], a.dtype
        out = np.zeros(2, dt)
        work = self._work(8 * n + dt.itemsize * n * n)
        p = self._p(out, dt)
        self._fn("slogdet", dt)(n, self._p(a.copy(), dt), p, p + 1, self.ffi.from_buffer(work))
        return out

    def det(self, a):
        n, dt = a.shape[0], a.dtype
        out = np.zeros(1, dt)
        work = self._work(8 * n + dt.itemsize * n * n)
        self._fn("det", dt)(n, self._p(a.copy(), dt), self._p(out, dt), self.ffi.from_buffer(work))
        return out[0]

    def cholesky(self, a):
        n, dt = a.shape[0], a.dtype
        out = np.zeros((n, n), dt)
        return self._fn("cholesky", dt)(n, self._p(a.copy(), dt), self._p(out, dt)), out

    def solve_triangular(self, a, b, lower, trans, unit):
        dt, n = a.dtype, a.shape[0]
        k = 1 if b.ndim == 1 else b.shape[1]
        x = np.zeros(b.shape, dt)
        fn = self._fn("solve_triangular", dt)
        code = fn(n, k, self._p(a.copy(), dt), self._p(b.copy(), dt), self._p(x, dt), lower, trans, unit)
        return code, x

    def eigh(self, a):
        n, dt = a.shape[0], a.dtype
        w, v = np.zeros(n, dt), np.zeros((n, n), dt)
        work = self._work(dt.itemsize * n * n)
        self._fn("eigh", dt)(n, self._p(a.copy(), dt), self._p(w, dt), self._p(v, dt), self.ffi.from_buffer(work))
        return w, v

    def eigh_gaps(self, w):
        n, dt = w.shape[0], w.dtype
        f = np.zeros((n, n), dt)
        return self._fn("eigh_gaps", dt)(n, self._p(w.copy(), dt), self._p(f, dt)), f

    def singular_values(self, a):
        (m, n), dt = a.shape, a.dtype
        s = np.zeros(min(m, n), dt)
        work = self._work(dt.itemsize * m * n)
        self._fn("singular_values", dt)(m, n, self._p(a.copy(), dt), self._p(s, dt), self.ffi.from_buffer(work))
        return s

    def adjugate(self, a, t=None):
        n, dt = a.shape[0], a.dtype
        out = np.zeros((n, n), dt)
        work = self._work(8 * n + dt.itemsize * (6 * n * n + 4 * n))
        args = [self._p(a.copy(), dt)] + ([] if t is None else [self._p(t.copy(), dt)])
        name = "adjugate" if t is None else "adjugate_jvp"
        self._fn(name, dt)(n, *args, self._p(out, dt), self.ffi.from_buffer(work))
        return out

    def expm(self, a):
        n, dt = a.shape[0], a.dtype
        out = np.zeros((n, n), dt)
        coeff = np.array([float(c) for c in c_linalg._EXPM_COEFF[dt.name].split(",")])
        work = self._work(8 * n + 8 * (13 * n * n + 4 * n))
        self._fn("expm", dt)(
            n,
            self._p(a.copy(), dt),
            self._p(out, dt),
            self.ffi.from_buffer("double[]", coeff),
            self.ffi.from_buffer(work),
        )
        return out


def matrix(kind: str, n: int, dtype, seed: int = 0) -> np.ndarray:
    """A test matrix of ``kind`` (KINDS), n x n."""
    rng = np.random.default_rng(1000 * n + 100 * seed + KINDS.index(kind))
    a = rng.standard_normal((n, n))
    if kind == "ill" and n:  # condition number 1e6 (1e3 for float32)
        q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
        q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
        top = 6 if dtype == np.float64 else 3
        a = q1 @ np.diag(np.logspace(0, -top, n)) @ q2
    elif kind == "lower":
        a = np.tril(a)
    elif kind == "upper":
        a = np.triu(a)
    elif kind == "diagonal":
        a = np.diag(np.diag(a))
    elif kind == "singular" and n:  # exactly: a zero pivot in any elimination order
        a[:, n // 2] = 0.0
    elif kind == "rank2" and n > 2:  # singular in exact arithmetic, not in rounded
        a = rng.standard_normal((n, 2)) @ rng.standard_normal((2, n))
    elif kind == "zero":
        a = np.zeros((n, n))
    elif kind == "nan" and n:
        a[rng.integers(n), rng.integers(n)] = np.nan
    elif kind == "inf" and n:
        a[rng.integers(n), rng.integers(n)] = np.inf
    return np.ascontiguousarray(a, dtype)


def close(got, want, tol: float, what: str = "", scale: float = 0.0) -> None:
    """Normwise agreement relative to want's norm (or ``scale`` where larger); non-finite entries
    where numpy has them."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"nan pattern {what}")
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)], err_msg=what)
    scale = max(np.linalg.norm(want[finite]), scale, np.finfo(np.float64).tiny)
    err = np.linalg.norm(got[finite] - want[finite]) / scale
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}\ngot {got}\nwant {want}"


# the README's test command runs these sizes; CI's slow set every size in SIZES
QUICK_SIZES = (0, 3)


def cases(kinds=KINDS, sizes=SIZES):
    return [
        pytest.param(kind, n, dt, id=f"{kind}-{n}-{dt}", marks=[] if n in QUICK_SIZES else [pytest.mark.slow])
        for dt in DTYPES
        for kind in kinds
        for n in sizes
        if n or kind == "random"
    ]


def _tol(dtype, cond: float = 1.0) -> float:
    return DTYPES[dtype][2] * max(1.0, cond / 1e3)


def _cond(a: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.linalg.cond(a.astype(np.float64))) if a.size and np.all(np.isfinite(a)) else 1.0


# -- LU: solve, inv, det, slogdet ------------------------------------------------------------
@pytest.mark.parametrize("kind, n, dtype", cases())
def test_solve_and_inv(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt)
    rng = np.random.default_rng(n)
    for b in (rng.standard_normal(n).astype(dt), rng.standard_normal((n, 3)).astype(dt)):
        code, x = kernels.solve(a, b)
        if not np.all(np.isfinite(a)):  # never a singular matrix numpy would not call singular
            assert code == 0
            continue
        try:
            with np.errstate(all="ignore"):
                want = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            assert code == 1 or kind == "rank2", "numpy raises: the kernel reports a singular matrix"
            continue
        assert code == 0 or kind == "rank2"
        if kind == "rank2":  # a zero pivot or a rounding-size one, depending on the elimination order
            continue
        close(x, want, _tol(dtype, _cond(a)), "solve")
    code, x = kernels.inv(a)
    if not np.all(np.isfinite(a)):
        assert code == 0
        return
    try:
        with np.errstate(all="ignore"):
            want = np.linalg.inv(a)
    except np.linalg.LinAlgError:
        assert code == 1 or kind == "rank2"
        return
    assert code == 0 or kind == "rank2"
    if kind != "rank2":
        close(x, want, _tol(dtype, _cond(a)), "inv")


@pytest.mark.parametrize("kind, n, dtype", cases())
def test_det_and_slogdet(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt)
    with np.errstate(all="ignore"):
        sign, logabs = np.linalg.slogdet(a)
        det = np.linalg.det(a)
    got = kernels.slogdet(a)
    assert got.dtype == dt
    if kind == "rank2" and n > 2:
        # singular in exact arithmetic only: a zero pivot in one elimination order, a rounding-size
        # one in another; both |det| at rounding size of Hadamard's bound
        bound = np.prod(np.linalg.norm(a.astype(np.float64), axis=0)) * np.finfo(dt).eps * 100
        assert abs(kernels.det(a)) <= bound and abs(det) <= bound
        return
    if not np.isnan(logabs):  # with a nan, the sign follows LAPACK's pivot choice among nans (numpy's ±1)
        assert got[0] == sign
    close(got[1], logabs, _tol(dtype) * max(1.0, abs(float(logabs))), "logabsdet")
    close(kernels.det(a), det, _tol(dtype) * max(1.0, abs(float(logabs))), "det")


# -- cholesky ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, n, dtype", cases())
def test_cholesky(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    m = matrix(kind, n, dt)
    spd = kind in ("random", "ill", "lower", "upper")
    a = (m @ m.T + (n * np.eye(n, dtype=dt) if kind != "ill" else 0)).astype(dt) if spd else m
    a = a + np.triu(np.ones((n, n), dt), 1) * 0.25  # not symmetric: the op factors the symmetric part
    code, low = kernels.cholesky(a)
    try:
        with np.errstate(all="ignore"):
            want = np.linalg.cholesky(0.5 * (a + a.T))
    except np.linalg.LinAlgError:
        assert code == 1
        return
    assert code == 0 and np.all(np.triu(low, 1) == 0)
    close(low, want, _tol(dtype, _cond(a)), "cholesky")


# -- solve_triangular -------------------------------------------------------------------------
@pytest.mark.parametrize("kind, n, dtype", cases(["random", "ill", "diagonal", "singular", "nan", "inf"]))
@pytest.mark.parametrize("lower, trans, unit", [(1, 0, 0), (0, 0, 0), (1, 1, 0), (0, 1, 1), (1, 0, 1)])
def test_solve_triangular(kernels, kind, n, dtype, lower, trans, unit):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt) + (np.eye(n, dtype=dt) * 3 if kind == "random" else 0)
    if kind == "singular" and n:
        a[n // 2, n // 2] = 0
    b = np.random.default_rng(n).standard_normal((n, 2)).astype(dt)
    for rhs in (b, b[:, 0].copy()):
        code, x = kernels.solve_triangular(a, rhs, lower, trans, unit)
        try:
            want = scipy.linalg.solve_triangular(
                a, rhs, trans=trans, lower=bool(lower), unit_diagonal=bool(unit), check_finite=False
            )
        except np.linalg.LinAlgError:
            assert code == 1
            continue
        assert code == 0
        tri = np.tril(a) if lower else np.triu(a)
        if unit:
            np.fill_diagonal(tri, 1.0)
        if np.all(np.isfinite(tri)):
            close(x, want, _tol(dtype, _cond(tri)), "solve_triangular")
        else:
            assert np.all(np.isnan(x) | ~np.isnan(want))


# -- eigh, eigh_gaps -----------------------------------------------------------------------------
def same_up_to_sign(v, want, tol):
    signs = np.sign(np.sum(v * want, axis=0))
    signs[signs == 0] = 1
    close(v * signs, want, tol, "eigenvectors")


@pytest.mark.parametrize("kind, n, dtype", cases())
def test_eigh(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt)
    w, v = kernels.eigh(a)
    s = 0.5 * (a + a.T)
    if not np.all(np.isfinite(s)):
        assert np.all(np.isnan(w)) and np.all(np.isnan(v))
        return
    want_w, want_v = np.linalg.eigh(s)
    tol = _tol(dtype)
    close(w, want_w, tol, "eigenvalues")
    assert np.all(np.diff(w) >= 0), "ascending"
    close(v.T.astype(np.float64) @ v, np.eye(n), tol, "orthonormal")
    close(v.astype(np.float64) @ np.diag(w) @ v.T, s, tol, "reconstructs")
    gap = np.min(np.diff(want_w)) if n > 1 else 1.0
    if n and gap > 1e-3 * max(1.0, np.abs(want_w).max()):  # distinct eigenvalues: vectors up to sign
        same_up_to_sign(v, want_v, tol * max(1.0, np.abs(want_w).max() / gap))


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh_gaps(kernels, dtype):
    dt = DTYPES[dtype][0]
    from symdiff.ops.linalg import eigh_gaps_and_ties

    for w in (
        [],
        [1.0],
        [1.0, 2.0, 4.0],
        [-3.0, 0.0, 1e-3, 7.0],
        [1.0, 1.0 + 1e-15, 3.0],
        [2.0, 2.0],
        [np.nan, 1.0, 1.0],
        [0.0, 0.0],
    ):
        w = np.array(w, dt)
        code, f = kernels.eigh_gaps(w)
        with np.errstate(all="ignore"):
            want, tie = eigh_gaps_and_ties(np, w)
        assert code == int(bool(np.any(tie))), w
        if not np.any(tie):
            close(f, want, _tol(dtype), "gaps")


# -- singular values, adjugate ---------------------------------------------------------------------
@pytest.mark.parametrize("kind, n, dtype", cases())
def test_singular_values(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt)
    for m in (a, a[: max(n - 2, 0)], np.ascontiguousarray(a[:, : max(n - 3, 0)])):
        s = kernels.singular_values(np.ascontiguousarray(m))
        if not np.all(np.isfinite(m)):
            assert np.all(np.isnan(s))
            continue
        want = np.linalg.svd(m, compute_uv=False)[::-1] if m.size else np.zeros(min(m.shape), dt)
        close(s, want, _tol(dtype), "singular values")


def adjugate_oracle(a: np.ndarray) -> np.ndarray:
    """The transposed cofactors, each an exact-enough determinant of a minor (float64)."""
    a = a.astype(np.float64)
    n = a.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            minor = np.delete(np.delete(a, j, 0), i, 1)
            out[i, j] = (-1) ** (i + j) * (np.linalg.det(minor) if n > 1 else 1.0)
    return out


@pytest.mark.parametrize("kind, n, dtype", cases())
def test_adjugate(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt)
    got = kernels.adjugate(a)
    if not np.all(np.isfinite(a)):
        assert np.all(np.isnan(got))
        return
    # error relative to ||a||^(n-1) (the size of the cofactors' rounding), not to adj(a), which is
    # rounding noise itself for a rank below n - 1
    scale = np.linalg.norm(a.astype(np.float64), 2) ** (n - 1) if n else 0.0
    close(got, adjugate_oracle(a), _tol(dtype, _cond(a) if kind == "ill" else 1.0), "adjugate", scale)


@pytest.mark.parametrize(
    "kind, n, dtype", cases(["random", "ill", "lower", "diagonal", "singular", "rank2", "zero", "nan"])
)
def test_adjugate_jvp(kernels, kind, n, dtype):
    dt = DTYPES[dtype][0]
    a = matrix(kind, n, dt)
    t = np.random.default_rng(7 + n).standard_normal((n, n)).astype(dt)
    got = kernels.adjugate(a, t)
    if not np.all(np.isfinite(a)):
        assert np.all(np.isnan(got))
        return
    # Jacobi's formula on each cofactor: d adj(a)[t][i, j] = (-1)^(i+j) tr(adj(m) t_m), m and t_m
    # a and t without row j and column i
    a64, t64 = a.astype(np.float64), t.astype(np.float64)
    want = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            m, tm = (np.delete(np.delete(x, j, 0), i, 1) for x in (a64, t64))
            want[i, j] = (-1) ** (i + j) * np.sum(adjugate_oracle(m).T * tm) if n > 1 else 0.0
    scale = np.linalg.norm(a64, 2) ** max(n - 2, 0) * np.linalg.norm(t64, 2) if n else 0.0
    close(got, want, _tol(dtype, _cond(a) if kind == "ill" else 1.0), "adjugate_jvp", scale)


# -- expm -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, n, dtype", cases())
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_expm(kernels, kind, n, dtype, scale):
    dt = DTYPES[dtype][0]
    a = (matrix(kind, n, dt) * scale).astype(dt)
    got = kernels.expm(a)
    assert got.dtype == dt
    with np.errstate(all="ignore"):
        want = scipy.linalg.expm(a) if n else np.zeros((0, 0), dt)
    if not np.all(np.isfinite(a)) and np.count_nonzero(a[~np.eye(n, dtype=bool)]):
        # nan throughout, as the numba backend (scipy's own pattern depends on where its arithmetic meets it)
        assert np.all(np.isnan(got) | (got == 0)) and np.any(np.isnan(got))
        return
    close(got, want, _tol(dtype) * (1 if scale < 10 else 100), "expm")


# -- each kernel alone: its helpers complete (no unused or missing static function) ------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_kernel_compiles_alone(tmp_path, dtype):
    for name in c_linalg._KERNELS:
        if name in c_linalg._UNTYPED:
            continue
        fn = f"sd_{name}_{c_linalg._TYPES[dtype]['s']}"
        source = "#include <math.h>\n" + "".join(s for _, s in c_linalg.kernel_sources(name, dtype))
        use = f"sd_any sd_use(void);\nsd_any sd_use(void) {{ return (sd_any){fn}; }}\n"
        source += "\ntypedef void (*sd_any)(void);\n" + use
        path = tmp_path / f"{name}.c"
        path.write_text(source)
        subprocess.run([CC, *FLAGS, "-c", str(path), "-o", str(tmp_path / f"{name}.o")], check=True)


SANITIZED = """
import sys
sys.path.insert(0, {here!r})
import numpy as np
import test_c_kernels as t
k = t.Kernels(*t._build({tmp!r}, ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")))
for dt in (np.float64, np.float32):
    for kind in t.KINDS:
        for n in range(0, 9):
            a = t.matrix(kind, n, dt)
            b = np.ones((n, 2), dt)
            k.solve(a, b); k.inv(a); k.slogdet(a); k.det(a); k.cholesky(a); k.eigh(a)
            k.solve_triangular(a, b, 1, 0, 0); k.solve_triangular(a, b[:, 0].copy(), 0, 1, 1)
            k.eigh_gaps(np.arange(n, dtype=dt)); k.singular_values(a); k.singular_values(a[: n // 2].copy())
            k.adjugate(a); k.adjugate(a, a); k.expm(a); k.expm(a * dt(40))
print("clean")
"""


def test_kernels_clean_under_sanitizers(tmp_path):
    """Every kernel on every test matrix in a process of its own with the library built with
    -fsanitize=address,undefined (the sanitizer runtime preloaded: python itself is not built with it)."""
    lib = subprocess.run([CC, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(lib):
        pytest.skip("the compiler has no AddressSanitizer runtime")
    env = dict(os.environ, LD_PRELOAD=lib, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="halt_on_error=1")
    code = SANITIZED.format(here=os.path.dirname(__file__), tmp=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0 and "clean" in run.stdout, run.stderr[-3000:]
    assert "runtime error" not in run.stderr, run.stderr[-3000:]


# -- end to end: sd.compile(backend="c") against the numpy backend, on stacks of matrices ----------
def _spd(rng, shape, dtype=np.float64):
    m = rng.standard_normal(shape)
    return (m @ np.swapaxes(m, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def _linalg_program(op: str, dtype=np.float64):
    """(outputs, inputs, values) exercising ``op`` on a stack of 3 matrices, with gradients."""
    import symdiff as sd
    from symdiff.ops.linalg import adjugate

    rng = np.random.default_rng(5)
    g = sd.Graph()
    n = 4
    A = g.variable("A", shape=(3, n, n), dtype=dtype)
    W = g.variable("W", shape=(3, n, n), dtype=dtype)
    a = (rng.standard_normal((3, n, n)) + 3 * np.eye(n)).astype(dtype)
    wv = rng.standard_normal((3, n, n)).astype(dtype)
    inputs, values = [A, W], [a, wv]
    if op == "solve":
        B = g.variable("B", shape=(2, 1, n, 2), dtype=dtype)  # broadcast against A's stack: (2, 3, n, 2)
        b = g.variable("b", shape=(n,), dtype=dtype)
        x, y = sd.solve(A, B), sd.solve(A, b)
        cost = sd.sum(x * x) + sd.sum(y * sd.sum(W, -1))
        inputs, values = (
            [A, W, B, b],
            [a, wv, rng.standard_normal((2, 1, n, 2)).astype(dtype), rng.standard_normal(n).astype(dtype)],
        )
        outs = [x, y, *sd.grad(cost, [A, B, b])]
    elif op == "inv":
        outs = [sd.inv(A), sd.grad(sd.sum(sd.inv(A) * W), A)]
    elif op == "det":  # the gradient is the adjugate, its derivative adjugate_jvp
        d = sd.grad(sd.sum(sd.det(A)), A)
        outs = [sd.det(A), d, sd.grad(sd.sum(d * W), A), adjugate(A)]
    elif op == "slogdet":
        sign, logabs = sd.slogdet(A)
        outs = [sign, logabs, sd.logdet(A @ sd.matrix_transpose(A)), sd.grad(sd.sum(logabs * sign), A)]
    elif op == "cholesky":
        values[0] = _spd(rng, (3, n, n), dtype)
        L = sd.cholesky(A)
        outs = [L, sd.grad(sd.sum(L * W), A), sd.cho_solve((L, True), W)]
    elif op == "solve_triangular":
        outs = []
        for lower, trans, unit in [(True, 0, False), (False, 1, False), (True, 1, True)]:
            x = sd.solve_triangular(A, W, trans=trans, lower=lower, unit_diagonal=unit)
            outs += [x, *sd.grad(sd.sum(x * x), [A, W])]
    elif op == "eigh":  # eigenvectors are unique up to sign: compare sign-free functions of them
        values[0] = (values[0] + np.swapaxes(values[0], -1, -2)).astype(dtype)
        w, v = sd.eigh(A)
        cost = sd.sum(w * sd.sum(W, -1)) + sd.sum((v * v) * W)
        outs = [w, v * v, sd.grad(cost, A)]
    elif op == "singular_values":
        X = g.variable("X", shape=(3, n, n + 2), dtype=dtype)
        inputs.append(X)
        values.append(rng.standard_normal((3, n, n + 2)).astype(dtype))
        nuc, top = sd.norm(X, "nuc", axis=(-2, -1)), sd.norm(X, 2, axis=(-2, -1))
        outs = [nuc, top, sd.grad(sd.sum(nuc) + sd.sum(top), X)]
    elif op == "expm":
        values[0] = (values[0] * 0.5).astype(dtype)
        outs = [sd.expm(A), sd.grad(sd.sum(sd.expm(A) * W), A)]
    return outs, inputs, values


LINALG_OPS = ["solve", "inv", "det", "slogdet", "cholesky", "solve_triangular", "eigh", "singular_values", "expm"]


def _c_backend_or_skip():
    import symdiff as sd

    g = sd.Graph()
    x = g.variable("x", shape=(2, 2))
    try:
        sd.compile(sd.det(x), [x], backend="c")(np.eye(2))
    except Exception as e:  # noqa: BLE001 (the backend is being built beside these kernels)
        pytest.skip(f"the C backend does not run yet: {e}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", LINALG_OPS)
def test_op_through_the_c_backend(op, dtype):
    import symdiff as sd

    _c_backend_or_skip()
    outs, inputs, values = _linalg_program(op, DTYPES[dtype][0])
    got = sd.compile(outs, inputs, backend="c")(*values)
    want = sd.compile(outs, inputs)(*values)
    for k, (x, y) in enumerate(zip(got, want)):
        assert np.asarray(x).dtype == np.asarray(y).dtype and np.shape(x) == np.shape(y), (op, k)
        close(x, y, 1e-12 if dtype == "float64" else 2e-5, f"{op} output {k}")


def test_c_backend_raises_numpys_errors():
    import symdiff as sd

    _c_backend_or_skip()
    g = sd.Graph()
    A = g.variable("A", shape=(2, 3, 3))
    b = g.variable("b", shape=(3,))
    singular = np.stack([np.eye(3), np.zeros((3, 3))])
    with pytest.raises(np.linalg.LinAlgError):
        sd.compile(sd.solve(A, b), [A, b], backend="c")(singular, np.ones(3))
    with pytest.raises(np.linalg.LinAlgError):
        sd.compile(sd.inv(A), [A], backend="c")(singular)
    with pytest.raises(np.linalg.LinAlgError):
        sd.compile(sd.cholesky(A), [A], backend="c")(-singular)
    with pytest.raises(np.linalg.LinAlgError):
        sd.compile(sd.solve_triangular(A, b), [A, b], backend="c")(singular, np.ones(3))
    w, v = sd.eigh(A)
    with pytest.raises(sd.SymdiffError, match="repeated eigenvalue"):
        sd.compile(sd.grad(sd.sum(v * v * g.constant(np.arange(9.0).reshape(3, 3))), A), [A], backend="c")(singular)
    # a singular matrix's det, slogdet and adjugate are values, not errors
    det = sd.compile([sd.det(A), *sd.slogdet(A), sd.grad(sd.sum(sd.det(A)), A)], [A], backend="c")(singular)
    close(det[0], [1.0, 0.0], 0)
    assert det[1][1] == 0 and det[2][1] == -np.inf
    close(det[3], np.stack([np.eye(3), np.zeros((3, 3))]), 1e-15)


@pytest.mark.parametrize("shape", [(0, 3, 3), (2, 1, 1), (2, 0, 0), (3, 3)])
def test_edge_shapes_through_the_c_backend(shape):
    import symdiff as sd

    _c_backend_or_skip()
    g = sd.Graph()
    A = g.variable("A", shape=shape)
    outs = [sd.det(A), *sd.slogdet(A), sd.inv(A), sd.expm(A), sd.eigh(A)[0]]
    if shape[-1]:  # the numpy backend's adjugate of 0 x 0 matrices raises (a max of no elements)
        outs.append(sd.grad(sd.sum(sd.det(A)), A))
    outs += [sd.solve(A, A), sd.cholesky(A @ sd.matrix_transpose(A) + g.constant(np.eye(shape[-1])))]
    a = np.random.default_rng(1).standard_normal(shape) + 2 * np.eye(shape[-1])
    for x, y in zip(sd.compile(outs, [A], backend="c")(a), sd.compile(outs, [A])(a)):
        assert np.shape(x) == np.shape(y)
        close(x, y, 1e-12)


def test_mixed_dtypes_and_the_batched_entry_point():
    import symdiff as sd

    _c_backend_or_skip()
    g = sd.Graph()
    A = g.variable("A", shape=(3, 3), dtype=np.float32)
    b = g.variable("b", shape=(3,))
    outs = [sd.solve(A, b), sd.det(A), sd.grad(sd.sum(sd.solve(A, b)), A)]  # float32 A cast to float64
    rng = np.random.default_rng(2)
    a = (rng.standard_normal((5, 3, 3)) + 3 * np.eye(3)).astype(np.float32)
    bs = rng.standard_normal((5, 3))
    f, ref = sd.compile(outs, [A, b], backend="c"), sd.compile(outs, [A, b])
    stacked = f.batch(a, bs)
    for i in range(5):
        for k, (x, y) in enumerate(zip(f(a[i], bs[i]), ref(a[i], bs[i]))):
            assert np.asarray(x).dtype == np.asarray(y).dtype
            close(x, y, 1e-12 if np.asarray(y).dtype == np.float64 else 2e-6)
            close(stacked[k][i], x, 0)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_to_c_of_every_kernel_compiles_strictly_and_runs_clean_under_sanitizers(compiler, tmp_path):
    """sd.to_c of a program calling every kernel on a stack of two matrices, built with warnings
    as errors and the sanitizers into a C program that prints its outputs: the numpy backend's."""
    import symdiff as sd
    from symdiff.ops.linalg import adjugate

    _c_backend_or_skip()
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    g = sd.Graph()
    A, W = g.variable("A", shape=(2, 4, 4)), g.variable("W", shape=(2, 4, 4))
    sym = A + sd.matrix_transpose(A)
    w, v = sd.eigh(sym)
    d = sd.grad(sd.sum(sd.det(A)), A)
    outputs = [
        sd.det(A), *sd.slogdet(A), sd.inv(A), sd.solve(A, W), sd.cholesky(A @ sd.matrix_transpose(A)),
        sd.solve_triangular(A, W, lower=True), w, sd.grad(sd.sum((v * v) * W), A), sd.expm(A * 0.3),
        sd.norm(W, "nuc", axis=(-2, -1)), d, sd.grad(sd.sum(d * W), A), adjugate(A),
    ]  # fmt: skip
    rng = np.random.default_rng(3)
    values = [rng.standard_normal((2, 4, 4)) + 3 * np.eye(4), rng.standard_normal((2, 4, 4))]
    expected = [np.asarray(e, np.float64) for e in sd.compile(outputs, [A, W])(*values)]
    files = sd.to_c(outputs, [A, W], name="f")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    inputs = "".join(
        f"    static const double in{k}[] = {{{', '.join(repr(float(x)) for x in v.ravel())}}};\n"
        for k, v in enumerate(values)
    )
    outs = "".join(f"    static double out{k}[{max(e.size, 1)}];\n" for k, e in enumerate(expected))
    args = ", ".join([f"in{k}" for k in range(len(values))] + [f"out{k}" for k in range(len(expected))])
    prints = "".join(
        f'    for (i = 0; i < {e.size}; ++i) printf("%.17g\\n", out{k}[i]);\n' for k, e in enumerate(expected)
    )
    main = (
        '#include <stdio.h>\n#include <stdlib.h>\n#include "f.h"\n\nint main(void)\n{\n'
        f"{inputs}{outs}    void *work = malloc(F_WORK_BYTES + 16);\n    int i;\n"
        f"    if (f({args}, work) != 0) return 2;\n{prints}    free(work);\n    return 0;\n}}\n"
    )
    out = sanitized_run(compiler, tmp_path, main, ["f.c"])
    got = np.array([float(x) for x in out.split()])
    sizes = np.cumsum([0] + [e.size for e in expected])
    for k, e in enumerate(expected):
        close(got[sizes[k] : sizes[k + 1]].reshape(e.shape), e, 1e-12, f"output {k}")


def sanitized_run(compiler: str, folder, main: str, sources: list[str]) -> str:
    """Build ``main`` (C source) with ``sources`` (files in ``folder``) using warnings as errors and
    the address and undefined-behaviour sanitizers, run it, and return its standard output; it must
    exit 0 with nothing on standard error (no leak, no sanitizer report)."""
    (folder / "main.c").write_text(main)
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fno-strict-aliasing"]
    sanitize = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    exe = folder / "main"
    files = [str(folder / "main.c"), *(str(folder / f) for f in sources)]
    done = subprocess.run([compiler, *flags, *sanitize, "-o", str(exe), *files, "-lm"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and not run.stderr, run.stderr
    return run.stdout
