"""Dense linear algebra for the C backend: C99 kernels (one matrix at a time, scratch memory from
the caller) and their printers, looped over the leading (broadcast) batch axes.

The kernels port the numba backend's algorithms (symdiff.backends.numba): LU with partial
pivoting as LAPACK's getf2 (solve, inv, det, slogdet: numpy's det is sign * exp(logabsdet) of
the same factorization), Cholesky as potf2 of the symmetric part, triangular substitution,
cyclic Jacobi for eigh (of the symmetric part), one-sided Jacobi (Hestenes) for the singular
values and for the SVD the adjugate and its derivative are made of, and scipy's expm
(Al-Mohy & Higham 2009). Each is one template (``_KERNELS``) printed for float and double:
float32 values are computed in float32, as numpy's float32 LAPACK does, except expm, which
scipy (and the numba backend) computes in float64 and rounds.

A kernel returns nonzero where numpy (or scipy) raises: the printer turns that into the
function's error code (``ERRORS``), and Python reruns numpy for its exact error.
"""

from __future__ import annotations

import math
from string import Template

import numpy as np

from symdiff.backends.c import ERRORS, PRINTERS, CWriter, ctype
from symdiff.graph import Node

SINGULAR, NOT_POSITIVE, TIE = 2, 3, 8
_TIE_TEXT = "two equal eigenvalues (eigh's eigenvector derivative is undefined there)"
if ERRORS.setdefault(TIE, _TIE_TEXT) != _TIE_TEXT:  # a code of c.py's own: pick another
    raise RuntimeError(f"error code {TIE} of the C backend is taken: {ERRORS[TIE]}")

# Per-type constants of the templates: $T the C type, $s the name suffix, $f the suffix of math.h's
# functions, $eps the machine epsilon, $tiny a norm below which a vector is taken as zero.
_TYPES = {
    "float64": {"T": "double", "s": "f64", "f": "", "eps": "2.220446049250313e-16", "tiny": "1e-280"},
    "float32": {"T": "float", "s": "f32", "f": "f", "eps": "1.1920929e-07f", "tiny": "1e-30f"},
}

# name -> (the kernels it calls, its C source as a Template). Each is printed once per dtype,
# after the kernels it calls (unused static functions would fail -Wunused-function).
_KERNELS: dict[str, tuple[tuple[str, ...], str]] = {}


def _kernel(name: str, calls: tuple[str, ...], source: str) -> None:
    _KERNELS[name] = (calls, source)


_kernel(
    "lu",
    (),
    """
/* LU with partial pivoting in place (a: n x n, row-major), as LAPACK's getf2: the pivot of column
   k is the first largest |entry| on or below the diagonal, perm[k] its row. Returns 1 where a pivot
   is exactly 0 (LAPACK's info > 0: numpy's solve and inv raise, det is 0), else 0. */
static int sd_lu_$s(long n, $T *a, long *perm)
{
    int singular = 0;
    for (long k = 0; k < n; ++k) {
        long p = k;
        for (long i = k + 1; i < n; ++i)
            if (fabs$f(a[i * n + k]) > fabs$f(a[p * n + k]))
                p = i;
        perm[k] = p;
        if (p != k)
            for (long j = 0; j < n; ++j) {
                $T t = a[k * n + j];
                a[k * n + j] = a[p * n + j];
                a[p * n + j] = t;
            }
        $T pivot = a[k * n + k];
        if (pivot == 0) {
            singular = 1;
            continue;
        }
        $T r = ($T)1 / pivot;
        for (long i = k + 1; i < n; ++i) {
            /* as OpenBLAS's getf2 (numpy's LAPACK): a nan pivot scales nothing */
            $T f = pivot != pivot ? a[i * n + k] : a[i * n + k] * r;
            a[i * n + k] = f;
            for (long j = k + 1; j < n; ++j)
                a[i * n + j] -= f * a[k * n + j];
        }
    }
    return singular;
}
""",
)

_kernel(
    "lu_solve",
    (),
    """
/* x (n x k) <- a⁻¹ x from sd_lu's factors, as LAPACK's getrs */
static void sd_lu_solve_$s(long n, long k, const $T *lu, const long *perm, $T *x)
{
    for (long i = 0; i < n; ++i)
        if (perm[i] != i)
            for (long c = 0; c < k; ++c) {
                $T t = x[i * k + c];
                x[i * k + c] = x[perm[i] * k + c];
                x[perm[i] * k + c] = t;
            }
    for (long i = 1; i < n; ++i)
        for (long j = 0; j < i; ++j)
            for (long c = 0; c < k; ++c)
                x[i * k + c] -= lu[i * n + j] * x[j * k + c];
    for (long i = n - 1; i >= 0; --i) {
        for (long j = i + 1; j < n; ++j)
            for (long c = 0; c < k; ++c)
                x[i * k + c] -= lu[i * n + j] * x[j * k + c];
        for (long c = 0; c < k; ++c)
            x[i * k + c] /= lu[i * n + i];
    }
}
""",
)

_kernel(
    "product",
    (),
    """
/* out = X Y (n x n, out distinct from both) with X[i][k] = x[i * xr + k * xc] and Y[k][j] =
   y[k * yr + j * yc]: strides (n, 1) for a matrix, (1, n) for its transpose */
static void sd_product_$s(long n, const $T *x, long xr, long xc, const $T *y, long yr, long yc, $T *out)
{
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j) {
            $T t = 0;
            for (long k = 0; k < n; ++k)
                t += x[i * xr + k * xc] * y[k * yr + j * yc];
            out[i * n + j] = t;
        }
}
""",
)

