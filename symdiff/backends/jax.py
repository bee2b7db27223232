"""The JAX backend: the plan's steps traced once into a function of JAX arrays, run under
``jax.jit`` (XLA: CPU, GPU or TPU, whichever JAX runs on).

Each op runs as ``jax.numpy``'s function of its numpy name, or its forward written against
an array module with ``xp = jax.numpy``; ``OVERRIDES`` holds the few that need JAX's own
form (scipy's solvers, which JAX has in ``jax.scipy``). The plan's Python loop runs while
tracing only: the jitted function is XLA code with no interpreter in it.

Float64: JAX computes in 32 bits unless 64-bit mode is on. A compiled function whose graph
holds 64-bit values runs its jitted code inside ``jax.enable_x64(True)``, a context that
ends with the call: the user's global JAX configuration is never changed. ``f.jax_function``
is the plain function for the user's own ``jax.jit``, ``jax.vmap`` or sharding; for a graph
of float64 values it computes in 64 bits or refuses (``in_x64``): called on numpy values it
enables 64-bit mode itself; under a transform in 32-bit mode (its arguments already
float32) it raises BackendError saying to wrap the transform in ``jax.enable_x64(True)``
or set ``JAX_ENABLE_X64=1``.

Loops: a ``scan`` runs as ``lax.scan`` (a counted one, a while_loop's reverse, as a
``lax.fori_loop`` to its trip count) and a ``while_loop`` as ``lax.while_loop``, each body
traced once, so the XLA program does not grow with the number of steps. A while_loop past its
``max_steps`` (or a counted scan's trip count outside 0..length) cannot raise inside jitted code:
the compiled function raises the LoopError ``sd.evaluate`` raises after the call;
``f.jax_function`` raises it when called on values and, traced by the user's own transform,
returns nan for its float outputs instead.

Indices: XLA clamps a gather's index out of range and drops a scatter's. The ops that index by
values held in nodes (getitem, take, take_along_axis and their adjoints) check them, one min
and one max per index array (constant indices while tracing, at no run-time cost), reported the
same way: the compiled function raises the numpy backend's IndexError for the same values.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from jax import lax

from symdiff.backends import described, unsupported_error
from symdiff.backends.base import Compiled as _NumpyCompiled
from symdiff.backends.numpy import function as numpy_backend
from symdiff.errors import BackendError, ShapeError
from symdiff.graph import Node
from symdiff.loops import bad_count, carry_changed, scan_call, too_many_steps
from symdiff.ops.core import REGISTRY, Op, has_function, numpy_function
from symdiff.ops.linalg import eigh_gaps_and_ties
from symdiff.plan import Plan, Step, check_node, evaluation_error, naming_variables


def _one_stack(a, b):
    """a and b (a vector as one column) broadcast to one stack of matrices, as numpy's solvers
    read them (jax.scipy reads a b with fewer axes than a as a batch of vectors)."""
    vector = b.ndim == 1
    b = b[..., None] if vector else b
    stack = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return jnp.broadcast_to(a, stack + a.shape[-2:]), jnp.broadcast_to(b, stack + b.shape[-2:]), vector


def _solve_triangular(a, b, lower, trans, unit):
    a, b, vector = _one_stack(a, b)
    x = jax.scipy.linalg.solve_triangular(a, b, lower=lower, trans=int(trans), unit_diagonal=unit)
    return x[..., 0] if vector else x


def _cho_solve(c, b, lower):
    c, b, vector = _one_stack(c, b)
    x = jax.scipy.linalg.cho_solve((c, lower), b)
    return x[..., 0] if vector else x


def _eigh_gaps(w):
    # a jitted function cannot raise where two eigenvalues are equal (the numpy backend
    # does): the eigenvector derivative is nan there, never a number
    gaps, tie = eigh_gaps_and_ties(jnp, w)
    return jnp.where(jnp.any(tie, axis=(-2, -1), keepdims=True), jnp.nan, gaps)


_ARANGE_TRACED = (
    "its length depends on the input values, and jit traces shapes, not values (give arange a number, "
    "or a length computed from shapes only, such as sd.count(x, axis))"
)


def _arange(stop, dtype_to):
    # a length computed from shapes only reaches here as a number (_checked_function computes it
    # while tracing); one read from input values is a tracer
    if isinstance(stop, jax.core.Tracer):
        raise unsupported_error("jax", "arange", _ARANGE_TRACED)
    return jnp.arange(int(stop), dtype=dtype_to)


# Ops whose forward is numpy-only (scipy's), computed here by JAX's own functions; arange's
# length must be known while tracing.
OVERRIDES: dict[str, Callable[..., Any]] = {
    "solve_triangular": _solve_triangular,
    "cho_solve": _cho_solve,
    "expm": lambda a: jax.scipy.linalg.expm(a),
    "eigh_gaps": _eigh_gaps,
    "arange": _arange,
}
UNSUPPORTED: dict[str, str] = {}


def unsupported(op: Op) -> str | None:
    """Why this backend cannot run ``op`` (None: it can)."""
    if op.name in UNSUPPORTED:
        return UNSUPPORTED[op.name]
    if op.name in OVERRIDES or op.generic or op.sparsity == "body" or op.name in RUNS:  # bodies run here
        return None
    if op.numpy is not None and has_function(jnp, op.numpy):
        return None
    return "its forward is written for numpy arrays only"


def support(op: Op) -> str:
    """How this backend runs ``op``, for docs/ops.md's table."""
    return described(
        unsupported(op),
        (op.name in OVERRIDES, "override"),
        (op.sparsity == "body", "its body, traced"),
        (op.name == "scan", "`lax.scan` of its body, traced once (a counted scan: `lax.fori_loop`)"),
        (op.name == "while_loop", "`lax.while_loop` of its body, traced once"),
        otherwise=f"`jnp.{op.numpy}`" if op.numpy is not None and "forward" in op.derived else "forward (xp = jnp)",
    )


