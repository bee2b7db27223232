"""One evaluation plan: the steps that compute some outputs, built once from the graph.

A plan orders the nodes the outputs need, gives each value a slot, decides per step
how it runs (a float64 scalar on Python floats at math speed, anything else by the op's
numpy forward) and which results need a run-time shape check, and records lifetimes:
how often each value is used and at which step it is read for the last time. The
interpreter (``Plan.run``) and every backend (``symdiff.backends``) read the same plan;
none of them walks the graph or counts uses on its own.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import symdiff.scalar as sx
from symdiff.errors import LinAlgError, LoopError, ShapeError, SymdiffError
from symdiff.graph import Node, Region, ancestors, consumers, format_shape, shape_matches
from symdiff.ops import REGISTRY
from symdiff.ops.core import Op

SCALAR_DTYPES = (np.dtype(np.float64), np.dtype(bool))
SCALAR_ERRORS = (ValueError, ZeroDivisionError, OverflowError)


def scalar_eligible(node: Node) -> bool:
    """True if ``node`` is computed with its op's scalar template (float64 scalars)."""
    op = REGISTRY[node.op]
    return (
        op.scalar is not None
        and node.shape == ()
        and node.dtype in SCALAR_DTYPES
        and all(u.shape == () and u.dtype in SCALAR_DTYPES for u in node.inputs)
    )


def strong_scalars(node: Node) -> tuple[int, ...]:
    """The positions of ``node``'s float64 scalar inputs that must reach numpy as ``np.float64``.

    Plans hold float64 scalars as Python floats (scalar steps; in compiled code also inputs
    and literal constants), which NEP 50 treats as weak: float32 array * Python float is
    float32, while the graph, like numpy with a float64 scalar, says float64. Only where a
    lower-precision float input meets them, and the node is float64, does it matter.
    """
    if node.dtype != np.float64 or not any(
        u.dtype is not None and u.dtype.kind == "f" and u.dtype.itemsize < 8 for u in node.inputs
    ):
        return ()
    return tuple(k for k, u in enumerate(node.inputs) if u.shape == () and u.dtype == np.float64)


def _strengthened(fn: Callable[..., Any], positions: tuple[int, ...]) -> Callable[..., Any]:
    """``fn`` with the arguments at ``positions`` made numpy float64 scalars (see strong_scalars)."""

    def run(*args, **attrs):
        args = list(args)
        for k in positions:
            args[k] = np.float64(args[k])
        return fn(*args, **attrs)

    return run


@functools.cache
def scalar_function(op: Op) -> Callable[..., Any]:
    """The op's scalar expression as a function of Python floats (printed for the ``math``
    module), falling back to numpy where it raises."""
    fast = sx.python_function(op.scalar, op.arity)
    forward = functools.partial(op.forward, np)

    def run(*args):
        try:
            return fast(*args)
        except SCALAR_ERRORS:
            with np.errstate(all="ignore"):
                return forward(*(np.float64(a) for a in args))[()]

    return run


def needed(outputs: Sequence[Node], stop: Mapping[Node, Any] | set) -> list[Node]:
    """The nodes the outputs need, in topological order; the walk stops at ``stop`` nodes."""
    return ancestors(outputs, lambda n: () if n in stop else n.inputs)


def unbound(order: Sequence[Node], bound: Mapping[Node, Any] | set) -> list[Node]:
    """The variables among ``order`` that have no value in ``bound``."""
    return [n for n in order if n.op == "variable" and n not in bound]


