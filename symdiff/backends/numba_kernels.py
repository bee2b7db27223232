"""The numba backend's fixed kernels: one real module, compiled with ``cache=True`` once per
machine (per argument types) and linked into every generated module that calls them.

A generated module (symdiff.backends.numba) imports this one as ``_k`` and calls ``_k.eigh(m)``,
``_k.dot(p, q)``, ... Numba then types and optimizes a kernel once, keeps its machine code on disk
next to this file (or in numba's user cache when the package's folder is read-only), and a new
graph links the cached code instead of compiling the kernel again. Printed into each generated
module, as before, the same kernels were compiled again for every graph: most of a first build.

The kernels also stand in for numpy functions whose numba implementations are slow to compile
at each call site (``np.transpose`` with axes, ``np.swapaxes``, ``np.broadcast_to`` with
``np.ndindex`` over a stack): ``permuted`` and ``batch_index`` do that work with loops over
flat arrays, the same machine code for any number of axes.

Last, ``sin_fast``, ``cos_fast``, ``sincos_fast``, ``tanh_fast``, ``exp_fast`` and ``log_fast``:
float64 sin, cos, tanh, exp and log as straight-line arithmetic that a fused loop inlines and
LLVM vectorizes (see their section below).

Each kernel works in its arguments' dtypes (the caller casts them first where numpy's result
type differs); a kernel taking ``out`` writes its result there, in ``out``'s dtype. Arithmetic
follows numpy's IEEE rules (``error_model="numpy"``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, error_model="numpy")


@numba.njit(cache=True)
def bounded(i, n):
    """The integer array ``i``, checked to index an axis of length ``n`` (-n .. n-1): numba's
    indexing does no bounds check. Raises IndexError."""
    for v in i.flat:
        if v < -n or v >= n:
            raise IndexError("an index is out of bounds for its axis")
    return i


@numba.njit(cache=True)
def bounded_int(i, n):
    """The integer ``i``, checked to index an axis of length ``n``. Raises IndexError."""
    if i < -n or i >= n:
        raise IndexError("an index is out of bounds for its axis")
    return i


@_jit
def dot(p, q):
    """np.dot of two float (or complex) arrays of at most 2 axes."""
    return np.dot(p, q)


@numba.njit(cache=True)
def integer_dot(p, q, out):
    """p (n, k) @ q (k, m) into ``out`` (n, m), for integers: numba's np.dot multiplies floats
    only. Integers wrap around as numpy's do: numba widens the products to 64 bits and the
    store takes them modulo out's width, the same residue."""
    out[:] = 0
    for i in range(p.shape[0]):
        for j in range(q.shape[1]):
            for k in range(p.shape[1]):
                out[i, j] += p[i, k] * q[k, j]
    return out


@numba.njit(cache=True)
def batch_index(shapes, k):
    """The leading (batch) axes of ``k`` operands broadcast together, as numpy's: ``shapes``
    holds k rows of nb sizes each, flat (the shorter ones padded with 1 in front). Returns
    ``(idx, shape)``: idx (k, count) the position of each result's matrix in each operand's
    stack (its batch axes flattened, C order), shape (nb,) the broadcast batch shape. Raises
    ValueError where two sizes differ and neither is 1."""
    nb = shapes.size // k
    shape = np.ones(nb, np.int64)
    for d in range(nb):
        for j in range(k):
            s = shapes[j * nb + d]
            if s != 1:
                if shape[d] != 1 and shape[d] != s:
                    raise ValueError("operands could not be broadcast together")
                shape[d] = s
    count = 1
    for d in range(nb):
        count *= shape[d]
    idx = np.zeros((k, count), np.int64)
    at = np.zeros(nb, np.int64)
    for c in range(count):
        for j in range(k):
            pos = 0
            for d in range(nb):
                s = shapes[j * nb + d]
                pos = pos * s + (at[d] if s != 1 else 0)
            idx[j, c] = pos
        d = nb - 1
        while d >= 0:
            at[d] += 1
            if at[d] < shape[d]:
                break
            at[d] = 0
            d -= 1
    return idx, shape


