"""symdiff: symbol-to-symbol differentiation.

Build an expression as a graph, append its derivatives to the same graph, and
evaluate, compile, print or draw any part of it::

    import symdiff as sd

    g = sd.Graph()
    x = g.variable("x")
    y = sd.sin(x) * x + 2.0
    dy = sd.grad(y, x)          # a node in g: sin(x) + x*cos(x)
    d2y = sd.grad(dy, x)        # differentiate the derivative graph again
    sd.evaluate([y, dy, d2y], {"x": 1.5})
"""

# The layers import one way (errors -> graph -> ops -> rewrite -> rules -> simplify -> autodiff
# -> composite -> loops -> sparse -> plan -> backends -> evaluate -> printing -> export, parse -> testing, cli; checked
# by the import-linter contracts in pyproject.toml). What a lower layer's objects get from a
# higher one is installed here, by importing it first: the rule table's build-time rewrites
# (x + 0 -> x, which every op's apply runs), Node's text (printing) and drawings, and
# Graph.save / Graph.to_networkx (export). Node's operators come with symdiff.ops itself.
from symdiff import rules as _rules  # noqa: F401, I001 (installs the build-time rewrites first)
from symdiff import printing as _printing  # noqa: F401 (Node's repr and str)
from symdiff.export import io as _io, nx as _nx, render as _render, sympy as _sympy  # noqa: F401 (the rest)

from symdiff._version import __version__ as __version__
from symdiff.autodiff import grad, hessian, hvp, jacobian, jvp, value_and_grad
from symdiff.composite import Composite, composite
from symdiff.backends.source import to_source
from symdiff.backends.c import to_c
from symdiff.errors import (
    BackendError,
    DTypeError,
    GraphError,
    LinAlgError,
    LoopError,
    NonDifferentiableError,
    ShapeError,
    SymdiffError,
    UnboundVariableError,
)
from symdiff.evaluate import compile, evaluate
from symdiff.explain import explain
from symdiff.export.dot import to_dot
from symdiff.export.io import load
from symdiff.export.render import render
from symdiff.export.sympy import from_sympy, latex, to_sympy
from symdiff.graph import Graph, Node
from symdiff.loops import Checkpoint, checkpoint, fori_loop, scan, unroll, while_loop
from symdiff.optimize import Problem
from symdiff.ops import *  # noqa: F403 (the op table's public functions)
from symdiff.ops import __all__ as _ops_all
from symdiff.simplify import simplify
from symdiff.sparse import SparseDerivative, sparse_hessian, sparse_jacobian
from symdiff.testing import check_grads


__all__ = [
    "BackendError",
    "DTypeError",
    "Graph",
    "GraphError",
    "LinAlgError",
    "LoopError",
    "Node",
    "Problem",
    "NonDifferentiableError",
    "ShapeError",
    "SymdiffError",
    "UnboundVariableError",
    "Checkpoint",
    "check_grads",
    "checkpoint",
    "Composite",
    "composite",
    "compile",
    "evaluate",
    "explain",
    "fori_loop",
    "from_sympy",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "latex",
    "load",
    "render",
    "scan",
    "simplify",
    "SparseDerivative",
    "sparse_hessian",
    "sparse_jacobian",
    "to_c",
    "to_dot",
    "to_source",
    "to_sympy",
    "unroll",
    "value_and_grad",
    "while_loop",
    *_ops_all,
]