_kernel(
    "solve",
    ("lu", "lu_solve"),
    """
/* x = a⁻¹ b: a (n x n), b and x (n x k); b 0: the identity (x = a⁻¹). work: n longs, n*n values.
   Returns 1 for a singular a (numpy raises LinAlgError). With a nan or inf in a, which pivots
   LAPACK meets depends on its kernels' nan handling: no error then, the values nan or inf as
   numpy's (where numpy does not raise). */
static int sd_solve_$s(long n, long k, const $T *a, const $T *b, $T *x, void *work)
{
    long *perm = (long *)work;
    $T *lu = ($T *)(perm + n);
    int finite = 1;
    for (long i = 0; i < n * n; ++i) {
        lu[i] = a[i];
        finite = finite && isfinite(a[i]);
    }
    if (sd_lu_$s(n, lu, perm) && finite)
        return 1;
    for (long i = 0; i < n; ++i)
        for (long c = 0; c < k; ++c)
            x[i * k + c] = b ? b[i * k + c] : ($T)(i == c);
    sd_lu_solve_$s(n, k, lu, perm, x);
    return 0;
}
""",
)

_kernel(
    "slogdet",
    ("lu",),
    """
/* numpy's slogdet from one LU: each row swap and each negative pivot flips the sign (a nan pivot
   does not); an exact zero pivot gives (0, -inf). work: n longs, n*n values. */
static void sd_slogdet_$s(long n, const $T *a, $T *sign, $T *logabs, void *work)
{
    long *perm = (long *)work;
    $T *lu = ($T *)(perm + n);
    for (long i = 0; i < n * n; ++i)
        lu[i] = a[i];
    if (sd_lu_$s(n, lu, perm)) {
        *sign = 0;
        *logabs = -($T)INFINITY;
        return;
    }
    $T s = 1, l = 0;
    for (long k = 0; k < n; ++k) {
        $T d = lu[k * n + k];
        if (perm[k] != k)
            s = -s;
        if (d < 0) {
            s = -s;
            d = -d;
        }
        l += log$f(d);
    }
    *sign = s;
    *logabs = l;
}
""",
)

_kernel(
    "det",
    ("slogdet",),
    """
/* numpy's det: sign * exp(log |det|) of slogdet's factorization (0 for a singular a) */
static void sd_det_$s(long n, const $T *a, $T *out, void *work)
{
    $T sign, logabs;
    sd_slogdet_$s(n, a, &sign, &logabs, work);
    *out = sign * exp$f(logabs);
}
""",
)

_kernel(
    "cholesky",
    (),
    """
/* lower l with l lᵀ = (a + aᵀ)/2 (the op's symmetric part), as LAPACK's potf2; zeros above the
   diagonal. Returns 1 where a pivot is not positive: numpy raises LinAlgError. */
static int sd_cholesky_$s(long n, const $T *a, $T *l)
{
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j)
            l[i * n + j] = j <= i ? ($T)0.5 * (a[i * n + j] + a[j * n + i]) : ($T)0;
    for (long j = 0; j < n; ++j) {
        $T d = l[j * n + j];
        for (long k = 0; k < j; ++k)
            d -= l[j * n + k] * l[j * n + k];
        if (d <= 0) /* as OpenBLAS's potrf, numpy's: a nan passes (and spreads) */
            return 1;
        d = sqrt$f(d);
        l[j * n + j] = d;
        for (long i = j + 1; i < n; ++i) {
            $T t = l[i * n + j];
            for (long k = 0; k < j; ++k)
                t -= l[i * n + k] * l[j * n + k];
            l[i * n + j] = t / d;
        }
    }
    return 0;
}
""",
)

_kernel(
    "solve_triangular",
    (),
    """
/* x (n x k) with T x = b (Tᵀ x = b with trans), T the lower or upper triangle of a (ones on its
   diagonal with unit): substitution reading the triangle only. Returns 1 for a zero on T's
   diagonal (scipy raises LinAlgError, from LAPACK's trtrs). */
static int sd_solve_triangular_$s(long n, long k, const $T *a, const $T *b, $T *x, int lower, int trans, int unit)
{
    if (!unit)
        for (long i = 0; i < n; ++i)
            if (a[i * n + i] == 0)
                return 1;
    int forward = lower != trans; /* Tᵀ of a lower triangle is upper */
    for (long step = 0; step < n; ++step) {
        long i = forward ? step : n - 1 - step;
        long lo = forward ? 0 : i + 1, hi = forward ? i : n;
        for (long c = 0; c < k; ++c) {
            $T t = b[i * k + c];
            for (long j = lo; j < hi; ++j)
                t -= (trans ? a[j * n + i] : a[i * n + j]) * x[j * k + c];
            x[i * k + c] = unit ? t : t / a[i * n + i];
        }
    }
    return 0;
}
""",
)

_kernel(
    "jacobi",
    (),
    """
/* the Jacobi rotation: its tangent t (returned), the smaller root of t² + 2 zeta t - 1, and
   c = cos, s = sin; it zeroes the (p, q) entry of a symmetric matrix with zeta = (a_qq - a_pp) /
   (2 a_pq), and makes two columns orthogonal with zeta = (|y|² - |x|²) / (2 x·y) */
static $T sd_jacobi_$s($T zeta, $T *c, $T *s)
{
    $T t = 1 / (fabs$f(zeta) + hypot$f(zeta, 1));
    t = zeta < 0 ? -t : t;
    *c = 1 / sqrt$f(1 + t * t);
    *s = t * *c;
    return t;
}
""",
)

_kernel(
    "rotate",
    (),
    """
/* (x, y) <- (c x - s y, s x + c y) for count pairs, stride apart */
static void sd_rotate_$s(long count, $T *x, $T *y, long stride, $T c, $T s)
{
    for (long r = 0; r < count; ++r) {
        $T xr = x[r * stride], yr = y[r * stride];
        x[r * stride] = c * xr - s * yr;
        y[r * stride] = s * xr + c * yr;
    }
}
""",
)

