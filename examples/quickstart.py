"""symdiff in five minutes: derivatives as graphs you can read, evaluate and differentiate again.

Run:  python examples/quickstart.py
"""

import numpy as np

import symdiff as sd


def show(label, node, bindings):
    """Print a derivative as a formula, then its value."""
    value = sd.evaluate(node, bindings)
    text = " " + str(node)
    if "\n" in text:  # large graphs print as numbered lines, below the label
        text = "\n" + "\n".join(" " * 15 + line for line in text[1:].splitlines())
    print(f"  {label:<10} ={text}")
    print(f"  {'':<10}   -> {np.round(value, 6)}")


# 1. The gate example: f(x, y, z) = (x + y) * z at x = -2, y = 5, z = -4.
g = sd.Graph()
x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
q = x + y
f = q * z
at = {x: -2.0, y: 5.0, z: -4.0}
print("f(x, y, z) = (x + y) * z")
show("f", f, at)
for var, d in zip((x, y, z), sd.grad(f, [x, y, z])):  # backprop appends nodes to g
    show(f"df/d{var.name}", d, at)
print(f"  the graph now has {len(g)} nodes; derivative nodes: {sum(n.is_gradient for n in g.nodes)}")

# 2. A sigmoid neuron, 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))), and the same with sigmoid fused.
print("\nsigmoid neuron at w = [2, -3, -3], x = [-1, -2]")
w, xin = g.variable("w", shape=(3,)), g.variable("xin", shape=(2,))
dot = w[0] * xin[0] + w[1] * xin[1] + w[2]
neuron = 1.0 / (1.0 + sd.exp(-dot))
fused = sd.sigmoid(dot)
at = {w: np.array([2.0, -3.0, -3.0]), xin: np.array([-1.0, -2.0])}
show("output", neuron, at)
show("d/dw", sd.grad(neuron, w), at)
show("d/dw fused", sd.grad(fused, w), at)  # dσ = σ(1 - σ): the same numbers, a smaller graph
show("d/dx fused", sd.grad(fused, xin), at)

# 3. Derivatives are graphs, so differentiate again.
print("\nhigher order: y = sin(t) * t")
t = g.variable("t")
yt = sd.sin(t) * t
d1 = sd.grad(yt, t)
d2 = sd.grad(d1, t)
d3 = sd.grad(d2, t)
for label, node in (("dy/dt", d1), ("d2y/dt2", d2), ("d3y/dt3", d3)):
    show(label, sd.simplify(node), {t: 1.5})  # simplify collects like terms: same values
print(f"  (d3y/dt3 as backprop built it: {d3})")

# 4. Vectors: a gradient, a Hessian, a compiled function.
print("\nleast squares: loss = sum((X @ v - b)**2)")
X, v, b = g.variable("X", shape=(None, 3)), g.variable("v", shape=(3,)), g.variable("b", shape=(None,))
loss = sd.sum((X @ v - b) ** 2)
gv = sd.grad(loss, v)
print(f"  d loss/dv = {gv}")
H = sd.hessian(loss, v)
step = sd.compile([loss, gv, H], inputs=[X, b, v])
rng = np.random.default_rng(0)
Xv, bv = rng.standard_normal((20, 3)), rng.standard_normal(20)
vv = np.zeros(3)
value, grad_v, hess = step(Xv, bv, vv)
vv = vv - np.linalg.solve(hess, grad_v)  # one Newton step solves least squares exactly
print(f"  loss before {value:.4f}, after one Newton step {step(Xv, bv, vv)[0]:.4f}")
print(f"  matches numpy's lstsq: {np.allclose(vv, np.linalg.lstsq(Xv, bv, rcond=None)[0])}")

print(
    "\nNext: sd.render(node, 'graph.svg') draws a graph (derivative nodes in orange), sd.to_sympy(node) "
    "gives a formula, sd.simplify tidies a derivative, sd.jacobian / sd.hvp / sd.jvp give more derivatives, "
    'and `symdiff grad "x**2*sin(y)" --wrt x y` works from the shell. See docs/getting-started.md and examples/.'
)
