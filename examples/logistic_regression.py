"""Logistic regression y = sigmoid(x . w + b), trained by gradient descent with symdiff gradients.

Run:  python examples/logistic_regression.py      (writes logistic_regression.svg in the current directory)
"""

import numpy as np
from _output import picture

import symdiff as sd

rng = np.random.default_rng(0)
n, d = 400, 2
labels = rng.integers(0, 2, n)
points = rng.standard_normal((n, d)) + np.where(labels[:, None] == 1, 1.5, -1.5)

g = sd.Graph()
X, t = g.variable("X", shape=(None, d)), g.variable("t", shape=(None,))
w, b = g.variable("w", shape=(d,)), g.variable("b")
p = sd.sigmoid(X @ w + b)
# mean cross-entropy, written with log_sigmoid(s) = -softplus(-s) so it never takes log(0)
s = X @ w + b
loss = sd.mean(t * sd.softplus(-s) + (1 - t) * sd.softplus(s))
gw, gb = sd.grad(loss, [w, b])
print(f"d loss/dw = {gw}")
step = sd.compile([loss, gw, gb], inputs=[X, t, w, b])

wv, bv = np.zeros(d), 0.0
for _ in range(200):
    value, grad_w, grad_b = step(points, labels, wv, bv)
    wv, bv = wv - 0.5 * grad_w, bv - 0.5 * grad_b
accuracy = np.mean((sd.evaluate(p, {X: points, w: wv, b: bv}) > 0.5) == labels)
print(f"after 200 steps: loss {value:.4f}, accuracy {accuracy:.1%}, w = {np.round(wv, 3)}, b = {bv:.3f}")

out = sd.render([loss, gw, gb], picture("logistic_regression.svg"), title="logistic regression and its gradients")
print(f"figure: {out}")
