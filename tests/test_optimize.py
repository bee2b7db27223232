"""sd.Problem (issue 24): exact sparse derivatives for scipy.optimize and Ipopt.

Oracles independent of symdiff: published Hock-Schittkowski optima, the KKT system solved
with numpy, the LQR optimum from scipy's discrete Riccati solver, finite differences.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import symdiff as sd
from symdiff.optimize import ProblemError

try:
    import cyipopt  # noqa: F401

    HAVE_IPOPT = True
except ImportError:
    HAVE_IPOPT = False

METHODS = [
    "trust-constr",
    "SLSQP",
    pytest.param("ipopt", marks=pytest.mark.skipif(not HAVE_IPOPT, reason="needs the ipopt extra (cyipopt)")),
]


TRUST_CONSTR = {"gtol": 1e-12, "xtol": 1e-16, "barrier_tol": 1e-12, "maxiter": 5000}


def solve(prob, start, method, /, **params):
    """prob.minimize with tight tolerances (trust-constr's barrier needs its own)."""
    if method == "trust-constr":
        return prob.minimize(start, method=method, options=TRUST_CONSTR, **params)
    return prob.minimize(start, method=method, tol=1e-10, **params)


def hs71():
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    f = x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]
    cons = [(25.0, sd.prod(x), None), (40.0, sd.sum(x**2), 40.0)]
    return sd.Problem(f, x, constraints=cons, bounds=(1.0, 5.0)), np.array([1.0, 5.0, 5.0, 1.0])