class Step:
    """One node of a plan: its forward, where its inputs are, and what to check.

    ``fn`` is the backend's function of the op as ``function(op)`` gave it (a callable, or a
    printer for a backend that prints code); ``call`` is what an interpreter calls: ``fn`` with
    the float64 scalars at ``strong`` made numpy's first (see ``strong_scalars``). A node that
    owns bodies runs them by its op's ``runs`` (or the backend's ``function.runs(op)``), told
    which of its outputs the plan reads (``wanted``: a loop stores the steps' carries only for
    a derivative that reads them)."""

    __slots__ = ("node", "fn", "call", "args", "attrs", "check", "scalar", "strong")

    def __init__(
        self,
        node: Node,
        slot: dict[Node, int],
        function: Callable[[Op], Callable[..., Any]],
        scalars: bool = True,
        wanted: frozenset[int] | None = None,
    ):
        op = REGISTRY[node.op]
        self.node = node
        # float64 scalars run on Python floats at math speed, as compiled code does
        self.scalar = scalars and scalar_eligible(node)
        if node.regions and not getattr(function, "prints", False):
            # the plan nests: each body runs by a plan of its own, with the same functions, and
            # the op says how the node runs them (a backend that prints code prints the bodies
            # from its own function of the op)
            bodies = tuple(body_function(r, function, scalars) for r in node.regions)
            runs = getattr(function, "runs", None)
            runner = (runs(op) if runs is not None else None) or op.runs
            self.fn = functools.partial(runner, bodies, wanted=wanted, results=node.results)
        else:
            self.fn = scalar_function(op) if self.scalar else function(op)
        # float64 scalars held as Python floats, made numpy's where NEP 50 would demote them
        self.strong = strong_scalars(node) if scalars and not self.scalar and not node.regions else ()
        self.call = _strengthened(self.fn, self.strong) if self.strong else self.fn
        self.args = tuple(slot[u] for u in node.inputs)
        self.attrs = dict(node._attrs)
        # Shapes with unknown dimensions are checked at run time; a None dimension
        # must not be broadcast (see ops.core.broadcast_shapes).
        self.check = not node.is_multi and (
            None in node.shape
            or (op.elementwise and any(None in u.shape for u in node.inputs))
            or (not op.elementwise and broadcast_risk(node))
        )


# Each body's function per (function, scalars), while something holds it: made once however many
# nodes run the body. Weak values: a function reaches its region's graph, so a strong cache
# would keep every graph alive.
_BODIES: weakref.WeakValueDictionary[tuple, Callable[..., Any]] = weakref.WeakValueDictionary()


def body_function(region: Region, function: Callable[[Op], Callable[..., Any]], scalars: bool) -> Callable[..., Any]:
    """A body as a function of its parameters' values: its outputs' values (a tuple if it has
    several), computed by a plan of its own with the same step functions."""
    run = _BODIES.get((region, function, scalars))
    if run is None:
        run = _BODIES[region, function, scalars] = _body_function(region, function, scalars)
    return run


def _body_function(region: Region, function: Callable[[Op], Callable[..., Any]], scalars: bool) -> Callable[..., Any]:
    plan = Plan(list(region.outputs), list(region.params), function, scalars)
    several, steps, leaves, out_slots = region.several, plan.steps, plan.leaves, plan.out_slots
    # what Plan.run does, once per step of a loop: the slots laid out once, no dict per call
    where = {n: i for i, n in enumerate(leaves)}
    start = [None if n in region.params else n.value for n in leaves] + [None] * len(steps)
    slots = [(k, where[p]) for k, p in enumerate(region.params) if p in where]  # unused ones have none

    def run(*args: Any, **_: Any) -> Any:
        env = start.copy()
        for k, i in slots:
            env[i] = args[k]
        _execute(steps, env, leaves)
        return tuple([env[i] for i in out_slots]) if several else env[out_slots[0]]

    return run


def wanted_outputs(computed: Sequence[Node], outputs: Sequence[Node]) -> dict[Node, frozenset[int] | None]:
    """For each node with several outputs among ``computed``: the positions of its outputs that
    the plan reads (None: all of them, the node itself being an output)."""
    read: dict[Node, set[int] | None] = {}
    for n in computed:
        if n.op == "output":
            source = n.inputs[0]
            found = read.setdefault(source, set())
            if found is not None:
                found.add(n._attrs[0][1])
    for n in outputs:
        if n.is_multi:
            read[n] = None
    return {n: None if r is None else frozenset(r) for n, r in read.items()}


