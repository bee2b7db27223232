"""Review of issue 21, backends: numba's slogdet of non-finite matrices, the numba printer's scalar
functions on special values, the jax and numba index checks of every integer dtype, and jax's
arange of a length computed from shapes. Oracles: numpy's own functions."""

from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

import symdiff as sd
import symdiff.scalar as sx

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None
numba_only = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
jax_only = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed")
BACKENDS = ["numpy"] + [b for b in ("numba", "jax") if importlib.util.find_spec(b) is not None]


# -- 1. numba slogdet / logdet of a matrix with nan or inf: numpy's (LAPACK's) result ---------------
@pytest.fixture(scope="module")
def slogdet_numba():
    g = sd.Graph()
    m = g.variable("m", (None, 3, 3))
    sign, logabs = sd.slogdet(m)
    return sd.compile([sign, logabs, sd.logdet(m)], [m], backend="numba")


def _numpy_slogdet(stack):
    with np.errstate(all="ignore"):
        sign, logabs = np.linalg.slogdet(stack)
        return sign, logabs, np.where(sign > 0, logabs, np.nan)


@numba_only
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_numba_slogdet_of_a_diagonal_with_a_non_finite_entry_is_numpys(slogdet_numba, value):
    m = np.eye(3)
    m[0, 0] = value
    got = slogdet_numba(m[None])
    want = _numpy_slogdet(m[None])
    expected = {"nan": (1.0, np.nan), "inf": (1.0, np.inf), "-inf": (-1.0, np.inf)}[str(value)]
    assert (float(want[0][0]), float(want[1][0])) == pytest.approx(expected, nan_ok=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), b)


@numba_only
@pytest.mark.xfail(reason="OpenBLAS's blocked getrf treats nan pivots its own way; not yet mirrored", strict=False)
@given(st.data())
def test_numba_slogdet_equals_numpys_with_nan_inf_and_zero_entries(slogdet_numba, data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    stack = rng.normal(size=(6, 3, 3))
    specials = np.array([np.nan, np.inf, -np.inf, 0.0])
    for m in stack:
        where = rng.random((3, 3)) < data.draw(st.sampled_from([0.1, 0.3, 0.6]))
        m[where] = rng.choice(specials, size=int(where.sum()))
    got = slogdet_numba(stack)
    for a, b in zip(got, _numpy_slogdet(stack)):
        np.testing.assert_array_equal(np.asarray(a), b)  # nan where numpy's is nan, equal elsewhere


# -- 2. the numba printer: numpy's functions on special values -----------------------------------
SPECIAL = [0.0, -0.0, 0.5, -0.5, 2.5, -2.5, 1.0, -1.0, 1e300, -1e300, -1e-300, 2.0**63, -(2.0**64)]
SPECIAL += [math.inf, -math.inf, math.nan]
NUMPY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "arctan2": np.arctan2, "hypot": np.hypot,
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "floor": np.floor, "ceil": np.ceil,
    "erf": scipy.special.erf, "erfc": scipy.special.erfc,
}  # fmt: skip
UNARY_NUMPY = "sqrt exp expm1 log log1p sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh"
NUMPY.update({f: getattr(np, f) for f in UNARY_NUMPY.split()})
FLOAT_FUNCTIONS = sorted(n for n in sx.FUNCTIONS if n in NUMPY and 1 <= sx.FUNCTIONS[n] <= 2)


def _rows(n):
    return list(itertools.product(SPECIAL, repeat=n))


def _numpy_values(name, rows):
    # each argument an array (numpy's power takes a scalar exponent 0.5 as sqrt: -inf ** 0.5 is nan
    # there, inf elementwise, as C's pow)
    columns = [np.array(c, dtype=np.float64) for c in zip(*rows)]
    with np.errstate(all="ignore"):
        return NUMPY[name](*columns)


def _same(got, want):
    # a libm's last bit aside (rtol 1e-14); a zero's sign and inf exactly; nan for nan
    got, want = float(got), float(want)
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return math.isclose(got, want, rel_tol=1e-14, abs_tol=0) and math.copysign(1, got) == math.copysign(1, want)


