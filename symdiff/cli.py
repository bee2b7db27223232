"""The ``symdiff`` command: derivatives of an expression from the shell.

    symdiff grad "x**2*sin(y)" --wrt x y
    symdiff grad "x**2*sin(y)" --wrt x y --order 2 --at x=1 y=2
    symdiff grad "exp(-x^2/2)" --wrt x --latex --dot d.svg
    symdiff grad "x**2*sin(y)" --wrt x y --emit python --out grad.py
    symdiff eval "x**2*sin(y)" --at x=1 y=2

Expressions are read by symdiff's own parser (never Python's eval): scalar
variables, numbers, + - * / ** (or ^), parentheses and the elementwise functions
of the op table:
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import re
import subprocess
import sys
from collections.abc import Sequence

from symdiff._version import __version__
from symdiff.autodiff import grad
from symdiff.backends.source import to_source
from symdiff.errors import SymdiffError
from symdiff.evaluate import evaluate
from symdiff.export.render import render
from symdiff.export.sympy import latex
from symdiff.graph import Graph, Node
from symdiff.parse import FUNCTIONS, parse
from symdiff.printing import latex_name
from symdiff.simplify import simplify


def _bindings(pairs: Sequence[str], graph: Graph) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SymdiffError(f"--at takes name=value pairs, got {pair!r}")
        if name in out:
            raise SymdiffError(f"--at gives {name} twice ({name}={out[name]:g} and {pair})")
        if name not in graph.variables:
            known = ", ".join(graph.variables) or "none"
            raise SymdiffError(f"--at {pair}: the expression has no variable {name!r} (its variables: {known})")
        try:
            out[name] = float(value)
        except ValueError:
            raise SymdiffError(f"--at {pair!r}: {value!r} is not a number") from None
    return out


_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # what argparse itself reads as a negative number


def _protect_expression(argv: Sequence[str]) -> list[str]:
    """Let an expression start with a minus sign (``symdiff grad "-x^2" --wrt x``).

    argparse reads ``-x^2`` as an unknown option; a leading space makes it a value, and
    the expression parser skips it. ``--`` still works, and long options stay options.
    """
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and arg != "-h" and not _NUMBER.match(arg):
            arg = " " + arg
        out.append(arg)
    return out


def _show(label: str, node: Node, args: argparse.Namespace, at: dict[str, float] | None) -> str:
    text = latex(node) if args.latex else str(node)
    if "\n" in text:  # named subexpressions: on lines of their own, below the label
        line = f"{label} =\n" + "\n".join("    " + part for part in text.splitlines())
    else:
        line = f"{label} = {text}"
    if at is not None:
        line += f"\n{' ' * len(label)} = {float(evaluate(node, at)):.12g}"
    return line


def _latex_label(wrt: list[str]) -> str:
    """``\\frac{\\partial^{2} f}{\\partial x \\partial y}`` for the derivative by ``wrt`` (in order),
    a variable taken twice written once with its power (``\\partial x^{2}``)."""
    parts = []
    for name, run in itertools.groupby(wrt):
        k = len(list(run))
        parts.append(rf"\partial {latex_name(name)}" + (f"^{{{k}}}" if k > 1 else ""))
    top = r"\partial" if len(wrt) == 1 else rf"\partial^{{{len(wrt)}}}"
    return rf"\frac{{{top} f}}{{{' '.join(parts)}}}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symdiff",
        description="Symbol-to-symbol derivatives of an expression, printed as formulas.",
        epilog=__doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2] + "\n    " + " ".join(sorted(FUNCTIONS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"symdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "grad",
        help="derivatives of an expression",
        description="Print the derivatives of EXPR with respect to the --wrt variables.",
        epilog='example: symdiff grad "x**2*sin(y)" --wrt x y --order 2 --at x=1 y=2',
    )
    g.add_argument("expr", help='the expression, e.g. "x**2*sin(y)"')
    g.add_argument("--wrt", nargs="+", required=True, metavar="VAR", help="variables to differentiate by")
    g.add_argument("--order", type=int, default=1, help="1: gradient (default), 2: second derivatives, ...")
    g.add_argument("--at", nargs="+", default=None, metavar="VAR=VALUE", help="also print values at this point")
    g.add_argument("--latex", action="store_true", help="print LaTeX instead of plain formulas")
    g.add_argument("--dot", metavar="FILE", help="draw the graph with its derivatives (.svg, .png, .pdf or .dot)")
    g.add_argument("--no-simplify", action="store_true", help="print derivatives as built, unsimplified")
    g.add_argument(
        "--emit",
        choices=["python"],
        help="instead of formulas, print a standalone Python module (numpy only, no symdiff) whose function "
        "f(<variables>) returns [f, derivatives...] in the order the formulas are listed",
    )
    g.add_argument("--out", metavar="FILE", help="with --emit: write the module to FILE instead of printing it")
    e = sub.add_parser("eval", help="the value of an expression", epilog='example: symdiff eval "x*y" --at x=2 y=3')
    e.add_argument("expr")
    e.add_argument("--at", nargs="*", default=[], metavar="VAR=VALUE")
    return parser


def _grad(args: argparse.Namespace) -> list[str]:
    if args.order < 1:
        raise SymdiffError(f"--order must be 1 or more, got {args.order}")
    graph = Graph()
    f = parse(args.expr, graph)
    for k, name in enumerate(args.wrt):
        if name not in graph.variables:
            raise SymdiffError(f"--wrt {name}: the expression has no variable {name!r}")
        if name in args.wrt[:k]:
            raise SymdiffError(f"--wrt lists {name} twice")
    wrt = [graph[name] for name in args.wrt]
    if args.out and not args.emit:
        raise SymdiffError("--out writes the module of --emit python; give --emit python too (or --dot FILE)")
    for option, target in (("--out", args.out), ("--dot", args.dot)):  # before any work: a bad path fails at once
        if target is not None:
            _check_writable(option, target)
    at = _bindings(args.at, graph) if args.at is not None else None
    lines = [_show("f", f, args, at)]
    labels = ["f"]
    drawn = [f]
    level = {(): f}
    for order in range(1, args.order + 1):
        nxt = {}
        for combo in itertools.combinations_with_replacement(range(len(wrt)), order):
            parent = level[combo[:-1]]
            node = grad(parent, wrt[combo[-1]])
            nxt[combo] = node
            shown = node if args.no_simplify else simplify(node)
            names = " ".join(f"d{args.wrt[k]}" for k in combo)
            top = "d" if order == 1 else f"d{order}"
            labels.append(f"{top}f/{names}")
            label = _latex_label([args.wrt[k] for k in combo]) if args.latex else labels[-1]
            lines.append(_show(label, shown, args, at))
            drawn.append(shown)
        level = nxt
    if args.emit:
        source = to_source(drawn, None, name="f")
        if not args.out:
            return [source.rstrip("\n")]
        pathlib.Path(args.out).write_text(source)
        listed = ", ".join(labels)
        return [f"module written to {args.out}: f({', '.join(v.name for v in _inputs(drawn))}) returns [{listed}]"]
    if args.dot:
        out = render(drawn, args.dot, title=f"f = {args.expr.strip()}")
        lines.append(f"graph written to {out}")
    return lines


def _check_writable(option: str, target: str) -> None:
    """A SymdiffError naming the option unless ``target`` can be a new or replaced file."""
    path = pathlib.Path(target)
    if path.is_dir():
        raise SymdiffError(f"{option} {target}: that is a folder; give a file name")
    if not path.parent.is_dir():
        raise SymdiffError(f"{option} {target}: the folder {str(path.parent)!r} does not exist")


def _inputs(outputs: list[Node]) -> list[Node]:
    from symdiff.plan import needed, unbound

    return unbound(needed(outputs, set()), set())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_protect_expression(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "grad":
            lines = _grad(args)
        else:
            graph = Graph()
            f = parse(args.expr, graph)
            value = evaluate(f, _bindings(args.at, graph))
            lines = [f"{float(value):.12g}"]
    except SymdiffError as exc:
        print(f"symdiff: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be written (permissions, a full disk, Graphviz failing)
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"symdiff: error: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        print(f"symdiff: error: Graphviz failed: {detail[-1] if detail else exc}", file=sys.stderr)
        return 1
    except (RecursionError, MemoryError) as exc:
        print(f"symdiff: error: the expression is too large ({type(exc).__name__})", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug of symdiff's: still one line, never a traceback
        print(f"symdiff: internal error ({type(exc).__name__}: {exc}); please report it", file=sys.stderr)
        return 3
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