def shape_of(value: Any) -> tuple[int, ...]:
    """A value's shape; () for the tuple of arrays a node with several outputs computes."""
    return () if isinstance(value, tuple) else np.shape(value)


def check_node(node: Node, value: Any, inputs: Sequence[Any]) -> None:
    """Raise ShapeError if a computed value breaks its node's static shape, or broadcast a
    dimension declared None."""
    check_shapes(node, np.shape(value), [shape_of(v) for v in inputs])


def check_shapes(node: Node, shape: tuple[int, ...], input_shapes: Sequence[tuple[int, ...]]) -> None:
    """``check_node`` on shapes alone: the node's result ``shape`` from inputs of ``input_shapes``.

    Raises ShapeError if ``shape`` breaks the node's static shape, or if the op broadcast a
    dimension declared None (bound to 1) against another size: a None dimension is one
    size wherever it meets another, never broadcast (see ops.core.broadcast_shapes).
    """
    if not shape_matches(node.shape, shape):
        raise ShapeError(
            f"{node.op} (node #{node.index}) produced shape {shape}, but its static shape is {format_shape(node.shape)}"
        )
    if REGISTRY[node.op].elementwise:
        for k, u in enumerate(node.inputs):
            ushape = input_shapes[k]
            for axis in range(-len(ushape), 0):
                if u.shape[axis] is None and ushape[axis] != shape[axis]:
                    raise ShapeError(
                        f"{node.op} (node #{node.index}): input {k} has shape {ushape} and was broadcast to "
                        f"{shape}, but its declared dimension {axis} is None; a None dimension never "
                        "broadcasts: declare it as 1 to broadcast it"
                    )
    elif len(node.inputs) > 1 and _broadcast_one(node, input_shapes):
        listed = ", ".join(str(tuple(s)) for s in input_shapes)
        raise ShapeError(
            f"{node.op} (node #{node.index}): the values reaching it have shapes {listed}, and a dimension declared "
            "None, bound to 1, was broadcast against another size; a None dimension never broadcasts: declare it "
            "as 1 to broadcast it"
        )


# A size no bound value has: a dimension bound to 1 and set to it no longer broadcasts, so
# the op's static shape rule tells a broadcast 1 from a 1 that meets another 1.
_PROBE = 1_000_003


def _fits(node: Node, shapes: Sequence[tuple], marks: set[tuple[int, int]]) -> tuple | None:
    """The op's static shape of inputs ``shapes`` with the dimensions ``marks`` (input, axis)
    set to the probe size; None if the op refuses them."""
    probed = [tuple(_PROBE if (k, a) in marks else d for a, d in enumerate(s)) for k, s in enumerate(shapes)]
    try:
        return REGISTRY[node.op].shape(*probed, **dict(node._attrs))
    except ShapeError:
        return None


def _broadcast_one(node: Node, input_shapes: Sequence[tuple[int, ...]]) -> bool:
    """True if a non-elementwise op (matmul's stack, a solve's) broadcast a dimension declared
    None and bound to 1: the op accepts the shapes with the declared 1s made the probe size,
    and refuses them once the bound 1s are too (the refusal is conservative: when the
    declared 1s alone already break the shapes, nothing is refused)."""
    bound_ones = set()
    declared_ones = set()
    for k, u in enumerate(node.inputs):
        for a, d in enumerate(u.shape):
            if input_shapes[k][a] == 1:
                (bound_ones if d is None else declared_ones).add((k, a))
    if not bound_ones:
        return False
    try:
        return _fits(node, input_shapes, declared_ones) is not None and (
            _fits(node, input_shapes, declared_ones | bound_ones) is None
        )
    except Exception:  # a shape rule that cannot take the probe: no refusal from here
        return False