_kernel(
    "eigh",
    ("jacobi", "rotate"),
    """
/* eigenvalues w (ascending) and eigenvectors v (columns) of (a + aᵀ)/2 by cyclic Jacobi, each
   rotation applied where an off-diagonal entry is above eps relative to its diagonal pair (so
   eigenvalues come out to a few eps relative to the norm); all nan for a matrix with a nan or
   inf, as the op's forward. work: n*n values. */
static void sd_eigh_$s(long n, const $T *a, $T *w, $T *v, void *work)
{
    $T *s = ($T *)work;
    int finite = 1;
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j) {
            s[i * n + j] = ($T)0.5 * (a[i * n + j] + a[j * n + i]);
            v[i * n + j] = ($T)(i == j);
            finite = finite && isfinite(s[i * n + j]);
        }
    if (!finite) {
        for (long i = 0; i < n; ++i) {
            w[i] = ($T)NAN;
            for (long j = 0; j < n; ++j)
                v[i * n + j] = ($T)NAN;
        }
        return;
    }
    for (int sweep = 0; sweep < 100; ++sweep) {
        int rotated = 0;
        for (long p = 0; p < n; ++p)
            for (long q = p + 1; q < n; ++q) {
                $T apq = s[p * n + q], app = s[p * n + p], aqq = s[q * n + q];
                if (fabs$f(apq) <= $eps * sqrt$f(fabs$f(app)) * sqrt$f(fabs$f(aqq)))
                    continue;
                $T c, sn, t = sd_jacobi_$s((aqq - app) / (2 * apq), &c, &sn);
                sd_rotate_$s(n, s + p, s + q, n, c, sn); /* columns p and q; rows p and q mirror them */
                for (long r = 0; r < n; ++r) {
                    s[p * n + r] = s[r * n + p];
                    s[q * n + r] = s[r * n + q];
                }
                s[p * n + p] = app - t * apq;
                s[q * n + q] = aqq + t * apq;
                s[p * n + q] = s[q * n + p] = 0;
                sd_rotate_$s(n, v + p, v + q, n, c, sn);
                rotated = 1;
            }
        if (!rotated)
            break;
    }
    for (long i = 0; i < n; ++i)
        w[i] = s[i * n + i];
    for (long i = 0; i < n; ++i) { /* ascending, the vectors with their values */
        long m = i;
        for (long j = i + 1; j < n; ++j)
            if (w[j] < w[m])
                m = j;
        if (m != i) {
            $T t = w[i];
            w[i] = w[m];
            w[m] = t;
            for (long r = 0; r < n; ++r) {
                t = v[r * n + i];
                v[r * n + i] = v[r * n + m];
                v[r * n + m] = t;
            }
        }
    }
}
""",
)

_kernel(
    "eigh_gaps",
    (),
    """
/* f[i][j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it (symdiff.ops.linalg.eigh_gaps_and_ties).
   Returns 1 where two eigenvalues are equal to rounding (8 n eps max|w|): f is undefined there. */
static int sd_eigh_gaps_$s(long n, const $T *w, $T *f)
{
    $T scale = 0;
    for (long i = 0; i < n; ++i) {
        $T m = fabs$f(w[i]);
        scale = m > scale || m != m ? m : scale; /* numpy's max: a nan wins */
    }
    $T tol = ($T)(8.0 * (double)n * (double)$eps) * scale;
    int tie = 0;
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j) {
            if (i == j) {
                f[i * n + j] = 0;
                continue;
            }
            $T d = w[j] - w[i];
            tie = tie || fabs$f(d) <= tol;
            f[i * n + j] = 1 / d;
        }
    return tie;
}
""",
)

_kernel(
    "hestenes",
    ("jacobi", "rotate"),
    """
/* one-sided Jacobi (Hestenes): rotates the k columns of b (m rows, row-major) until each pair is
   orthogonal to m eps relative to their norms; the same rotations on the columns of v (k x k)
   unless v is 0. Then b = a v with orthogonal columns, their norms a's singular values. */
static void sd_hestenes_$s(long m, long k, $T *b, $T *v)
{
    $T tol = $eps * (m > 1 ? ($T)m : 1);
    for (int sweep = 0; sweep < 100; ++sweep) {
        int rotated = 0;
        for (long p = 0; p < k; ++p)
            for (long q = p + 1; q < k; ++q) {
                $T alpha = 0, beta = 0, gamma = 0;
                for (long r = 0; r < m; ++r) {
                    alpha += b[r * k + p] * b[r * k + p];
                    beta += b[r * k + q] * b[r * k + q];
                    gamma += b[r * k + p] * b[r * k + q];
                }
                if (fabs$f(gamma) <= tol * sqrt$f(alpha) * sqrt$f(beta))
                    continue;
                $T c, sn;
                sd_jacobi_$s((beta - alpha) / (2 * gamma), &c, &sn);
                sd_rotate_$s(m, b + p, b + q, k, c, sn);
                if (v)
                    sd_rotate_$s(k, v + p, v + q, k, c, sn);
                rotated = 1;
            }
        if (!rotated)
            break;
    }
}
""",
)

_kernel(
    "nonfinite",
    (),
    """
/* whether a (size values) has a nan or inf; then out (count values) is all nan, as the ops'
   forwards give (LAPACK stops at a nan or inf) */
static int sd_nonfinite_$s(long size, const $T *a, $T *out, long count)
{
    for (long i = 0; i < size; ++i)
        if (!isfinite(a[i])) {
            for (long j = 0; j < count; ++j)
                out[j] = ($T)NAN;
            return 1;
        }
    return 0;
}
""",
)

_kernel(
    "scale",
    (),
    """
/* the exponent of the power of two near the largest |a[i]| (0 for an all-zero a): the kernels
   scale by it so that sums of squares neither overflow nor underflow (exactly: a power of two) */
static int sd_scale_$s(long size, const $T *a)
{
    $T top = 0;
    int e = 0;
    for (long i = 0; i < size; ++i)
        top = fabs$f(a[i]) > top ? fabs$f(a[i]) : top;
    if (top > 0)
        frexp$f(top, &e);
    return e;
}
""",
)