@numba.njit(cache=True)
def put(out, i, v):
    """out[i] = v for an array ``v`` of out[i]'s shape, element by element (numba's setitem of
    an array checks the shapes with an error message it takes seconds to compile). Raises
    ValueError if the sizes differ."""
    dst = out[i].reshape(-1)
    src = np.ascontiguousarray(v).reshape(-1)
    if src.size != dst.size:
        raise ValueError("a result has another shape than its slot in the stack")
    for j in range(src.size):
        dst[j] = src[j]


@numba.njit(cache=True)
def transposed(x):
    """The matrix ``x`` transposed, C-contiguous."""
    n, m = x.shape
    out = np.empty((m, n), x.dtype)
    for i in range(n):
        for j in range(m):
            out[j, i] = x[i, j]
    return out


@numba.njit(cache=True)
def permuted(flat, shape, perm):
    """The C-ordered elements ``flat`` of an array of ``shape``, its axes permuted as
    np.transpose(x, perm) does, flat in C order (the caller reshapes them)."""
    n = shape.size
    # the step in the result of one step along each of x's axes
    step = np.zeros(n, np.int64)
    size = 1
    for d in range(n - 1, -1, -1):
        axis = perm[d]
        step[axis] = size
        size *= shape[axis]
    out = np.empty(flat.size, flat.dtype)
    at = np.zeros(n, np.int64)
    pos = 0
    for c in range(flat.size):
        out[pos] = flat[c]
        d = n - 1
        while d >= 0:
            at[d] += 1
            pos += step[d]
            if at[d] < shape[d]:
                break
            pos -= step[d] * shape[d]
            at[d] = 0
            d -= 1
    return out


@_jit
def max_rows(a):
    """The largest element of each row of ``a`` (n, m), nan if the row has one (numpy's max)."""
    out = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        m = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v > m or v != v:
                m = v
            if m != m:
                break
        out[i] = m
    return out


@_jit
def min_rows(a):
    """The smallest element of each row of ``a`` (n, m), nan if the row has one (numpy's min)."""
    out = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        m = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v < m or v != v:
                m = v
            if m != m:
                break
        out[i] = m
    return out


@_jit
def sum_axis(x, out):
    """x (pre, n, post) summed over its middle axis into the zeros ``out`` (pre, post), in
    order along it (as numba's np.sum with an axis adds its slices)."""
    pre, n, post = x.shape
    for i in range(pre):
        for j in range(n):
            for k in range(post):
                out[i, k] += x[i, j, k]
    return out


@_jit
def prod_rows(a, out):
    """The product of each row of ``a`` (n, m) into ``out`` (n,), in out's dtype, in order."""
    for i in range(a.shape[0]):
        out[i] = 1
        for j in range(a.shape[1]):
            out[i] = out[i] * a[i, j]
    return out


@_jit
def running_sum(a, out):
    """cumsum along the last axis of the C-contiguous ``a`` into ``out`` (a's shape, numpy's
    accumulator dtype: int32 sums in int64), each lane in order."""
    src, dst = a.reshape(-1), out.reshape(-1)
    n = a.shape[-1]
    for start in range(0, src.size, max(n, 1)):
        dst[start] = src[start]
        for j in range(start + 1, start + n):
            dst[j] = dst[j - 1] + src[j]
    return out


@_jit
def running_product(a, out):
    """cumprod along the last axis of the C-contiguous ``a`` into ``out``, as running_sum."""
    src, dst = a.reshape(-1), out.reshape(-1)
    n = a.shape[-1]
    for start in range(0, src.size, max(n, 1)):
        dst[start] = src[start]
        for j in range(start + 1, start + n):
            dst[j] = dst[j - 1] * src[j]
    return out


@_jit
def eigh(a):
    """symdiff.ops.linalg._eigh of one matrix: of the symmetric part; all nan for a matrix with
    a nan or inf."""
    s = a + a.T
    s *= 0.5
    n = a.shape[0]
    if np.all(np.isfinite(s)):
        return np.linalg.eigh(s)
    return np.full(n, np.nan, a.dtype), np.full((n, n), np.nan, a.dtype)


