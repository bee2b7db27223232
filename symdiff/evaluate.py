"""Run any part of a graph on numbers: ``evaluate`` (interpret) and ``compile`` (reuse a plan).

Evaluation follows IEEE arithmetic as numpy does: ``log(0)`` is ``-inf``, ``1/0`` is
``inf``, ``sqrt``'s derivative at 0 is ``inf``; no warnings are printed for these.
"""

from __future__ import annotations

import builtins
import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from symdiff.backends.numpy import function, generate
from symdiff.errors import DTypeError, GraphError, ShapeError, UnboundVariableError
from symdiff.graph import Graph, Node, check_same_graph, format_shape, gc_paused, node_list, shape_matches
from symdiff.plan import Plan, check_call, finish, needed, unbound

Bindings = Mapping[Node | str, Any]
compile_source = builtins.compile  # this module's compile() is symdiff's


def _sparse_outputs(outputs: Any) -> tuple[Any, Callable[[Any], Any] | None]:
    """Sparse derivatives among the outputs become their values nodes; the function returned
    turns the computed values back into ``scipy.sparse.csr_matrix`` (None: there are none)."""
    from symdiff.sparse import SparseDerivative

    if isinstance(outputs, SparseDerivative):
        return outputs.values, outputs.matrix
    if not isinstance(outputs, (list, tuple)) or not any(isinstance(o, SparseDerivative) for o in outputs):
        return outputs, None
    kinds = list(outputs)

    def back(results: list[Any]) -> list[Any]:
        return [o.matrix(r) if isinstance(o, SparseDerivative) else r for o, r in zip(kinds, results)]

    return [o.values if isinstance(o, SparseDerivative) else o for o in outputs], back


def _as_outputs(outputs: Any, what: str) -> tuple[list[Node], bool]:
    outs, single = node_list(outputs, what, "outputs")
    check_same_graph(what, *outs)
    return outs, single


def _duck_array(value: Any) -> bool:
    """An array of another library with numpy's shape, dtype and astype (dask, cupy, jax)."""
    return (
        not isinstance(value, (np.ndarray, np.generic))
        and all(hasattr(value, a) for a in ("shape", "dtype", "astype"))
        and isinstance(getattr(value, "dtype", None), np.dtype)
    )


def check_value(node: Node, value: Any, what: str) -> Any:
    """``value`` as an array of ``node``'s dtype, or a clear error if it does not fit.

    Lists and numbers become numpy arrays; an array of another library (``_duck_array``)
    is checked by its shape and dtype and passed on as it is, so evaluating never reads it.
    """
    label = f"variable {node.name!r}" if node.name else f"node #{node.index} ({node.op})"
    if _duck_array(value):
        arr = value  # a dask or other array-API array stays what it is: never computed here
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise DTypeError(f"{what}: the value bound to {label} is not an array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise DTypeError(
            f"{what}: {label} was bound to a value of dtype {arr.dtype}; symdiff evaluates float, integer "
            "and boolean values (not complex, object or strings)"
        )
    if arr.dtype != node.dtype:
        if not np.can_cast(arr.dtype, node.dtype, casting="same_kind"):
            raise DTypeError(f"{what}: {label} has dtype {node.dtype} but was bound to a {arr.dtype} value")
        arr = arr.astype(node.dtype)
    if not shape_matches(node.shape, arr.shape):
        raise ShapeError(
            f"{what}: {label} has shape {format_shape(node.shape)} but was bound to a value of shape {arr.shape}"
        )
    return arr


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


def _unbound_error(what: str, missing: Sequence[Node], unknown: Sequence[str], graph: Graph) -> UnboundVariableError:
    names = [n.name for n in missing]
    msg = f"{what}: no value bound for variable{'s' if len(names) > 1 else ''} " + ", ".join(
        f"{n.name!r} (shape {format_shape(n.shape)})" for n in missing
    )
    for key in unknown:
        close = difflib.get_close_matches(key, list(graph._variables), n=1)
        msg += f"; the binding {key!r} names no variable" + (f" (did you mean {close[0]!r}?)" if close else "")
    return UnboundVariableError(msg, tuple(names))


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
    outputs, sparse = _sparse_outputs(outputs)
    outs, single = _as_outputs(outputs, "evaluate")
    graph = outs[0].graph
    raw, unknown = _resolve(graph, bindings, "evaluate")
    order = needed(outs, raw)
    missing = unbound(order, raw)
    if missing:
        raise _unbound_error("evaluate", missing, unknown, graph)
    values = {n: check_value(n, raw[n], "evaluate") for n in order if n in raw}
    if any(type(v).__module__.split(".")[0] == "dask" for v in values.values()):
        from symdiff.backends import dask as dask_backend  # dask arrays in: dask arrays out, lazily

        results = Plan(outs, list(values), dask_backend.function, scalars=False).run(values, finished=False)
    else:
        results = Plan(outs, list(values), function).run(values)
    result = results[0] if single else results
    return result if sparse is None else sparse(result)


