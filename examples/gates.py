"""The classic back-propagation figure: f(x, y, z) = (x + y) * z at x = -2, y = 5, z = -4.

Every node shows its forward value (green) and the gradient of f with respect to it (red):
the add gate passes the gradient through unchanged, the multiply gate swaps its inputs.

Run:  python examples/gates.py      (writes gates.svg in the current directory)
"""

from _output import picture

import symdiff as sd

g = sd.Graph()
x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
q = x + y
f = q * z
at = {x: -2.0, y: 5.0, z: -4.0}

print(f"f = {f} = {sd.evaluate(f, at)}")
for node, d in zip((x, y, z, q), sd.grad(f, [x, y, z, q])):
    name = node.name or "q"
    print(f"df/d{name} = {d} = {sd.evaluate(d, at)}")

out = sd.render(f, picture("gates.svg"), values=at, cost=f, title="f = (x + y) z: values and gradients")
print(f"figure: {out}")