@_jit
def slogdet(a):
    """np.linalg.slogdet of one matrix, in a's dtype, nan and inf entries included."""
    res = np.empty(2, a.dtype)
    if np.all(np.isfinite(a)):
        sign, logabs = np.linalg.slogdet(a)
        res[0], res[1] = sign, logabs
        return res[0], res[1]
    # a nan or inf, which numba's LAPACK call refuses: numpy's result, from LAPACK getrf's LU
    # (partial pivoting, the first largest |entry| of a column its pivot; an exact zero pivot is
    # (0, -inf)); each negative pivot and each row swap flips the sign, a nan pivot does not
    lu = a.copy()
    n = lu.shape[0]
    res[0], res[1] = 1, 0
    sign, logabs = res[0], res[1]
    for k in range(n):
        p = k
        for i in range(k + 1, n):
            if abs(lu[i, k]) > abs(lu[p, k]):
                p = i
        if lu[p, k] == 0:
            res[0], res[1] = 0, -np.inf
            return res[0], res[1]
        if p != k:
            for j in range(n):
                lu[k, j], lu[p, j] = lu[p, j], lu[k, j]
            sign = -sign
        pivot = lu[k, k]
        for i in range(k + 1, n):
            # as OpenBLAS's getf2 (numpy's LAPACK): a nan pivot divides nothing
            f = lu[i, k] if pivot != pivot else lu[i, k] / pivot
            for j in range(k + 1, n):
                lu[i, j] -= f * lu[k, j]
        if pivot < 0:
            sign = -sign
        logabs += np.log(abs(pivot))
    res[0], res[1] = sign, logabs
    return res[0], res[1]


@_jit
def singular_values(a):
    """symdiff.ops.linalg._singular_values_forward of one matrix: ascending; all nan for a
    matrix with a nan or inf."""
    if np.all(np.isfinite(a)):
        return np.linalg.svd(a, False)[1][::-1].copy()
    return np.full(min(a.shape[0], a.shape[1]), np.nan, a.dtype)


@_jit
def eigh_gaps(w, eps):
    """w (rows, n): F[r, i, j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it, and False where two
    eigenvalues are equal to rounding (symdiff.ops.linalg.eigh_gaps_and_ties)."""
    rows, n = w.shape
    out = np.zeros((rows, n, n), w.dtype)
    one = np.ones(1, w.dtype)[0]
    zero = np.zeros(1, w.dtype)[0]
    ok = True
    for r in range(rows):
        scale = zero
        for i in range(n):
            scale = max(scale, abs(w[r, i]))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d = w[r, j] - w[r, i]
                    if abs(d) <= 8 * n * eps * scale:
                        ok = False
                    out[r, i, j] = one / d
    return out, ok


@_jit
def solve_triangular(a, b, lower, trans, unit):
    """x with T x = b (Tᵀ x = b with trans), T the lower or upper triangle of a (ones on its
    diagonal with unit), b (n, k), both of x's dtype: substitution, reading the triangle only;
    a zero on T's diagonal raises scipy's LinAlgError (LAPACK's trtrs)."""
    n, k = b.shape
    x = np.empty((n, k), b.dtype)
    if not unit:
        for i in range(n):
            if a[i, i] == 0:
                raise np.linalg.LinAlgError("singular matrix")
    forward = lower != trans  # Tᵀ of a lower triangle is upper
    for step in range(n):
        i = step if forward else n - 1 - step
        lo, hi = (0, i) if forward else (i + 1, n)
        for c in range(k):
            s = b[i, c]
            for j in range(lo, hi):
                s -= (a[j, i] if trans else a[i, j]) * x[j, c]
            x[i, c] = s if unit else s / a[i, i]
    return x


@_jit
def solve_triangular_vector(a, b, lower, trans, unit):
    """solve_triangular of a vector b (n,)."""
    return solve_triangular(a, b.reshape((b.shape[0], 1)), lower, trans, unit)[:, 0]