_kernel(
    "singular_values",
    ("nonfinite", "scale", "hestenes"),
    """
/* the min(m, n) singular values of a (m x n), ascending as the op's forward; all nan for a
   matrix with a nan or inf. work: m*n values. */
static void sd_singular_values_$s(long m, long n, const $T *a, $T *s, void *work)
{
    long k = m < n ? m : n, rows = m < n ? n : m; /* the tall form: a, or aᵀ */
    $T *b = ($T *)work;
    if (sd_nonfinite_$s(m * n, a, s, k))
        return;
    int e = sd_scale_$s(m * n, a);
    for (long r = 0; r < rows; ++r)
        for (long c = 0; c < k; ++c)
            b[r * k + c] = ldexp$f(m >= n ? a[r * n + c] : a[c * n + r], -e);
    sd_hestenes_$s(rows, k, b, 0);
    for (long c = 0; c < k; ++c) {
        $T t = 0;
        for (long r = 0; r < rows; ++r)
            t += b[r * k + c] * b[r * k + c];
        s[c] = ldexp$f(sqrt$f(t), e);
    }
    for (long i = 0; i < k; ++i)
        for (long j = i + 1; j < k; ++j)
            if (s[j] < s[i]) {
                $T t = s[i];
                s[i] = s[j];
                s[j] = t;
            }
}
""",
)

_kernel(
    "svd",
    ("scale", "hestenes", "slogdet"),
    """
/* a = u diag(s) vᵀ (n x n, finite), by one-sided Jacobi (v a product of rotations, det v = 1); the
   columns of u for singular values that are 0 (below $tiny after scaling) completed to an
   orthonormal basis. Returns det(u) det(v) (±1). work: n longs, n*n + n values. */
static $T sd_svd_$s(long n, const $T *a, $T *u, $T *s, $T *v, void *work)
{
    long *perm = (long *)work;
    $T *r = ($T *)(perm + n) + n * n; /* after slogdet's n*n */
    int e = sd_scale_$s(n * n, a);
    for (long i = 0; i < n * n; ++i) {
        u[i] = ldexp$f(a[i], -e);
        v[i] = ($T)(i / n == i % n);
    }
    sd_hestenes_$s(n, n, u, v);
    for (long c = 0; c < n; ++c) {
        $T t = 0;
        for (long i = 0; i < n; ++i)
            t += u[i * n + c] * u[i * n + c];
        t = sqrt$f(t);
        s[c] = t < $tiny ? 0 : ldexp$f(t, e);
        for (long i = 0; i < n; ++i)
            u[i * n + c] = t < $tiny ? 0 : u[i * n + c] / t;
    }
    for (long c = 0; c < n; ++c) {
        if (s[c] != 0)
            continue;
        /* the unit vector e_j farthest from the columns so far, made orthogonal to them (twice) */
        $T best = -1;
        for (long j = 0; j < n; ++j) {
            for (long i = 0; i < n; ++i)
                r[i] = ($T)(i == j);
            for (long pass = 0; pass < 2; ++pass)
                for (long d = 0; d < n; ++d) {
                    if (d == c)
                        continue;
                    $T dot = 0;
                    for (long i = 0; i < n; ++i)
                        dot += u[i * n + d] * r[i];
                    for (long i = 0; i < n; ++i)
                        r[i] -= dot * u[i * n + d];
                }
            $T t = 0;
            for (long i = 0; i < n; ++i)
                t += r[i] * r[i];
            t = sqrt$f(t);
            if (t > best) {
                best = t;
                for (long i = 0; i < n; ++i)
                    u[i * n + c] = r[i] / t;
            }
        }
    }
    $T sign, logabs;
    sd_slogdet_$s(n, u, &sign, &logabs, work);
    return sign;
}
""",
)

_kernel(
    "adjugate",
    ("nonfinite", "svd"),
    """
/* adj(a) = det(u) det(v) v diag(p) uᵀ, p[i] the product of the other singular values (loops, no
   division: exact at singular a), as the op's forward; all nan for a matrix with a nan or inf.
   work: n longs, 3 n*n + 3 n values. */
static void sd_adjugate_$s(long n, const $T *a, $T *out, void *work)
{
    if (sd_nonfinite_$s(n * n, a, out, n * n))
        return;
    $T *u = ($T *)((long *)work + n) + n * n + n, *v = u + n * n, *s = v + n * n, *p = s + n;
    $T sign = sd_svd_$s(n, a, u, s, v, work);
    for (long i = 0; i < n; ++i) {
        p[i] = 1;
        for (long j = 0; j < n; ++j)
            p[i] *= j != i ? s[j] : 1;
    }
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j) {
            $T t = 0;
            for (long k = 0; k < n; ++k)
                t += v[i * n + k] * p[k] * u[j * n + k];
            out[i * n + j] = sign * t;
        }
}
""",
)

_kernel(
    "adjugate_jvp",
    ("nonfinite", "svd", "product"),
    """
/* d adj(a)[t] from a = u s vᵀ: with W = uᵀ t v and q[i][j] the product of the singular values
   other than the i-th and j-th (0 for i = j), d adj = sign v (diag(q diag(W)) - q ∘ W) uᵀ, as the
   op's forward; all nan for an a with a nan or inf. work: n longs, 6 n*n + 3 n values. */
static void sd_adjugate_jvp_$s(long n, const $T *a, const $T *t, $T *out, void *work)
{
    if (sd_nonfinite_$s(n * n, a, out, n * n))
        return;
    $T *u = ($T *)((long *)work + n) + n * n + n, *v = u + n * n, *s = v + n * n, *d = s + n;
    $T *q = d + n, *w = q + n * n, *m = w + n * n;
    $T sign = sd_svd_$s(n, a, u, s, v, work);
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j) {
            q[i * n + j] = i != j;
            for (long k = 0; k < n; ++k)
                q[i * n + j] *= k != i && k != j ? s[k] : 1;
        }
    sd_product_$s(n, t, n, 1, v, n, 1, m);
    sd_product_$s(n, u, 1, n, m, n, 1, w); /* W = uᵀ t v */
    for (long i = 0; i < n; ++i) {
        d[i] = 0;
        for (long j = 0; j < n; ++j)
            d[i] += q[i * n + j] * w[j * n + j];
    }
    for (long i = 0; i < n; ++i) /* w <- the inner matrix */
        for (long j = 0; j < n; ++j)
            w[i * n + j] = -q[i * n + j] * w[i * n + j] + (i == j ? d[i] : 0);
    sd_product_$s(n, v, n, 1, w, n, 1, m);
    sd_product_$s(n, m, n, 1, u, 1, n, out);
    for (long i = 0; i < n * n; ++i)
        out[i] *= sign;
}
""",
)

