"""Dask: the evaluator's plan run on dask arrays, so a graph bound to dask arrays gives dask
arrays: lazy, chunked as the data is, computed by whichever dask scheduler the caller uses
(threads, processes, dask.distributed). Nothing here calls ``.compute()``.

Each op runs in one of four ways (``how``; docs/ops.md's table shows which):

- ``dask.array``'s function of its numpy name, or its forward written against an array
  module with ``xp = dask.array``: reductions over the chunked (batch) axis become dask's
  tree reductions, matrix products its blocked products;
- an elementwise op dask has not (scipy.special's erf, a numpy-only forward): numpy's
  forward on each chunk;
- an op dask's own functions get wrong or cannot run (eigh, slogdet, stacks of matrices,
  scatters that add by index): numpy's forward as one task, on the whole array;
- refused by name (``sd.BackendError``) before anything is built or computed: ``arange``,
  whose length is a value.

Whatever the op, a step none of whose inputs is a dask array (constants, numpy-bound
variables) is computed by numpy, exactly as ``sd.evaluate`` computes it without dask; an
empty dask array is an empty numpy array (it holds nothing to compute); and where dask
itself says it cannot (``NotImplementedError``: indexing by several integer arrays, a
reshape that regroups chunks unevenly) the step runs as one task.

Loops run their bodies step by step on dask arrays (each op of the body as above). A ``scan``
stays lazy: its graph holds the body's tasks once per step, and its ys and stored carries are
``da.stack``s of the steps' values. A ``while_loop`` cannot stay lazy, since its condition's
value decides whether another step runs: each step's carry is computed (``dask.persist``,
chunked as before) for its condition to read, so a while_loop (and the count of a loop its
reverse mode replays) is the one place where evaluating computes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.array.core import elemwise

from symdiff.backends import numpy as numpy_backend
from symdiff.errors import BackendError
from symdiff.loops import bad_count, carry_changed, run_scan, run_while, scan_call, too_many_steps
from symdiff.ops.core import Op, has_function, numpy_function

UNSUPPORTED: dict[str, str] = {
    "arange": "its length is a value, and a dask graph's shapes are known before computing",
}
# Linear algebra dask runs as numpy does, stacks included; every other linalg op (dask.array.linalg
# takes single matrices, and lacks eigh, slogdet, det, ...) runs as one task.
DASK_LINALG = frozenset({"matmul", "tensordot", "outer", "einsum", "eigh_gaps"})
# Ops whose dask.array function is missing or differs from numpy's: numpy's forward as one task.
ONE_TASK: dict[str, str] = {
    "cholesky": "dask's cholesky returns the upper factor, of single matrices",
    "logdet": "dask.array.linalg has no slogdet",
    "slogdet": "dask.array.linalg has no slogdet",
    "eigh": "dask.array.linalg has no eigh",
    "unindex": "it adds into places by index (numpy's add.at), which dask arrays have not",
    "untake_along_axis": "it adds into places by index (numpy's add.at), which dask arrays have not",
    "undiagonal": "dask assigns through one integer array at most",
}


def _take(x: Any, indices: Any, axis: int) -> Any:
    """numpy's take on a dask array: dask's takes one-dimensional indices, so an index of 0 or
    several dimensions takes its flattened list and reshapes (the same elements in the same places)."""
    axis %= x.ndim
    shape = x.shape[:axis] + tuple(np.shape(indices)) + x.shape[axis + 1 :]
    if 0 in shape[axis : axis + np.ndim(indices)]:  # dask's take of no indices fails; the result has no elements
        return da.zeros(shape, dtype=x.dtype)
    if np.ndim(indices) == 1:
        return da.take(x, indices, axis=axis)
    return da.take(x, indices.reshape(-1), axis=axis).reshape(shape)


# Ops whose dask.array function takes less than numpy's: a dask forward of their own.
DASK_FORWARD: dict[str, tuple[Callable[..., Any], str]] = {
    "take": (_take, "`da.take` of the flattened indices where they have several dimensions"),
}
# Elementwise ops whose forward dask cannot run: numpy's forward on each chunk.
CHUNKWISE: dict[str, str] = {
    "erf": "dask has no scipy.special",
    "erfc": "dask has no scipy.special",
}


def how(op: Op) -> tuple[str, str]:
    """How dask runs ``op``: ``("dask", "")``, ``("chunks", why)``, ``("task", why)``,
    ``("refused", why)`` or ``("body", "")`` (a node that runs its body runs each op of it)."""
    if op.name in UNSUPPORTED:
        return "refused", UNSUPPORTED[op.name]
    if op.sparsity == "body" or op.name in RUNS:  # the plan nests: each op of the body runs as here
        return "body", ""
    if op.name in ONE_TASK:
        return "task", ONE_TASK[op.name]
    if op.name in CHUNKWISE:
        return "chunks", CHUNKWISE[op.name]
    if op.numpy is not None and not has_function(da, op.numpy):
        why = f"dask.array has no {op.numpy}"
    elif not op.generic:
        why = "its forward is written for numpy arrays only (" + op.unsupported.get("array_module", "numpy") + ")"
    elif op.kind == "linalg" and op.name not in DASK_LINALG:
        why = "dask.array.linalg takes single matrices, not stacks"
    else:
        return "dask", ""
    return ("chunks", why) if op.elementwise else ("task", why)


def unsupported(op: Op) -> str | None:
    """Why ``op`` cannot run on dask arrays (None: it can)."""
    kind, why = how(op)
    return why if kind == "refused" else None


def _one_task(op: Op, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (numpy's) on the whole arrays as one dask task, its shape and dtype the op's."""

    def run(*args: Any, **attrs: Any) -> Any:
        shapes = [np.shape(a) for a in args]
        if any(d != d for s in shapes for d in s):  # nan: a size dask knows only when computing
            raise BackendError(
                f"op {op.name!r} runs on dask arrays as one task, which needs every size known; "
                f"the inputs have shapes {shapes} (call compute_chunk_sizes() on them first)"
            )
        shape = op.shape(*shapes, **attrs)
        dtype = op.dtype(*(np.result_type(a) for a in args), **attrs)
        if op.outputs:  # one task for all outputs (eigh's one LAPACK call), an array of each
            task = dask.delayed(lambda *values: tuple(np.asarray(v) for v in fn(*values, **attrs)), nout=len(shape))
            return tuple(da.from_delayed(t, s, dtype=np.dtype(d)) for t, s, d in zip(task(*args), shape, dtype))
        task = dask.delayed(lambda *values: np.asarray(fn(*values, **attrs)))(*args)
        return da.from_delayed(task, shape, dtype=np.dtype(dtype))

    return run


