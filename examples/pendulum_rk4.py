"""Fit a pendulum's parameters to observed swings, with the gradient through an RK4 integrator.

Sixteen damped, driven pendulums, theta'' = -c theta' - k sin(theta) + A cos(2t/3), start at
rest from sixteen angles; their angles are observed (with noise) at each of 150 RK4 steps of
dt = 0.05. The integrator is one sd.scan over the steps, so the graph is the size of one step,
and the gradient of the mean squared misfit with respect to (c, k, A) is a scan too, running
the steps backwards. scipy.optimize.minimize (L-BFGS-B) fits (c, k, A) from a wrong guess.

Run:  python examples/pendulum_rk4.py
"""

import time

import numpy as np
from scipy.optimize import minimize

import symdiff as sd

DT, STEPS, PENDULUMS = 0.05, 150, 16


def rk4_step(th, om, t, c, k, A):
    """One classic Runge-Kutta step of theta'' = -c theta' - k sin(theta) + A cos(2t/3)."""

    def f(t, th, om):
        return om, -c * om - k * sd.sin(th) + A * sd.cos(2 / 3 * t)

    a1, b1 = f(t, th, om)
    a2, b2 = f(t + DT / 2, th + DT / 2 * a1, om + DT / 2 * b1)
    a3, b3 = f(t + DT / 2, th + DT / 2 * a2, om + DT / 2 * b2)
    a4, b4 = f(t + DT, th + DT * a3, om + DT * b3)
    return th + DT / 6 * (a1 + 2 * a2 + 2 * a3 + a4), om + DT / 6 * (b1 + 2 * b2 + 2 * b3 + b4)


start = time.perf_counter()
g = sd.Graph()
p = g.variable("p", shape=(3,))  # (c, k, A): damping, gravity/length, drive amplitude
observed = g.variable("observed", shape=(STEPS, PENDULUMS))
theta0 = g.constant(np.linspace(-2.0, 2.0, PENDULUMS))
c, k, A = p[0], p[1], p[2]


def body(state, t):
    th, om = rk4_step(*state, t, c, k, A)
    return (th, om), th  # carry the state; y: the angles after this step


_, angles = sd.scan(body, (theta0, sd.zeros_like(theta0)), g.constant(np.arange(STEPS) * DT), name="rk4")
misfit = sd.mean((angles - observed) ** 2)
loss_and_grad = sd.compile([misfit, sd.grad(misfit, p)], inputs=[p, observed])
built = time.perf_counter() - start
print(f"graph: {len(g)} nodes for {STEPS} steps, gradient included; built and compiled in {built:.2f} s")

true_p = np.array([0.3, 1.5, 0.8])
simulate = sd.compile(angles, inputs=[p])
rng = np.random.default_rng(0)
data = simulate(true_p) + rng.normal(0.0, 0.01, (STEPS, PENDULUMS))

guess = np.array([1.0, 0.7, 0.2])
calls = []


def fun(q):
    value, gradient = loss_and_grad(q, data)
    calls.append(value)
    return value, gradient


start = time.perf_counter()
fit = minimize(fun, guess, jac=True, method="L-BFGS-B", bounds=[(0.0, 5.0)] * 3)
print(f"misfit {calls[0]:.4f} at the guess {guess}, {fit.fun:.6f} after {len(calls)} gradients")
print(f"fitted (c, k, A) = {np.round(fit.x, 3)}, true {true_p} ({time.perf_counter() - start:.2f} s)")
print(f"recovered to 1e-2: {bool(np.allclose(fit.x, true_p, atol=1e-2))}")