# expm computes in double for both types (as scipy and the numba backend): its parts are printed
# once, from the double kernels' template (they do not depend on $T).
_kernel(
    "expm_parts",
    (),
    """
/* the largest absolute row sum (scipy works on the column-major transpose, whose 1-norm it is) */
static double sd_expm_norm(long n, const double *x)
{
    double best = 0;
    for (long i = 0; i < n; ++i) {
        double row = 0;
        for (long j = 0; j < n; ++j)
            row += fabs(x[i * n + j]);
        best = row > best ? row : best;
    }
    return best;
}

/* out = c0 m0 + c1 m1 + c2 m2 + c3 m3 + d I, summed in that order as scipy's (out may be m0) */
static void sd_expm_comb(long n, double *out, const double *m0, double c0, const double *m1, double c1,
                         const double *m2, double c2, const double *m3, double c3, double d)
{
    for (long i = 0; i < n; ++i) {
        for (long j = 0; j < n; ++j)
            out[i * n + j] = c0 * m0[i * n + j] + c1 * m1[i * n + j] + c2 * m2[i * n + j] + c3 * m3[i * n + j];
        out[i * n + i] += d;
    }
}

/* v <- |a|^times v (tmp: n values); returns v's largest element (scipy's bound on ||a^p||) */
static double sd_expm_spin(long n, const double *absa, double *v, double *tmp, int times)
{
    for (int k = 0; k < times; ++k) {
        for (long i = 0; i < n; ++i) {
            double t = 0;
            for (long j = 0; j < n; ++j)
                t += absa[i * n + j] * v[j];
            tmp[i] = t;
        }
        for (long i = 0; i < n; ++i)
            v[i] = tmp[i];
    }
    double top = 0;
    for (long i = 0; i < n; ++i)
        top = v[i] > top ? v[i] : top;
    return top;
}

/* C's (int)ceil(v) clamped at 0, as scipy computes a count; 0 where v is not finite */
static int sd_expm_steps(double v)
{
    return !isfinite(v) || v <= 0 ? 0 : (int)ceil(v);
}

static double sd_expm_max(double a, double b)
{
    return b > a ? b : a;
}
""",
)