def broadcast_risk(node: Node) -> bool:
    """True if numpy could broadcast one of the node's unknown (None) dimensions at run time."""
    if REGISTRY[node.op].elementwise:
        ndim = max(len(u.shape) for u in node.inputs)
        for axis in range(-ndim, 0):
            dims = [u.shape[axis] for u in node.inputs if len(u.shape) >= -axis and u.shape[axis] != 1]
            if len(dims) > 1 and None in dims:
                return True
        return False
    if len(node.inputs) < 2 or all(None not in u.shape for u in node.inputs):
        return False
    # another op (matmul's stack): with every None dimension one size, could one of them be 1
    # and give the same result, but not another size (so another operand's size takes its place)?
    base = [tuple(_PROBE if d is None else d for d in u.shape) for u in node.inputs]
    try:
        out = REGISTRY[node.op].shape(*base, **dict(node._attrs))
        for k, u in enumerate(node.inputs):
            for a, d in enumerate(u.shape):
                if d is None:
                    one, other = list(base), list(base)
                    one[k] = base[k][:a] + (1,) + base[k][a + 1 :]
                    other[k] = base[k][:a] + (_PROBE + 2,) + base[k][a + 1 :]
                    if _fits(node, one, set()) == out and _fits(node, other, set()) is None:
                        return True
    except Exception:  # a shape rule that cannot take the probe: checked as it runs
        return True
    return False


def check_call(node: Node, value: Any, *inputs: Any) -> None:
    """The form generated code calls: ``check(value, *input_values)``."""
    check_node(node, value, inputs)


def bound_variables(node: Node, shapes: Mapping[Node, tuple[int, ...]]) -> str:
    """The variables ``node`` depends on that have a None dimension, with the shapes bound
    to them (``shapes``), as an error message names them; "" if there are none."""
    found = [v for v in ancestors([node]) if v.op == "variable" and None in v.shape and v in shapes]
    if not found:
        return ""
    listed = ", ".join(
        f"{v.name or f'#{v.index}'!r} of shape {format_shape(v.shape)} bound to {tuple(shapes[v])}" for v in found
    )
    return f"; it depends on the variable{'s' if len(found) > 1 else ''} {listed}"


def naming_variables(error: ShapeError, node: Node, shapes: Mapping[Node, tuple[int, ...]]) -> ShapeError:
    """``error`` with the variables behind ``node`` named (see ``bound_variables``); a node that
    runs a body passes on its body's error, which names the body's own parameters."""
    if node.regions:
        return error
    named = bound_variables(node, shapes)
    if not named or named in str(error):
        return error
    renamed = ShapeError(f"{error}{named}")
    renamed.__cause__ = error.__cause__
    return renamed


def _execute(steps: Sequence[Step], env: list, leaves: Sequence[Node]) -> None:
    with np.errstate(all="ignore"):
        for k, step in enumerate(steps):
            try:
                value = step.call(*(env[i] for i in step.args), **step.attrs)
            except Exception as exc:
                error = evaluation_error(step, [env[i] for i in step.args], exc)
                if isinstance(error, ShapeError):
                    error = naming_variables(error, step.node, _leaf_shapes(leaves, env))
                if error is exc:
                    raise
                raise error from exc
            if step.check:
                try:
                    check_node(step.node, value, [env[i] for i in step.args])
                except ShapeError as exc:
                    raise naming_variables(exc, step.node, _leaf_shapes(leaves, env)) from None
            env[len(env) - len(steps) + k] = value


def _leaf_shapes(leaves: Sequence[Node], env: list) -> dict[Node, tuple[int, ...]]:
    return {n: np.shape(env[i]) for i, n in enumerate(leaves)}


