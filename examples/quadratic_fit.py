"""Fit y = w1 x^2 + w2 x + b to data from y = x^2 + x + 1 by gradient descent; x = 4 should predict 21.

Run:  python examples/quadratic_fit.py
"""

import numpy as np

import symdiff as sd

xs = np.linspace(-2.0, 2.0, 21)
ys = xs**2 + xs + 1

g = sd.Graph()
x, y = g.variable("x", shape=(None,)), g.variable("y", shape=(None,))
w1, w2, b = g.variable("w1"), g.variable("w2"), g.variable("b")
prediction = w1 * x**2 + w2 * x + b
loss = sd.mean((prediction - y) ** 2)
step = sd.compile([loss, *sd.grad(loss, [w1, w2, b])], inputs=[x, y, w1, w2, b])

params = np.zeros(3)
for _ in range(2000):
    value, *gradient = step(xs, ys, *params)
    params -= 0.1 * np.array(gradient)
print(f"after 2000 steps: loss {value:.2e}, w1 = {params[0]:.4f}, w2 = {params[1]:.4f}, b = {params[2]:.4f}")
at4 = sd.evaluate(prediction, {x: np.array([4.0]), w1: params[0], w2: params[1], b: params[2]})[0]
print(f"prediction at x = 4: {at4:.4f} (true value 21)")