_kernel(
    "expm",
    ("expm_parts", "lu", "lu_solve", "product"),
    """
/* scipy.linalg.expm of one matrix, in double (Al-Mohy & Higham 2009): the Pade degree m and the
   squarings s picked from exact 1-norms of powers (scipy estimates them from n = 400), coeff the
   bounds for the input's precision; a diagonal matrix exactly, a triangular one with its diagonal
   and first off-diagonal recomputed at each squaring (Higham's 10.42). work: n longs, 13 n*n +
   4 n doubles. */
static void sd_expm_$s(long n, const $T *a, $T *out, const double *coeff, void *work)
{
    const double theta[5] = {1.495585217958292e-002, 2.539398330063230e-001, 9.504178996162932e-001,
                                    2.097847961257068e000, 4.25};
    long *perm = (long *)work;
    double *x = (double *)(perm + n), *absa = x + n * n, *a2 = absa + n * n, *a4 = a2 + n * n;
    double *a6 = a4 + n * n, *a8 = a6 + n * n, *u = a8 + n * n, *w = u + n * n, *t1 = w + n * n;
    double *t2 = t1 + n * n, *t3 = t2 + n * n, *e = t3 + n * n, *spare = e + n * n;
    double *v = spare + n * n, *tv = v + n, *diag = tv + n, *near = diag + n;
    const double *p8 = a2;
    int upper = 1, lower = 1, finite = 1;
    for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j) {
            double xij = (double)a[i * n + j];
            x[i * n + j] = xij;
            absa[i * n + j] = fabs(xij);
            if (xij != 0) {
                upper = upper && i <= j;
                lower = lower && i >= j;
            }
            finite = finite && isfinite(xij);
            e[i * n + j] = 0;
        }
    if (upper && lower) {
        for (long i = 0; i < n; ++i)
            for (long j = 0; j < n; ++j)
                out[i * n + j] = ($T)(i == j ? exp(x[i * n + i]) : 0);
        return;
    }
    for (long k = 0; k < n; ++k) {
        diag[k] = x[k * n + k];
        near[k] = k + 1 < n ? (upper ? x[k * n + k + 1] : x[(k + 1) * n + k]) : 0;
    }
    int s = 0;
    if (!finite) { /* scipy's arithmetic on a nan or inf gives nan throughout */
        for (long i = 0; i < n * n; ++i)
            e[i] = NAN;
    } else {
        for (long i = 0; i < n; ++i)
            v[i] = 1;
        double norm_a = sd_expm_spin(n, absa, v, tv, 1), top, eta2 = 0;
        sd_product_f64(n, x, n, 1, x, n, 1, a2);
        sd_product_f64(n, a2, n, 1, a2, n, 1, a4);
        sd_product_f64(n, a2, n, 1, a4, n, 1, a6);
        double d6 = pow(sd_expm_norm(n, a6), 1.0 / 6.0);
        double eta1 = sd_expm_max(pow(sd_expm_norm(n, a4), 0.25), d6);
        /* the smallest degree m of 3, 5, 7, 9 whose bound holds, each after |a|^p v for larger p */
        const int degrees[4] = {3, 5, 7, 9}, spins[4] = {6, 4, 4, 4};
        int m = 13;
        for (int d = 0; d < 4 && m == 13; ++d) {
            if (d == 2) {
                sd_product_f64(n, a4, n, 1, a4, n, 1, a8);
                p8 = a8;
                eta2 = sd_expm_max(d6, pow(sd_expm_norm(n, a8), 0.125));
            }
            top = sd_expm_spin(n, absa, v, tv, spins[d]);
            double eta = d < 2 ? eta1 : eta2;
            if (eta < theta[d] && sd_expm_steps(log2(top / norm_a / coeff[d]) / (2 * degrees[d])) == 0)
                m = degrees[d];
        }
        if (m == 13) {
            sd_product_f64(n, a4, n, 1, a6, n, 1, t1);
            double eta3 = sd_expm_max(pow(sd_expm_norm(n, a8), 0.125), pow(sd_expm_norm(n, t1), 0.1));
            s = sd_expm_steps(log2((eta3 < eta2 ? eta3 : eta2) / theta[4]));
            if (s) {
                sd_expm_comb(n, absa, absa, ldexp(1.0, -s), x, 0, x, 0, x, 0, 0);
                for (long k = 0; k < n; ++k)
                    v[k] *= ldexp(1.0, -19 * s);
                norm_a = norm_a * ldexp(1.0, -s);
            }
            top = sd_expm_spin(n, absa, v, tv, 8);
            s += sd_expm_steps(log2(top / norm_a / coeff[4]) / 26.0);
            if (s) {
                sd_expm_comb(n, x, x, ldexp(1.0, -s), x, 0, x, 0, x, 0, 0);
                sd_expm_comb(n, a2, a2, ldexp(1.0, -2 * s), x, 0, x, 0, x, 0, 0);
                sd_expm_comb(n, a4, a4, ldexp(1.0, -4 * s), x, 0, x, 0, x, 0, 0);
                sd_expm_comb(n, a6, a6, ldexp(1.0, -6 * s), x, 0, x, 0, x, 0, 0);
            }
        }
        /* U and V (here w) of the Pade approximant r_m = (V - U)⁻¹ (V + U) */
        if (m == 3) {
            sd_product_f64(n, x, n, 1, a2, n, 1, t1);
            sd_expm_comb(n, u, t1, 1, x, 60, x, 0, x, 0, 0);
            sd_expm_comb(n, w, a2, 12, x, 0, x, 0, x, 0, 120);
        } else if (m == 5) {
            sd_expm_comb(n, t1, a4, 1, a2, 420, x, 0, x, 0, 15120);
            sd_product_f64(n, x, n, 1, t1, n, 1, u);
            sd_expm_comb(n, w, a4, 30, a2, 3360, x, 0, x, 0, 30240);
        } else if (m == 7) {
            sd_expm_comb(n, t1, a6, 1, a4, 1512, a2, 277200, x, 0, 8648640);
            sd_product_f64(n, x, n, 1, t1, n, 1, u);
            sd_expm_comb(n, w, a6, 56, a4, 25200, a2, 1995840, x, 0, 17297280);
        } else if (m == 9) {
            sd_expm_comb(n, t1, p8, 1, a6, 3960, a4, 2162160, a2, 302702400, 8821612800.0);
            sd_product_f64(n, x, n, 1, t1, n, 1, u);
            sd_expm_comb(n, w, p8, 90, a6, 110880, a4, 30270240, a2, 2075673600, 17643225600.0);
        } else {
            sd_expm_comb(n, t1, a6, 1, a4, 16380, a2, 40840800, x, 0, 0);
            sd_product_f64(n, a6, n, 1, t1, n, 1, t2); /* inner */
            sd_expm_comb(n, t1, a6, 33522128640.0, a4, 10559470521600.0, a2, 1187353796428800.0, x, 0,
                         32382376266240000.0); /* outer */
            sd_expm_comb(n, t3, t2, 1, t1, 1, x, 0, x, 0, 0);
            sd_product_f64(n, x, n, 1, t3, n, 1, u);
            sd_expm_comb(n, t1, a6, 182, a4, 960960, a2, 1323241920, x, 0, 0);
            sd_product_f64(n, a6, n, 1, t1, n, 1, t2); /* low */
            sd_expm_comb(n, t1, a6, 670442572800.0, a4, 129060195264000.0, a2, 7771770303897600.0, x, 0,
                         64764752532480000.0); /* high */
            sd_expm_comb(n, w, t2, 1, t1, 1, x, 0, x, 0, 0);
        }
        /* (V - U)⁻¹ (V + U) = I + 2 (V - U)⁻¹ U */
        sd_expm_comb(n, t1, w, 1, u, -1, x, 0, x, 0, 0);
        for (long i = 0; i < n * n; ++i)
            t2[i] = u[i];
        sd_lu_f64(n, t1, perm);
        sd_lu_solve_f64(n, n, t1, perm, t2);
        sd_expm_comb(n, e, t2, 2, x, 0, x, 0, x, 0, 1);
        if (upper || lower) {
            if (s)
                for (long k = 0; k < n; ++k)
                    e[k * n + k] = exp(diag[k] * ldexp(1.0, -s));
            for (int i = s - 1; i >= 0; --i) {
                sd_product_f64(n, e, n, 1, e, n, 1, spare);
                for (long k = 0; k < n * n; ++k)
                    e[k] = spare[k];
                double scale = ldexp(1.0, -i);
                for (long k = 0; k < n; ++k)
                    e[k * n + k] = exp(diag[k] * scale);
                for (long k = 0; k + 1 < n; ++k) { /* scipy's _exp_sinch: (exp(y) - exp(x)) / (y - x) */
                    double lo = diag[k] * scale, hi = diag[k + 1] * scale;
                    double sinch = hi - lo == 0 ? exp(lo) : (exp(hi) - exp(lo)) / (hi - lo);
                    e[upper ? k * n + k + 1 : (k + 1) * n + k] = sinch * (near[k] * scale);
                }
            }
        } else {
            for (int i = 0; i < s; ++i) {
                sd_product_f64(n, e, n, 1, e, n, 1, spare);
                for (long k = 0; k < n * n; ++k)
                    e[k] = spare[k];
            }
        }
    }
    for (long i = 0; i < n; ++i) /* the other triangle of a triangular input stays zero */
        for (long j = 0; j < n; ++j)
            out[i * n + j] = (upper && i > j) || (lower && i < j) ? ($T)0 : ($T)e[i * n + j];
}
""",
)

