"""sd.simplify against sympy.simplify on scalar derivatives: operation counts and time.

    python benchmarks/simplify_vs_sympy.py            # the table, 3 timed runs
    python benchmarks/simplify_vs_sympy.py --runs 1

``EXPRESSIONS`` (the set tests/test_simplify_readable.py imports) are scalar formulas of x and
y as people write them: polynomials, quotients, exp/log/trig compositions, the sigmoid, the
softplus, a Gaussian log-likelihood term. For each, the derivatives in x of order 1 to 3:
symdiff's ``sd.simplify(grad(...))`` against ``sympy.simplify(sympy.diff(...))``.

Both sides are counted the same way: ``sympy.count_ops`` of a sympy tree. symdiff's node
is converted with sympy's automatic evaluation off (``sympy.evaluate(False)``), so the tree
is the one symdiff built (``x/y/y`` stays three operations' worth, not sympy's ``x/y**2``);
a subexpression used twice counts twice, as in sympy's own trees. Times: symdiff's
derivative + simplify, and sympy's diff + simplify, per expression and order, in CPU
seconds of the process; the table gives the ratio of the totals over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import sympy

import symdiff as sd
from symdiff.parse import parse

# (formula, variables): the formula in the syntax both parsers read; derivatives are in x
EXPRESSIONS: list[str] = [
    "x**3",
    "x/y",
    "x*y**2",
    "x*sin(x)",
    "exp(x)*sin(x)",
    "x**2*exp(-x)",
    "log(x)/x",
    "sin(x)**2",
    "sin(x)*cos(x)",
    "exp(-x**2/2)",
    "1/(1 + exp(-x))",
    "tanh(x)",
    "log(1 + exp(x))",
    "sqrt(x**2 + y**2)",
    "x**2 + 3*x*y + y**2",
    "(x - y)**2",
    "exp(x*y)",
    "sin(x*y)",
    "log(x**2 + 1)",
    "x*log(x)",
    "(x + 1)/(x - 1)",
    "sqrt(x)",
    "1/sqrt(x)",
    "cos(x)/x",
    "exp(sin(x))",
    "sin(cos(x))",
    "x**4 - 2*x**2 + 1",
    "(x**2 + 1)**3",
    "x*exp(x*y)",
    "log(sin(x))",
    "exp(x)/(1 + exp(x))",
    "x/(x**2 + y**2)",
    "sin(x)/cos(x)",
    "exp(-x)*cos(y*x)",
    "x**3*y**2",
    "log(x*y)",
    "sqrt(1 - x**2)",
    "x*tanh(x)",
    "(x - y)**2/(2*y) + log(y)/2",
    "x**2*sin(x)",
    "exp(2*x)*cos(3*x)",
    "1/(x**2 + 1)",
    "x**5/5 - x**3/3",
    "log(cos(x))",
]

ORDERS = (1, 2, 3)


def count_ops(node: sd.Node) -> int:
    """``sympy.count_ops`` of ``node`` as symdiff built it (sympy's automatic evaluation off)."""
    with sympy.evaluate(False):
        expr = sd.to_sympy(node)
    return int(sympy.count_ops(expr))


def symdiff_derivatives(text: str, order: int = 3) -> list[sd.Node]:
    """The simplified derivatives of ``text`` in x of orders 1..order."""
    g = sd.Graph()
    f = parse(text, g)
    x = g.variables["x"]
    out, d = [], f
    for _ in range(order):
        d = sd.grad(d, x)
        out.append(sd.simplify(d))
    return out


def sympy_derivatives(text: str, order: int = 3) -> list[sympy.Expr]:
    """``sympy.simplify`` of the derivatives of ``text`` in x of orders 1..order."""
    f = sympy.sympify(text)
    x = sympy.Symbol("x")
    out, d = [], f
    for _ in range(order):
        d = sympy.diff(d, x)
        out.append(sympy.simplify(d))
    return out


@dataclass
class Case:
    """One expression and order: both op counts and printed forms."""

    text: str
    order: int
    ours: int
    theirs: int
    printed: str
    sympy_printed: str


def compare(expressions: list[str] = EXPRESSIONS) -> list[Case]:
    """The op counts of symdiff's and sympy's simplified derivatives, every expression and order."""
    cases = []
    for text in expressions:
        mine, theirs = symdiff_derivatives(text), sympy_derivatives(text)
        for order, (m, t) in enumerate(zip(mine, theirs), 1):
            cases.append(Case(text, order, count_ops(m), int(sympy.count_ops(t)), str(m), str(t)))
    return cases


def timed(expressions: list[str] = EXPRESSIONS) -> tuple[float, float]:
    """CPU seconds of this process for symdiff's derivatives + simplify of every expression,
    and for sympy's (CPU time, not wall time: both are single-threaded Python, and on a shared
    machine the wall time of either half depends on what else runs meanwhile)."""
    t0 = time.process_time()
    for text in expressions:
        symdiff_derivatives(text)
    t1 = time.process_time()
    for text in expressions:
        sympy_derivatives(text)
    return t1 - t0, time.process_time() - t1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--worst", type=int, default=10, help="how many of the worst cases to list")
    args = parser.parse_args(argv)
    cases = compare()
    ours, theirs = sum(c.ours for c in cases), sum(c.theirs for c in cases)
    print(f"{len(EXPRESSIONS)} expressions, derivatives of order {ORDERS[0]}-{ORDERS[-1]}: {len(cases)} cases")
    print(f"operation count: symdiff {ours}, sympy.simplify {theirs}: {ours / theirs:.3f}x")
    worst = sorted(cases, key=lambda c: (c.ours + 1) / (c.theirs + 1), reverse=True)[: args.worst]
    print(f"{'expression':<28} {'d':>2} {'sd':>4} {'sympy':>5}  symdiff | sympy")
    for c in worst:
        print(f"{c.text:<28} {c.order:>2} {c.ours:>4} {c.theirs:>5}  {c.printed} | {c.sympy_printed}")
    ratios = []
    for _ in range(args.runs):
        mine, reference = timed()
        ratios.append(mine / reference)
        print(f"CPU time: symdiff {mine:.3f} s, sympy {reference:.3f} s: {mine / reference:.4f}x")
    print(f"time ratio over {args.runs} runs: {min(ratios):.4f}x - {max(ratios):.4f}x (symdiff / sympy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