@pytest.mark.parametrize("method", METHODS)
def test_hock_schittkowski_71_reaches_its_published_optimum(method):
    prob, x0 = hs71()
    res = solve(prob, x0, method)
    assert res.success
    assert res.fun == pytest.approx(17.0140173, abs=1e-6)
    np.testing.assert_allclose(res.x, [1.0, 4.7429994, 3.8211503, 1.3794082], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_hock_schittkowski_35_a_linear_constraint_and_bounds(method):
    # HS 35: f* = 1/9 at (4/3, 7/9, 4/9); the constraint is linear, x >= 0
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    f = (
        9
        - 8 * x[0]
        - 6 * x[1]
        - 4 * x[2]
        + 2 * x[0] ** 2
        + 2 * x[1] ** 2
        + x[2] ** 2
        + 2 * x[0] * x[1]
        + 2 * x[0] * x[2]
    )
    prob = sd.Problem(f, x, constraints=[(None, x[0] + x[1] + 2 * x[2], 3.0)], bounds=(0.0, None))
    assert prob.linear.tolist() == [True]
    assert prob.hessian.nnz == 7  # f's alone: the linear constraint is not in the Lagrangian
    res = solve(prob, np.full(3, 0.5), method)
    # trust-constr's interior point stops a little inside the bound x3 >= 0's barrier
    assert res.fun == pytest.approx(1 / 9, abs=1e-6)
    np.testing.assert_allclose(res.x, [4 / 3, 7 / 9, 4 / 9], atol=1e-3 if method == "trust-constr" else 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_hock_schittkowski_6_over_two_scalar_variables(method):
    # HS 6: min (1 - x1)^2 s.t. 10 (x2 - x1^2) = 0 from (-1.2, 1): f* = 0 at (1, 1)
    g = sd.Graph()
    x1, x2 = g.variable("x1"), g.variable("x2")
    prob = sd.Problem((1 - x1) ** 2, [x1, x2], constraints=[(0.0, 10 * (x2 - x1**2), 0.0)])
    res = solve(prob, [-1.2, 1.0], method)
    assert isinstance(res.x, list) and [np.shape(v) for v in res.x] == [(), ()]
    np.testing.assert_allclose(res.x_flat, [1.0, 1.0], atol=1e-5)
    assert res.fun == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["trust-constr", "ipopt"])
def test_rosenbrock_at_ten_thousand_variables_with_its_sparse_hessian(method):
    if method == "ipopt" and not HAVE_IPOPT:
        pytest.skip("needs the ipopt extra (cyipopt)")
    n = 10**4
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    f = sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    prob = sd.Problem(f, x)
    assert prob.hessian.nnz == 3 * n - 2 and prob.hessian.colors <= 3
    res = prob.minimize(1 + 0.3 * np.cos(np.arange(n)), method=method)
    assert res.success
    np.testing.assert_allclose(res.x, np.ones(n), atol=1e-6)


def kkt_problem():
    rng = np.random.default_rng(3)
    n, m = 8, 3
    M = rng.normal(size=(n, n))
    Q, q, A = M @ M.T + n * np.eye(n), rng.normal(size=n), rng.normal(size=(m, n))
    g = sd.Graph()
    x, b = g.variable("x", shape=(n,)), g.variable("b", shape=(m,))
    f = 0.5 * sd.sum(x * (Q @ x)) + sd.sum(q * x)
    prob = sd.Problem(f, x, constraints=[(0.0, A @ x - b, 0.0)], params=[b])
    return g, prob, Q, q, A


def kkt_solution(Q, q, A, b):
    n, m = len(q), len(b)
    K = np.block([[Q, A.T], [A, np.zeros((m, m))]])
    sol = np.linalg.solve(K, np.concatenate([-q, b]))
    return sol[:n], sol[n:]  # grad f + A' lambda = 0: Ipopt's sign


@pytest.mark.parametrize("method", METHODS)
def test_equality_constrained_quadratic_matches_the_kkt_system(method):
    g, prob, Q, q, A = kkt_problem()
    assert prob.linear.all() and prob.hessian.nnz == 64
    for b in (np.array([1.0, -2.0, 0.5]), np.array([0.0, 3.0, -1.0])):
        res = solve(prob, np.zeros(8), method, b=b)
        x, lam = kkt_solution(Q, q, A, b)
        np.testing.assert_allclose(res.x, x, atol=1e-5)
        np.testing.assert_allclose(res.multipliers[0], lam, atol=1e-5)


def test_new_params_resolve_without_building_or_compiling():
    g, prob, Q, q, A = kkt_problem()
    prob.minimize(np.zeros(8), method="trust-constr", b=np.ones(3))
    nodes, programs = len(g), dict(prob._programs)
    b = np.array([2.0, 0.0, -1.0])
    res = prob.minimize(np.zeros(8), {"b": b}, method="trust-constr", tol=1e-12)
    assert len(g) == nodes and prob._programs == programs
    assert all(prob._programs[k] is programs[k] for k in programs)
    np.testing.assert_allclose(res.x, kkt_solution(Q, q, A, b)[0], atol=1e-6)


def lqr(N: int = 30):
    dt = 0.1
    A = np.array([[1.0, dt], [0.0, 1.0]])
    B = np.array([[0.5 * dt * dt], [dt]])
    Q, R = np.eye(2), np.array([[0.1]])
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    g = sd.Graph()
    X, U, x0 = g.variable("X", shape=(N + 1, 2)), g.variable("U", shape=(N, 1)), g.variable("x0", shape=(2,))
    f = sd.sum(X[:-1] ** 2) + 0.1 * sd.sum(U**2) + sd.sum(X[-1] * (P @ X[-1]))
    dynamics = X[1:] - (X[:-1] @ A.T + U @ B.T)
    prob = sd.Problem(f, [X, U], constraints=[(0.0, dynamics, 0.0), (0.0, X[0] - x0, 0.0)], params=[x0])
    return prob, A, B, R, P


@pytest.mark.parametrize("method", ["trust-constr", "ipopt"])
def test_discretised_optimal_control_is_the_riccati_optimum(method):
    # LQR with the infinite-horizon P as terminal cost: the optimum is u_k = -K x_k at every
    # step, K from scipy's discrete algebraic Riccati equation (no symdiff in the oracle)
    if method == "ipopt" and not HAVE_IPOPT:
        pytest.skip("needs the ipopt extra (cyipopt)")
    N = 30
    prob, A, B, R, P = lqr(N)
    assert prob.linear.all() and prob.n == 3 * N + 2 and prob.m == 2 * N + 2
    K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    x0 = np.array([1.0, -0.5])
    xs, us = [x0], []
    for _ in range(N):
        us.append(-K @ xs[-1])
        xs.append(A @ xs[-1] + B @ us[-1])
    res = solve(prob, [np.zeros((N + 1, 2)), np.zeros((N, 1))], method, x0=x0)
    X, U = res.x
    assert X.shape == (N + 1, 2) and U.shape == (N, 1)
    np.testing.assert_allclose(X, np.array(xs), atol=1e-6)
    np.testing.assert_allclose(U, np.array(us), atol=1e-6)
    assert res.fun == pytest.approx(x0 @ P @ x0, rel=1e-8)


def nonlinear_problem():
    g = sd.Graph()
    a, b = g.variable("a", shape=(5,)), g.variable("b", shape=(2, 2))
    f = sd.sum(sd.exp(0.1 * a[1:] * a[:-1])) + sd.sum(b**2 * a[:2]) + sd.sin(b[0, 1])
    cons = [
        (-1.0, a[1:] ** 2 - sd.cos(a[:-1]), 1.0),
        (0.0, b[0] * b[1] + a[3], 0.0),
        (None, 2 * a[0] - b[1, 1], 3.0),  # linear
    ]
    return g, (a, b), f, sd.Problem(f, [a, b], constraints=cons, bounds=(-2.0, [2.0, np.full((2, 2), 3.0)]))


def test_declared_sparsity_holds_every_numeric_nonzero_at_random_points():
    g, (a, b), f, prob = nonlinear_problem()
    assert prob.linear.tolist() == [False] * 4 + [False, False] + [True]
    rng = np.random.default_rng(0)
    ev = prob._evaluator(None, {}, eager=False)
    dense_h = sd.hessian(prob.lagrangian, [a, b])
    for _ in range(5):
        z, lam, sigma = rng.normal(size=prob.n), rng.normal(size=len(prob._nonlinear)), rng.normal()
        parts = prob.unflatten(z)
        blocks = sd.evaluate(
            [h for row in dense_h for h in row], {a: parts[0], b: parts[1], prob._sigma: sigma, prob._lam: lam}
        )
        sizes = prob._sizes
        H = np.block([[np.reshape(blocks[2 * i + j], (sizes[i], sizes[j])) for j in range(2)] for i in range(2)])
        sparse_h = prob.hessian.matrix(ev.hessian_values(z, sigma, lam)).toarray()
        assert not (H[~prob.hessian.pattern.toarray()]).any()
        np.testing.assert_allclose(sparse_h, H, rtol=1e-12, atol=1e-12)
        # the constraint Jacobian against central differences of the constraints
        step, fd = 1e-6, np.zeros((prob.m, prob.n))
        for k in range(prob.n):
            e = np.zeros(prob.n)
            e[k] = step
            fd[:, k] = (ev.at(z + e)[2] - ev.at(z - e)[2]) / (2 * step)
        J = prob.jacobian.matrix(ev.at(z)[3]).toarray()
        assert not (np.abs(fd[~prob.jacobian.pattern.toarray()]) > 1e-8).any()
        np.testing.assert_allclose(J, fd, atol=1e-7)


def test_the_hessian_at_a_point_whose_first_values_are_known_runs_the_hessian_alone():
    # Ipopt asks for the Hessian where it has just asked for f, c and J: the Hessian's own
    # program (no f, c, J again) gives the values the full program gives, which are the
    # central differences of the Lagrangian's gradient sigma*grad f + J'lambda
    g, _, _, prob = nonlinear_problem()
    rng = np.random.default_rng(3)
    for _ in range(3):
        z, lam, sigma = rng.normal(size=prob.n), rng.normal(size=len(prob._nonlinear)), rng.normal()
        ev = prob._evaluator(None, {}, eager=False)
        ev.at(z)
        before = prob.evaluations
        alone = np.array(ev.hessian_values(z, sigma, lam))
        assert prob.evaluations == before + 1 and "hessian" in prob._programs
        assert ev.key == z.tobytes()  # the first values at z are kept
        full = np.array(prob._evaluator(None, {}, eager=False).hessian_values(z, sigma, lam))
        np.testing.assert_array_equal(alone, full)

        def lagrangian_gradient(w):
            _, grad_f, _, jac = ev.at(w)
            J = prob.jacobian.matrix(jac).toarray()[prob._nonlinear]
            return sigma * np.asarray(grad_f) + J.T @ lam

        step, fd = 1e-6, np.zeros((prob.n, prob.n))
        for k in range(prob.n):
            e = np.zeros(prob.n)
            e[k] = step
            fd[:, k] = (lagrangian_gradient(z + e) - lagrangian_gradient(z - e)) / (2 * step)
        np.testing.assert_allclose(prob.hessian.matrix(alone).toarray(), fd, atol=1e-6)


def test_callbacks_at_one_point_share_one_evaluation():
    g, _, _, prob = nonlinear_problem()
    kwargs = prob.scipy()
    z = np.linspace(-1, 1, prob.n)
    before = prob.evaluations
    kwargs["fun"](z), kwargs["jac"](z), kwargs["hess"](z), kwargs["hessp"](z, np.ones(prob.n))
    nonlinear, linear = kwargs["constraints"]
    nonlinear.fun(z), nonlinear.jac(z)
    assert prob.evaluations == before + 1
    kwargs["fun"](z + 1)
    assert prob.evaluations == before + 2
    nonlinear.hess(z + 1, np.ones(6))  # other multipliers: the Hessian again
    assert prob.evaluations == before + 3
    assert isinstance(linear, scipy.optimize.LinearConstraint) and linear.A.shape == (1, prob.n)
    assert isinstance(kwargs["bounds"], scipy.optimize.Bounds)


def test_scipy_keywords_work_in_scipy_minimize_itself():
    prob, x0 = hs71()
    res = scipy.optimize.minimize(x0=x0, method="trust-constr", **prob.scipy(), options=TRUST_CONSTR)
    assert res.fun == pytest.approx(17.0140173, abs=1e-6)


@pytest.mark.parametrize(
    "method",
    ["BFGS", "L-BFGS-B", "CG", "Newton-CG", "trust-ncg", "trust-krylov", "trust-exact", "dogleg", "Nelder-Mead", "TNC"],
)
def test_every_scipy_method_gets_only_what_it_accepts(method):
    # warnings are errors in the suite: scipy warns about anything a method does not use
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    prob = sd.Problem(sd.sum((x - np.array([1.0, 2.0, 3.0])) ** 2) + sd.sum(x**4) * 0.01, x)
    res = prob.minimize(np.zeros(3), method=method, options={"maxiter": 2000} if method == "Nelder-Mead" else None)
    grad = 2 * (res.x - [1, 2, 3]) + 0.04 * res.x**3
    assert np.abs(grad).max() < 1e-3


def test_numba_backend_solves_a_problem():
    pytest.importorskip("numba")
    g = sd.Graph()
    x1, x2 = g.variable("x1"), g.variable("x2")
    prob = sd.Problem((1 - x1) ** 2, [x1, x2], constraints=[(0.0, 10 * (x2 - x1**2), 0.0)], backend="numba")
    res = prob.minimize([-1.2, 1.0], method="trust-constr", tol=1e-10)
    np.testing.assert_allclose(res.x_flat, [1.0, 1.0], atol=1e-5)


def test_without_cyipopt_ipopt_names_the_extra(monkeypatch):
    prob, x0 = hs71()
    monkeypatch.setitem(sys.modules, "cyipopt", None)
    with pytest.raises(sd.BackendError, match=r"symdiff\[ipopt\]"):
        prob.minimize(x0, method="ipopt")


@pytest.mark.skipif(not HAVE_IPOPT, reason="needs the ipopt extra (cyipopt)")
def test_ipopt_is_told_linear_jacobians_are_constant_and_options_pass_through():
    prob, x0 = hs71()
    res = prob.minimize(x0, method="ipopt", options={"max_iter": 2})
    assert res.status == -1 and not res.success and res.nit <= 3  # stopped by the option passed through
    g, prob, Q, q, A = kkt_problem()
    res = prob.minimize(np.zeros(8), method="ipopt", b=np.ones(3))
    assert res.success and res.nfev <= 8  # a QP with constant Jacobian: a few steps


def bad(**changes):
    g = sd.Graph()
    x, y, t = g.variable("x", shape=(3,)), g.variable("y", shape=(None,)), g.variable("t")
    args = {"f": sd.sum(x**2) * t, "x": x, "constraints": [], "params": [t]}
    args.update({k: v(g, x, y, t) if callable(v) else v for k, v in changes.items()})
    return sd.Problem(**args)


@pytest.mark.parametrize(
    "changes, error, words",
    [
        ({"f": lambda g, x, y, t: x * 2}, sd.ShapeError, "f must be a scalar"),
        ({"f": lambda g, x, y, t: sd.sum(x).astype("int64")}, sd.DTypeError, "objective must be a float"),
        ({"x": lambda g, x, y, t: x * 2}, sd.GraphError, "not a variable"),
        ({"x": lambda g, x, y, t: [x, x]}, sd.GraphError, "listed twice"),
        ({"x": lambda g, x, y, t: [x, y]}, sd.ShapeError, "'y'"),
        ({"x": lambda g, x, y, t: [x, g.variable("k", dtype="int64")]}, sd.DTypeError, "'k'"),
        ({"x": lambda g, x, y, t: sd.Graph().variable("x", shape=(3,))}, sd.GraphError, "another graph"),
        ({"params": []}, sd.UnboundVariableError, "'t'"),
        ({"params": lambda g, x, y, t: [t, x]}, sd.GraphError, "both in x and in params"),
        ({"constraints": lambda g, x, y, t: [(0.0, sd.Graph().variable("z"), 1.0)]}, sd.GraphError, "constraints[0]"),
        (
            {"constraints": lambda g, x, y, t: [(0.0, x, 1.0), (np.zeros(2), x, 1.0)]},
            sd.ShapeError,
            "constraints[1]: lb",
        ),
        ({"constraints": lambda g, x, y, t: [(0.0, x[0], None, 1.0)]}, sd.GraphError, "triple"),
        ({"constraints": lambda g, x, y, t: [(2.0, x[0], 1.0)]}, ProblemError, "lb > ub"),
        ({"constraints": lambda g, x, y, t: [(0.0, t * 2, 1.0)]}, ProblemError, "does not depend on x"),
        ({"bounds": (np.zeros(4), None)}, sd.ShapeError, "lbx"),
        ({"bounds": (1.0, 0.0)}, ProblemError, "lbx > ubx"),
    ],
)
def test_bad_input_names_the_problem_and_leaves_the_graph_unchanged(changes, error, words):
    with pytest.raises(error, match=__import__("re").escape(words)):
        bad(**changes)


def test_bad_values_at_solve_time():
    prob, _ = hs71()
    with pytest.raises(sd.ShapeError, match="x0 has 3 elements, but x has 4"):
        prob.minimize(np.zeros(3))
    g, prob, *_ = kkt_problem()
    with pytest.raises(sd.UnboundVariableError, match="'b'"):
        prob.minimize(np.zeros(8))
    with pytest.raises(sd.GraphError, match="not one of the problem's params"):
        prob.minimize(np.zeros(8), b=np.ones(3), c=1.0)
    with pytest.raises(ProblemError, match="cannot handle constraints"):
        prob.minimize(np.zeros(8), method="BFGS", b=np.ones(3))


def test_a_failed_problem_appends_nothing():
    g = sd.Graph()
    x, t = g.variable("x", shape=(3,)), g.variable("t")
    f, c = sd.sum(x**2), t * 2
    nodes, names = len(g), set(g.variables)
    with pytest.raises(ProblemError):
        sd.Problem(f, x, constraints=[(0.0, c, 1.0)], params=[t])
    assert len(g) == nodes and set(g.variables) == names