@_jit
def _adjugate_parts(a):
    # a = U S Vt; the products of the other singular values (p) and of the others than two (q),
    # by loops (no division: exact at singular a), as symdiff.ops.linalg's forwards
    n = a.shape[0]
    u, s, vt = np.linalg.svd(a)
    sign = np.sign(np.linalg.det(u)) * np.sign(np.linalg.det(vt))
    p = np.ones(n, a.dtype)
    q = np.zeros((n, n), a.dtype)
    for i in range(n):
        for j in range(n):
            if j != i:
                p[i] *= s[j]
                q[i, j] = 1.0
                for k in range(n):
                    if k != i and k != j:
                        q[i, j] *= s[k]
    return np.ascontiguousarray(u.T), p, q, np.ascontiguousarray(vt.T), sign


@_jit
def adjugate(a):
    """The adjugate of one matrix (all nan for a matrix with a nan or inf), exact at singular a."""
    if not np.all(np.isfinite(a)):
        return np.full(a.shape, np.nan, a.dtype)
    ut, p, q, v, sign = _adjugate_parts(a)
    return (sign * (np.ascontiguousarray(v * p) @ ut)).astype(a.dtype)


@_jit
def adjugate_jvp(a, t):
    """The derivative of the adjugate at ``a`` along ``t`` (one matrix each)."""
    if not np.all(np.isfinite(a)):
        return np.full(a.shape, np.nan, a.dtype)
    ut, p, q, v, sign = _adjugate_parts(a)
    w = ut @ t @ v
    inner = -q * w
    d = q @ np.diag(w).copy()
    for i in range(a.shape[0]):
        inner[i, i] += d[i]
    return (sign * (v @ inner @ ut)).astype(a.dtype)


@_jit
def _expm_steps(v):
    # C's (int)ceil(v) clamped at 0, as scipy computes a count; 0 where v is not finite
    if not np.isfinite(v) or v <= 0:
        return 0
    return int(np.ceil(v))


@_jit
def _expm_norm(x):
    # the largest absolute row sum: scipy works on the column-major transpose, whose 1-norm it is
    best = 0.0
    for i in range(x.shape[0]):
        row = 0.0
        for j in range(x.shape[1]):
            row += abs(x[i, j])
        best = max(best, row)
    return best


@_jit
def _expm_comb(m0, c0, m1, c1, m2, c2, m3, c3, d):
    # c0 m0 + c1 m1 + c2 m2 + c3 m3 + d I, summed in that order as scipy's loops (loops, not
    # array expressions: numba compiles each of those for about a second)
    n = m0.shape[0]
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = c0 * m0[i, j] + c1 * m1[i, j] + c2 * m2[i, j] + c3 * m3[i, j]
        out[i, i] += d
    return out


@_jit
def _expm_solve(a, b):
    # a⁻¹ b by Gaussian elimination with partial pivoting, LAPACK's getrf and getrs written out
    # (numba's np.linalg.solve takes about 20 s to compile)
    n, k = b.shape
    lu, x = a.copy(), b.copy()
    for c in range(n):
        p = c
        for i in range(c + 1, n):
            if abs(lu[i, c]) > abs(lu[p, c]):
                p = i
        if p != c:
            for j in range(n):
                lu[c, j], lu[p, j] = lu[p, j], lu[c, j]
            for j in range(k):
                x[c, j], x[p, j] = x[p, j], x[c, j]
        for i in range(c + 1, n):
            f = lu[i, c] / lu[c, c]
            for j in range(c + 1, n):
                lu[i, j] -= f * lu[c, j]
            for j in range(k):
                x[i, j] -= f * x[c, j]
    for c in range(n - 1, -1, -1):
        for j in range(k):
            t = x[c, j]
            for i in range(c + 1, n):
                t -= lu[c, i] * x[i, j]
            x[c, j] = t / lu[c, c]
    return x