# kernels with no $T (printed once, from the float64 instantiation) and those whose $T version
# calls float64 ones whatever $T is
_UNTYPED = {"expm_parts"}
_CALLS_F64 = {"expm": ("lu", "lu_solve", "product")}

# the bounds on the Pade approximants' backward error for float64 and float32 (scipy's coeff)
_EXPM_COEFF = {
    "float64": "1.1191048088221578e-11, 1.1167770708198077e-06, 4.9826124310493469e-01, "
    "6.5662862500000000e+05, 1.2573361865339437e+19",
    "float32": "6.0081481933593750e-03, 5.9956512451171875e+02, 2.6750196800000000e+08, "
    "3.5252480874905600e+14, 6.7502722515508048e+27",
}


def kernel_sources(name: str, dtype: str) -> list[tuple[str, str]]:
    """The (helper name, C source) pairs kernel ``name`` needs for ``dtype`` ("float64" or
    "float32"), the kernels it calls first: each a static function (or two) of C99 and math.h."""
    calls, source = _KERNELS[name]
    deps = [(c, dtype) for c in calls]
    if name in _CALLS_F64:
        deps = [(c, "float64") for c in _CALLS_F64[name]] + [(c, dtype) for c in calls if c not in _CALLS_F64[name]]
    out: list[tuple[str, str]] = []
    for c, d in deps:
        out += [p for p in kernel_sources(c, d) if p not in out]
    own = "float64" if name in _UNTYPED else dtype
    key = f"sd_{name}" if name in _UNTYPED else f"sd_{name}_{_TYPES[own]['s']}"
    out.append((key, Template(source).substitute(_TYPES[own])))
    return out


def all_kernels() -> str:
    """Every kernel for both dtypes, each once, in an order that compiles (for tests and to_c's users)."""
    seen: dict[str, str] = {}
    for dtype in _TYPES:
        for name in _KERNELS:
            for key, source in kernel_sources(name, dtype):
                seen.setdefault(key, source)
    return "#include <math.h>\n" + "".join(seen.values())


# -- printers ---------------------------------------------------------------------------
def _use(w: CWriter, name: str, dtype: np.dtype) -> str:
    """Register kernel ``name`` for ``dtype`` (and the ones it calls) with the writer; its C name."""
    for key, source in kernel_sources(name, np.dtype(dtype).name):
        w.helper(key, source)
    return f"sd_{name}_{_TYPES[np.dtype(dtype).name]['s']}"


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _offset(inner: tuple[int, ...], batch: tuple[int, ...], var: str | None) -> str:
    """The flat index into a stack of shape ``inner`` (broadcast against ``batch``, right-aligned)
    of the ``var``-th member of ``batch`` (row-major)."""
    if var is None or _size(inner) == 1:
        return "0"
    if tuple(inner) == tuple(batch):
        return var
    terms = []
    lead = len(batch) - len(inner)
    for d in range(len(inner)):
        if inner[d] == 1:
            continue
        out_stride = _size(batch[lead + d + 1 :])
        in_stride = _size(inner[d + 1 :])
        index = f"{var} / {out_stride}" if out_stride > 1 else var
        index = f"({index}) % {batch[lead + d]}" if d + lead > 0 else index
        terms.append(f"({index}) * {in_stride}" if in_stride > 1 else f"({index})")
    return " + ".join(terms)


def _pointer(name: str, shape: tuple[int, ...], core: int, batch: tuple[int, ...], var: str | None) -> str:
    """A pointer to the ``var``-th core (the last ``core`` axes) of the value ``name`` of ``shape``."""
    if shape == ():
        return f"&{name}"
    cut = len(shape) - core
    offset = _offset(tuple(shape[:cut]), batch, var)
    if offset == "0":
        return name
    size = _size(shape[cut:])
    return f"{name} + ({offset}) * {size}" if size != 1 else f"{name} + ({offset})"


def _shapes(node: Node) -> list[tuple[int, ...]]:
    return [tuple(s) for s, _ in node.results] if node.is_multi else [tuple(node.shape)]


def _converted(w: CWriter, arg: str, value: Node, dtype: np.dtype) -> str:
    """``arg`` as ``dtype`` values: itself, or a copy cast into scratch (solve of float32 by float64)."""
    if value.dtype == dtype:
        return arg
    t = ctype(dtype)
    copy = w.local(f"{t} *", f"({t} *){w.scratch(_size(value.shape) * dtype.itemsize)}")
    i = w.name()
    with w.loop(i, _size(value.shape)):
        w.line(f"{copy}[{i}] = ({t}){w.at(arg, value, i)};")
    return copy


