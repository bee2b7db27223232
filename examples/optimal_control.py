"""Steer a Van der Pol oscillator to rest at least cost: an optimal-control problem solved with sd.Problem.

    minimise    integral_0^10 x1^2 + x2^2 + u^2 dt
    subject to  x1' = (1 - x2^2) x1 - x2 + u,   x2' = x1,   x(0) given,
                x1 >= -0.25,   -1 <= u <= 1

(the problem of CasADi's examples), by direct transcription: the states X at N + 1 grid
points and one control per interval are the optimizer's variables, the dynamics hold between
grid points by the trapezoidal rule as equality constraints, and the cost is integrated by the
same rule. sd.Problem builds the objective's gradient, the constraints' sparse Jacobian and
the Lagrangian's sparse Hessian from one graph; the optimum is checked against the ODE itself
(each interval integrated by scipy's solve_ivp from its grid point), and the start x(0) is a param, so a new
start re-solves without building anything again. With the ipopt extra (cyipopt) installed,
Ipopt solves it too. benchmarks/optimize.py times the same problem at N = 10^3 and 10^4.

Run:  python examples/optimal_control.py
"""

import importlib.util
import time

import numpy as np
from scipy.integrate import solve_ivp

import symdiff as sd

T_END, N = 10.0, 100
h = T_END / N

start = time.perf_counter()
g = sd.Graph()
X = g.variable("X", shape=(N + 1, 2))  # the states (x1, x2) at t = 0, h, ..., T
U = g.variable("U", shape=(N,))  # the control on each interval
x_start = g.variable("x_start", shape=(2,))  # a param: given at solve time
x1, x2 = X[:, 0], X[:, 1]
f1 = (1.0 - x2**2) * x1 - x2  # x1' without the control
cost = h * (0.5 * sd.sum(X[:-1] ** 2) + 0.5 * sd.sum(X[1:] ** 2) + sd.sum(U**2))
dynamics = [
    (0.0, x1[1:] - x1[:-1] - 0.5 * h * (f1[:-1] + f1[1:]) - h * U, 0.0),  # trapezoidal rule
    (0.0, x2[1:] - x2[:-1] - 0.5 * h * (x1[:-1] + x1[1:]), 0.0),
    (0.0, X[0] - x_start, 0.0),
]
floor = np.tile([-0.25, -np.inf], (N + 1, 1))  # x1 >= -0.25, x2 free
prob = sd.Problem(cost, [X, U], constraints=dynamics, bounds=([floor, -1.0], [np.inf, 1.0]), params=[x_start])
print(prob)
seeds = f"the Hessian takes {prob.hessian.colors} seeds, the Jacobian {prob.jacobian.colors}"
print(f"built in {time.perf_counter() - start:.2f} s: {seeds}")

x0 = [np.zeros((N + 1, 2)), np.zeros(N)]
start = time.perf_counter()
res = prob.minimize(x0, method="trust-constr", options={"gtol": 1e-10, "xtol": 1e-12}, x_start=[0.0, 1.0])
Xs, Us = res.x
print(f"trust-constr: cost {res.fun:.8f} after {res.nit} iterations ({time.perf_counter() - start:.2f} s)")
at_bound = bool(np.isclose(Xs[:, 0].min(), -0.25, atol=1e-6))
print(f"x1 reaches its bound -0.25: {at_bound}; u in [{Us.min():.3f}, {Us.max():.3f}]")


def steps_by_solve_ivp(states: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """Each interval integrated accurately by scipy from its first grid point, its control
    held: where the ODE itself takes X[k] in h (all N intervals as one system)."""

    def rhs(t: float, flat: np.ndarray) -> np.ndarray:
        x = flat.reshape(N, 2)
        return np.stack([(1 - x[:, 1] ** 2) * x[:, 0] - x[:, 1] + controls, x[:, 0]], axis=1).reshape(-1)

    sol = solve_ivp(rhs, (0.0, h), states[:-1].reshape(-1), rtol=1e-11, atol=1e-12)
    return sol.y[:, -1].reshape(N, 2)


# the trapezoidal rule's error on one interval is O(h^3)
error = np.abs(steps_by_solve_ivp(Xs, Us) - Xs[1:]).max()
print(f"each step agrees with solve_ivp's to h^3: {bool(error < h**3)} (largest difference {error:.1e})")
by_hand = h * (0.5 * np.sum(Xs[:-1] ** 2) + 0.5 * np.sum(Xs[1:] ** 2) + np.sum(Us**2))
print(f"the cost recomputed in numpy matches: {bool(np.isclose(by_hand, res.fun, rtol=1e-12))}")

if importlib.util.find_spec("cyipopt"):  # the ipopt extra: pip install "symdiff[ipopt]"
    start = time.perf_counter()
    ipopt = prob.minimize(x0, method="ipopt", x_start=[0.0, 1.0])
    agree = abs(ipopt.fun - res.fun) <= 1e-6 * abs(res.fun)
    took = time.perf_counter() - start
    print(f"Ipopt: cost {ipopt.fun:.8f} in {ipopt.nit} iterations ({took:.2f} s); agrees to 1e-6: {agree}")
else:
    print('Ipopt: not installed (pip install "symdiff[ipopt]"), skipped')

# a new start is a new param value: the same compiled callbacks, nothing built again
before = len(g)
again = prob.minimize(x0, method="trust-constr", options={"gtol": 1e-10, "xtol": 1e-12}, x_start=[0.5, -0.5])
error = np.abs(steps_by_solve_ivp(*again.x) - again.x[0][1:]).max()
added = len(g) - before
print(f"from x(0) = (0.5, -0.5): cost {again.fun:.6f}; nodes added {added}; steps agree: {bool(error < h**3)}")