@numba_only
def test_the_numba_printer_gives_numpys_value_of_every_function_on_special_values():
    import numba

    lines = ["import math as _math", "import numpy as np", ""]
    for name in FLOAT_FUNCTIONS:
        n = sx.FUNCTIONS[name]
        names = [f"a{k}" for k in range(n)]
        text = sx.to_numba(sx.call(name, *(sx.arg(k) for k in range(n))), names)
        lines += [
            f"def f_{name}(x, out):",
            "    for i in range(out.shape[0]):",
            f"        {', '.join(names)} = {', '.join(f'x[i, {k}]' for k in range(n))}",
        ]  # noqa: E501
        lines += [f"        out[i] = {text}", ""]
    namespace: dict = {}
    exec("\n".join(lines), namespace)  # our own printed text
    bad = []
    for name in FLOAT_FUNCTIONS:
        rows = _rows(sx.FUNCTIONS[name])
        fn = numba.njit(error_model="numpy")(namespace[f"f_{name}"])
        out = np.empty(len(rows))
        fn(np.array(rows, dtype=np.float64), out)
        want = _numpy_values(name, rows)
        bad += [(name, r, o, w) for r, o, w in zip(rows, out, want) if not _same(o, w)]
    assert not bad, bad[:10]


@numba_only
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e300, -0.0, -0.5])
def test_numba_floor_and_ceil_of_a_float64_scalar_are_numpys(value):
    g = sd.Graph()
    s = g.variable("s")
    f = sd.compile([sd.floor(s) * 2.0, sd.ceil(s) * 2.0], [s], backend="numba")
    got = f(np.float64(value))
    assert _same(got[0], np.floor(value) * 2.0) and _same(got[1], np.ceil(value) * 2.0)


# the Python printer keeps max/min and math's floor/ceil (pinned by tests/test_scalar.py's old
# templates): its differences from numpy are exactly these (a zero's sign; a nan second argument)
def _python_known(name, row, want):
    if name in ("floor", "ceil") and want == 0:
        return True
    if name in ("maximum", "minimum"):
        return (row[0] == row[1] == 0) or math.isnan(row[1])
    return False


@pytest.mark.parametrize("name", FLOAT_FUNCTIONS)
def test_the_python_printer_is_numpys_function_where_the_evaluator_uses_it(name):
    n = sx.FUNCTIONS[name]
    fn = sx.python_function(sx.call(name, *(sx.arg(k) for k in range(n))), n)
    rows = _rows(n)
    for row, want in zip(rows, _numpy_values(name, rows)):
        try:
            got = fn(*row)
        except (ValueError, ZeroDivisionError, OverflowError):
            continue  # the evaluator computes numpy's there
        assert _same(got, want) or _python_known(name, row, want), (name, row, got, want)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e300])
def test_the_evaluator_gives_numpys_floor_and_ceil_where_math_raises(value):
    g = sd.Graph()
    s = g.variable("s")
    got = sd.evaluate([sd.floor(s), sd.ceil(s)], {s: value})
    assert _same(got[0], np.floor(value)) and _same(got[1], np.ceil(value))


# -- 3. index checks of every integer dtype --------------------------------------------------------
INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def _indexing_cases(dtype):
    g = sd.Graph()
    x = g.variable("x", (None, 5))
    i = g.variable("i", (3,), dtype=dtype)
    j = g.variable("j", (4, 3), dtype=dtype)
    return (
        g,
        x,
        {
            "getitem": (x[:, i], [x, i]),
            "take": (sd.take(x, i, axis=1), [x, i]),
            "take_along_axis": (sd.take_along_axis(x, j, axis=1), [x, j]),
        },
    )


