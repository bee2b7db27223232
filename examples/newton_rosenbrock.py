"""Newton's method on the Rosenbrock function, with the gradient and the Hessian from symdiff.

Run:  python examples/newton_rosenbrock.py
"""

import numpy as np

import symdiff as sd

n = 10
g = sd.Graph()
x = g.variable("x", shape=(n,))
f = sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
newton = sd.compile([f, sd.grad(f, x), sd.hessian(f, x)], inputs=[x])

xv = np.full(n, -1.0)
xv[0] = -1.2
steps = 0
while True:
    value, gradient, H = newton(xv)
    if np.linalg.norm(gradient) < 1e-10 or steps == 100:
        break
    steps += 1
    step = np.linalg.solve(H, -gradient)
    t = 1.0  # backtracking keeps each step a descent
    while newton(xv + t * step)[0] > value + 1e-4 * t * gradient @ step:
        t /= 2
    xv = xv + t * step
print(f"converged in {steps} Newton steps: f = {value:.3e}, |grad| = {np.linalg.norm(gradient):.1e}")
print(f"x = {np.round(xv, 6)}")
