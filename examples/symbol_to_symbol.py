"""The Deep Learning book's symbol-to-symbol figure: z = f(f(f(w))) and dz/dw, in one graph.

The derivative is built as nodes appended to the forward graph. It reuses the stored
x = f(w) and y = f(x) instead of recomputing them: dz/dw = f'(y) f'(x) f'(w).

Run:  python examples/symbol_to_symbol.py      (writes symbol_to_symbol.svg in the current directory)
"""

from _output import picture

import symdiff as sd

g = sd.Graph()
w = g.variable("w")
x = sd.exp(w)  # f = exp, so f' = f and the derivative needs no new exp at all
y = sd.exp(x)
z = sd.exp(y)
forward = len(g)
dz = sd.grad(z, w)

print(f"z     = {z}")
print(f"dz/dw = {dz}")
print(f"forward graph: {forward} nodes; derivative nodes appended: {len(g) - forward}")
print(f"at w = 0.1: z = {sd.evaluate(z, {w: 0.1}):.6f}, dz/dw = {sd.evaluate(dz, {w: 0.1}):.6f}")

out = sd.render([z, dz], picture("symbol_to_symbol.svg"), title="z = f(f(f(w))) and its derivative")
print(f"figure: {out}")