def _index_values(dtype, kind):
    signed = np.dtype(dtype).kind == "i"
    good = np.array([4, 0, 2] if not signed else [-5, 4, 0])
    bad = np.array([5, 0, 1] if kind == "high" else ([-6, 0, 1] if signed else [255, 0, 1]))
    return (good if kind == "good" else bad).astype(dtype)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("dtype", INDEX_DTYPES)
def test_every_integer_index_dtype_in_and_out_of_range_matches_numpy(backend, dtype):
    _, x, cases = _indexing_cases(dtype)
    xv = np.arange(20.0).reshape(4, 5)
    for name, (out, ins) in cases.items():
        outputs = [out, sd.grad(sd.sum(sd.sin(out)), x)]
        ref = sd.compile(outputs, ins, backend="numpy")
        f = sd.compile(outputs, ins, backend=backend)
        for kind in ("good", "high", "low"):
            iv = _index_values(dtype, kind)
            iv = np.tile(iv, (4, 1)) if name == "take_along_axis" else iv
            try:
                want = ref(xv, iv)
            except IndexError as exc:
                with pytest.raises(IndexError, match=str(exc).split(":")[-1].strip()[:40].replace("(", r"\(")):
                    f(xv, iv)
                continue
            for got, w in zip(f(xv, iv), want):
                np.testing.assert_array_equal(np.asarray(got), w, err_msg=f"{name} {kind}")


@jax_only
@given(st.sampled_from(INDEX_DTYPES), st.lists(st.integers(-12, 12), min_size=1, max_size=4))
def test_jax_index_checks_agree_with_numpy_for_any_dtype_and_values(dtype, values):
    # a negative value of an unsigned dtype wraps (uint8: -1 is 255); uint64 past int64's range,
    # which numpy reads as negative, is left out
    if dtype == "uint64":
        values = [abs(v) for v in values]
    idx = np.array(values, dtype=np.int64).astype(dtype)
    g = sd.Graph()
    x = g.variable("x", (None,))
    i = g.variable("i", (len(values),), dtype=dtype)
    y = sd.take(x, i, axis=0)
    xv = np.arange(7.0)
    try:
        want = sd.compile(y, [x, i])(xv, idx)
    except IndexError:
        with pytest.raises(IndexError):
            sd.compile(y, [x, i], backend="jax")(xv, idx)
        return
    np.testing.assert_array_equal(np.asarray(sd.compile(y, [x, i], backend="jax")(xv, idx)), want)


# -- 4. jax: arange of a length computed from shapes ----------------------------------------------
@jax_only
def test_jax_runs_the_cross_entropy_idiom_with_a_none_batch():
    g = sd.Graph()
    lp = g.variable("lp", (None, 4))
    labels = g.variable("labels", (None,), dtype="int64")
    v = g.variable("v", (None, 4))
    loss = -sd.mean(sd.log_softmax(lp, axis=1)[sd.arange(sd.count(lp, 0)), labels])
    outputs = [loss, sd.grad(loss, lp), sd.hvp(loss, lp, v)]
    rng = np.random.default_rng(4)
    values = (rng.normal(size=(5, 4)), np.array([1, 3, 0, 2, 2]), rng.normal(size=(5, 4)))
    want = sd.compile(outputs, [lp, labels, v])(*values)
    got = sd.compile(outputs, [lp, labels, v], backend="jax")(*values)
    logp = values[0] - np.log(np.sum(np.exp(values[0]), axis=1, keepdims=True))
    np.testing.assert_allclose(float(want[0]), -np.mean(logp[np.arange(5), values[1]]), rtol=1e-12)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-12)
    # a length computed from shapes only, through other ops
    y = sd.sum(sd.arange(sd.count(lp, 0) * 2 - 1))
    assert int(sd.compile(y, [lp], backend="jax")(values[0])) == sum(range(9))


@jax_only
def test_jax_refuses_arange_of_a_length_read_from_input_values():
    g = sd.Graph()
    n = g.variable("n", (), dtype="int64")
    with pytest.raises(sd.BackendError, match="arange.*depends on the input values"):
        sd.compile(sd.sum(sd.arange(n)), [n], backend="jax")(3)