@_jit
def _expm_dot(x, y):
    # one call site of @ (numba compiles each inline @ for a third of a second)
    return x @ y


@_jit
def _expm_spin(absa, v, times):
    # |a|^times v, and its largest element (scipy's bound on the 1-norm of |a|^p)
    for _ in range(times):
        v = absa @ v
    top = 0.0
    for x in v:
        top = max(top, x)
    return v, top


@_jit
def expm(a, coeff):
    # scipy.linalg.expm of one matrix, in float64 (Al-Mohy & Higham 2009): the Pade degree m
    # and the squarings s picked from exact 1-norms of powers (scipy estimates them from n = 400),
    # coeff the bounds for the input's precision; a diagonal matrix exactly, a triangular one
    # with its diagonal and first off-diagonal recomputed at each squaring (Higham's 10.42)
    theta = (1.495585217958292e-002, 2.539398330063230e-001, 9.504178996162932e-001, 2.097847961257068e000, 4.25)
    # loops rather than array expressions, which numba compiles for about a second each
    n = a.shape[0]
    x = np.empty((n, n))
    absa = np.empty((n, n))
    upper, lower, finite = True, True, True
    for i in range(n):
        for j in range(n):
            x[i, j] = a[i, j]
            absa[i, j] = abs(x[i, j])
            if x[i, j] != 0:
                if i > j:
                    upper = False
                elif i < j:
                    lower = False
            if not np.isfinite(x[i, j]):
                finite = False
    e = np.zeros((n, n))
    if upper and lower:
        for i in range(n):
            e[i, i] = np.exp(x[i, i])
        return e
    diag = np.zeros(n)
    near = np.zeros(n)  # the first off-diagonal of a triangular matrix
    for k in range(n):
        diag[k] = x[k, k]
        if k + 1 < n:
            near[k] = x[k, k + 1] if upper else x[k + 1, k]
    if not finite:  # scipy's arithmetic on a nan or inf gives nan throughout
        e = np.full((n, n), np.nan)
    else:
        v, norm_a = _expm_spin(absa, np.ones(n), 1)
        a2 = _expm_dot(x, x)
        a4 = _expm_dot(a2, a2)
        a6 = _expm_dot(a2, a4)
        d6 = _expm_norm(a6) ** (1.0 / 6.0)
        eta1 = max(_expm_norm(a4) ** 0.25, d6)
        m, s, eta2 = 13, 0, 0.0
        a8 = a2
        v, top = _expm_spin(absa, v, 6)
        if eta1 < theta[0] and _expm_steps(np.log2(top / norm_a / coeff[0]) / 6) == 0:
            m = 3
        if m == 13:
            v, top = _expm_spin(absa, v, 4)
            if eta1 < theta[1] and _expm_steps(np.log2(top / norm_a / coeff[1]) / 10) == 0:
                m = 5
        if m == 13:
            a8 = _expm_dot(a4, a4)
            eta2 = max(d6, _expm_norm(a8) ** 0.125)
            v, top = _expm_spin(absa, v, 4)
            if eta2 < theta[2] and _expm_steps(np.log2(top / norm_a / coeff[2]) / 14) == 0:
                m = 7
        if m == 13:
            v, top = _expm_spin(absa, v, 4)
            if eta2 < theta[3] and _expm_steps(np.log2(top / norm_a / coeff[3]) / 18) == 0:
                m = 9
        if m == 13:
            eta3 = max(_expm_norm(a8) ** 0.125, _expm_norm(_expm_dot(a4, a6)) ** 0.1)
            s = _expm_steps(np.log2(min(eta2, eta3) / theta[4]))
            if s:
                absa = _expm_comb(absa, 2.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                for k in range(n):
                    v[k] *= 2.0 ** (-19.0 * s)
                norm_a = norm_a * 2.0 ** (-s)
            v, top = _expm_spin(absa, v, 8)
            s += _expm_steps(np.log2(top / norm_a / coeff[4]) / 26.0)
            if s:
                x = _expm_comb(x, 2.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                a2 = _expm_comb(a2, 4.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                a4 = _expm_comb(a4, 16.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                a6 = _expm_comb(a6, 64.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
        # U and V of the Pade approximant r_m = (V - U)⁻¹ (V + U)
        if m == 3:
            u = _expm_comb(_expm_dot(x, a2), 1.0, x, 60.0, x, 0.0, x, 0.0, 0.0)
            w = _expm_comb(a2, 12.0, x, 0.0, x, 0.0, x, 0.0, 120.0)
        elif m == 5:
            u = _expm_dot(x, _expm_comb(a4, 1.0, a2, 420.0, x, 0.0, x, 0.0, 15120.0))
            w = _expm_comb(a4, 30.0, a2, 3360.0, x, 0.0, x, 0.0, 30240.0)
        elif m == 7:
            u = _expm_dot(x, _expm_comb(a6, 1.0, a4, 1512.0, a2, 277200.0, x, 0.0, 8648640.0))
            w = _expm_comb(a6, 56.0, a4, 25200.0, a2, 1995840.0, x, 0.0, 17297280.0)
        elif m == 9:
            u = _expm_dot(x, _expm_comb(a8, 1.0, a6, 3960.0, a4, 2162160.0, a2, 302702400.0, 8821612800.0))
            w = _expm_comb(a8, 90.0, a6, 110880.0, a4, 30270240.0, a2, 2075673600.0, 17643225600.0)
        else:
            inner = _expm_dot(a6, _expm_comb(a6, 1.0, a4, 16380.0, a2, 40840800.0, x, 0.0, 0.0))
            outer = _expm_comb(
                a6, 33522128640.0, a4, 10559470521600.0, a2, 1187353796428800.0, x, 0.0, 32382376266240000.0
            )
            u = _expm_dot(x, _expm_comb(inner, 1.0, outer, 1.0, x, 0.0, x, 0.0, 0.0))
            low = _expm_dot(a6, _expm_comb(a6, 182.0, a4, 960960.0, a2, 1323241920.0, x, 0.0, 0.0))
            high = _expm_comb(
                a6, 670442572800.0, a4, 129060195264000.0, a2, 7771770303897600.0, x, 0.0, 64764752532480000.0
            )
            w = _expm_comb(low, 1.0, high, 1.0, x, 0.0, x, 0.0, 0.0)
        # (V - U)⁻¹ (V + U) = I + 2 (V - U)⁻¹ U
        e = _expm_comb(
            _expm_solve(_expm_comb(w, 1.0, u, -1.0, x, 0.0, x, 0.0, 0.0), u), 2.0, x, 0.0, x, 0.0, x, 0.0, 1.0
        )
        if upper or lower:
            if s:
                for k in range(n):
                    e[k, k] = np.exp(diag[k] * 2.0 ** (-s))
            for i in range(s - 1, -1, -1):
                e = _expm_dot(e, e)
                scale = 2.0 ** (-i)
                for k in range(n):
                    e[k, k] = np.exp(diag[k] * scale)
                for k in range(n - 1):  # scipy's _exp_sinch: (exp(y) - exp(x)) / (y - x), exp(x) at y = x
                    lo, hi = diag[k] * scale, diag[k + 1] * scale
                    sinch = np.exp(lo) if hi - lo == 0 else (np.exp(hi) - np.exp(lo)) / (hi - lo)
                    if upper:
                        e[k, k + 1] = sinch * (near[k] * scale)
                    else:
                        e[k + 1, k] = sinch * (near[k] * scale)
        else:
            for _ in range(s):
                e = _expm_dot(e, e)
    for i in range(n):  # the other triangle of a triangular input stays zero
        for j in range(n):
            if (upper and i > j) or (lower and i < j):
                e[i, j] = 0.0
    return e


# -- vectorizable sin, cos, tanh, exp and log -----------------------------------------------------
# The C library's sin, cos, tanh, exp and log are calls, which keep a fused elementwise loop scalar
# (numba has had no vectorized math library since 0.62: Intel SVML is unsupported from that release
# on). These are the same functions as straight-line arithmetic and selects, which LLVM vectorizes
# when they are inlined into a loop: fdlibm's kernels (sin and cos on [-pi/4, pi/4], the
# polynomials of FreeBSD's k_sin.c and k_cos.c, under 1 ulp) after a three-part Cody-Waite
# reduction by pi/2 (e_rem_pio2.c's constants), exact for |x| <= TRIG_LIMIT; tanh from Cephes'
# rational form below 0.625 and 1 - 2/(exp(2|x|) + 1) above it; exp and log by fdlibm's e_exp.c
# and e_log.c. Within 2 ulps of glibc's (tests/test_numba_math.py). A loop calling sin_fast or
# cos_fast also checks trig_ok on the argument and runs again with the C library's functions if
# any is out of range (inf, nan, |x| > TRIG_LIMIT), so every value is either these functions' or
# numpy's own; tanh, exp and log hold for every float64.
TRIG_LIMIT = 2.0**19 * 1.5707963267948966
_INVPIO2 = 6.36619772367581382433e-01
_PIO2_1, _PIO2_1T = 1.57079632673412561417e00, 6.07710050650619224932e-11
_PIO2_2, _PIO2_2T = 6.07710050630396597660e-11, 2.02226624879595063154e-21
_PIO2_3, _PIO2_3T = 2.02226624871116645580e-21, 8.47842766036889956997e-32
_TOINT = 1.5 / 2.220446049250313e-16  # adding and subtracting it rounds to an integer
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


@numba.njit(inline="always")
def trig_ok(x):
    """Whether sin_fast and cos_fast reduce ``x`` exactly (finite, |x| <= TRIG_LIMIT)."""
    return abs(x) <= TRIG_LIMIT


@numba.njit(inline="always")
def sincos_fast(x):
    """(sin(x), cos(x)) for trig_ok(x), each within an ulp of the C library's: one reduction and
    both polynomials, which sin and cos of one argument in a loop share."""
    fn = (x * _INVPIO2 + _TOINT) - _TOINT
    fn = fn if abs(x) <= TRIG_LIMIT else 0.0  # (a nan or huge x: the caller's loop runs again)
    n = np.int64(fn)
    r = x - fn * _PIO2_1
    w = fn * _PIO2_1T
    t = r
    w = fn * _PIO2_2
    r = t - w
    w = fn * _PIO2_2T - ((t - r) - w)
    t = r
    w = fn * _PIO2_3
    r = t - w
    w = fn * _PIO2_3T - ((t - r) - w)
    y0 = r - w
    y1 = (r - y0) - w
    z = y0 * y0
    v = z * y0
    p = _S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))
    s = y0 - ((z * (0.5 * y1 - v * p) - y1) - v * _S1)
    zz = z * z
    q = z * (_C1 + z * (_C2 + z * _C3)) + zz * zz * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    one = 1.0 - hz
    c = one + (((1.0 - one) - hz) + (z * q - y0 * y1))
    a = c if (n & 1) else s
    b = s if (n & 1) else c
    return (-a if (n & 2) else a), (-b if ((n + 1) & 2) else b)


@numba.njit(inline="always")
def sin_fast(x):
    """sin(x) for trig_ok(x), within an ulp of the C library's."""
    return sincos_fast(x)[0]


@numba.njit(inline="always")
def cos_fast(x):
    """cos(x) for trig_ok(x), within an ulp of the C library's."""
    return sincos_fast(x)[1]


_LN2_HI, _LN2_LO, _INVLN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e00
_P1, _P2, _P3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
_P4, _P5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


_EXP_CLAMP = 746.0  # exp(-746) rounds to 0 and exp(710) overflows, as exp of anything beyond


@numba.njit(inline="always")
def _exp_parts(c):
    """(y, k) with exp(c) = y * 2**k, |c| <= 746: fdlibm's e_exp.c, c = k ln2 + r with k the
    nearest integer and y = exp(r) by its rational form."""
    fk = (c * _INVLN2 + _TOINT) - _TOINT
    hi = c - fk * _LN2_HI
    lo = fk * _LN2_LO
    r = hi - lo
    t = r * r
    p = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    return 1.0 - ((lo - (r * p) / (2.0 - p)) - hi), np.int64(fk)


@numba.njit(inline="always")
def exp_fast(x):
    """exp(x) for every float64 x (inf gives inf, -inf 0, nan nan; overflow inf, an underflow 0),
    within an ulp of the C library's: ``_exp_parts``, 2**k applied as two factors, the first exact.
    A subnormal result (x < -708.4) is y rounded again to fewer bits: about 1% of them are a
    subnormal ulp from the C library's correctly rounded one, as fdlibm's own."""
    y, k = _exp_parts(x if abs(x) <= _EXP_CLAMP else math.copysign(_EXP_CLAMP, x))  # (nan: replaced below)
    k1 = k >> 1  # |k| <= 1076 (|x| clamped to 746): 2**k1 and 2**(k - k1) are normal numbers
    y = y * np.int64((k1 + 1023) << 52).view(np.float64)
    y = y * np.int64((k - k1 + 1023) << 52).view(np.float64)
    return x if x != x else y


@numba.njit(inline="always")
def tanh_fast(x):
    """tanh(x) for every float64 x (nan gives nan), within 2 ulps of the C library's. Its
    caller compiles with ``error_model="numpy"`` (a division checked for zero stays scalar)."""
    a = abs(x)
    z = a * a
    e, k = _exp_parts(min(2.0 * a, 44.0) if a == a else 0.0)  # tanh is 1 to the last bit past |x| = 22
    e = e * np.int64((k + 1023) << 52).view(np.float64)  # exp(2|x|) = e * 2**k, 0 <= k <= 64
    # a + P/Q below 0.625, 1 - 2/(e + 1) above: the operands chosen first, so one division (a
    # vector's lanes take both sides), the same numbers as dividing on each side
    small = a < 0.625
    base = a if small else 1.0
    num = a * z * ((_TP0 * z + _TP1) * z + _TP2) if small else -2.0
    den = (((z + _TQ0) * z + _TQ1) * z + _TQ2) if small else e + 1.0
    result = base + num / den
    return x if x != x else math.copysign(result, x)


_LG1, _LG2, _LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
_LG4, _LG5 = 2.222219843214978396e-01, 1.818357216161805012e-01
_LG6, _LG7 = 1.531383769920937332e-01, 1.479819860511658591e-01


@numba.njit(inline="always")
def log_fast(x):
    """log(x) for every float64 x (0 gives -inf, a negative x nan, inf inf, nan nan), within an
    ulp of the C library's: fdlibm's e_log.c, x = 2**k (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)),
    its general form for every f (fdlibm's shortcut for |f| < 2**-20 only saves time)."""
    tiny = x < 2.2250738585072014e-308  # subnormal (scaled by 2**54 first), zero or negative
    bits = np.float64(x * 18014398509481984.0 if tiny else x).view(np.int64)
    hx = (bits >> 32) & 0x000FFFFF
    i = (hx + 0x95F64) & 0x100000
    k = ((bits >> 52) & 0x7FF) - 1023 - (54 if tiny else 0) + (i >> 20)
    f = np.int64(((hx | (i ^ 0x3FF00000)) << 32) | (bits & 0xFFFFFFFF)).view(np.float64) - 1.0
    s = f / (2.0 + f)
    dk = np.float64(k)
    z = s * s
    w = z * z
    big = ((hx - 0x6147A) | (0x6B851 - hx)) > 0
    hfsq = 0.5 * f * f
    rr = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    if big:
        y = dk * _LN2_HI - ((hfsq - (s * (hfsq + rr) + dk * _LN2_LO)) - f)
    else:
        y = dk * _LN2_HI - ((s * (f - rr) - dk * _LN2_LO) - f)
    if x > 0.0 and x < np.inf:
        return y
    return -np.inf if x == 0.0 else (x if x == np.inf else np.nan)  # nan for a negative x or nan
