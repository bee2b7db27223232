"""Weighted least squares inside a network, trained end to end through the solve.

A small network turns fixed image coordinates into weights w_i > 0; a curve is fitted by
weighted least squares, beta = (X^T W X)^-1 X^T W y with W = diag(w), solved by a Cholesky
factorisation; the loss is on beta, and its gradient flows back through the solve to the
network's parameters.

Run:  python examples/weighted_least_squares.py      (writes weighted_least_squares.svg in the current directory)
"""

import numpy as np
from _output import picture

import symdiff as sd

rng = np.random.default_rng(3)
n = 40
coords = np.linspace(-1.0, 1.0, n)
clean = 0.3 + 0.8 * coords - 1.2 * coords**2
noisy = clean + np.where(rng.random(n) < 0.25, rng.normal(0, 1.5, n), rng.normal(0, 0.05, n))  # outliers
target = np.array([0.3, 0.8, -1.2])  # the curve we want the fit to recover
features = np.stack([coords, noisy, np.abs(noisy - np.median(noisy))], axis=1)

g = sd.Graph()
V = g.variable("V", shape=(3, 8))
a = g.variable("a", shape=(8,))
X, y, F = g.constant(np.stack([np.ones(n), coords, coords**2], axis=1)), g.constant(noisy), g.constant(features)
w = sd.softplus(sd.tanh(F @ V) @ a)  # the network: positive weights
A = X.T @ (w[:, None] * X)  # X^T W X
L = sd.cholesky(A)
beta = sd.solve(L.T, sd.solve(L, X.T @ (w * y)))
loss = sd.sum((beta - target) ** 2)
step = sd.compile([loss, *sd.grad(loss, [V, a])], inputs=[V, a])

v_net, a_net = rng.standard_normal((3, 8)) * 0.5, rng.standard_normal(8) * 0.5
first = step(v_net, a_net)[0]
for _ in range(300):
    value, grad_v, grad_a = step(v_net, a_net)
    v_net, a_net = v_net - 0.2 * grad_v, a_net - 0.2 * grad_a
print(f"loss on beta: {first:.4f} before training, {value:.6f} after 300 steps")
print(f"fitted curve: {np.round(sd.evaluate(beta, {V: v_net, a: a_net}), 3)} (target {target})")
unweighted = np.linalg.lstsq(np.stack([np.ones(n), coords, coords**2], axis=1), noisy, rcond=None)[0]
print(f"ordinary least squares for comparison: {np.round(unweighted, 3)}")

out = sd.render(loss, picture("weighted_least_squares.svg"), title="loss on beta, through cholesky and solve")
print(f"figure: {out}")
