"""Numerics at the edges (issue 19, kinds C, D, F): the log-sum-exp family at large inputs,
x**p with a variable exponent at x = 0, and float16 reductions.

Oracles are independent of symdiff: mpmath at 200 bits for the log-sum-exp family,
hand-derived limits for x**p at 0, numpy's own float16/float32 results for float16.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
import scipy.special
from hypothesis import example, given
from hypothesis import strategies as st

import symdiff as sd
from symdiff.backends import installed

EPS = np.finfo(np.float64).eps

# these run every way a graph runs, every backend included
every_backend = pytest.mark.skipif(
    not (installed("numba") and installed("jax")),
    reason="runs on every backend: needs numba and jax (the test extra installs them)",
)


def _everywhere(nodes, inputs, tmp_path, backends=("numpy", "numba", "jax")):
    """(where, function of the input values returning the nodes' values) for each way of running
    ``nodes``: evaluate, compile on each backend (one compile for all), compile with
    simplify=True, and evaluate after save/load."""
    out = [("evaluate", lambda *values: sd.evaluate(nodes, dict(zip(inputs, values))))]
    for backend in backends:
        out.append((backend, sd.compile(nodes, inputs=inputs, backend=backend)))
    out.append(("simplify", sd.compile(nodes, inputs=inputs, simplify=True)))
    path = tmp_path / "g.json"
    nodes[0].graph.save(path, outputs={f"out{k}": n for k, n in enumerate(nodes)})
    h = sd.load(path)
    loaded, names = [h.outputs[f"out{k}"] for k in range(len(nodes))], [h[str(v)] for v in inputs]
    out.append(("save/load", lambda *values: sd.evaluate(loaded, dict(zip(names, values)))))
    return out


def _check_everywhere(pairs, inputs, points, tmp_path, rtol=4 * EPS, atol=0.0, **kw):
    """Each (node, expected(point)) of ``pairs`` at each point (a tuple of input values), every way."""
    nodes = [node for node, _ in pairs]
    for where, run in _everywhere(nodes, inputs, tmp_path, **kw):
        for point in points:
            for (node, expected), got in zip(pairs, run(*point)):
                want = expected(*point) if callable(expected) else expected
                np.testing.assert_allclose(
                    np.asarray(got, dtype=np.float64),
                    want,
                    rtol=rtol,
                    atol=atol,
                    err_msg=f"{where}, node #{node.index} ({node.op}) at {point}",
                )


# -- C: the log-sum-exp family at large inputs --------------------------------------------
mpmath.mp.prec = 200


def _mp_softmax(v):
    """softmax, log_softmax and logsumexp of the exact float64 values v, in 200-bit arithmetic.

    Written with the identity logsumexp(v) = m + logsumexp(v - m), m = max(v), which is exact
    in any arithmetic: the differences of floats are exact in mpmath, while v itself at 1e300
    would leave 200 bits no room for the fraction."""
    m = mpmath.mpf(float(np.max(v)))
    d = [mpmath.mpf(float(a)) - m for a in v]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(a) for a in d))
    p = np.array([float(mpmath.exp(a - lse)) for a in d])
    return p, np.array([float(a - lse) for a in d]), float(m + lse)


V15 = np.array([1e15, 1e15 + 1])
P15 = np.array([0.2689414213699951, 0.7310585786300049])  # softmax([-1, 0]) (mpmath)


@every_backend
def test_logaddexp_gradient_at_1e50(tmp_path):
    g = sd.Graph()
    s = g.variable("s")
    t = g.variable("t")
    d1 = sd.grad(sd.logaddexp(s, s), s)
    pairs = [
        (d1, 1.0),
        (sd.grad(d1, s), 0.0),  # logaddexp(s, s) = s + log 2
        (sd.grad(sd.logaddexp(s, t), s), 0.5),
        (sd.grad(sd.grad(sd.logaddexp(s, t), s), t), -0.25),  # -sigmoid'(s - t) = -1/4 at s = t
    ]
    _check_everywhere(pairs, [s, t], [(1e50, 1e50), (-1e50, -1e50)], tmp_path)


@every_backend
def test_logsumexp_gradient_and_hessian_at_1e15(tmp_path):
    g = sd.Graph()
    v = g.variable("v", shape=(2,))
    f = sd.logsumexp(v)
    assert np.allclose(_mp_softmax(V15)[0], P15, rtol=EPS)
    hess = np.diag(P15) - np.outer(P15, P15)
    pairs = [(f, _mp_softmax(V15)[2]), (sd.grad(f, v), P15), (sd.hessian(f, v), hess)]
    _check_everywhere(pairs, [v], [(V15,)], tmp_path)
    sparse = sd.evaluate(sd.sparse_hessian(f, v), {v: V15})
    np.testing.assert_allclose(sparse.toarray(), hess, rtol=4 * EPS)


@every_backend
def test_log_softmax_at_1e15(tmp_path):
    g = sd.Graph()
    v = g.variable("v", shape=(2,))
    y = sd.log_softmax(v)
    # sum(w * log_softmax(v)): its Hessian is -sum(w) (diag(p) - p p.T)
    w = np.array([1.0, 3.0])
    pairs = [
        (y, [-1.3132616875182228, -0.31326168751822286]),
        (sd.jacobian(y, v), np.eye(2) - P15[None, :]),
        (sd.hessian(sd.sum(w * y), v), -w.sum() * (np.diag(P15) - np.outer(P15, P15))),
    ]
    _check_everywhere(pairs, [v], [(V15,)], tmp_path, rtol=8 * EPS, atol=4 * EPS)


def _offsets():
    magnitude = st.floats(3.0, 300.0).map(lambda e: 10.0**e)
    return st.tuples(magnitude, st.sampled_from([1.0, -1.0])).map(lambda t: t[0] * t[1])


@given(
    offset=_offsets(),
    spread=st.floats(0.0, 40.0),
    steps=st.lists(st.integers(-20, 20), min_size=1, max_size=5),
)
# log_softmax's values reach -64 here: a derivative through exp(log_softmax) was 30 ulps off
@example(offset=1e17, spread=0.0, steps=[0, 3, 4])
@example(offset=-1e17, spread=40.0, steps=[0, 3, 4])
def test_log_sum_exp_family_is_accurate_at_any_offset(offset, spread, steps):
    """Values, gradients and Hessians of logsumexp, log_softmax, softmax and logaddexp at
    v = offset + small differences (ties included) are within a few ulps of 200-bit results:
    the offset never costs accuracy."""
    step = max(float(np.spacing(abs(offset))), spread / 20.0)
    v = np.array([offset + k * step for k in steps])
    n = len(v)
    p, logp, lse = _mp_softmax(v)
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    f = sd.logsumexp(x)
    w = np.arange(1.0, n + 1.0)
    got = sd.evaluate(
        [
            f,
            sd.grad(f, x),
            sd.hessian(f, x),
            sd.softmax(x),
            sd.log_softmax(x),
            sd.hessian(sd.sum(w * sd.log_softmax(x)), x),
        ],
        {x: v},
    )
    np.testing.assert_allclose(got[0], lse, rtol=4 * EPS)
    np.testing.assert_allclose(got[1], p, rtol=16 * EPS, atol=1e-300)
    np.testing.assert_allclose(got[3], p, rtol=16 * EPS, atol=1e-300)
    np.testing.assert_allclose(got[4], logp, rtol=0, atol=8 * EPS * max(1.0, np.max(np.abs(logp))))
    # diag(p) - p p.T: a few ulps of the terms it sums (p_i (1 - p_i) where p_i is near 1 is a
    # difference of two such terms)
    terms = np.diag(p) + np.outer(p, p)
    hess = np.diag(p) - np.outer(p, p)
    assert np.all(np.abs(got[2] - hess) <= 16 * EPS * terms + 1e-300)
    assert np.all(np.abs(got[5] - (-w.sum()) * hess) <= 16 * EPS * w.sum() * terms + 1e-300)
    # logaddexp of the first and last element: the same numbers with n = 2
    a, b = v[0], v[-1]
    q, _, lse2 = _mp_softmax([a, b])
    s, t = g.variable("s"), g.variable("t")
    y = sd.logaddexp(s, t)
    got = sd.evaluate([y, sd.grad(y, s), sd.grad(y, t), sd.grad(sd.grad(y, s), t)], {s: a, t: b})
    np.testing.assert_allclose(got[0], lse2, rtol=4 * EPS)
    np.testing.assert_allclose(got[1:3], q, rtol=8 * EPS, atol=1e-300)
    assert abs(got[3] + q[0] * q[1]) <= 8 * EPS * q[0] * q[1] + 1e-300


@pytest.mark.parametrize("at", [1e3, -1e3, 1e15, -1e300, 1e300])
def test_softplus_and_log_sigmoid_at_large_inputs(at):
    """softplus(x) and log_sigmoid(x) = -softplus(-x) with their first and second derivatives."""
    g = sd.Graph()
    x = g.variable("x")
    xm = mpmath.mpf(at)
    sig = float(1 / (1 + mpmath.exp(-xm)))
    sig2 = float(mpmath.exp(-xm) / (1 + mpmath.exp(-xm)) ** 2)
    for f, value, d1 in [
        (sd.softplus(x), float(mpmath.log1p(mpmath.exp(xm))), sig),
        (sd.log_sigmoid(x), float(-mpmath.log1p(mpmath.exp(-xm))), float(1 - 1 / (1 + mpmath.exp(-xm)))),
    ]:
        d = sd.grad(f, x)
        got = sd.evaluate([f, d, sd.grad(d, x)], {x: at})
        np.testing.assert_allclose(got[0], value, rtol=4 * EPS)
        np.testing.assert_allclose(got[1], d1, rtol=4 * EPS, atol=1e-300)
        np.testing.assert_allclose(abs(got[2]), sig2, rtol=4 * EPS, atol=1e-300)


# -- D: x**p with a variable exponent at x = 0 ---------------------------------------------
def _dx_limit(p: float, k: int) -> float:
    """The k-th derivative in x of x**p at x = 0: p(p-1)...(p-k+1) x**(p-k), taken as its limit
    from the right (0 where the coefficient is 0: the function is a polynomial of lower degree)."""
    c = math.prod(p - j for j in range(k))
    if c == 0 or p > k:
        return 0.0
    if p == k:
        return float(c)
    return math.copysign(math.inf, c)


def _x_derivatives(s, f, order):
    out, d = [], f
    for _ in range(order):
        d = sd.grad(sd.sum(d), s)
        out.append(d)
    return out


@every_backend
def test_pow_variable_exponent_at_zero_to_the_zero(tmp_path):
    g = sd.Graph()
    s, p = g.variable("s"), g.variable("p")
    f = s**p
    ds, dp = sd.grad(f, s), sd.grad(f, p)
    pairs = [
        (ds, lambda s, p: float(p == 1)),  # p = 0: x**0 = 1 for every x; p = 1: 1; p = 2: 2x
        (sd.grad(ds, s), lambda s, p: p * (p - 1)),  # 0 at p = 0 and p = 1 (x**1 = x), 2 at p = 2
        (dp, 0.0),  # at p = 2: 0**p = 0 for every p > 0
        (sd.grad(dp, p), 0.0),
        (sd.grad(ds, p), 0.0),
    ]
    _check_everywhere(pairs[:2], [s, p], [(0.0, 0.0), (0.0, 1.0), (0.0, 2.0)], tmp_path)
    _check_everywhere(pairs[1:], [s, p], [(0.0, 2.0)], tmp_path)
    # away from 0 nothing changes: d2/dxdp x**p = x**(p-1) (1 + p log x), 1/2 at x = 2, p = 0
    _check_everywhere([(sd.grad(ds, p), 0.5)], [s, p], [(2.0, 0.0)], tmp_path, backends=("numpy",))
    # a vector of bases with zeros: a Hessian, sparse too (diagonal: p(p-1) x**(p-2))
    x = g.variable("x", shape=(3,))
    h = sd.sum(x**p)
    xv = np.array([0.0, 1.0, 2.0])
    diagonals = {0.0: [0.0, 0.0, 0.0], 1.0: [0.0, 0.0, 0.0], 2.0: [2.0, 2.0, 2.0], 3.0: [0.0, 6.0, 12.0]}
    points = [(xv, pv) for pv in diagonals]
    _check_everywhere([(sd.hessian(h, x), lambda x, p: np.diag(diagonals[p]))], [x, p], points, tmp_path)
    sparse = sd.sparse_hessian(h, x)
    for pv, diag in diagonals.items():
        np.testing.assert_allclose(sd.evaluate(sparse, {x: xv, p: pv}).toarray(), np.diag(diag))


def test_pow_with_a_constant_exponent_keeps_its_form():
    g = sd.Graph()
    x = g.variable("x")
    assert str(sd.grad(x**3, x)) == "3*x**2"
    # a constant exponent array with 0 and 1 in it: x**0 + x**1 + x**2 has 1 and 2 at x = 0
    d1 = sd.grad(sd.sum(x ** np.array([0.0, 1.0, 2.0])), x)
    assert sd.evaluate([d1, sd.grad(d1, x)], {x: 0.0}) == [1.0, 2.0]


P_VALUES = st.one_of(
    st.just(0.0),
    st.integers(1, 4).map(float),
    st.floats(0.05, 4.0).filter(lambda p: p != round(p)),
    st.floats(-3.0, -0.05),
)


@given(ps=st.lists(P_VALUES, min_size=1, max_size=6))
def test_pow_derivatives_at_zero_are_their_limits(ps):
    """At x = 0, the derivatives of x**p in x to third order, and in p to second order for p > 0,
    are the hand-derived limits for any p: never nan where the function is smooth in x."""
    p_values = np.array(ps)
    g = sd.Graph()
    s, p = g.variable("s", shape=(len(ps),)), g.variable("p", shape=(len(ps),))
    f = s**p
    zeros = np.zeros(len(ps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, d in enumerate(_x_derivatives(s, f, 3), start=1):
            got = sd.evaluate(d, {s: zeros, p: p_values})
            np.testing.assert_equal(got, [_dx_limit(q, k) for q in ps], err_msg=f"order {k} in x")
        dp = sd.grad(sd.sum(f), p)
        got = sd.evaluate([dp, sd.grad(sd.sum(dp), p)], {s: zeros, p: p_values})
    positive = p_values > 0
    np.testing.assert_equal(got[0][positive], 0.0)
    np.testing.assert_equal(got[1][positive], 0.0)
    assert np.all(got[0][~positive] == -np.inf)  # 0**p jumps at p = 0 (1 there, inf below)


# -- F: float16 ---------------------------------------------------------------------------
N16 = 70_000


def _f16_everywhere(node, t, tv, tmp_path):
    """The jax and numpy backends run float16; numba refuses it by name."""
    with pytest.raises(sd.BackendError, match="float16"):
        sd.compile(node, inputs=[t], backend="numba")
    for where, run in _everywhere([node], [t], tmp_path, backends=("numpy", "jax")):
        (got,) = run(tv)
        assert np.asarray(got).dtype == np.float16, where
        yield where, np.asarray(got)


@every_backend
@pytest.mark.parametrize("reduction", [sd.mean, sd.max, sd.min])
def test_float16_mean_and_tied_extrema_over_70000_elements(reduction, tmp_path):
    g = sd.Graph()
    t = g.variable("t", shape=(N16,), dtype="float16")
    tv = np.ones(N16, np.float16)
    share = np.float16(1 / N16)  # numpy's float16 of 1/70000 (a subnormal, 1.43e-05)
    for where, got in _f16_everywhere(sd.grad(reduction(t), t), t, tv, tmp_path):
        np.testing.assert_array_equal(got, np.full(N16, share), err_msg=where)
    d2 = sd.grad(sd.sum(sd.grad(sd.mean(t * t), t)), t)  # 2/n each, to a float16 rounding
    got = sd.evaluate(d2, {t: tv})
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64), 2 / N16, rtol=0, atol=float(np.spacing(np.float16(2 / N16))))


@every_backend
@pytest.mark.parametrize("spread", [sd.var, sd.std])
def test_float16_var_and_std_of_70000_ones(spread, tmp_path):
    g = sd.Graph()
    t = g.variable("t", shape=(N16,), dtype="float16")
    tv = np.ones(N16, np.float16)
    for where, got in _f16_everywhere(spread(t), t, tv, tmp_path):
        assert got == 0.0, where
    tv = (np.arange(N16) % 7).astype(np.float16)
    expected = getattr(np, spread.__name__)(tv.astype(np.float32))  # numpy's float16 var overflows
    for where, got in _f16_everywhere(spread(t), t, tv, tmp_path):
        assert got == np.float16(expected), where


def test_float16_count_is_float32():
    g = sd.Graph()
    t = g.variable("t", shape=(None,), dtype="float16")
    n = sd.count(t)
    assert n.dtype == np.float32
    assert sd.evaluate(n, {t: np.ones(N16, np.float16)}) == N16


@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(60_000, 90_000),
    scale=st.sampled_from([0.01, 1.0, 8.0]),
    ties=st.booleans(),
)
def test_float16_reductions_match_numpy(seed, size, scale, ties):
    """float16 reductions of large arrays are numpy's float16 results (sum, mean; max/min ties)
    or numpy's float32 result rounded to float16 (var, std, logsumexp, softmax: numpy's own
    float16 var overflows), and their gradients are float16, finite and not all 0."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(size)
    tv = ((np.round(z) if ties else z) * scale).astype(np.float16)  # ties: a few values, many times
    t32 = tv.astype(np.float32)
    g = sd.Graph()
    t = g.variable("t", shape=(None,), dtype="float16")
    outputs = {
        "sum": (sd.sum(t), np.sum(tv)),
        "mean": (sd.mean(t), np.mean(tv)),
        "max": (sd.max(t), np.max(tv)),
        "min": (sd.min(t), np.min(tv)),
        "var": (sd.var(t), np.var(t32)),
        "std": (sd.std(t, ddof=1), np.std(t32, ddof=1)),
        "logsumexp": (sd.logsumexp(t), scipy.special.logsumexp(t32)),
    }
    nodes = [node for node, _ in outputs.values()]
    grads = [sd.grad(node, t) for node in nodes[1:]]  # (the sum's is ones)
    got = sd.evaluate(nodes + [sd.softmax(t)] + grads, {t: tv})
    for (name, (_, expected)), value in zip(outputs.items(), got):
        assert value.dtype == np.float16, name
        # numpy's float16 sum and mean are the same computation: equal; the others one rounding
        tol = 0 if name in ("sum", "mean", "max", "min") else float(np.spacing(np.float16(abs(expected))))
        assert abs(float(value) - float(np.float16(expected))) <= tol, (name, value, expected)
    softmax = got[len(nodes)]
    reference = scipy.special.softmax(t32).astype(np.float16)
    assert softmax.dtype == np.float16
    np.testing.assert_allclose(softmax.astype(np.float64), reference, rtol=2e-3, atol=2e-8)
    derivatives = dict(zip(list(outputs)[1:], got[len(nodes) + 1 :]))
    for name, d in derivatives.items():
        assert d.dtype == np.float16 and np.all(np.isfinite(d)) and np.any(d != 0), name
    for name in ("max", "min"):  # the tied elements share the gradient: each 1/(number of ties)
        expected, d = outputs[name][1], derivatives[name]
        np.testing.assert_array_equal(d[tv == expected], np.float16(1 / np.sum(tv == expected)), err_msg=name)


