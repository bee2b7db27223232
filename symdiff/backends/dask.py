"""Dask: the evaluator's plan run with ``xp = dask.array``, so a graph bound to dask arrays
gives dask arrays: lazy, chunked as the data is, computed by whichever dask scheduler the
caller uses (threads, processes, dask.distributed). Nothing here calls ``.compute()``.

Each op runs as ``dask.array``'s function of its numpy name, or its forward written against
an array module with ``xp = dask.array``: reductions over the chunked (batch) axis become
dask's tree reductions, matrix products its blocked products. Ops whose forward is written
for numpy only (scipy's routines) or adds into places by index (``add.at``, which dask has
not) are refused by name before anything is built or computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dask.array as da

from symdiff.errors import BackendError
from symdiff.ops.core import Op, has_function, numpy_function

UNSUPPORTED: dict[str, str] = {
    "untake": "it adds into places by index (numpy's add.at), which dask arrays have not",
    "untake_along_axis": "it adds into places by index (numpy's add.at), which dask arrays have not",
    "arange": "its length is a value, and a dask graph's shapes are known before computing",
}


def unsupported(op: Op) -> str | None:
    """Why ``op`` cannot run on dask arrays (None: it can)."""
    if op.name in UNSUPPORTED:
        return UNSUPPORTED[op.name]
    if op.numpy is not None and "forward" in op.derived:
        return None if has_function(da, op.numpy) else f"dask.array has no {op.numpy}"
    if op.generic:
        return None
    return "its forward is written for numpy arrays only (" + op.unsupported.get("array_module", "numpy") + ")"


@functools.cache
def function(op: Op) -> Callable[..., Any]:
    """The callable that computes ``op`` on dask arrays: ``fn(*arrays, **attrs)``."""
    reason = unsupported(op)
    if reason is not None:
        raise BackendError(
            f"dask arrays were bound, but op {op.name!r} cannot run on dask arrays: {reason}; "
            "bind numpy arrays for this graph (or compute the dask arrays first)"
        )
    if op.numpy is not None and "forward" in op.derived:
        return numpy_function(da, op.numpy)
    return functools.partial(op.forward, da)


def support(op: Op) -> str:
    """How dask runs ``op``, for docs/ops.md's table."""
    reason = unsupported(op)
    if reason is not None:
        return f"none: {reason}"
    return f"`da.{op.numpy}`" if op.numpy is not None and "forward" in op.derived else "forward (xp = dask.array)"


def is_dask(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "dask"
