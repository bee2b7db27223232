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
    "untake": "it adds into places by index (numpy's add.at), which dask arrays have not",
    "untake_along_axis": "it adds into places by index (numpy's add.at), which dask arrays have not",
    "undiagonal": "dask assigns through one integer array at most",
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
    if op.sparsity == "body":  # the plan nests: each op of the body runs as here
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
    if kind == "body":
        return "forward (xp = dask.array) of each op of its body"
    return f"`da.{op.numpy}`" if op.numpy is not None and "forward" in op.derived else "forward (xp = dask.array)"


def is_dask(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "dask"