@functools.cache
def function(op: Op) -> Callable[..., Any]:
    """The callable that computes ``op`` on JAX arrays: ``fn(*arrays, **attrs)``."""
    reason = unsupported(op)
    if reason is not None:
        raise unsupported_error("jax", op.name, reason)
    if op.name in OVERRIDES:
        fn = OVERRIDES[op.name]
    elif op.numpy is not None and "forward" in op.derived:
        fn = numpy_function(jnp, op.numpy)
    else:
        fn = functools.partial(op.forward, jnp)
    return _bounded(op.name, fn) if op.name in _INDEXING else fn


# -- index bounds ----------------------------------------------------------------------------------
# XLA clamps a gather's out-of-range index and drops a scatter's: the ops indexing by values held in
# nodes check them (one min and one max per index array), a failure reported as a check's code, the
# compiled function then raising the numpy backend's IndexError for the same values.
_INDEXING = frozenset("getitem unindex take untake take_along_axis untake_along_axis".split())


def _indexed(name: str, args: tuple, attrs: dict[str, Any]) -> list[tuple[Any, int, int]]:
    """(index values, the axis they index, its size) of each index of an indexing op's call: its
    index nodes', and a getitem's integers and integer arrays (on an axis declared None they were
    not checked when the graph was built)."""
    if name in ("getitem", "unindex"):  # (x, *index nodes) and (g, ref, *index nodes)
        first = 1 if name == "getitem" else 2
        shape, found, axis = np.shape(args[first - 1]), [], 0
        for kind, *rest in attrs["index"].key:
            if kind in "xia":
                found.append((args[first + rest[0]] if kind == "x" else np.asarray(rest[0]), axis, shape[axis]))
            axis += kind != "n"
        return found
    into = 1 if name.startswith("un") else 0  # take*(x, indices), untake_along_axis(g, ref, indices)
    shape = np.shape(args[into])
    axis = attrs["axis"] % len(shape)
    return [(args[into + 1], axis, shape[axis])]


