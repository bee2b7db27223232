"""What every backend's compiled function shares: the checks on the values it is called with,
the outputs and inputs ``sd.compile`` resolves, and ``Compiled``, the numpy backend's callable,
which the other backends subclass (``_build`` and ``__call__`` are theirs).
"""

from __future__ import annotations

import builtins
import difflib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symdiff.backends.numpy import function, generate
from symdiff.errors import DTypeError, GraphError, ShapeError, UnboundVariableError
from symdiff.graph import Graph, Node, check_same_graph, format_shape, gc_paused, node_list, shape_matches
from symdiff.plan import Plan, check_call, finish, needed, unbound
from symdiff.sparse import SparseDerivative

compile_source = builtins.compile  # evaluate's compile() is symdiff's


def sparse_outputs(outputs: Any) -> tuple[Any, Callable[[Any], Any] | None]:
    """Sparse derivatives among the outputs become their values nodes; the function returned
    turns the computed values back into ``scipy.sparse.csr_matrix`` (None: there are none)."""
    if isinstance(outputs, SparseDerivative):
        return outputs.values, outputs.matrix
    if not isinstance(outputs, (list, tuple)) or not any(isinstance(o, SparseDerivative) for o in outputs):
        return outputs, None
    kinds = list(outputs)

    def back(results: list[Any]) -> list[Any]:
        return [o.matrix(r) if isinstance(o, SparseDerivative) else r for o, r in zip(kinds, results)]

    return [o.values if isinstance(o, SparseDerivative) else o for o in outputs], back


def as_outputs(outputs: Any, what: str) -> tuple[list[Node], bool]:
    """``outputs`` (a node or a list of them, of one graph) as a list, and whether it was one node."""
    outs, single = node_list(outputs, what, "outputs")
    check_same_graph(what, *outs)
    return outs, single


def resolve_inputs(outs: list[Node], inputs: Sequence[Node | str] | None, what: str) -> list[Node]:
    """The inputs a compiled function takes, in order: ``inputs`` (nodes or variable names) checked,
    or by default every variable the outputs need, in creation order."""
    if inputs is None:
        return unbound(needed(outs, set()), set())
    graph = outs[0].graph
    ins: list[Node] = []
    for k, item in enumerate(inputs):
        node = graph[item] if isinstance(item, str) else item
        if not isinstance(node, Node):
            raise GraphError(f"{what}: inputs[{k}] is a {type(item).__name__}, not a node or a name")
        if node.graph is not graph:
            raise GraphError(f"{what}: inputs[{k}] belongs to a different graph than the outputs")
        if node in ins:
            raise GraphError(f"{what}: inputs[{k}] ({node.name or node.op}) is listed twice")
        ins.append(node)
    return ins


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

    >>> from symdiff.backends.base import check_value
    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> check_value(w, [1, 2], "evaluate")
    array([1., 2.])
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


def unbound_error(what: str, missing: Sequence[Node], unknown: Sequence[str], graph: Graph) -> UnboundVariableError:
    """The error for variables with no value (``missing``), naming close matches of ``unknown`` names."""
    names = [n.name for n in missing]
    msg = f"{what}: no value bound for variable{'s' if len(names) > 1 else ''} " + ", ".join(
        f"{n.name!r} (shape {format_shape(n.shape)})" for n in missing
    )
    for key in unknown:
        close = difflib.get_close_matches(key, list(graph._variables), n=1)
        msg += f"; the binding {key!r} names no variable" + (f" (did you mean {close[0]!r}?)" if close else "")
    return UnboundVariableError(msg, tuple(names))


class Compiled:
    """A callable made by :func:`symdiff.compile`; call it with one value per input.

    This is the numpy backend's: the plan printed as straight-line Python (``source``).
    """

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
    def _check_bound(plan: Plan, what: str = "compile") -> None:
        if plan.unbound:
            names = ", ".join(repr(n.name) for n in plan.unbound)
            raise UnboundVariableError(
                f"{what}: the outputs need variable(s) {names}, which are not among the inputs",
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
            raise unbound_error("compiled function", missing, (), self.inputs[0].graph)
        return [values[n] for n in self.inputs]

    def __repr__(self) -> str:
        ins = ", ".join(n.name or f"#{n.index}" for n in self.inputs)
        return (
            f"<compiled symdiff function ({ins}) -> {len(self.outputs)} output(s), {len(self._plan.steps)} steps, "
            f"{self.backend} backend>"
        )