class Compiled:
    """A callable made by :func:`compile`; call it with one value per input."""

    def __init__(self, outputs: list[Node], inputs: list[Node], single: bool):
        self.outputs = outputs
        self.inputs = inputs
        self._single = single
        with gc_paused():
            self._build(outputs, inputs)

    backend = "numpy"

    def _build(self, outputs: list[Node], inputs: list[Node]) -> None:
        self._plan = plan = Plan(outputs, inputs, function)
        self._check_bound(plan)
        checks = {s.node: functools.partial(check_call, s.node) for s in plan.compiled_checks()}
        self.source, namespace = generate(plan, checks)
        exec(compile_source(self.source, "<symdiff compiled>", "exec"), namespace)  # our own generated code
        self._code = namespace["compiled"]
        # scalar float64 inputs are passed as Python floats, as the generated code expects
        self._as_float = [n.shape == () and n.dtype == np.float64 for n in inputs]
        self._arrays = any(not s.scalar for s in plan.steps)

    @staticmethod
    def _check_bound(plan: Plan) -> None:
        if plan.unbound:
            names = ", ".join(repr(n.name) for n in plan.unbound)
            raise UnboundVariableError(
                f"compile: the outputs need variable(s) {names}, which are not among the inputs",
                tuple(n.name for n in plan.unbound),
            )

    def _values(self, args: tuple, kwargs: dict[str, Any]) -> list[Any]:
        """The inputs' values in order, each checked against its variable (shape, dtype)."""
        if kwargs or len(args) != len(self.inputs):
            args = self._positional(args, kwargs)
        return [check_value(node, value, "compiled function") for node, value in zip(self.inputs, args)]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != len(self.inputs):
            args = self._positional(args, kwargs)
        values = []
        for node, value, as_float in zip(self.inputs, args, self._as_float):
            if not (as_float and type(value) is float):  # a Python float for a float64 scalar is ready
                value = check_value(node, value, "compiled function")
                if as_float:
                    value = float(value)
            values.append(value)
        try:
            if self._arrays:
                with np.errstate(all="ignore"):
                    raw = self._code(*values)
            else:  # Python floats never warn
                raw = self._code(*values)
            results = [np.float64(v) if type(v) is float else finish(v) for v in raw]
        except Exception:
            # A scalar expression hit an IEEE edge (log(0), 1/0, overflow) or an op failed:
            # the interpreter gives numpy's result node by node, or the annotated error.
            results = self._plan.run(dict(zip(self.inputs, values)))
        return results[0] if self._single else results

    def _positional(self, args: tuple, kwargs: dict[str, Any]) -> list[Any]:
        """The inputs in order, from positional and keyword arguments; clear errors otherwise."""
        if len(args) > len(self.inputs):
            raise GraphError(f"compiled function takes {len(self.inputs)} inputs, got {len(args)}")
        values: dict[Node, Any] = dict(zip(self.inputs, args))
        by_name = {n.name: n for n in self.inputs if n.name}
        for name, v in kwargs.items():
            if name not in by_name:
                raise GraphError(f"compiled function has no input named {name!r} (inputs: {', '.join(by_name)})")
            if by_name[name] in values:
                raise GraphError(f"compiled function got input {name!r} twice")
            values[by_name[name]] = v
        missing = [n for n in self.inputs if n not in values]
        if missing:
            raise _unbound_error("compiled function", missing, (), self.inputs[0].graph)
        return [values[n] for n in self.inputs]

    def __repr__(self) -> str:
        ins = ", ".join(n.name or f"#{n.index}" for n in self.inputs)
        return (
            f"<compiled symdiff function ({ins}) -> {len(self.outputs)} output(s), {len(self._plan.steps)} steps, "
            f"{self.backend} backend>"
        )


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
    backend : {"numpy", "numba", "jax"}
        ``"numpy"``: straight-line Python calling numpy (``f.source``). ``"numba"``:
        native code by numba, cached on disk (optional extra ``symdiff[numba]``).
        ``"jax"``: a ``jax.jit`` function returning JAX arrays; ``f.jax_function`` is the
        plain JAX function for ``jax.vmap``, ``jax.jit`` or sharding (``symdiff[jax]``).
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
    outputs, sparse = _sparse_outputs(outputs)
    outs, single = _as_outputs(outputs, "compile")
    graph = outs[0].graph
    if simplify:
        from symdiff.simplify import simplify as run_simplify

        outs = run_simplify(outs)
    if inputs is None:
        ins = unbound(needed(outs, set()), set())
    else:
        ins = []
        for k, item in enumerate(inputs):
            node = graph[item] if isinstance(item, str) else item
            if not isinstance(node, Node):
                raise GraphError(f"compile: inputs[{k}] is a {type(item).__name__}, not a node or a name")
            if node.graph is not graph:
                raise GraphError(f"compile: inputs[{k}] belongs to a different graph than the outputs")
            if node in ins:
                raise GraphError(f"compile: inputs[{k}] ({node.name or node.op}) is listed twice")
            ins.append(node)
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