def _bounded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` of the indexing op ``name``, its index nodes' values checked against their axes."""

    def run(*args: Any, **attrs: Any) -> Any:
        for indices, axis, size in _indexed(name, args, attrs):
            if np.size(indices) == 0:
                continue
            # compared as int64 (int32 in 32-bit mode, where no axis is longer): -size in the
            # index's own dtype would wrap in an unsigned or narrow one (uint8: -5 is 251)
            if isinstance(indices, jax.core.Tracer):
                wide = jax.dtypes.canonicalize_dtype(np.int64)
                low, high = jnp.min(indices).astype(wide), jnp.max(indices).astype(wide)
            else:  # a constant: checked while tracing, nothing at run time
                low, high = int(np.min(indices)), int(np.max(indices))
                if -size <= low and high < size:
                    continue
            error = functools.partial(_out_of_bounds, name, axis, size)
            _check((low < -size) | (high >= size), error, jnp.where(low < -size, low, high))
        return fn(*args, **attrs)

    return run


def _out_of_bounds(name: str, axis: int, size: int, index: Any) -> IndexError:
    return IndexError(f"while evaluating {name}: index {index} is out of bounds for axis {axis} with size {size}")


# -- loops: lax.scan, lax.fori_loop and lax.while_loop -------------------------------------------
# A loop's body runs once while JAX traces it (``bodies[k]``: the body's own plan, its steps these
# functions), so the XLA program holds the body once, whatever the number of steps.
#
# A check that fails at run time (a while_loop past its max_steps, a trip count out of range)
# cannot raise inside jit: it becomes a code, two integers (0: none failed, else 1 + its message's
# position in _MESSAGES; then a value the message shows, such as the trip count), collected while
# tracing by the innermost loop (or the traced plan) around it, carried out of the loops and
# returned beside the outputs; the compiled function raises its error (a LoopError; an IndexError:
# _bounded) after the call.
_MESSAGES: list[tuple[type[Exception], str]] = []
_LOCK = threading.Lock()
_DETAIL = "\x00detail\x00"  # where a message shows its code's value


class _Collector(threading.local):
    def __init__(self) -> None:
        self.stack: list[list[Any]] = []


_COLLECTED = _Collector()


@contextlib.contextmanager
def _collecting() -> Any:
    """The codes of the checks traced inside the block (a list, filled as they are traced)."""
    found: list[Any] = []
    _COLLECTED.stack.append(found)
    try:
        yield found
    finally:
        _COLLECTED.stack.pop()


def _passed() -> Any:
    """The code of no failed check (int64 in 64-bit mode, else int32, as JAX's integers are)."""
    return jnp.zeros(2, jax.dtypes.canonicalize_dtype(np.int64))


def _check(failed: Any, error: Exception | Callable[[Any], Exception], detail: Any = None) -> None:
    """Report ``error`` when ``failed`` (a boolean, traced or not) holds, as its code; ``error``
    may be a function of ``detail`` (an integer, traced or not) making the error, whose message
    then shows ``detail``'s value."""
    error = error if detail is None else error(_DETAIL)
    message = (type(error), str(error))
    with _LOCK:
        if message not in _MESSAGES:
            _MESSAGES.append(message)
        number = _MESSAGES.index(message) + 1
    passed = _passed()
    code = jnp.stack([jnp.asarray(number, passed.dtype), jnp.asarray(0 if detail is None else detail, passed.dtype)])
    _report(jnp.where(failed, code, passed))


def _report(code: Any) -> None:
    """Pass a check's code (or a loop's, of the checks inside its body) to the loop or plan
    around it; outside a traced plan, raise now if it failed."""
    if _COLLECTED.stack:
        _COLLECTED.stack[-1].append(code)
    else:
        _raise_failed(code)


def _either(a: Any, b: Any) -> Any:
    """The code ``a`` if it failed, else ``b``."""
    return jnp.where(a[0] != 0, a, b)


def _first(codes: list[Any]) -> Any:
    """One code for several (the first that failed), or None for none."""
    return functools.reduce(_either, codes) if codes else None


def _raise_failed(code: Any, plan: Plan | None = None, values: Any = None) -> None:
    """Raise the error of a failed check's code (a concrete value); nothing for none or None. An
    index out of bounds raises the numpy backend's IndexError for ``plan`` on ``values``, which
    names the node."""
    if code is not None and int(code[0]):
        kind, message = _MESSAGES[int(code[0]) - 1]
        if kind is IndexError and plan is not None:
            Plan(plan.outputs, plan.inputs, numpy_backend).run(dict(zip(plan.inputs, map(np.asarray, values))))
        raise kind(message.replace(_DETAIL, str(int(code[1]))))


def _stepper(body: Callable[..., Any], nc: int, init: list[Any], caps: tuple, name: str) -> Callable[..., Any]:
    """One step of a body: (carries, xs) -> (new carries of the carries' dtypes, the other
    outputs, the code of the checks inside it or None). A new carry of another shape (a None
    dimension the body changes) raises the interpreter's ShapeError while tracing, where JAX
    would raise a TypeError."""

    def step(c: Any, x: Any) -> tuple:
        with _collecting() as codes:
            out = body(*c, *x, *caps)
        out = out if isinstance(out, tuple) else (out,)
        for j, (o, v) in enumerate(zip(out[:nc], c)):
            if jnp.shape(o) != jnp.shape(v):
                raise carry_changed(name, j, jnp.shape(v), jnp.shape(o))
        new = tuple(jnp.asarray(o, dtype=v.dtype) for o, v in zip(out[:nc], init))
        return new, tuple(out[nc:]), _first(codes)

    return step


def _zeros(result: tuple, item: tuple | None = None) -> Any:
    """Zeros of a stacked output: its static length, then the item's shape (a None dimension 0,
    as when no step ran)."""
    shape, dtype = result
    item = tuple(0 if d is None else d for d in shape[1:]) if item is None else tuple(item)
    return jnp.zeros((shape[0], *item), dtype=dtype)


def _put(buffer: Any, value: Any, index: Any, when: Any = None) -> Any:
    """``buffer`` with ``value`` at ``index`` along axis 0 (only ``when`` it holds, if given)."""
    if when is not None:
        value = jnp.where(when, value, lax.dynamic_index_in_dim(buffer, index, keepdims=False))
    return lax.dynamic_update_index_in_dim(buffer, jnp.asarray(value, buffer.dtype), index, 0)


def _scan(bodies: tuple, *args: Any, wanted: frozenset[int] | None = None, results: tuple, **attrs: Any) -> tuple:
    """A scan node as ``lax.scan``: the values ``loops.run_scan`` computes, the body traced once.

    Stored carries are extra ys of the scan (every step's) or, checkpointed (the carries of some
    steps), a buffer carried through the loop; a counted scan (its trip count n a traced value) is a
    ``fori_loop`` to n writing its ys and stored carries into buffers of the full length, so it
    runs n steps and leaves zeros where the steps that did not run would write. A count outside
    0..length is the interpreter's LoopError, reported after the call."""
    call = scan_call(args, wanted=wanted, **attrs)
    nc, ny, length, reverse, counted = (attrs[k] for k in ("carries", "ys", "length", "reverse", "counted"))
    name = attrs.get("name", "scan")
    init = [jnp.asarray(a) for a in call.init]
    seqs = tuple(jnp.asarray(s) for s in call.seqs)
    want_ys, store, kept = call.want_ys, call.store, call.kept
    stored_results = results[nc + ny :]
    step = _stepper(bodies[0], nc, init, call.caps, name)
    if counted:
        count = jnp.asarray(call.count)
        _check((count < 0) | (count > length), lambda n: bad_count(name, n, length), count)
    if length == 0:
        ys_out = [_zeros(r) for r in results[nc : nc + ny]] if want_ys else [None] * ny
        stored = [_zeros(r, jnp.shape(v)) for r, v in zip(stored_results, init)] if store else [None] * nc
        return tuple(init) + tuple(ys_out) + tuple(stored)
    if not counted and (kept is None or not store):

        def scan_step(c: tuple, x: tuple) -> tuple:
            new, y, code = step(c, x)
            return new, (y if want_ys else (), c if store else (), code)

        final, (ys_out, stored, codes) = lax.scan(scan_step, tuple(init), seqs, length=length, reverse=reverse)
        if codes is not None:  # one code per step: the first that failed
            _report(codes[jnp.argmax(codes[:, 0] != 0)])
        return tuple(final) + (tuple(ys_out) if want_ys else (None,) * ny) + (tuple(stored) if store else (None,) * nc)
    # a count out of range is reported above: the loop runs within the buffers
    steps = jnp.clip(count, 0, length).astype(jnp.int32) if counted else length
    # the ys' shapes: the node's static ones, or (a dimension known only now) the body's, traced
    y_types = [(r[0][1:], r[1]) for r in results[nc : nc + ny]]
    if want_ys and any(None in shape for shape, _ in y_types):
        probe = jax.eval_shape(lambda c, x: step(c, x)[1], tuple(init), tuple(s[0] for s in seqs))
        y_types = [(p.shape, p.dtype) for p in probe]
    y_bufs = tuple(jnp.zeros((length, *shape), dtype) for shape, dtype in y_types) if want_ys else ()
    s_bufs = tuple(jnp.zeros((r[0][0], *jnp.shape(v)), v.dtype) for r, v in zip(stored_results, init)) if store else ()
    if kept is not None:  # each position's slot in the stored carries, -1 for one not stored
        slots = np.full(length, -1, np.int32)
        slots[list(kept)] = np.arange(len(kept), dtype=np.int32)

    def fori_step(i: Any, state: tuple) -> tuple:
        code, c, y_bufs, s_bufs = state
        t = steps - 1 - i if reverse else i
        if store:
            at, when = (
                (t, None) if kept is None else (jnp.maximum(jnp.asarray(slots)[i], 0), jnp.asarray(slots)[i] >= 0)
            )
            s_bufs = tuple(_put(b, v, at, when) for b, v in zip(s_bufs, c))
        new, y, inner = step(c, tuple(lax.dynamic_index_in_dim(s, t, keepdims=False) for s in seqs))
        if want_ys:
            y_bufs = tuple(_put(b, v, t) for b, v in zip(y_bufs, y))
        return (code if inner is None else _either(code, inner)), new, y_bufs, s_bufs

    code, final, y_bufs, s_bufs = lax.fori_loop(0, steps, fori_step, (_passed(), tuple(init), y_bufs, s_bufs))
    _report(code)
    return tuple(final) + (y_bufs if want_ys else (None,) * ny) + (s_bufs if store else (None,) * nc)


def _while(bodies: tuple, *args: Any, wanted: frozenset[int] | None = None, results: tuple, **attrs: Any) -> tuple:
    """A while_loop node as ``lax.while_loop``: the values ``loops.run_while`` computes. With
    ``max_steps``, a step counter and buffers of ``max_steps`` carries ride in the loop's state,
    which stops after ``max_steps`` steps; a condition that still holds then is the LoopError
    the interpreter raises, reported after the call."""
    cond, body = bodies
    nc, conds, max_steps, name = attrs["carries"], attrs["conds"], attrs["max_steps"], attrs.get("name", "while_loop")
    init = [jnp.asarray(a) for a in args[:nc]]
    ccaps, bcaps = args[nc : nc + conds], args[nc + conds :]
    store = max_steps is not None and max_steps > 0 and (wanted is None or any(k >= nc for k in wanted))
    step = _stepper(body, nc, init, bcaps, name)

    def holds(c: tuple) -> Any:
        with _collecting():  # a check inside the condition: the condition is rerun on the final carry below
            return cond(*c, *ccaps)

    def go_on(state: tuple) -> Any:
        n, _, c, _ = state
        flag = holds(c)
        return flag if max_steps is None else jnp.logical_and(flag, n < max_steps)

    def while_step(state: tuple) -> tuple:
        n, code, c, s_bufs = state
        if store:
            s_bufs = tuple(_put(b, v, n) for b, v in zip(s_bufs, c))
        new, _, inner = step(c, ())
        return n + 1, (code if inner is None else _either(code, inner)), new, s_bufs

    s_bufs = tuple(jnp.zeros((max_steps, *jnp.shape(v)), v.dtype) for v in init) if store else ()
    n, code, final, s_bufs = lax.while_loop(go_on, while_step, (jnp.int32(0), _passed(), tuple(init), s_bufs))
    _report(code)
    if max_steps is None:
        return tuple(final)
    _check(jnp.logical_and(n >= max_steps, cond(*final, *ccaps)), too_many_steps(name, max_steps))
    if not store:
        stored = (None,) * nc if max_steps else tuple(_zeros(r, jnp.shape(v)) for r, v in zip(results[nc:], init))
    else:
        stored = s_bufs
    return tuple(final) + stored + (n.astype(results[-1][1]),)


# how a node with bodies runs here (symdiff.plan.Step); composite's own runs calls its body
RUNS: dict[str, Callable[..., Any]] = {"scan": _scan, "while_loop": _while}


def _runs(op: Op) -> Callable[..., Any] | None:
    """How a node of ``op`` runs its bodies here (None: as the op says)."""
    return RUNS.get(op.name)


function.runs = _runs  # read by symdiff.plan.Step


def _wide(node: Node) -> bool:
    """Whether the node holds a 64-bit value (of a node of several outputs, a loop's: any of them)."""
    dtypes = [node.dtype] if node.dtype is not None else [dtype for _, dtype in node.results or ()]
    return any(d is not None and d.itemsize == 8 and d.kind in "fiu" for d in dtypes)


def trace_function(plan: Plan, single: bool) -> Callable[..., Any]:
    """The plan as a plain function of JAX arrays (one per input), for jit, vmap or sharding.

    A check that fails at run time (a while_loop past its ``max_steps``) raises LoopError when
    the function runs on values; traced by a transform (``jax.jit``), where nothing can raise,
    it makes the float outputs nan."""
    checked = _checked_function(plan, single)

    def jax_function(*args: Any) -> Any:
        outs, code = checked(*args)
        if code is None:
            return outs
        try:
            _raise_failed(code, plan, args)
            return outs
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
            failed = code[0] != 0
            return jax.tree_util.tree_map(
                lambda v: jnp.where(failed, jnp.nan, v) if jnp.issubdtype(v.dtype, jnp.floating) else v, outs
            )

    jax_function.__name__ = "symdiff_jax_function"
    return jax_function


def _checked_function(plan: Plan, single: bool) -> Callable[..., Any]:
    """The plan as a function of JAX arrays returning (its outputs, the code of the run-time
    checks traced in it, or None if there are none)."""
    steps, leaves, inputs = plan.steps, plan.leaves, plan.inputs
    position = {n: k for k, n in enumerate(inputs)}
    # constants become JAX arrays while tracing: numpy arrays indexed by traced values fail
    constants = [(k, n.value) for k, n in enumerate(leaves) if n not in position]
    input_slots = [(k, position[n]) for k, n in enumerate(leaves) if n in position]
    out_slots = plan.out_slots
    size = len(leaves) + len(steps)
    base = len(leaves)
    # an arange's length computed from shapes only (counts of axes, constants, and numpy's ops on
    # them) is a number while tracing: those slots are computed by numpy as well (``static``)
    wanted: set[int] = set()
    for k in reversed(range(len(steps))):
        if steps[k].node.op == "arange" or base + k in wanted:
            wanted.update(steps[k].args)

    def static_value(step: Step, values: list[Any], static: dict[int, Any]) -> Any:
        """The step's value as a numpy value, or None where it depends on input values."""
        op = REGISTRY[step.node.op]
        if op.name == "count":  # of its input's shape alone
            return op.forward(np, *values, **step.attrs)
        if step.node.regions or not all(i in static for i in step.args):
            return None
        try:
            return numpy_backend(op)(*(static[i] for i in step.args), **step.attrs)
        except Exception:  # computed by JAX below, which raises its own error
            return None

    def jax_function(*args: Any) -> Any:
        env: list[Any] = [None] * size
        static: dict[int, Any] = {}
        for k, value in constants:
            env[k] = jnp.asarray(value)
            if k in wanted:
                static[k] = value
        for k, i in input_slots:  # JAX arrays: a numpy one indexed by a traced value (a loop's) fails
            env[k] = jnp.asarray(args[i])
        for k, step in enumerate(steps):
            values = [env[i] for i in step.args]
            if base + k in wanted:
                found = static_value(step, values, static)
                if found is not None:
                    static[base + k] = found
            if step.node.op == "arange" and step.args[0] in static:
                values = [static[step.args[0]]]
            # shapes are static while tracing: the checks cost nothing at run time, and a
            # failure is the ShapeError the numpy backend raises, naming the variables
            try:
                value = step.fn(*values, **step.attrs)
                if step.check:
                    check_node(step.node, value, values)
            except Exception as exc:
                error = exc if isinstance(exc, ShapeError) else evaluation_error(step, values, exc)
                if not isinstance(error, ShapeError):
                    raise
                shapes = {n: np.shape(env[i]) for i, n in enumerate(leaves)}
                raise naming_variables(error, step.node, shapes) from (None if error is exc else exc)
            env[base + k] = value
        outs = [env[i] for i in out_slots]
        return outs[0] if single else outs

    def checked(*args: Any) -> tuple:
        with _collecting() as codes:
            outs = jax_function(*args)
        return outs, _first(codes)

    return checked


def in_x64(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a graph holding float64 values) computing in 64 bits wherever it is called.

    Called on numpy values with JAX in 32-bit mode, it runs inside ``jax.enable_x64(True)``.
    Given JAX arrays in 32-bit mode (a ``jax.vmap``, ``jax.jit`` or ``jax.grad`` of it, whose
    arguments JAX has already made 32-bit), it cannot: it raises BackendError saying how to
    enable 64-bit mode, rather than compute a float64 graph in float32.
    """

    @functools.wraps(fn)
    def jax_function(*args: Any) -> Any:
        if jax.config.read("jax_enable_x64"):
            return fn(*args)
        if any(isinstance(a, jax.Array) for a in args):
            raise BackendError(
                "f.jax_function computes a graph of float64 values, but JAX is in 32-bit mode, where "
                "jax.vmap, jax.jit and JAX arrays hold float32: its result would be float32. Run the transform "
                "and its call inside `with jax.enable_x64(True):`, or enable 64-bit mode for the process "
                "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1), or build the graph with "
                "float32 variables"
            )
        with jax.enable_x64(True):
            return fn(*args)

    return jax_function


class Compiled(_NumpyCompiled):
    """``sd.compile(..., backend="jax")``: the plan traced and jitted; returns JAX arrays."""

    backend = "jax"

    def _build(self, outputs: list[Node], inputs: list[Node]) -> None:
        self._plan = plan = Plan(outputs, inputs, function, scalars=False)
        self._check_bound(plan)
        traced = trace_function(plan, self._single)
        self._jitted = jax.jit(_checked_function(plan, self._single))
        self._x64 = any(_wide(n) for n in [*plan.leaves, *plan.computed])
        # float64 is what 32-bit mode would silently lose; int64 indices and counts fit in int32
        float64 = any(n.dtype == np.float64 for n in [*plan.leaves, *plan.computed])
        self.jax_function = in_x64(traced) if float64 else traced
        self.source = None

    def _run(self, values: list[Any]) -> Any:
        if self._x64:
            with jax.enable_x64(True):
                outs, code = self._jitted(*values)
        else:
            outs, code = self._jitted(*values)
        _raise_failed(code, self._plan, values)  # a check that failed inside jit (a while_loop past max_steps)
        return outs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        values = self._values(args, kwargs)
        values = [v if not isinstance(v, np.ndarray) or v.ndim else v[()] for v in values]
        return self._run(values)