@given(x=st.floats(-700.0, 700.0))
def test_sigmoid_derivative_is_accurate_where_sigmoid_saturates(x):
    """Contract: d sigmoid(x)/dx = exp(-|x|)/(1 + exp(-|x|))**2 to a few ulps at every x, also where
    sigmoid(x) rounds to 1 (written sigmoid(x)*(1 - sigmoid(x)) it was 20 ulps off at x = 3.8, all
    bits off past x = 37, and logaddexp's mixed second derivative with it)."""
    g = sd.Graph()
    v = g.variable("x")
    e = np.exp(-abs(x))
    assert sd.evaluate(sd.grad(sd.sigmoid(v), v), {v: x}) == pytest.approx(e / (1 + e) ** 2, rel=8 * EPS, abs=0)


def test_logaddexp_mixed_second_derivative_at_an_offset():
    """Regression: a = 1003.8, b = 1000 gave 20 ulps of error in -q0*q1 (1 - sigmoid cancelling)."""
    g = sd.Graph()
    s, t = g.variable("s"), g.variable("t")
    a, b = 1000.0 + 4 * 0.95, 1000.0
    got = sd.evaluate(sd.grad(sd.grad(sd.logaddexp(s, t), s), t), {s: a, t: b})
    e = np.exp(b - a)  # b - a is exact (Sterbenz)
    assert got == pytest.approx(-e / (1 + e) ** 2, rel=8 * EPS, abs=0)
