"""Review of issue 21 (ops, lowerings): three kinds of fault, each example a regression test with
numpy's value and each kind a property.

1. A reduction or running op declares numpy's result dtype (its accumulator's: cumsum, cumprod and
   prod of bool or small integers are int64, as numpy's) and every backend returns exactly it.
2. A structural op moves values, never multiplies them: inf and nan stay where they are, zeros
   elsewhere, as numpy's own function (diag once multiplied by the identity: inf * 0 = nan).
3. einsum and tensordot give numpy's dtype and value (int32 stays int32 and wraps as numpy's)
   through their lowering too, so numba runs them.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symdiff as sd
from symdiff.backends import installed
from symdiff.lower import lowered

BACKENDS = ["numpy"] + [b for b in ("numba", "jax") if installed(b)]


def _backend_param(backend):
    return pytest.param(backend, marks=[pytest.mark.slow] if backend == "numba" else [])


ON_BACKENDS = [_backend_param(b) for b in BACKENDS]


def _through_lowering(node, bindings):
    """The node's value computed by its lowering (the node's own value for a primitive)."""
    region = lowered(node)
    if region is None:
        return np.asarray(sd.evaluate(node, bindings))
    inputs = sd.evaluate(list(node.inputs), bindings)
    return np.asarray(sd.evaluate(list(region.outputs), dict(zip(region.params, inputs)))[0])


def _same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6 if want.dtype != np.float64 else 1e-12, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


# -- 1. reductions and running ops: numpy's result dtype ----------------------------------
def _floats(x):
    """x as numpy computes a float function of it: integers and booleans as float64."""
    return x if x.dtype.kind == "f" else x.astype(np.float64)


DTYPES = ["bool", "int8", "int32", "int64", "uint16", "float16", "float32", "float64"]
REDUCTIONS = {
    "sum": (sd.sum, np.sum),
    "prod": (sd.prod, np.prod),
    "mean": (sd.mean, np.mean),
    "var": (sd.var, np.var),
    "std": (sd.std, np.std),
    "max": (sd.max, np.max),
    "min": (sd.min, np.min),
    "cumsum": (lambda x: sd.cumsum(x, axis=0), lambda x: np.cumsum(x, axis=0)),
    "cumprod": (lambda x: sd.cumprod(x, axis=0), lambda x: np.cumprod(x, axis=0)),
    "prod_axis": (lambda x: sd.prod(x, axis=1), lambda x: np.prod(x, axis=1)),
    # scipy's (of floats: scipy subtracts booleans, which numpy refuses)
    "logsumexp": (sd.logsumexp, lambda x: scipy.special.logsumexp(_floats(x))),
    "softmax": (sd.softmax, lambda x: scipy.special.softmax(_floats(x), axis=-1)),
    "log_softmax": (sd.log_softmax, lambda x: scipy.special.log_softmax(_floats(x), axis=-1)),
}


def _small(dtype):
    return (np.arange(12).reshape(3, 4) % 3 + 1).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_a_reduction_declares_numpys_result_dtype(name, dtype):
    ours, theirs = REDUCTIONS[name]
    g = sd.Graph()
    x = g.variable("x", (3, 4), dtype=dtype)
    node = ours(x)
    want = np.asarray(theirs(_small(dtype))).dtype
    assert node.dtype == want
    assert np.asarray(sd.evaluate(node, {x: _small(dtype)})).dtype == want


@pytest.mark.parametrize("backend", ON_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_backend_returns_a_reductions_declared_dtype_and_numpys_value(dtype, backend):
    if backend == "numba" and dtype == "float16":
        pytest.skip("numba refuses float16 by name")
    g = sd.Graph()
    x = g.variable("x", (3, 4), dtype=dtype)
    names = sorted(REDUCTIONS)
    outs = [REDUCTIONS[n][0](x) for n in names]
    got = sd.compile(outs, [x], backend=backend)(_small(dtype))
    for name, value in zip(names, got):
        want = np.asarray(REDUCTIONS[name][1](_small(dtype)))
        value = np.asarray(value)
        assert value.dtype == want.dtype, (name, value.dtype, want.dtype)
        rtol = 1e-12 if want.dtype == np.float64 else 2e-3
        np.testing.assert_allclose(value.astype(float), want.astype(float), rtol=rtol, err_msg=name)


@given(
    hnp.arrays(st.sampled_from([np.bool_, np.int8, np.int32, np.uint16]), (3, 4), elements=st.integers(0, 1)),
    st.integers(-2, 1),
)
def test_running_ops_and_prod_count_as_numpy_does(values, axis):
    # booleans and small integers: numpy accumulates in int64 (uint64), never in the input's dtype
    g = sd.Graph()
    x = g.variable("x", (3, 4), dtype=values.dtype)
    for ours, theirs in ((sd.cumsum, np.cumsum), (sd.cumprod, np.cumprod), (sd.prod, np.prod)):
        _same(sd.evaluate(ours(x, axis=axis), {x: values}), theirs(values, axis=axis))


@pytest.mark.parametrize("backend", ON_BACKENDS)
def test_review_cumsum_cumprod_prod_of_bool_and_int32(backend):
    # numba stored into the declared dtype: a cumsum of booleans was True, int32 wrapped at 2.2e9;
    # jax gave int32
    g = sd.Graph()
    xi = g.variable("xi", (3, 4), dtype="int32")
    xb = g.variable("xb", (3, 4), dtype="bool")
    big = np.arange(12, dtype=np.int32).reshape(3, 4) * 100000000
    ones = np.ones((3, 4), bool)
    outs = [sd.cumsum(xi, axis=1), sd.cumprod(xb, axis=0), sd.cumsum(xb, axis=1), sd.prod(xi + 1, axis=0), sd.prod(xb)]
    got = sd.compile(outs, [xi, xb], backend=backend)(big, ones)
    want = [
        np.cumsum(big, axis=1),  # [..., 3300000000, ...]: past int32
        np.cumprod(ones, axis=0),
        np.cumsum(ones, axis=1),  # [1, 2, 3, 4]
        np.prod(big + 1, axis=0),
        np.prod(ones),
    ]
    assert np.cumsum(big, axis=1)[2, 3] == 3800000000 and want[0].dtype == np.int64
    for a, b in zip(got, want):
        _same(a, b)


# -- 2. structural ops move values ---------------------------------------------------------
V = np.array([1.0, np.inf, np.nan, -np.inf])
M = np.array([[np.inf, 1, np.nan], [2, -np.inf, 3], [np.nan, 4, np.inf], [5, 6, 7.0]])
STRUCTURAL = {
    "diag": (lambda v: sd.diag(v), np.diag, V),
    "diag_k2": (lambda v: sd.diag(v, 2), lambda v: np.diag(v, 2), V),
    "diag_k-1": (lambda v: sd.diag(v, -1), lambda v: np.diag(v, -1), V),
    "diagonal": (lambda m: sd.diagonal(m, 1), lambda m: np.diagonal(m, 1), M),
    "diag_of_matrix": (lambda m: sd.diag(m, -1), lambda m: np.diag(m, -1), M),
    "tril": (sd.tril, np.tril, M),
    "triu": (lambda m: sd.triu(m, 1), lambda m: np.triu(m, 1), M),
    "pad": (lambda m: sd.pad(m, ((1, 0), (2, 1))), lambda m: np.pad(m, ((1, 0), (2, 1))), M),
    "tile": (lambda m: sd.tile(m, (2, 3)), lambda m: np.tile(m, (2, 3)), M),
    "repeat": (lambda m: sd.repeat(m, 2, axis=1), lambda m: np.repeat(m, 2, axis=1), M),
    "concatenate": (lambda m: sd.concatenate([m, m], axis=1), lambda m: np.concatenate([m, m], axis=1), M),
    "stack": (lambda m: sd.stack([m, m], axis=1), lambda m: np.stack([m, m], axis=1), M),
    "flip": (lambda m: sd.flip(m, axis=0), lambda m: np.flip(m, axis=0), M),
    "roll": (lambda m: sd.roll(m, 1, axis=1), lambda m: np.roll(m, 1, axis=1), M),
    "transpose": (sd.transpose, np.transpose, M),
    "reshape": (lambda m: sd.reshape(m, (3, 4)), lambda m: np.reshape(m, (3, 4)), M),
    "broadcast_to": (lambda v: sd.broadcast_to(v, (2, 4)), lambda v: np.broadcast_to(v, (2, 4)), V),
}


def _zeros_on_diagonal(m, k):
    out = np.zeros_like(m)
    rows, cols = np.nonzero(np.eye(*m.shape, k=k, dtype=bool))
    out[rows, cols] = np.diagonal(m, k)
    return out


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown_sizes"])
@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_a_structural_op_keeps_inf_and_nan_where_numpy_puts_them(name, known):
    ours, theirs, value = STRUCTURAL[name]
    g = sd.Graph()
    x = g.variable("x", value.shape if known else (None,) * value.ndim)
    node = ours(x)
    want = theirs(value)
    _same(sd.evaluate(node, {x: value}), want)
    _same(_through_lowering(node, {x: value}), want)


@pytest.mark.parametrize("backend", ON_BACKENDS)
def test_every_backend_keeps_inf_and_nan_in_structural_ops(backend):
    g = sd.Graph()
    v = g.variable("v", V.shape)
    m = g.variable("m", M.shape)
    names = sorted(STRUCTURAL)
    outs = [STRUCTURAL[n][0](v if STRUCTURAL[n][2] is V else m) for n in names]
    # the adjoint of diagonal (undiagonal) moves an inf cotangent onto the diagonal alone
    outs.append(sd.grad(sd.sum(sd.diagonal(m, 1) * np.inf), m))
    got = sd.compile(outs, [v, m], backend=backend)(V, M)
    for name, value in zip(names, got):
        _same(value, STRUCTURAL[name][1](STRUCTURAL[name][2]))
    _same(got[-1], _zeros_on_diagonal(np.full(M.shape, np.inf), 1))


FLOATS = st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.5, -2.0])


@given(hnp.arrays(np.float64, st.integers(1, 5), elements=FLOATS), st.integers(-3, 3))
def test_diag_places_any_value_as_numpy_does(v, k):
    for shape in (v.shape, (None,)):
        g = sd.Graph()
        x = g.variable("x", shape)
        node = sd.diag(x, k)
        want = np.diag(v, k)
        _same(sd.evaluate(node, {x: v}), want)
        _same(_through_lowering(node, {x: v}), want)
        assert np.array_equal(np.signbit(sd.evaluate(node, {x: v})), np.signbit(want))


@given(hnp.arrays(np.float64, (3, 4), elements=FLOATS), st.integers(-2, 2))
def test_diagonal_and_triangles_place_any_value_as_numpy_does(m, k):
    for shape in ((3, 4), (None, None)):
        g = sd.Graph()
        x = g.variable("x", shape)
        for ours, theirs in ((sd.diagonal, np.diagonal), (sd.tril, np.tril), (sd.triu, np.triu)):
            node = ours(x, k)
            _same(sd.evaluate(node, {x: m}), theirs(m, k))
            _same(_through_lowering(node, {x: m}), theirs(m, k))


def test_review_diag_of_inf_and_nan():
    g = sd.Graph()
    v = g.variable("v", (3,))
    got = sd.evaluate(sd.diag(v), {v: np.array([1.0, np.inf, 2.0])})
    _same(got, np.array([[1.0, 0, 0], [0, np.inf, 0], [0, 0, 2.0]]))
    got = sd.evaluate(sd.diag(v, 1), {v: np.array([1.0, np.nan, 2.0])})
    _same(got, np.diag(np.array([1.0, np.nan, 2.0]), 1))
    assert np.isnan(got).sum() == 1


# -- 3. einsum and tensordot in numpy's dtype -----------------------------------------------
PRODUCT_DTYPES = ["int8", "int32", "int64", "bool", "float32"]


def _operand(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype == "float32":
        return rng.standard_normal(shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)  # products wrap


def _products(a, b):
    """Ours and numpy's: einsums (a contraction, a sum, an outer product, a batch) and tensordots."""
    return [
        (sd.einsum("ij,kj->ik", a, b), lambda p, q: np.einsum("ij,kj->ik", p, q)),
        (sd.einsum("ij,jk->ik", a, sd.transpose(b)), lambda p, q: np.einsum("ij,jk->ik", p, q.T)),
        (sd.einsum("ij->i", a), lambda p, q: np.einsum("ij->i", p)),
        (sd.einsum("ij,kl->ikjl", a, b), lambda p, q: np.einsum("ij,kl->ikjl", p, q)),
        (sd.einsum("ij,ij->i", a, b), lambda p, q: np.einsum("ij,ij->i", p, q)),
        (sd.tensordot(a, b, ([1], [1])), lambda p, q: np.tensordot(p, q, ([1], [1]))),
        (sd.tensordot(a, b, 2), lambda p, q: np.tensordot(p, q, 2)),
        (sd.tensordot(a, b, 0), lambda p, q: np.tensordot(p, q, 0)),
    ]


