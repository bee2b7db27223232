"""Run any part of a graph on numbers: ``evaluate`` (interpret) and ``compile`` (reuse a plan).

Evaluation follows IEEE arithmetic as numpy does: ``log(0)`` is ``-inf``, ``1/0`` is
``inf``, ``sqrt``'s derivative at 0 is ``inf``; no warnings are printed for these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from symdiff.backends.base import (
    Compiled,
    as_outputs,
    check_value,
    resolve_inputs,
    sparse_outputs,
    unbound_error,
)
from symdiff.backends.numpy import function
from symdiff.errors import GraphError
from symdiff.graph import Graph, Node
from symdiff.plan import Plan, needed, unbound

Bindings = Mapping[Node | str, Any]


def _resolve(graph: Graph, bindings: Bindings | None, what: str) -> tuple[dict[Node, Any], list[str]]:
    """Bindings keyed by node; names that match no variable are returned apart."""
    bound: dict[Node, Any] = {}
    unknown: list[str] = []
    for key, value in (bindings or {}).items():
        if isinstance(key, Node):
            if key.graph is not graph:
                raise GraphError(f"{what}: a binding is for a node of another graph ({key!r})")
            bound[key] = value
        elif isinstance(key, str):
            node = graph._variables.get(key)
            if node is None:
                unknown.append(key)
            else:
                bound[node] = value
        else:
            raise GraphError(f"{what}: binding keys are nodes or variable names, got {type(key).__name__}")
    return bound, unknown


def evaluate(outputs: Node | Sequence[Node], bindings: Bindings | None = None) -> Any:
    """Compute ``outputs`` for the given variable values.

    Parameters
    ----------
    outputs : Node or list of Node
        What to compute; only the nodes they need are evaluated. A sparse derivative
        (``sd.sparse_hessian``) is returned as a ``scipy.sparse.csr_matrix``.
    bindings : dict, optional
        Values keyed by variable node or variable name. A binding for any other
        node replaces that node's value. Bindings the outputs do not need are ignored.

    Returns
    -------
    numpy value, or a list of them for a list of outputs (a 0-d result is a numpy scalar).
    With dask arrays among the bindings, dask arrays: lazy, chunked as the data is, for
    any dask scheduler to compute (nothing is computed here; docs/scale.md).

    Raises
    ------
    UnboundVariableError
        Naming every needed variable that has no value.
    ShapeError, DTypeError
        For a bound value that does not fit its variable.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> y = sd.sin(x) * x + 2.0
    >>> print(sd.evaluate(y, {"x": 0.0}))
    2.0
    """
    outputs, sparse = sparse_outputs(outputs)
    outs, single = as_outputs(outputs, "evaluate")
    graph = outs[0].graph
    raw, unknown = _resolve(graph, bindings, "evaluate")
    order = needed(outs, raw)
    missing = unbound(order, raw)
    if missing:
        raise unbound_error("evaluate", missing, unknown, graph)
    values = {n: check_value(n, raw[n], "evaluate") for n in order if n in raw}
    if any(type(v).__module__.split(".")[0] == "dask" for v in values.values()):
        from symdiff.backends import dask as dask_backend  # dask arrays in: dask arrays out, lazily

        results = Plan(outs, list(values), dask_backend.function, scalars=False).run(values, finished=False)
    else:
        results = Plan(outs, list(values), function).run(values)
    result = results[0] if single else results
    return result if sparse is None else sparse(result)


def compile(  # noqa: A001
    outputs: Node | Sequence[Node],
    inputs: Sequence[Node | str] | None = None,
    simplify: bool = False,
    backend: str = "numpy",
) -> Callable[..., Any]:
    """Prepare ``outputs`` for repeated evaluation; returns a callable.

    Parameters
    ----------
    outputs : Node or list of Node
    inputs : list of Node or str, optional
        The variables the callable takes, in order (positionally or by name). By
        default, every variable the outputs need, in creation order.
    simplify : bool
        Run :func:`symdiff.simplify` on the outputs first. By default the compiled
        function computes exactly what ``evaluate`` does, to the last bit;
        simplification may change rounding (never the mathematical value).
    backend : {"numpy", "numba", "jax", "c"}
        ``"numpy"``: straight-line Python calling numpy (``f.source``). ``"numba"``:
        native code by numba, cached on disk (optional extra ``symdiff[numba]``).
        ``"jax"``: a ``jax.jit`` function returning JAX arrays; ``f.jax_function`` is the
        plain JAX function for ``jax.vmap``, ``jax.jit`` or sharding (``symdiff[jax]``).
        ``"c"``: C99 of the graph specialized to the input shapes, built with the system C
        compiler once per tuple of shapes (cached on disk), called through cffi;
        ``f.batch(*stacked)`` evaluates n input sets in one call (``symdiff[c]``).
        A backend that is not installed, or an op it cannot run, is a ``BackendError``
        naming the extra or the op: nothing falls back to another backend.

    Returns
    -------
    callable
        ``f(*values)`` returns a list of values for a list of outputs, one value for
        a single output. Calls are thread-safe. ``f.source`` is the generated Python.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> loss = sd.sum(w ** 2)
    >>> f = sd.compile([loss, sd.grad(loss, w)], inputs=[w])
    >>> value, gw = f(np.array([1.0, 2.0, 3.0]))
    >>> print(value, gw)
    14.0 [2. 4. 6.]
    """
    outputs, sparse = sparse_outputs(outputs)
    outs, single = as_outputs(outputs, "compile")
    if simplify:
        from symdiff.simplify import simplify as run_simplify

        outs = run_simplify(outs)
    ins = resolve_inputs(outs, inputs, "compile")
    if backend == "numpy":
        made = Compiled(outs, ins, single)
    else:
        from symdiff.backends import load

        made = load(backend).Compiled(outs, ins, single)
    return made if sparse is None else _WithSparse(made, sparse)


class _WithSparse:
    """A compiled function whose sparse outputs are returned as ``scipy.sparse.csr_matrix``."""

    def __init__(self, compiled: Compiled, back: Callable[[Any], Any]):
        self.compiled, self._back = compiled, back
        self.inputs, self.outputs, self.source = compiled.inputs, compiled.outputs, compiled.source

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._back(self.compiled(*args, **kwargs))

    def __repr__(self) -> str:
        return repr(self.compiled)
