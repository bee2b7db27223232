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

from symdiff.autodiff import grad, hessian, hvp, jacobian, jvp, value_and_grad
from symdiff.backends.source import to_source
from symdiff.errors import (
    BackendError,
    DTypeError,
    GraphError,
    LinAlgError,
    NonDifferentiableError,
    ShapeError,
    SymdiffError,
    UnboundVariableError,
)
from symdiff.evaluate import compile, evaluate
from symdiff.export.dot import to_dot
from symdiff.export.io import load
from symdiff.export.render import render
from symdiff.export.sympy import from_sympy, latex, to_sympy
from symdiff.graph import Graph, Node
from symdiff.ops import *  # noqa: F403 (the op table's public functions)
from symdiff.ops import __all__ as _ops_all
from symdiff.simplify import simplify
from symdiff.sparse import SparseDerivative, sparse_hessian, sparse_jacobian
from symdiff.testing import check_grads

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "DTypeError",
    "Graph",
    "GraphError",
    "LinAlgError",
    "Node",
    "NonDifferentiableError",
    "ShapeError",
    "SymdiffError",
    "UnboundVariableError",
    "check_grads",
    "compile",
    "evaluate",
    "from_sympy",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "latex",
    "load",
    "render",
    "simplify",
    "SparseDerivative",
    "sparse_hessian",
    "sparse_jacobian",
    "to_dot",
    "to_source",
    "to_sympy",
    "value_and_grad",
    *_ops_all,
]