@pytest.mark.parametrize("backend", ON_BACKENDS)
@pytest.mark.parametrize("dtypes", [(d, d) for d in PRODUCT_DTYPES] + [("int8", "bool"), ("int32", "float32")])
def test_einsum_and_tensordot_give_numpys_dtype_and_value_on_every_backend(dtypes, backend):
    if backend == "jax" and dtypes == ("int32", "float32"):
        # every jax op does so, x * y too (jax promotes int32 with float32 to float32): the jax
        # backend's promotion, not einsum's
        pytest.skip("jax computes int32 with float32 in float32, numpy in float64")
    g = sd.Graph()
    a = g.variable("a", (3, 4), dtype=dtypes[0])
    b = g.variable("b", (3, 4), dtype=dtypes[1])
    p, q = _operand(dtypes[0], (3, 4), 0), _operand(dtypes[1], (3, 4), 1)
    cases = _products(a, b)
    got = sd.compile([n for n, _ in cases], [a, b], backend=backend)(p, q)
    for (node, theirs), value in zip(cases, got):
        want = theirs(p, q)
        assert node.dtype == want.dtype
        _same(value, want)


@given(
    st.sampled_from(PRODUCT_DTYPES),
    st.sampled_from([(3, 4), (None, 4), (None, None)]),
    st.integers(0, 2**32 - 1),
)
def test_einsum_and_tensordot_lowerings_compute_numpys_result(dtype, shape, seed):
    g = sd.Graph()
    a = g.variable("a", shape, dtype=dtype)
    b = g.variable("b", shape, dtype=dtype)
    p, q = _operand(dtype, (3, 4), seed), _operand(dtype, (3, 4), seed + 1)
    for node, theirs in _products(a, b):
        try:
            got = _through_lowering(node, {a: p, b: q})
        except sd.ShapeError as exc:  # a regrouping of axes of sizes known only at evaluation
            assert "cannot be written as primitives" in str(exc)
            continue
        _same(got, theirs(p, q))


