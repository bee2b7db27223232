"""Independent oracles: finite differences of plain numpy functions (no symdiff code)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

STEP = 1e-3


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def _unflat(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    out, start = [], 0
    for a in like:
        out.append(vector[start : start + a.size].reshape(a.shape))
        start += a.size
    return out


def derivative(fn: Callable[[float], np.ndarray], h: float = STEP) -> np.ndarray:
    """d fn(s)/ds at s = 0, by the fourth-order central difference (error O(h^4))."""
    return (8 * (fn(h) - fn(-h)) - (fn(2 * h) - fn(-2 * h))) / (12 * h)


def _as_float(a: np.ndarray) -> np.ndarray:
    """Values to perturb in float64; integer arguments (indices, labels) stay integers."""
    a = np.asarray(a)
    return a if a.dtype.kind in "iu" else a.astype(np.float64)


def jacobian(f: Callable[..., np.ndarray], args: Sequence[np.ndarray], wrt: int) -> np.ndarray:
    """The Jacobian of ``f(*args)`` with respect to ``args[wrt]``, shaped out.shape + arg.shape."""
    args = [_as_float(a) for a in args]
    x = args[wrt]
    out_shape = np.shape(f(*args))
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = 1.0

        def moved(s, e=e):
            shifted = list(args)
            shifted[wrt] = x + s * e.reshape(x.shape)
            return np.asarray(f(*shifted), dtype=np.float64)

        cols.append(derivative(moved).reshape(-1))
    J = np.stack(cols, axis=-1) if cols else np.zeros((int(np.prod(out_shape)), 0))
    return J.reshape(out_shape + x.shape)


def gradient(s: Callable[..., float], args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The gradient of a scalar function of several arrays."""
    return [jacobian(lambda *a: np.asarray(s(*a)), args, k) for k in range(len(args))]


def hessian(s: Callable[..., float], args: Sequence[np.ndarray]) -> np.ndarray:
    """The Hessian of a scalar function over all its (flattened, concatenated) arguments."""
    args = [_as_float(a) for a in args]
    x0 = _flat(args)

    def grad_flat(x: np.ndarray) -> np.ndarray:
        return _flat(gradient(s, _unflat(x, args)))

    rows = []
    for i in range(x0.size):
        e = np.zeros(x0.size)
        e[i] = 1.0
        rows.append(derivative(lambda t, e=e: grad_flat(x0 + t * e)))
    return np.array(rows)
