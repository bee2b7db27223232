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
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

from symdiff.backends import described, unsupported_error
from symdiff.backends.base import Compiled as _NumpyCompiled
from symdiff.errors import BackendError, ShapeError
from symdiff.graph import Node
from symdiff.ops.core import Op, has_function, numpy_function
from symdiff.ops.linalg import eigh_gaps_and_ties
from symdiff.plan import Plan, check_node, evaluation_error, naming_variables


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


# Ops whose forward is numpy-only (scipy's), computed here by JAX's own functions.
OVERRIDES: dict[str, Callable[..., Any]] = {
    "solve_triangular": _solve_triangular,
    "cho_solve": _cho_solve,
    "expm": lambda a: jax.scipy.linalg.expm(a),
    "eigh_gaps": _eigh_gaps,
}
UNSUPPORTED: dict[str, str] = {
    "arange": "its length is a value, and jit traces shapes, not values (give arange a number)",
}


def unsupported(op: Op) -> str | None:
    """Why this backend cannot run ``op`` (None: it can)."""
    if op.name in UNSUPPORTED:
        return UNSUPPORTED[op.name]
    if op.name in OVERRIDES or op.generic or op.sparsity == "body":  # a body runs each of its ops as here
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
        otherwise=f"`jnp.{op.numpy}`" if op.numpy is not None and "forward" in op.derived else "forward (xp = jnp)",
    )


@functools.cache
def function(op: Op) -> Callable[..., Any]:
    """The callable that computes ``op`` on JAX arrays: ``fn(*arrays, **attrs)``."""
    reason = unsupported(op)
    if reason is not None:
        raise unsupported_error("jax", op.name, reason)
    if op.name in OVERRIDES:
        return OVERRIDES[op.name]
    if op.numpy is not None and "forward" in op.derived:
        return numpy_function(jnp, op.numpy)
    return functools.partial(op.forward, jnp)


def _wide(node: Node) -> bool:
    return node.dtype.itemsize == 8 and node.dtype.kind in "fiu"


def trace_function(plan: Plan, single: bool) -> Callable[..., Any]:
    """The plan as a plain function of JAX arrays (one per input), for jit, vmap or sharding."""
    steps, leaves, inputs = plan.steps, plan.leaves, plan.inputs
    position = {n: k for k, n in enumerate(inputs)}
    # constants become JAX arrays while tracing: numpy arrays indexed by traced values fail
    constants = [(k, n.value) for k, n in enumerate(leaves) if n not in position]
    input_slots = [(k, position[n]) for k, n in enumerate(leaves) if n in position]
    out_slots = plan.out_slots
    size = len(leaves) + len(steps)

    def jax_function(*args: Any) -> Any:
        env: list[Any] = [None] * size
        for k, value in constants:
            env[k] = jnp.asarray(value)
        for k, i in input_slots:
            env[k] = args[i]
        base = len(leaves)
        for k, step in enumerate(steps):
            values = [env[i] for i in step.args]
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

    jax_function.__name__ = "symdiff_jax_function"
    return jax_function


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
        self._jitted = jax.jit(traced)
        self._x64 = any(_wide(n) for n in [*plan.leaves, *plan.computed])
        # float64 is what 32-bit mode would silently lose; int64 indices and counts fit in int32
        float64 = any(n.dtype == np.float64 for n in [*plan.leaves, *plan.computed])
        self.jax_function = in_x64(traced) if float64 else traced
        self.source = None

    def _run(self, values: list[Any]) -> Any:
        if self._x64:
            with jax.enable_x64(True):
                return self._jitted(*values)
        return self._jitted(*values)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        values = self._values(args, kwargs)
        values = [v if not isinstance(v, np.ndarray) or v.ndim else v[()] for v in values]
        return self._run(values)