@pytest.mark.parametrize("backend", ON_BACKENDS)
def test_review_einsum_and_tensordot_of_int32(backend):
    # numba: "lowering of einsum: output 0 is (3, 3) int64, the op's (3, 3) int32"
    g = sd.Graph()
    xi = g.variable("xi", (3, 4), dtype="int32")
    value = np.arange(12, dtype=np.int32).reshape(3, 4)
    outs = [sd.einsum("ij,kj->ik", xi, xi), sd.einsum("ij->i", xi), sd.tensordot(xi, xi, ([1], [1]))]
    got = sd.compile(outs, [xi], backend=backend)(value)
    _same(got[0], np.array([[14, 38, 62], [38, 126, 214], [62, 214, 366]], np.int32))
    _same(got[1], np.array([6, 22, 38], np.int32))
    _same(got[2], np.einsum("ij,kj->ik", value, value))


# -- a lowering of the wrong type: whose bug ------------------------------------------------
def _wrong_lowering(x):
    return sd.astype(x, "float32")


@pytest.mark.parametrize("builtin", [True, False])
def test_a_lowering_of_the_wrong_dtype_says_whose_bug_it_is(builtin, monkeypatch):
    name = f"review21_wrong_lowering_{builtin}"
    if builtin:  # as a lowering in symdiff's own modules
        monkeypatch.setattr(_wrong_lowering, "__module__", "symdiff.ops.fake")
    op = sd.define_op(
        name, forward=lambda x: x, shape=lambda s: s, dtype=lambda d: d, kind="other", lower=_wrong_lowering
    )
    g = sd.Graph()
    x = g.variable("x", (2,))
    with pytest.raises(sd.GraphError, match=r"lowering of review21.*float32.*float64") as info:
        lowered(sd.apply(op, x))
    message = str(info.value)
    if builtin:
        assert "bug in symdiff" in message and "report" in message
    else:
        assert "lower= given to define_op" in message and "bug in symdiff" not in message
