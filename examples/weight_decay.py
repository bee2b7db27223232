"""Linear regression with weight decay: w feeds both the prediction and the penalty, so its
gradient is the sum of two paths, 2 X^T (X w - y) + 2 lambda w.

Run:  python examples/weight_decay.py      (writes weight_decay.svg in the current directory)
"""

import numpy as np
from _output import picture

import symdiff as sd

rng = np.random.default_rng(1)
true_w = np.array([2.0, -1.0, 0.5])
Xv = rng.standard_normal((50, 3))
yv = Xv @ true_w + 0.1 * rng.standard_normal(50)

g = sd.Graph()
X, y, w = g.variable("X", shape=(None, 3)), g.variable("y", shape=(None,)), g.variable("w", shape=(3,))
lam = 0.5
loss = sd.sum((X @ w - y) ** 2) + lam * sd.sum(w**2)
gw = sd.grad(loss, w)
print(f"d loss/dw = {gw}")  # the top node adds the two paths into w

H = sd.hessian(loss, w)  # constant for a quadratic loss: one Newton step solves it
wv = np.zeros(3)
gv, Hv = sd.evaluate([gw, H], {X: Xv, y: yv, w: wv})
wv = wv - np.linalg.solve(Hv, gv)
ridge = np.linalg.solve(Xv.T @ Xv + lam * np.eye(3), Xv.T @ yv)
print(f"Newton step: w = {np.round(wv, 4)}; closed-form ridge: {np.round(ridge, 4)}")

out = sd.render(gw, picture("weight_decay.svg"), title="two paths into w add up")
print(f"figure: {out}")