def _chunkwise(op: Op, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (numpy's, elementwise) on each chunk, inputs broadcast and aligned by dask."""

    def run(*args: Any, **attrs: Any) -> Any:
        dtype = np.dtype(op.dtype(*(np.result_type(a) for a in args), **attrs))
        return elemwise(functools.partial(fn, **attrs), *args, dtype=dtype)

    return run


def _as_dask(value: Any) -> Any:
    """A numpy float or boolean array meeting dask arrays, as a dask array (dask's functions
    take their main operand as one); integer arrays (indices) stay numpy, as dask takes them."""
    if isinstance(value, np.ndarray) and value.ndim and value.dtype.kind in "fb":
        return da.from_array(value, chunks=-1)
    return value


@functools.cache
def function(op: Op) -> Callable[..., Any]:
    """The callable that computes ``op`` where dask arrays are bound: ``fn(*arrays, **attrs)``.

    Raises BackendError, naming the op, for an op dask cannot run (before anything runs).
    """
    kind, why = how(op)
    if kind == "refused":
        raise BackendError(
            f"dask arrays were bound, but op {op.name!r} cannot run on dask arrays: {why}; "
            "bind numpy arrays for this graph (or compute the dask arrays first)"
        )
    numpy_fn = numpy_backend.function(op)
    task = _one_task(op, numpy_fn)
    if kind == "task":
        lazy = task
    elif kind == "chunks":
        lazy = _chunkwise(op, numpy_fn)
    elif op.name in DASK_FORWARD:
        lazy = DASK_FORWARD[op.name][0]
    elif op.numpy is not None and "forward" in op.derived:
        lazy = numpy_function(da, op.numpy)
    else:
        lazy = functools.partial(op.forward, da)

    def run(*args: Any, **attrs: Any) -> Any:
        args = tuple(np.empty(a.shape, a.dtype) if is_dask(a) and a.size == 0 else a for a in args)
        if not any(is_dask(a) for a in args):
            return numpy_fn(*args, **attrs)  # numpy values: numpy's result, as without dask
        args = tuple(_as_dask(a) for a in args)
        try:
            return lazy(*args, **attrs)
        except NotImplementedError:  # dask's own word that it has no way (several index arrays)
            if lazy is task:
                raise
            return task(*args, **attrs)

    return run


def support(op: Op) -> str:
    """How dask runs ``op``, for docs/ops.md's table."""
    kind, why = how(op)
    if kind == "refused":
        return f"none: {why}"
    if kind == "chunks":
        return f"numpy's forward on each chunk: {why}"
    if kind == "task":
        return f"numpy's forward as one task: {why}"
    if kind == "body" and op.name in RUNS:
        return "forward (xp = dask.array) of each op of its body, once per step" + RUNS_HOW[op.name]
    if kind == "body":
        return "forward (xp = dask.array) of each op of its body"
    if op.name in DASK_FORWARD:
        return DASK_FORWARD[op.name][1]
    return f"`da.{op.numpy}`" if op.numpy is not None and "forward" in op.derived else "forward (xp = dask.array)"


def is_dask(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "dask"


# -- loops ------------------------------------------------------------------------------------
def _stacked(items: dict[int, Any], result: tuple, item_shape: tuple) -> Any:
    """The values of a stacked output, ``items[t]`` at index ``t`` and zeros where no step wrote."""
    shape, dtype = result
    if not items:
        return np.zeros((shape[0], *item_shape), dtype=dtype)
    zero = da.zeros(item_shape, dtype=dtype)
    return da.stack([da.asarray(items[t]).astype(dtype) if t in items else zero for t in range(shape[0])])


def _carried(name: str, before: list[Any], after: Any) -> list[Any]:
    """A step's new carries, checked to keep the shapes of those it started from (the
    interpreter's ShapeError); a size dask knows only when computing (nan) is not compared."""
    for j, (b, a) in enumerate(zip(before, after)):
        old, new = np.shape(b), np.shape(a)
        if len(old) != len(new) or any(p != q and p == p and q == q for p, q in zip(old, new)):
            raise carry_changed(name, j, old, new)
    return list(after)


def _scan(bodies: tuple, *args: Any, wanted: frozenset[int] | None = None, results: tuple, **attrs: Any) -> tuple:
    """A scan node on dask arrays: the body run once per step on them, lazily (numpy's loop,
    ``loops.run_scan``, where no input is a dask array)."""
    if not any(is_dask(a) for a in args):
        return run_scan(bodies, *args, wanted=wanted, results=results, **attrs)
    call = scan_call(args, wanted=wanted, **attrs)
    body, nc, ny, length, reverse = bodies[0], attrs["carries"], attrs["ys"], attrs["length"], attrs["reverse"]
    name = attrs.get("name", "scan")
    steps = length
    if call.count is not None:  # a counted scan replays a while_loop's steps, counted when that loop ran
        steps = int(np.asarray(call.count))
        if not 0 <= steps <= length:
            raise bad_count(name, steps, length)
    c = list(call.init)
    ys_at: list[dict[int, Any]] = [{} for _ in range(ny)]
    stored_at: list[dict[int, Any]] = [{} for _ in range(nc)]
    y_shapes: list[tuple] = [tuple(0 if d is None else d for d in r[0][1:]) for r in results[nc : nc + ny]]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for position, t in enumerate(order):
        slot = call.slot(position, t) if call.store else None
        for j in range(nc if slot is not None else 0):
            stored_at[j][slot] = c[j]
        out = body(*c, *(s[t] for s in call.seqs), *call.caps)
        c = _carried(name, c, out[:nc])
        for k in range(ny if call.want_ys else 0):
            ys_at[k][t], y_shapes[k] = out[nc + k], np.shape(out[nc + k])
    found = [_stacked(ys_at[k], results[nc + k], y_shapes[k]) if call.want_ys else None for k in range(ny)]
    kept = [
        _stacked(stored_at[j], results[nc + ny + j], np.shape(call.init[j])) if call.store else None for j in range(nc)
    ]
    return tuple(c) + tuple(found) + tuple(kept)


def _while(bodies: tuple, *args: Any, wanted: frozenset[int] | None = None, results: tuple, **attrs: Any) -> tuple:
    """A while_loop node on dask arrays: each step's carry computed (persisted, in its chunks)
    for the condition to read (numpy's loop, ``loops.run_while``, where no input is a dask array)."""
    if not any(is_dask(a) for a in args):
        return run_while(bodies, *args, wanted=wanted, results=results, **attrs)
    cond, body = bodies
    nc, conds, max_steps, name = attrs["carries"], attrs["conds"], attrs["max_steps"], attrs.get("name", "while_loop")
    c = list(_persisted(args[:nc]))
    ccaps, bcaps = _persisted(args[nc : nc + conds]), _persisted(args[nc + conds :])
    store = max_steps is not None and (wanted is None or any(k >= nc for k in wanted))
    stored_at: list[dict[int, Any]] = [{} for _ in range(nc)]
    n = 0
    while bool(np.asarray(dask.compute(cond(*c, *ccaps))[0])):
        if max_steps is not None and n >= max_steps:
            raise too_many_steps(name, max_steps)
        for j in range(nc if store else 0):
            stored_at[j][n] = c[j]
        c = _persisted(_carried(name, c, body(*c, *bcaps)))
        n += 1
    if max_steps is None:
        return tuple(c)
    kept = [_stacked(stored_at[j], results[nc + j], np.shape(args[j])) if store else None for j in range(nc)]
    return tuple(c) + tuple(kept) + (np.int64(n),)


def _persisted(values: Any) -> list[Any]:
    """The values, dask arrays among them computed and kept in memory in their chunks."""
    values = list(values)
    lazy = [k for k, v in enumerate(values) if is_dask(v)]
    for k, v in zip(lazy, dask.persist(*(values[k] for k in lazy))):
        values[k] = v
    return values


# how a node with bodies runs on dask arrays (symdiff.plan.Step); composite's own runs calls its body
RUNS: dict[str, Callable[..., Any]] = {"scan": _scan, "while_loop": _while}
RUNS_HOW = {"scan": ", lazily", "while_loop": ", each step's carry computed for its condition to read"}


def _runs(op: Op) -> Callable[..., Any] | None:
    """How a node of ``op`` runs its bodies on dask arrays (None: as the op says)."""
    return RUNS.get(op.name)


function.runs = _runs  # read by symdiff.plan.Step
