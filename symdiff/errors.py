"""The exceptions symdiff raises. Each names the op, shape or variable at fault."""

from __future__ import annotations

import numpy as np


class SymdiffError(Exception):
    """Base class of every error symdiff raises on purpose."""


class ShapeError(SymdiffError, ValueError):
    """Incompatible shapes when a node is built, or a bound value of the wrong shape."""


class LinAlgError(SymdiffError, np.linalg.LinAlgError):
    """A linear-algebra routine could not compute on the values it was given (``inv`` or
    ``solve`` of a singular matrix, ``cholesky`` of a matrix that is not positive definite);
    also a ``numpy.linalg.LinAlgError``. The message names the op and the node."""


class DTypeError(SymdiffError, TypeError):
    """A value of a dtype symdiff cannot hold (complex, object, strings)."""


class UnboundVariableError(SymdiffError, LookupError):
    """Evaluation needs variables that have no binding; ``missing`` names them all."""

    def __init__(self, message: str, missing: tuple[str, ...] = ()):
        super().__init__(message)
        self.missing = missing


class NonDifferentiableError(SymdiffError):
    """The cost reaches ``wrt`` only through an op that has no derivative."""


class GraphError(SymdiffError):
    """Nodes of two graphs mixed, or any other malformed graph."""


class BackendError(SymdiffError):
    """A backend that is not installed, or an op a backend cannot run (named in the message)."""


class LoopError(SymdiffError, RuntimeError):
    """A loop could not run as declared: an ``sd.while_loop`` took more than its ``max_steps``
    steps, or a trip count was out of its range. The message names the loop."""