def _batched(
    w: CWriter,
    node: Node,
    args: list[str],
    cores: list[int],
    outs: list[str],
    out_cores: list[int],
    call: str,
    work: int = 0,
    code: int | None = None,
) -> None:
    """Statements calling a kernel on one core (matrix, vector) of each input at a time, over the
    output's batch axes (inputs broadcast). ``call`` is the call's text with ``{i[k]}``, ``{o[k]}``
    for pointers to one core of each input and output and ``{s}`` for the ``work`` bytes of
    scratch; ``code``: the kernel returns nonzero where numpy raises, and the function then
    returns that error code."""
    dtype = node.results[0][1] if node.is_multi else node.dtype
    shapes = _shapes(node)
    batch = shapes[0][: len(shapes[0]) - out_cores[0]]
    if _size(batch) == 0:
        return
    ins = [_converted(w, a, u, dtype) for a, u in zip(args, node.inputs)]
    scratch = w.scratch(work) if work else "0"
    var = w.name() if _size(batch) > 1 else None

    def body() -> None:
        p_in = [_pointer(a, tuple(u.shape), c, batch, var) for a, u, c in zip(ins, node.inputs, cores)]
        p_out = [_pointer(o, s, c, batch, var) for o, s, c in zip(outs, shapes, out_cores)]
        text = call.format(i=p_in, o=p_out, s=scratch)
        if code is None:
            w.line(f"{text};")
        else:
            w.fail(text, code, node)

    if var is None:
        body()
    else:
        with w.loop(var, _size(batch)):
            body()


def _bytes(node_dtype: np.dtype, longs: int, values: int) -> int:
    return 8 * longs + np.dtype(node_dtype).itemsize * values


def _p_solve(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    a, b = node.inputs
    n, core = a.shape[-1], min(b.ndim, 2)  # b is a vector only if 1-D
    k = 1 if core == 1 else b.shape[-1]
    fn = _use(w, "solve", node.dtype)
    call = f"{fn}({n}, {k}, {{i[0]}}, {{i[1]}}, {{o[0]}}, {{s}})"
    _batched(w, node, args, [2, core], [out], [core], call, _bytes(node.dtype, n, n * n), SINGULAR)


def _p_inv(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    n = node.shape[-1]
    call = f"{_use(w, 'solve', node.dtype)}({n}, {n}, {{i[0]}}, 0, {{o[0]}}, {{s}})"
    _batched(w, node, args, [2], [out], [2], call, _bytes(node.dtype, n, n * n), SINGULAR)


def _p_det(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    n = node.inputs[0].shape[-1]
    call = f"{_use(w, 'det', node.dtype)}({n}, {{i[0]}}, {{o[0]}}, {{s}})"
    _batched(w, node, args, [2], [out], [0], call, _bytes(node.dtype, n, n * n))


def _p_slogdet(w: CWriter, node: Node, out: list[str], args: list[str]) -> None:
    n = node.inputs[0].shape[-1]
    dtype = node.results[0][1]
    call = f"{_use(w, 'slogdet', dtype)}({n}, {{i[0]}}, {{o[0]}}, {{o[1]}}, {{s}})"
    _batched(w, node, args, [2], list(out), [0, 0], call, _bytes(dtype, n, n * n))


def _p_cholesky(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    n = node.shape[-1]
    call = f"{_use(w, 'cholesky', node.dtype)}({n}, {{i[0]}}, {{o[0]}})"
    _batched(w, node, args, [2], [out], [2], call, 0, NOT_POSITIVE)


def _p_solve_triangular(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    a, b = node.inputs
    n, core = a.shape[-1], min(b.ndim, 2)
    k = 1 if core == 1 else b.shape[-1]
    flags = ", ".join(str(int(bool(node.attrs[f]))) for f in ("lower", "trans", "unit"))
    call = f"{_use(w, 'solve_triangular', node.dtype)}({n}, {k}, {{i[0]}}, {{i[1]}}, {{o[0]}}, {flags})"
    _batched(w, node, args, [2, core], [out], [core], call, 0, SINGULAR)


def _p_eigh(w: CWriter, node: Node, out: list[str], args: list[str]) -> None:
    n = node.inputs[0].shape[-1]
    dtype = node.results[0][1]
    call = f"{_use(w, 'eigh', dtype)}({n}, {{i[0]}}, {{o[0]}}, {{o[1]}}, {{s}})"
    _batched(w, node, args, [2], list(out), [1, 2], call, _bytes(dtype, 0, n * n))


def _p_eigh_gaps(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    # two equal eigenvalues: the function returns TIE, and Python reruns numpy for the op's SymdiffError
    n = node.shape[-1]
    call = f"{_use(w, 'eigh_gaps', node.dtype)}({n}, {{i[0]}}, {{o[0]}})"
    _batched(w, node, args, [1], [out], [2], call, 0, TIE)


def _p_singular_values(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    m, n = node.inputs[0].shape[-2:]
    call = f"{_use(w, 'singular_values', node.dtype)}({m}, {n}, {{i[0]}}, {{o[0]}}, {{s}})"
    _batched(w, node, args, [2], [out], [1], call, _bytes(node.dtype, 0, m * n))


def _p_adjugate(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    # adjugate(a) and adjugate_jvp(a, t): the same work (svd's n*n + n, u, v, s, and the jvp's own)
    n = node.shape[-1]
    ins = ", ".join(f"{{i[{k}]}}" for k in range(len(args)))
    call = f"{_use(w, node.op, node.dtype)}({n}, {ins}, {{o[0]}}, {{s}})"
    _batched(w, node, args, [2] * len(args), [out], [2], call, _bytes(node.dtype, n, 6 * n * n + 4 * n))


def _p_expm(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    n = node.shape[-1]
    coeff = _EXPM_COEFF[node.dtype.name]
    call = f"{_use(w, 'expm', node.dtype)}({n}, {{i[0]}}, {{o[0]}}, (const double[5]){{{{{coeff}}}}}, {{s}})"
    _batched(w, node, args, [2], [out], [2], call, 8 * n + 8 * (13 * n * n + 4 * n))


PRINTERS.update(
    {
        "solve": _p_solve,
        "inv": _p_inv,
        "det": _p_det,
        "slogdet": _p_slogdet,
        "cholesky": _p_cholesky,
        "solve_triangular": _p_solve_triangular,
        "eigh": _p_eigh,
        "eigh_gaps": _p_eigh_gaps,
        "singular_values": _p_singular_values,
        "adjugate": _p_adjugate,
        "adjugate_jvp": _p_adjugate,
        "expm": _p_expm,
    }
)