def evaluation_error(step: Step, values: Sequence[Any], exc: Exception) -> Exception:
    """The error to raise when a step's forward failed: a ShapeError naming the op and the
    sizes if the bound sizes do not fit together (two None dimensions that disagree), else
    the original error, annotated with the op and the node."""
    node = step.node
    shapes = [shape_of(v) for v in values]
    try:
        REGISTRY[node.op].shape(*shapes, **step.attrs)
    except ShapeError as shape_exc:
        listed = ", ".join(str(s) for s in shapes)
        return ShapeError(
            f"{node.op} (node #{node.index}): the values reaching it have shapes {listed}, which do not fit "
            f"together ({shape_exc}); check the sizes bound to dimensions declared None"
        )
    except Exception:
        pass
    if isinstance(exc, (ShapeError, LoopError)):  # a loop's error names the loop, as every backend raises it
        return exc
    if isinstance(exc, np.linalg.LinAlgError) and not isinstance(exc, SymdiffError):  # numpy's, not ours
        return LinAlgError(f"while evaluating {node.op} (node #{node.index}): {exc}")
    try:
        return type(exc)(f"while evaluating {node.op} (node #{node.index}): {exc}")
    except Exception:
        return exc


def finish(value: Any) -> Any:
    """A computed value as evaluate returns it: a numpy scalar for 0-d, a writable array otherwise."""
    if isinstance(value, tuple):  # a node with several outputs: each as evaluate returns it
        return tuple(finish(v) for v in value)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr[()]
    return arr if arr.flags.writeable else arr.copy()


class Plan:
    """The needed nodes of some outputs, in order, with their slots and lifetimes.

    ``function(op)`` gives the callable a step runs (``fn(*arrays, **attrs)``): the backend's,
    which its caller passes (the plan knows no backend). ``scalars=False``: every step runs its op's array function (a
    backend that traces, such as JAX, has no Python floats).

    Attributes
    ----------
    inputs, outputs : list of Node
    leaves : the constants and inputs, whose values the caller supplies (slots first)
    computed, steps : the nodes to compute, in order, and how each runs
    uses : how many steps (and outputs) read each value
    consumer : the last step's node reading each value
    last_use : the index (in ``steps``) of the step that reads a value last;
        ``len(steps)`` for an output, which lives to the end
    unbound : needed variables that are neither inputs nor constants
    """

    def __init__(
        self,
        outputs: Sequence[Node],
        inputs: Sequence[Node],
        function: Callable[[Op], Callable[..., Any]],
        scalars: bool = True,
    ):
        order = needed(outputs, set(inputs))
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.leaves = [n for n in order if not n.inputs or n in self.inputs]
        computed = [n for n in order if n.inputs and n not in self.inputs]
        slot = {n: i for i, n in enumerate(self.leaves)}
        for n in computed:
            slot[n] = len(slot)
        self.computed = computed
        read = wanted_outputs(computed, outputs)
        self.steps = [Step(n, slot, function, scalars, read.get(n)) for n in computed]
        self.out_slots = [slot[n] for n in outputs]
        self.unbound = unbound(order, set(inputs))
        self.uses, self.consumer = consumers(computed)
        self.last_use: dict[Node, int] = {}
        for k, n in enumerate(computed):
            for u in n.inputs:
                self.last_use[u] = k
        for n in outputs:
            self.last_use[n] = len(computed)

    def compiled_checks(self) -> list[Step]:
        """The steps whose result generated code must check: only where numpy could silently
        broadcast a None dimension (a wrong size elsewhere fails in numpy itself, and the
        interpreter, rerunning the call, names it)."""
        return [s for s in self.steps if s.check and broadcast_risk(s.node)]

    def run(self, values: Mapping[Node, Any], finished: bool = True) -> list[Any]:
        """Interpret the plan: ``values`` for the inputs (and any leaf to override).
        ``finished=False`` returns the values as the functions made them (dask arrays stay lazy)."""
        env: list[Any] = [values[n] if n in values else n.value for n in self.leaves]
        env.extend([None] * len(self.steps))
        _execute(self.steps, env, self.leaves)
        return [finish(env[i]) if finished else env[i] for i in self.out_slots]
