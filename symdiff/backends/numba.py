"""The numba backend: the plan printed as one Python function that numba compiles to native
code, with the compiled machine code cached on disk.

Each step becomes one statement. The backend prints the **primitives** (symdiff.lower): an
elementwise op is numpy's ufunc of its name where numba has it, else its scalar expression
(symdiff.scalar, printed for numba) in a loop over the broadcast inputs; a float64 scalar
step is its scalar expression on floats (as in the numpy backend); the structural ops,
reductions, scans and dense linear-algebra kernels (numba's LAPACK one matrix at a time over
leading batch axes; ``expm`` as scipy.linalg.expm's algorithm, ``solve_triangular`` as
substitution loops) have a printer in ``PRINTERS``. Any other op runs as a call of its
**lowering**, its body printed in the node's place, down to primitives.
Chains of elementwise steps over one static shape are fused (symdiff.backends.fusion): one loop over the
elements computes each as a scalar, storing only the values read outside the loop, with
sums over all the elements accumulated in it. A node that owns a body (a composite's) calls
the body's own njit function, printed once (and fused the same way); a loop (``scan``,
``while_loop``: ``LOOPS``) is a native ``for`` or ``while`` in the function calling it once
per step, filling buffers made before the loop. An op with neither (a user's op declared
with a numpy forward alone) is refused by name when compiling (``unsupported`` says why;
docs/ops.md shows it): nothing falls back to the numpy backend silently.

Cache: the printed module is written to ``$SYMDIFF_CACHE_DIR`` (default
``~/.cache/symdiff/numba``) under a name made of its own hash, and compiled with numba's
``cache=True``, so the same graph compiled in another process loads the machine code
instead of compiling again. Array constants are arguments, not part of the code.

Arithmetic follows numpy's IEEE rules (``error_model="numpy"``: 1/0 is inf, log(0) is
-inf); results agree with the numpy backend to rounding (1e-12 relative in the tests).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import symdiff.scalar as sx
from symdiff.backends import described, unsupported_error
from symdiff.backends.base import Compiled as _NumpyCompiled
from symdiff.backends.base import check_value
from symdiff.backends.fusion import Group, fused
from symdiff.backends.numpy import function as numpy_function
from symdiff.errors import BackendError, LoopError, ShapeError
from symdiff.graph import Node, Region
from symdiff.loops import scan_call
from symdiff.lower import lowered
from symdiff.ops import REGISTRY
from symdiff.ops.core import Op
from symdiff.plan import Plan, Step, check_shapes, finish, wanted_outputs

# numpy ufuncs that numba compiles for arrays and scalars alike (numba's supported-numpy list)
UFUNCS = frozenset(
    "add subtract multiply true_divide negative power exp log sin cos tan tanh sqrt log1p expm1 abs sign "
    "arcsin arccos arctan sinh cosh arcsinh arccosh arctanh floor ceil arctan2 logaddexp hypot maximum minimum "
    "greater greater_equal less less_equal equal not_equal".split()
)


class Writer:
    """Statements of the function being printed, its extra arguments and helpers."""

    def __init__(self, outer: Writer | None = None) -> None:
        self.lines: list[str] = []
        self.constants: list[np.ndarray] = []  # passed as arguments after the inputs
        # name -> source, printed before the function; shared with the bodies' writers
        self.helpers: dict[str, str] = outer.helpers if outer is not None else {}
        # (body, the outputs printed) -> its function, printed once; None while it is printed
        self.bodies: dict[tuple[Region, tuple[int, ...]], Body | None] = outer.bodies if outer is not None else {}
        self.checks: list[tuple[str, Node]] = []  # (flag, node): returned after the outputs
        self.shaped: list[tuple[str, Node]] = []  # ((shape, *input shapes), node): returned last
        # the outputs the plan reads of each node with several (plan.wanted_outputs; None: all)
        self.wanted: dict[Node, frozenset[int] | None] = {}
        self._k = 0

    def name(self) -> str:
        """A fresh local name ``_uN``."""
        self._k += 1
        return f"_u{self._k}"

    def temp(self, expr: str) -> str:
        """A statement ``_uN = expr``; returns the name."""
        name = self.name()
        self.lines.append(f"    {name} = {expr}")
        return name

    def constant(self, value: np.ndarray) -> str:
        self.constants.append(np.ascontiguousarray(value))
        return f"_c{len(self.constants) - 1}"

    def helper(self, name: str, source: str) -> str:
        self.helpers.setdefault(name, source)
        return name


class Body:
    """A body printed as a function of its own (``@numba.njit``), as ``compiled`` is: it takes its
    parameters, then its array constants, and returns its outputs (those at ``kept``), then its
    checks' flags and shapes (a node calling it passes them on)."""

    def __init__(self, outer: Writer, region: Region, name: str, kept: tuple[int, ...]):
        w = Writer(outer)
        outs = _print(w, Plan([region.outputs[k] for k in kept], list(region.params), function))
        self.name, self.constants, self.outputs = name, w.constants, len(outs)
        self.checks, self.shaped = [node for _, node in w.checks], [node for _, node in w.shaped]
        w.helper(name, _function(name, len(region.params), w, outs))

    def call(self, w: Writer, args: list[str]) -> str:
        """The call of the function on ``args`` (the body's parameters), its constants passed on."""
        return f"{self.name}({', '.join([*args, *(w.constant(c) for c in self.constants)])})"

    def extras(self, result: str) -> tuple[list[tuple[str, Node]], list[tuple[str, Node]]]:
        """The checks' flags and the shapes in the tuple ``result`` a call returned, with their nodes."""
        k = self.outputs
        flags = [(f"{result}[{k + j}]", checked) for j, checked in enumerate(self.checks)]
        k += len(self.checks)
        return flags, [(f"{result}[{k + j}]", checked) for j, checked in enumerate(self.shaped)]


def _body(w: Writer, region: Region, kept: tuple[int, ...] | None = None) -> Body:
    """The function of ``region`` returning its outputs at ``kept`` (all: None), printed once."""
    kept = tuple(range(len(region.outputs))) if kept is None else kept
    body = w.bodies.get((region, kept))
    if body is None:
        name = f"_body{len(w.bodies)}_{region.name}"
        w.bodies[region, kept] = None  # the number taken before the bodies it calls take theirs
        body = w.bodies[region, kept] = Body(w, region, name, kept)
    return body


def _p_body(w: Writer, node: Node, a: list[str]) -> str:
    """A node that runs a body: a call of the body's function (printed once per body)."""
    return _call(w, node.regions[0], a)


def _p_lowered(w: Writer, node: Node, a: list[str]) -> str:
    """A node of an op that is not a primitive: its lowering (symdiff.lower) printed in place, its
    parameters the node's arguments (inline, not a function: numba compiles one function the
    fewer, and nothing is called per node)."""
    try:
        region = lowered(node)
    except ShapeError as exc:
        raise unsupported_error("numba", node.op, str(exc)) from None
    plan = Plan(list(region.outputs), list(region.params), function)
    names: dict[Node, str] = dict(zip(region.params, a))
    for n in plan.leaves:
        if n not in names:
            names[n] = _literal(n) or w.constant(n.value)
    shaped = {s.node for s in plan.compiled_checks()}
    for step in plan.steps:
        _emit(w, step, names, shaped, target=w.name())
    outs = [names[o] for o in region.outputs]
    return f"({', '.join(outs)},)" if region.several else outs[0]


def _call(w: Writer, region: Region, a: list[str]) -> str:
    body = _body(w, region)
    called = w.temp(body.call(w, a))
    flags, shapes = body.extras(called)
    w.checks += flags
    w.shaped += shapes
    return called if region.several else f"{called}[0]"


def _dtype(dtype: np.dtype) -> str:
    return "np.bool_" if dtype == np.bool_ else f"np.{dtype.name}"


def _no_step_shapes(checked: Node) -> str:
    """The value of a shape check (``(shape, *input shapes)``) that passes it, for a body that
    ran no step: the static shapes with each None dimension 0 (as on both sides)."""
    parts = [tuple(0 if d is None else d for d in m.shape) for m in (checked, *checked.inputs)]
    return repr(tuple(parts))


class _Loop:
    """A native loop calling body functions: the values carried from step to step, the lines of
    the loop (written out by ``close``, after whatever the printer put before the loop), and the
    checks of its bodies (flags and'ed over the steps, the shapes of the last step), returned
    as the function's own."""

    def __init__(self, w: Writer, init: list[str]):
        self.w = w
        self.carries = [w.temp(x) for x in init]
        self.lines: list[str] = []
        self.flags: dict[Node, str] = {}
        self.shapes: dict[Node, str] = {}

    def line(self, text: str, depth: int = 1) -> None:
        self.lines.append("    " * (depth + 1) + text)

    def run(self, body: Body, args: list[str]) -> str:
        """A line calling ``body`` on ``args``; its checks gathered. Returns the result's name."""
        w, result = self.w, self.w.name()
        self.line(f"{result} = {body.call(w, args)}")
        flags, shapes = body.extras(result)
        for flag, checked in flags:
            if checked not in self.flags:
                self.flags[checked] = w.temp("True")
            self.line(f"{self.flags[checked]} = {self.flags[checked]} and {flag}")
        for shape, checked in shapes:
            if checked not in self.shapes:
                self.shapes[checked] = w.temp(_no_step_shapes(checked))
            self.line(f"{self.shapes[checked]} = {shape}")
        return result

    def carry(self, result: str) -> None:
        for j, c in enumerate(self.carries):
            self.line(f"{c} = {result}[{j}]")

    def store(self, buffers: list[str], at: str, depth: int = 1) -> None:
        for buf, c in zip(buffers, self.carries):
            self.line(f"{buf}[{at}] = {c}", depth)

    def keep_shapes(self, node: Node, result: str, params: tuple[Node, ...]) -> None:
        """Lines stopping the loop, its flag False, when the step that made ``result`` changed the
        shape of a carry with a None dimension (static ones cannot change): the caller raises the
        interpreter's ShapeError (``loops.carry_changed``)."""
        changing = [j for j, c in enumerate(self.carries) if None in params[j].shape]
        if not changing:
            return
        ok = self.w.temp("True")
        self.w.checks.append((ok, node))
        same = " and ".join(f"{result}[{j}].shape == {self.carries[j]}.shape" for j in changing)
        self.line(f"if not ({same}):")
        self.line(f"{ok} = False", 2)
        self.line("break", 2)

    def close(self, header: str) -> None:
        self.w.lines += [f"    {header}", *self.lines]
        self.w.checks += [(flag, checked) for checked, flag in self.flags.items()]
        self.w.shaped += [(shape, checked) for checked, shape in self.shapes.items()]


def _stored(w: Writer, node: Node, at: int, init: list[str]) -> list[str]:
    """Zeros for the carries a loop stores (outputs ``at`` on): its static length, then each
    initial carry's shape."""
    buffers = []
    for j, x in enumerate(init):
        (length, *item), dtype = node.results[at + j]
        shape = f"({length},) + {x}.shape" if item else f"({length},)"
        buffers.append(w.temp(f"np.zeros({shape}, {_dtype(dtype)})"))
    return buffers


def _p_scan(w: Writer, node: Node, a: list[str]) -> str:
    """A scan (symdiff.loops): ``for`` over the steps calling the body's function; the ys
    stacked into buffers made before the loop, the carries each step started from stored only
    where the plan reads them, at the kept positions when checkpointed, and a step changing a
    carry's shape stopping the loop (as ``run_scan``, the interpreter's loop)."""
    at = node.attrs
    nc, ny, length = at["carries"], at["ys"], at["length"]
    region = node.regions[0]
    call = scan_call(a, **at, wanted=w.wanted.get(node))
    body = _body(w, region, tuple(range(nc + ny if call.want_ys else nc)))
    loop = _Loop(w, a[:nc])
    steps = str(length)
    if at["counted"]:  # a count out of range runs no step: the caller raises the interpreter's LoopError
        ok = w.temp(f"0 <= {a[-1]} <= {length}")
        w.checks.append((ok, node))
        steps = w.temp(f"{a[-1]} if {ok} else 0")
    ys = []
    for k in range(ny if call.want_ys else 0):
        shape, dtype = node.results[nc + k]
        ys.append(w.temp(f"np.zeros({tuple(0 if d is None else d for d in shape)}, {_dtype(dtype)})"))
    stored = _stored(w, node, nc + ny, a[:nc]) if call.store else []
    p, t = w.name(), w.name()
    loop.line(f"{t} = {steps} - 1 - {p}" if at["reverse"] else f"{t} = {p}")
    if stored and call.kept is not None:
        # checkpointed: the carries starting the steps at the kept positions (in iteration
        # order, increasing), each at its index there, as loops.run_scan stores them
        kept, slot = w.constant(np.array(call.kept, np.int64)), w.temp("0")
        loop.line(f"if {slot} < {len(call.kept)} and {p} == {kept}[{slot}]:")
        loop.store(stored, slot, 2)
        loop.line(f"{slot} += 1", 2)
    elif stored:
        loop.store(stored, t)
    result = loop.run(body, [*loop.carries, *(f"{x}[{t}]" for x in call.seqs), *call.caps])
    loop.keep_shapes(node, result, region.params)
    loop.carry(result)
    for k, buf in enumerate(ys):
        y = f"{result}[{nc + k}]"
        (_, *item), dtype = node.results[nc + k]
        if None in item:  # the item's size is known once a step made it
            loop.line(f"if {p} == 0:")
            loop.line(f"{buf} = np.zeros(({length},) + {y}.shape, {_dtype(dtype)})", 2)
        loop.line(f"{buf}[{t}] = {y}")
    loop.close(f"for {p} in range({steps}):")
    return "(" + ", ".join([*loop.carries, *(ys or ["None"] * ny), *(stored or ["None"] * nc)]) + ",)"


def _p_while(w: Writer, node: Node, a: list[str]) -> str:
    """A while_loop (symdiff.loops): ``while`` the condition's function says so, calling the
    body's; with ``max_steps``, the carries each step started from stored (where the plan reads
    them) and the trip count kept. A loop still going after ``max_steps`` steps stops, and the
    caller raises the interpreter's LoopError."""
    at = node.attrs
    nc, nconds, bound = at["carries"], at["conds"], at["max_steps"]
    wanted = w.wanted.get(node)
    cond, body = _body(w, node.regions[0]), _body(w, node.regions[1])
    ccaps, bcaps = a[nc : nc + nconds], a[nc + nconds :]
    loop = _Loop(w, a[:nc])
    count = w.temp("0")
    store = bound is not None and (wanted is None or any(nc <= k < 2 * nc for k in wanted))
    stored = _stored(w, node, nc, a[:nc]) if store else []
    holds = loop.run(cond, [*loop.carries, *ccaps])
    loop.line(f"if not {holds}[0]:")
    loop.line("break", 2)
    if bound is not None:
        ok = w.temp("True")
        w.checks.append((ok, node))
        loop.line(f"if {count} >= {bound}:")
        loop.line(f"{ok} = False", 2)
        loop.line("break", 2)
    loop.store(stored, count)
    result = loop.run(body, [*loop.carries, *bcaps])
    loop.keep_shapes(node, result, node.regions[1].params)
    loop.carry(result)
    loop.line(f"{count} += 1")
    loop.close("while True:")
    if bound is None:
        return "(" + ", ".join(loop.carries) + ",)"
    return "(" + ", ".join([*loop.carries, *(stored or ["None"] * nc), f"np.int64({count})"]) + ",)"


LOOPS: dict[str, Callable[[Writer, Node, list[str]], str]] = {"scan": _p_scan, "while_loop": _p_while}


def _refuse(node: Node, reason: str) -> BackendError:
    shapes = ", ".join(str(u.shape) for u in node.inputs)
    return BackendError(
        f"the numba backend cannot run op {node.op!r} (node #{node.index}, inputs of shapes {shapes}): {reason}; "
        "use backend='numpy' for this graph"
    )


def _axes(node: Node, ndim: int, key: str = "axis") -> list[int]:
    axes = node.attrs[key]
    axes = (axes,) if isinstance(axes, int) else axes
    return sorted(a % ndim for a in axes)


def _shape_expr(x: str, dims: list[int]) -> str:
    return "(" + "".join(f"{x}.shape[{d}], " for d in dims) + ")"


_ROWS = """
@numba.njit(cache=True, error_model="numpy")
def {name}(a):
    out = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        m = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v {cmp} m or v != v:
                m = v
            if m != m:
                break
        out[i] = m
    return out
"""


def reduce(w: Writer, fn: str, x: str, ndim: int, axes: list[int], keepdims: bool) -> str:
    """``fn`` (sum, max or min) of ``x`` over ``axes`` in numba: nested single-axis sums, or the
    reduced axes moved last and reduced row by row (numba's max takes no axis)."""
    if len(axes) == ndim:
        value = f"np.{fn}({x})"
        return f"np.full({(1,) * ndim}, {value})" if keepdims else value
    if fn == "sum":
        out = x
        for a in reversed(axes):
            out = f"np.sum({out}, axis={a})"
    else:
        kept = [d for d in range(ndim) if d not in axes]
        moved = w.temp(f"np.ascontiguousarray(np.transpose({x}, {tuple(kept + axes)}))")
        size = " * ".join(f"{moved}.shape[{k}]" for k in range(len(kept), ndim))
        rows = w.helper(f"_{fn}_rows", _ROWS.format(name=f"_{fn}_rows", cmp=">" if fn == "max" else "<"))
        out = f"{rows}({moved}.reshape((-1, {size}))).reshape({_shape_expr(moved, list(range(len(kept))))})"
    if keepdims:
        for a in axes:
            out = f"np.expand_dims({out}, {a})"
    return out


def _count(x: str, axes: list[int]) -> str:
    return " * ".join(f"{x}.shape[{a}]" for a in axes) or "1"


def _p_reduction(fn: str) -> Callable[..., str]:
    def printer(w: Writer, node: Node, a: list[str]) -> str:
        x = node.inputs[0]
        return reduce(w, fn, a[0], x.ndim, _axes(node, x.ndim), node.attrs["keepdims"])

    return printer


def _p_mean(w: Writer, node: Node, a: list[str]) -> str:
    x = node.inputs[0]
    axes = _axes(node, x.ndim)
    return f"{reduce(w, 'sum', a[0], x.ndim, axes, node.attrs['keepdims'])} / ({_count(a[0], axes)})"


def _p_count(w: Writer, node: Node, a: list[str]) -> str:
    x = node.inputs[0]
    return f"np.{node.dtype.name}({_count(a[0], _axes(node, x.ndim))})"


def _scalar_filled(node: Node, a: list[str]) -> str | None:
    """numba's array functions take no scalars: a scalar made an array is np.full."""
    if node.inputs[0].ndim:
        return None
    if node.ndim == 0:  # a 0-d node is a scalar in the generated code, never a 0-d array
        return a[0]
    return f"np.full({tuple(1 if d is None or d < 0 else d for d in node.shape)}, {a[0]})"


def _p_expand_dims(w: Writer, node: Node, a: list[str]) -> str:
    if node.inputs[0].ndim == 0:
        return _scalar_filled(node, a)
    out = a[0]
    for axis in _axes(node, node.ndim):
        out = f"np.expand_dims({out}, {axis})"
    return out


def _p_squeeze(w: Writer, node: Node, a: list[str]) -> str:
    x = node.inputs[0]
    gone = _axes(node, x.ndim)
    return a[0] + "[" + ", ".join("0" if d in gone else ":" for d in range(x.ndim)) + "]"


def _p_reshape(w: Writer, node: Node, a: list[str]) -> str:
    if node.inputs[0].ndim == 0:
        return _scalar_filled(node, a)
    if node.ndim == 0:  # the one element, as a scalar (numba's reshape to () gives a 0-d array)
        return f"np.ascontiguousarray({a[0]}).reshape(1)[0]"
    return f"np.ascontiguousarray({a[0]}).reshape({tuple(node.attrs['shape_to'])})"


def _p_transpose(w: Writer, node: Node, a: list[str]) -> str:
    return f"np.transpose({a[0]}, {tuple(node.attrs['axes'])})"


def _p_broadcast_to(w: Writer, node: Node, a: list[str]) -> str:
    if node.inputs[0].ndim == 0:
        return _scalar_filled(node, a)
    return f"np.broadcast_to({a[0]}, {tuple(node.attrs['shape_to'])})"


def _p_broadcast_like(w: Writer, node: Node, a: list[str]) -> str:
    # x broadcast against ref, both ways (a Hessian's (n, 1) against (n,) is (n, n))
    x, ref = node.inputs
    if ref.ndim == 0:
        return a[0]
    if x.ndim == 0:
        return f"np.full({a[1]}.shape, {a[0]})"
    return f"np.broadcast_to({a[0]}, np.broadcast_shapes({a[0]}.shape, {a[1]}.shape))"


def _p_astype(w: Writer, node: Node, a: list[str]) -> str:
    name = np.dtype(node.attrs["dtype_to"]).name
    return f"np.{name}({a[0]})" if node.ndim == 0 else f"{a[0]}.astype(np.{name})"


def _p_match_shape(w: Writer, node: Node, a: list[str]) -> str:
    # a raise inside the native code would keep numba from caching it: the function returns
    # the check, and the caller raises
    w.checks.append((w.temp(f"{a[0]}.shape == {a[1]}.shape"), node))
    return a[0]


# An index whose values are known only at evaluation (an index node; an integer on an axis whose
# size is None) is checked before numba reads or writes by it: numba's integer and advanced
# indexing does no bounds check and would read or write other memory. A value outside -n..n-1
# raises here, and the compiled function then raises the numpy backend's IndexError for the same
# values, naming the op, the node, the index and the axis size (Compiled._refuse).
_BOUNDED = """
@numba.njit(cache=True)
def _sd_bounded(i, n):
    for v in i.flat:
        if v < -n or v >= n:
            raise IndexError("an index is out of bounds for its axis")
    return i
"""
_BOUNDED_INT = """
@numba.njit(cache=True)
def _sd_bounded_int(i, n):
    if i < -n or i >= n:
        raise IndexError("an index is out of bounds for its axis")
    return i
"""


def _bounded(w: Writer, name: str, value: Any, ndim: int, target: str, axis: int, size: int | None) -> str:
    """The index ``name`` (of ``ndim`` axes) on ``axis`` of the array ``target``, checked as it
    runs unless its ``value`` is known while printing (a constant; else None) and in range of a
    static ``size``."""
    if value is not None and size is not None:
        value = np.asarray(value)
        if value.size == 0 or -size <= value.min() and value.max() < size:
            return name
    helper = w.helper("_sd_bounded_int", _BOUNDED_INT) if ndim == 0 else w.helper("_sd_bounded", _BOUNDED)
    return f"{helper}({name}, {target}.shape[{axis}])"


def _index_parts(w: Writer, node: Node, index: Any, nodes: list[str], target: str, shape: tuple) -> list[str]:
    """The entries of ``index``'s subscript of the array ``target`` of ``shape``; ``nodes`` name
    the index nodes (the node's last inputs). For an index numba takes as it is: at most one
    integer array of more than zero axes, and of one axis (else ``_Gathered``)."""
    index_nodes = node.inputs[len(node.inputs) - len(nodes) :]
    parts: list[str] = []
    axis = 0
    for kind, *rest in index.key:
        if kind == "n":
            parts.append("None")
            continue
        size = shape[axis]
        if kind == "s":
            parts.append(_slice(*rest))
        elif kind == "i":  # checked when the graph was built where the size is static
            parts.append(_bounded(w, str(rest[0]), rest[0], 0, target, axis, size))
        elif kind == "x":
            u = index_nodes[rest[0]]
            value = u.value if u.op == "constant" else None
            parts.append(_bounded(w, nodes[rest[0]], value, u.ndim, target, axis, size))
        elif rest[1] == ():  # a 0-d integer array indexes as its integer does
            parts.append(_bounded(w, str(rest[0][0]), rest[0][0], 0, target, axis, size))
        else:
            values = np.array(rest[0], dtype=np.intp).reshape(rest[1])
            parts.append(_bounded(w, w.constant(values), values, values.ndim, target, axis, size))
        axis += 1
    return parts


def _slice(start: int | None, stop: int | None, step: int | None) -> str:
    text = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
    return text + (f":{step}" if step else "")


def _subscript(w: Writer, node: Node, index: Any, nodes: list[str], target: str, shape: tuple) -> str:
    """``index`` printed as the subscript of ``target`` (see ``_index_parts``)."""
    return ", ".join(_index_parts(w, node, index, nodes, target, shape)) or "()"


def _array_dims(node: Node, index: Any, nodes: list[str]) -> list[int]:
    """The number of axes of each integer array (constant or node) in ``index``, in order."""
    index_nodes = node.inputs[len(node.inputs) - len(nodes) :]
    return [index_nodes[k[1]].ndim if k[0] == "x" else len(k[2]) for k in index.key if k[0] in "ax"]


def _numba_indexes(node: Node, index: Any, nodes: list[str]) -> bool:
    """Whether numba indexes by ``index`` itself: at most one integer array of more than zero
    axes (a 0-d one indexes as an integer does), and of one axis."""
    dims = [d for d in _array_dims(node, index, nodes) if d]
    return len(dims) <= 1 and all(d == 1 for d in dims)


def _tuple(items: list[str]) -> str:
    return "(" + "".join(f"{e}, " for e in items) + ")"


class _Gathered:
    """An index numba does not take (several integer arrays, or one of several axes, broadcast
    together), as one it does: the axes its integers and arrays index (adjacent: getitem moves
    separated ones to the front first) merged into ONE axis of ``target`` by a reshape, indexed
    by the flat positions of the elements picked (``pos``, shaped as the broadcast indices).

    Each index is checked against its own axis's size (``_bounded``: an index out of range
    raises, and the compiled function then the numpy backend's IndexError) and wrapped where
    negative before the positions are summed, so no index can reach another's element."""

    def __init__(self, w: Writer, node: Node, index: Any, nodes: list[str], target: str, shape: tuple):
        index_nodes = node.inputs[len(node.inputs) - len(nodes) :]
        advanced = [k for k, kind in enumerate(index.key) if kind[0] in "aix"]
        self.first, self.last = advanced[0], advanced[-1] + 1  # the entries merged, adjacent
        self.pre = [kind[0] for kind in index.key[: self.first]]  # "s" or "n" (numba's own parts)
        self.post = [kind[0] for kind in index.key[self.last :]]
        self.sliced = [_slice(*kind[1:]) for kind in index.key if kind[0] == "s"]
        self.at = sum(kind != "n" for kind in self.pre)  # the first axis of target merged
        axes = range(self.at, self.at + len(advanced))
        # each index times its stride in target's merged axes: a static product and runtime sizes
        terms, known, runtime, factors = [], 1, [], []
        for axis, k in zip(reversed(axes), reversed(advanced)):
            kind, *rest = index.key[k]
            size, n = shape[axis], f"{target}.shape[{axis}]"
            if kind == "x":
                u = index_nodes[rest[0]]
                name, value, ndim, dtype = nodes[rest[0]], u.value if u.op == "constant" else None, u.ndim, u.dtype
            elif kind == "i" or rest[1] == ():
                value = rest[0] if kind == "i" else rest[0][0]
                name, ndim, dtype = str(value), 0, np.dtype(np.intp)
            else:
                value = np.array(rest[0], dtype=np.intp).reshape(rest[1])
                name, ndim, dtype = "", value.ndim, value.dtype
            terms.append(" * ".join([self._wrapped(w, name, value, ndim, dtype, target, axis, size), *factors]))
            if size is not None:
                known *= size
            else:
                runtime.append(n)
            factors = [str(known)] * (known != 1) + runtime
        self.size = " * ".join(factors) or "1"  # the merged axis's length
        self.pos = w.temp(" + ".join(reversed(terms)))  # the broadcast indices' shape
        self.flat = f"{self.pos}.ravel()"
        self.merged = f"{target}.shape[:{self.at}] + ({self.size},) + {target}.shape[{self.at + len(advanced)}:]"

    @staticmethod
    def _wrapped(w: Writer, name: str, value: Any, ndim: int, dtype: Any, target: str, axis: int, size: Any) -> str:
        """The index on ``axis`` of ``target``, checked and with negative values counted from the
        end: 0 .. size - 1 (a constant known in range of a static size: wrapped as printed)."""
        if value is not None and size is not None:
            value = np.asarray(value)
            if value.size == 0 or -size <= value.min() and value.max() < size:
                wrapped = value % size if size else value
                return str(int(wrapped)) if ndim == 0 else w.constant(wrapped.astype(np.intp))
        if not name:  # a constant array on an axis whose size is known only at evaluation
            name = w.constant(value)
        checked = _bounded(w, name, None, ndim, target, axis, None)
        if dtype != np.intp:  # an unsigned or narrower index would promote the sum to float
            checked = f"np.intp({checked})" if ndim == 0 else f"{checked}.astype(np.intp)"
        return f"({checked} % {target}.shape[{axis}])"

    def subscript(self, flat: str) -> str:
        """The subscript of ``target`` merged: the slices in place, ``flat`` on the merged axis."""
        pre = sum(kind == "s" for kind in self.pre)
        return ", ".join([*self.sliced[:pre], flat, *self.sliced[pre:]])


def _p_getitem(w: Writer, node: Node, a: list[str]) -> str:
    index = node.attrs["index"]
    if _numba_indexes(node, index, a[1:]):
        return f"{a[0]}[{_subscript(w, node, index, a[1:], a[0], node.inputs[0].shape)}]"
    gather = _Gathered(w, node, index, a[1:], a[0], node.inputs[0].shape)
    merged = w.temp(f"np.ascontiguousarray({a[0]}).reshape({gather.merged})")
    y = w.temp(f"{merged}[{gather.subscript(gather.flat)}]")
    # numpy's layout: the sliced axes in place, None's of length 1, the broadcast indices' axes
    # where the first index was
    axes = iter(range(len(gather.pre) + len(gather.post) + 1))
    pre = ["1" if kind == "n" else f"{y}.shape[{next(axes)}]" for kind in gather.pre]
    next(axes)
    post = ["1" if kind == "n" else f"{y}.shape[{next(axes)}]" for kind in gather.post]
    return f"np.ascontiguousarray({y}).reshape({_tuple(pre)} + {gather.pos}.shape + {_tuple(post)})"


def _p_unindex(w: Writer, node: Node, a: list[str]) -> str:
    ref = node.inputs[1]
    nb = node.ndim - ref.ndim  # g's leading batch axes
    index = node.attrs["index"].with_batch(nb)
    shape = f"{a[0]}.shape[:{nb}] + {a[1]}.shape" if nb else f"{a[1]}.shape"  # g may be a scalar
    out = w.temp(f"np.zeros({shape}, np.{node.dtype.name})")
    if not _numba_indexes(node, index, a[2:]):
        return _scatter_added(w, node, index, a, out)
    parts = _index_parts(w, node, index, a[2:], out, node.shape)
    arrays = [k for k, kind in enumerate(index.key) if kind[0] in "ax"]
    dims = _array_dims(node, index, a[2:])
    if not any(dims):
        w.lines.append(f"    {out}[{', '.join(parts) or '()'}] = {a[0]}")  # each element of out written once
        return out
    # g's elements added one index at a time, so repeated indices accumulate (a setitem by the
    # array keeps the last); the indexed axes are one axis of g, where the first of them is
    (at,) = [k for k, d in zip(arrays, dims) if d]
    first = next(k for k, kind in enumerate(index.key) if kind[0] in "aix")
    idx, j = w.temp(parts[at]), w.name()
    target, values = [], []
    for k, (kind, *_) in enumerate(index.key):
        if kind != "n":
            target.append(f"{idx}[{j}]" if k == at else parts[k])
        if k == first:
            values.append(j)
        elif kind in "sn":  # an axis of g; None's has length 1 and no axis of out
            values.append(":" if kind == "s" else "0")
    w.lines.append(f"    for {j} in range({idx}.shape[0]):")
    w.lines.append(f"        {out}[{', '.join(target)}] += {a[0]}[{', '.join(values)}]")
    return out


def _scatter_added(w: Writer, node: Node, index: Any, a: list[str], out: str) -> str:
    """g added into the zeros ``out`` at an index numba does not take (``_Gathered``): one
    element (or slice) of g at a time on the merged axis, so repeated positions accumulate."""
    scatter = _Gathered(w, node, index, a[2:], out, node.shape)
    merged = w.temp(f"{out}.reshape({scatter.merged})")  # a view: out is contiguous
    # g's axes: one per entry before the indices (None's of length 1), the broadcast indices'
    # (merged into one), one per entry after them (counted from the end)
    pre = [f"{a[0]}.shape[{k}]" for k, kind in enumerate(scatter.pre) if kind == "s"]
    post = [f"{a[0]}.shape[{k - len(scatter.post)}]" for k, kind in enumerate(scatter.post) if kind == "s"]
    flat, j = w.temp(scatter.flat), w.name()
    g = w.temp(f"np.ascontiguousarray({a[0]}).reshape({_tuple([*pre, f'{flat}.shape[0]', *post])})")
    values = ", ".join([":"] * len(pre) + [j] + [":"] * len(post))
    w.lines.append(f"    for {j} in range({flat}.shape[0]):")
    w.lines.append(f"        {merged}[{scatter.subscript(f'{flat}[{j}]')}] += {g}[{values}]")
    return out


def _p_concatenate(w: Writer, node: Node, a: list[str]) -> str:
    arrays = ", ".join(f"np.ascontiguousarray({x})" for x in a)
    return f"np.concatenate(({arrays},), {node.attrs['axis'] % node.ndim})"


def _core_shape(x: str, dims: int) -> str:
    return "(" + "".join(f"{x}.shape[{-k}], " for k in range(dims, 0, -1)) + ")"


def _batched(
    w: Writer, node: Node, a: list[str], cores: list[int], out_core: str | list[str], call: Callable[..., str]
) -> str:
    """A linear-algebra routine numba runs on single matrices, looped over the stack's
    (broadcast) leading axes. A node with several outputs (``eigh``) gives ``out_core`` per
    output, and ``call`` returns their tuple."""
    if all(u.ndim == c for u, c in zip(node.inputs, cores)):
        return call(*(f"np.ascontiguousarray({x})" for x in a))
    shapes = ", ".join(f"{x}.shape[:{u.ndim - c}]" for x, u, c in zip(a, node.inputs, cores))
    batch = w.temp(f"np.broadcast_shapes({shapes})")
    parts = [w.temp(f"np.broadcast_to({x}, {batch} + {_core_shape(x, c)})") for x, c in zip(a, cores)]
    cores_out = out_core if isinstance(out_core, list) else [out_core]
    dtypes = [d for _, d in node.results] if node.is_multi else [node.dtype]
    outs = [w.temp(f"np.empty({batch} + {core}, {_dtype(d)})") for core, d in zip(cores_out, dtypes)]
    w.lines.append(f"    for _i in np.ndindex({batch}):")
    targets = ", ".join(f"{out}[_i]" for out in outs)
    w.lines.append(f"        {targets} = {call(*(f'np.ascontiguousarray({p}[_i])' for p in parts))}")
    return f"({', '.join(outs)},)" if isinstance(out_core, list) else outs[0]


_INTEGER_DOT_SOURCE = """
@numba.njit(cache=True)
def _sd_integer_dot(p, q, out):
    # numba's np.dot multiplies floats only. Integers wrap around as numpy's do: numba widens the
    # products to 64 bits and the store takes them modulo out's width, the same residue.
    out[:] = 0
    for i in range(p.shape[0]):
        for j in range(q.shape[1]):
            for k in range(p.shape[1]):
                out[i, j] += p[i, k] * q[k, j]
    return out
"""


def _p_matmul(w: Writer, node: Node, a: list[str]) -> str:
    x, y = node.inputs
    cx, cy = min(x.ndim, 2), min(y.ndim, 2)
    rows = f"({a[0]}.shape[-2],)" if cx == 2 else "()"
    cols = f"({a[1]}.shape[-1],)" if cy == 2 else "()"
    dtype = _dtype(node.dtype)
    if node.dtype.kind in "fc":  # numpy casts both operands to the result's type first (int32 @ float32)
        cast = [f"{p}.astype({dtype})" if u.dtype != node.dtype else p for p, u in zip(a, node.inputs)]
        return _batched(w, node, cast, [cx, cy], f"{rows} + {cols}", lambda p, q: f"np.dot({p}, {q})")
    w.helper("_sd_integer_dot", _INTEGER_DOT_SOURCE)
    count = "np.int64" if node.dtype.kind == "b" else dtype  # bool @ bool: any of the products
    cast = [f"{p}.astype({count})" if u.dtype.name != count[3:] else p for p, u in zip(a, node.inputs)]

    def dot(p: str, q: str) -> str:
        p2 = p if cx == 2 else f"{p}.reshape(1, -1)"
        q2 = q if cy == 2 else f"{q}.reshape(-1, 1)"
        product = f"_sd_integer_dot({p2}, {q2}, np.empty(({p2}.shape[0], {q2}.shape[1]), {count}))"
        product = product if node.dtype.kind != "b" else f"({product} != 0)"
        return product + ("" if cx == 2 and cy == 2 else "[0, :]" if cy == 2 else "[:, 0]" if cx == 2 else "[0, 0]")

    return _batched(w, node, cast, [cx, cy], f"{rows} + {cols}", dot)


def _p_linalg(name: str) -> Callable[..., str]:
    def printer(w: Writer, node: Node, a: list[str]) -> str:
        cores = [2] + [1 if u.ndim == 1 else 2 for u in node.inputs[1:]]  # solve: b a vector only if 1-D
        out_core = {"det": "()", "inv": _core_shape(a[0], 2)}.get(name) or _core_shape(a[-1], cores[-1])
        return _batched(w, node, a, cores, out_core, lambda *m: f"np.linalg.{name}({', '.join(m)})")

    return printer


_ADJUGATE_SOURCE = """
@numba.njit(cache=True, error_model="numpy")
def _sd_adjugate_parts(a):
    # a = U S Vt; the products of the other singular values (p) and of the others than two (q),
    # by loops (no division: exact at singular a), as symdiff.ops.linalg's forwards
    n = a.shape[0]
    u, s, vt = np.linalg.svd(a)
    sign = np.sign(np.linalg.det(u)) * np.sign(np.linalg.det(vt))
    p = np.ones(n, a.dtype)
    q = np.zeros((n, n), a.dtype)
    for i in range(n):
        for j in range(n):
            if j != i:
                p[i] *= s[j]
                q[i, j] = 1.0
                for k in range(n):
                    if k != i and k != j:
                        q[i, j] *= s[k]
    return np.ascontiguousarray(u.T), p, q, np.ascontiguousarray(vt.T), sign


@numba.njit(cache=True, error_model="numpy")
def _sd_adjugate(a):
    if not np.all(np.isfinite(a)):
        return np.full(a.shape, np.nan, a.dtype)
    ut, p, q, v, sign = _sd_adjugate_parts(a)
    return (sign * (np.ascontiguousarray(v * p) @ ut)).astype(a.dtype)


@numba.njit(cache=True, error_model="numpy")
def _sd_adjugate_jvp(a, t):
    if not np.all(np.isfinite(a)):
        return np.full(a.shape, np.nan, a.dtype)
    ut, p, q, v, sign = _sd_adjugate_parts(a)
    w = ut @ t @ v
    inner = -q * w
    d = q @ np.diag(w).copy()
    for i in range(a.shape[0]):
        inner[i, i] += d[i]
    return (sign * (v @ inner @ ut)).astype(a.dtype)
"""


def _p_adjugate(w: Writer, node: Node, a: list[str]) -> str:
    w.helper("_sd_adjugate", _ADJUGATE_SOURCE)  # defines the three functions
    fn = "_sd_adjugate" if node.op == "adjugate" else "_sd_adjugate_jvp"
    return _batched(w, node, a, [2] * len(a), _core_shape(a[0], 2), lambda *m: f"{fn}({', '.join(m)})")


def _p_var(w: Writer, node: Node, a: list[str], root: bool = False) -> str:
    x = node.inputs[0]
    axes = _axes(node, x.ndim)
    count = f"({_count(a[0], axes)})"
    centered = w.temp(f"{a[0]} - {reduce(w, 'sum', a[0], x.ndim, axes, True)} / {count}")
    squares = reduce(w, "sum", f"{centered} * {centered}", x.ndim, axes, node.attrs["keepdims"])
    var = f"{squares} / ({count} - {node.attrs['ddof']})"
    return f"np.sqrt({var})" if root else var


_RUNNING = """
@numba.njit(cache=True, error_model="numpy")
def {name}(a):
    # a contiguous, its running axis last; numpy's accumulator dtype (int32 sums in int64)
    out = np.empty(a.shape, {dtype})
    src, dst = a.reshape(-1), out.reshape(-1)
    n = a.shape[-1]
    for start in range(0, src.size, max(n, 1)):
        dst[start] = src[start]
        for j in range(start + 1, start + n):
            dst[j] = dst[j - 1] {op} src[j]
    return out
"""


def _p_running(w: Writer, node: Node, a: list[str]) -> str:
    """cumsum, cumprod: the axis moved last, each lane accumulated in order (as numpy's)."""
    x = node.inputs[0]
    axis = node.attrs["axis"] % x.ndim
    dtype = getattr(np, node.op)(np.zeros(1, x.dtype)).dtype
    name = f"_sd_{node.op}_{dtype.name}"
    w.helper(name, _RUNNING.format(name=name, dtype=_dtype(dtype), op="+" if node.op == "cumsum" else "*"))
    if axis == x.ndim - 1:
        return f"{name}(np.ascontiguousarray({a[0]}))"
    perm = tuple(k for k in range(x.ndim) if k != axis) + (axis,)
    moved = f"{name}(np.ascontiguousarray(np.transpose({a[0]}, {perm})))"
    return f"np.transpose({moved}, {tuple(int(k) for k in np.argsort(perm))})"


_PROD_ROWS = """
@numba.njit(cache=True, error_model="numpy")
def {name}(a):
    out = np.empty(a.shape[0], {dtype})
    for i in range(a.shape[0]):
        p = {dtype}(1)
        for j in range(a.shape[1]):
            p = p * a[i, j]
        out[i] = p
    return out
"""


def _p_prod(w: Writer, node: Node, a: list[str]) -> str:
    """prod over axes: those moved last and multiplied row by row, in numpy's dtype (int32 in int64)."""
    x = node.inputs[0]
    dtype = np.prod(np.zeros(1, x.dtype)).dtype
    if x.ndim == 0:
        return f"{_dtype(dtype)}({a[0]})"
    axes = _axes(node, x.ndim)
    kept = [d for d in range(x.ndim) if d not in axes]
    name = f"_sd_prod_rows_{dtype.name}"
    w.helper(name, _PROD_ROWS.format(name=name, dtype=_dtype(dtype)))
    moved = w.temp(f"np.ascontiguousarray(np.transpose({a[0]}, {tuple(kept + axes)}))")
    size = _count(moved, list(range(len(kept), x.ndim)))
    rows = f"{name}({moved}.reshape(({_count(moved, list(range(len(kept))))}, {size})))"
    keep = node.attrs["keepdims"]
    if not kept and not keep:
        return f"{rows}[0]"
    parts = ["1" if d in axes else f"{moved}.shape[{kept.index(d)}]" for d in range(x.ndim) if keep or d in kept]
    return f"{rows}.reshape(({''.join(p + ', ' for p in parts)}))"


def _half(dtype: np.dtype) -> str:
    """0.5 in ``dtype`` (numba makes a float32 array times a float64 literal float64)."""
    return "0.5" if dtype == np.float64 else f"{_dtype(dtype)}(0.5)"


def _p_cholesky(w: Writer, node: Node, a: list[str]) -> str:
    # of the symmetric part, as the op's forward
    sym = w.temp(f"{_half(node.dtype)} * ({a[0]} + np.swapaxes({a[0]}, -1, -2))")
    return _batched(w, node, [sym], [2], _core_shape(sym, 2), lambda m: f"np.linalg.cholesky({m})")


# one matrix each; per dtype (the name ends in it), as numba types each helper once per signature
_DECOMPOSITIONS = """
@numba.njit(cache=True, error_model="numpy")
def _sd_eigh_{name}(a):
    # symdiff.ops.linalg._eigh: of the symmetric part; all nan for a matrix with a nan or inf
    s = (a + a.T) * {half}
    n = a.shape[0]
    if np.all(np.isfinite(s)):
        return np.linalg.eigh(s)
    return np.full(n, np.nan, {dtype}), np.full((n, n), np.nan, {dtype})


@numba.njit(cache=True, error_model="numpy")
def _sd_slogdet_{name}(a):
    if np.all(np.isfinite(a)):
        sign, logabs = np.linalg.slogdet(a)
        return {dtype}(sign), {dtype}(logabs)
    # a nan or inf, which numba's LAPACK call refuses: numpy's result, from LAPACK getrf's LU
    # (partial pivoting, the first largest |entry| of a column its pivot; an exact zero pivot is
    # (0, -inf)); each negative pivot and each row swap flips the sign, a nan pivot does not
    lu = a.astype({dtype})
    n = lu.shape[0]
    sign = {dtype}(1)
    logabs = {dtype}(0)
    for k in range(n):
        p = k
        for i in range(k + 1, n):
            if abs(lu[i, k]) > abs(lu[p, k]):
                p = i
        if lu[p, k] == 0:
            return {dtype}(0), {dtype}(-np.inf)
        if p != k:
            for j in range(n):
                lu[k, j], lu[p, j] = lu[p, j], lu[k, j]
            sign = -sign
        pivot = lu[k, k]
        for i in range(k + 1, n):
            # as OpenBLAS's getf2 (numpy's LAPACK): a nan pivot divides nothing
            f = lu[i, k] if pivot != pivot else lu[i, k] / pivot
            for j in range(k + 1, n):
                lu[i, j] -= f * lu[k, j]
        if pivot < 0:
            sign = -sign
        logabs += np.log(abs(pivot))
    return sign, logabs


@numba.njit(cache=True, error_model="numpy")
def _sd_singular_values_{name}(a):
    # symdiff.ops.linalg._singular_values_forward: ascending; all nan for a matrix with a nan or inf
    if np.all(np.isfinite(a)):
        return np.linalg.svd(a, False)[1][::-1].copy()
    return np.full(min(a.shape[0], a.shape[1]), np.nan, {dtype})


@numba.njit(cache=True, error_model="numpy")
def _sd_eigh_gaps_{name}(w, eps):
    # w (rows, n): F[r, i, j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it, and False where two
    # eigenvalues are equal to rounding (symdiff.ops.linalg.eigh_gaps_and_ties)
    rows, n = w.shape
    out = np.zeros((rows, n, n), {dtype})
    ok = True
    for r in range(rows):
        scale = {dtype}(0)
        for i in range(n):
            scale = max(scale, abs(w[r, i]))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d = w[r, j] - w[r, i]
                    if abs(d) <= 8 * n * eps * scale:
                        ok = False
                    out[r, i, j] = {dtype}(1) / d
    return out, ok


@numba.njit(cache=True, error_model="numpy")
def _sd_solve_triangular_{name}(a, b, lower, trans, unit):
    # x with T x = b (Tᵀ x = b with trans), T the lower or upper triangle of a (ones on its
    # diagonal with unit), b (n, k): substitution, reading the triangle only; a zero on T's
    # diagonal raises scipy's LinAlgError (LAPACK's trtrs)
    n, k = b.shape
    x = np.empty((n, k), {dtype})
    if not unit:
        for i in range(n):
            if a[i, i] == 0:
                raise np.linalg.LinAlgError("singular matrix")
    forward = lower != trans  # Tᵀ of a lower triangle is upper
    for step in range(n):
        i = step if forward else n - 1 - step
        lo, hi = (0, i) if forward else (i + 1, n)
        for c in range(k):
            s = {dtype}(b[i, c])
            for j in range(lo, hi):
                s -= (a[j, i] if trans else a[i, j]) * x[j, c]
            x[i, c] = s if unit else s / a[i, i]
    return x


@numba.njit(cache=True, error_model="numpy")
def _sd_solve_triangular_vector_{name}(a, b, lower, trans, unit):
    return _sd_solve_triangular_{name}(a, b.reshape((b.shape[0], 1)), lower, trans, unit)[:, 0]
"""


def _decomposition(w: Writer, name: str, dtype: np.dtype) -> str:
    """The helper ``name`` of _DECOMPOSITIONS for ``dtype`` (all of them printed, once per dtype)."""
    source = _DECOMPOSITIONS.format(name=dtype.name, dtype=_dtype(dtype), half=_half(dtype))
    w.helper(f"_sd_decompositions_{dtype.name}", source)
    return f"_sd_{name}_{dtype.name}"


def _p_eigh(w: Writer, node: Node, a: list[str]) -> str:
    fn = _decomposition(w, "eigh", node.results[0][1])
    return _batched(w, node, a, [2], [f"({a[0]}.shape[-1],)", _core_shape(a[0], 2)], lambda m: f"{fn}({m})")


def _p_slogdet(w: Writer, node: Node, a: list[str]) -> str:
    fn = _decomposition(w, "slogdet", node.results[0][1])
    return _batched(w, node, a, [2], ["()", "()"], lambda m: f"{fn}({m})")


def _p_singular_values(w: Writer, node: Node, a: list[str]) -> str:
    fn = _decomposition(w, "singular_values", node.dtype)
    core = f"(min({a[0]}.shape[-2], {a[0]}.shape[-1]),)"
    return _batched(w, node, a, [2], core, lambda m: f"{fn}({m})")


def _p_eigh_gaps(w: Writer, node: Node, a: list[str]) -> str:
    # a repeated eigenvalue: the function returns the check, and the caller raises the op's SymdiffError
    x = node.inputs[0]
    fn = _decomposition(w, "eigh_gaps", node.dtype)
    rows = _count(a[0], list(range(x.ndim - 1)))
    eps = repr(float(np.finfo(node.dtype).eps))
    done = w.temp(f"{fn}(np.ascontiguousarray({a[0]}).reshape(({rows}, {a[0]}.shape[-1])), {eps})")
    w.checks.append((w.temp(f"{done}[1]"), node))
    return f"{done}[0].reshape({a[0]}.shape + ({a[0]}.shape[-1],))"


def _p_solve_triangular(w: Writer, node: Node, a: list[str]) -> str:
    at = node.attrs
    vector = node.inputs[1].ndim == 1
    fn = _decomposition(w, "solve_triangular_vector" if vector else "solve_triangular", node.dtype)
    flags = f"{bool(at['lower'])}, {bool(at['trans'])}, {bool(at['unit'])}"
    core = _core_shape(a[1], 1 if vector else 2)
    return _batched(w, node, a, [2, 1 if vector else 2], core, lambda m, b: f"{fn}({m}, {b}, {flags})")


_EXPM_SOURCE = """
@numba.njit(cache=True, error_model="numpy")
def _sd_expm_steps(v):
    # C's (int)ceil(v) clamped at 0, as scipy computes a count; 0 where v is not finite
    if not np.isfinite(v) or v <= 0:
        return 0
    return int(np.ceil(v))


@numba.njit(cache=True, error_model="numpy")
def _sd_expm_norm(x):
    # the largest absolute row sum: scipy works on the column-major transpose, whose 1-norm it is
    best = 0.0
    for i in range(x.shape[0]):
        row = 0.0
        for j in range(x.shape[1]):
            row += abs(x[i, j])
        best = max(best, row)
    return best


@numba.njit(cache=True, error_model="numpy")
def _sd_expm_comb(m0, c0, m1, c1, m2, c2, m3, c3, d):
    # c0 m0 + c1 m1 + c2 m2 + c3 m3 + d I, summed in that order as scipy's loops (loops, not
    # array expressions: numba compiles each of those for about a second)
    n = m0.shape[0]
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = c0 * m0[i, j] + c1 * m1[i, j] + c2 * m2[i, j] + c3 * m3[i, j]
        out[i, i] += d
    return out


@numba.njit(cache=True, error_model="numpy")
def _sd_expm_solve(a, b):
    # a⁻¹ b by Gaussian elimination with partial pivoting, LAPACK's getrf and getrs written out
    # (numba's np.linalg.solve takes about 20 s to compile)
    n, k = b.shape
    lu, x = a.copy(), b.copy()
    for c in range(n):
        p = c
        for i in range(c + 1, n):
            if abs(lu[i, c]) > abs(lu[p, c]):
                p = i
        if p != c:
            for j in range(n):
                lu[c, j], lu[p, j] = lu[p, j], lu[c, j]
            for j in range(k):
                x[c, j], x[p, j] = x[p, j], x[c, j]
        for i in range(c + 1, n):
            f = lu[i, c] / lu[c, c]
            for j in range(c + 1, n):
                lu[i, j] -= f * lu[c, j]
            for j in range(k):
                x[i, j] -= f * x[c, j]
    for c in range(n - 1, -1, -1):
        for j in range(k):
            t = x[c, j]
            for i in range(c + 1, n):
                t -= lu[c, i] * x[i, j]
            x[c, j] = t / lu[c, c]
    return x


@numba.njit(cache=True, error_model="numpy")
def _sd_expm_dot(x, y):
    # one call site of @ (numba compiles each inline @ for a third of a second)
    return x @ y


@numba.njit(cache=True, error_model="numpy")
def _sd_expm_spin(absa, v, times):
    # |a|^times v, and its largest element (scipy's bound on the 1-norm of |a|^p)
    for _ in range(times):
        v = absa @ v
    top = 0.0
    for x in v:
        top = max(top, x)
    return v, top


@numba.njit(cache=True, error_model="numpy")
def _sd_expm(a, coeff):
    # scipy.linalg.expm of one matrix, in float64 (Al-Mohy & Higham 2009): the Pade degree m
    # and the squarings s picked from exact 1-norms of powers (scipy estimates them from n = 400),
    # coeff the bounds for the input's precision; a diagonal matrix exactly, a triangular one
    # with its diagonal and first off-diagonal recomputed at each squaring (Higham's 10.42)
    theta = (1.495585217958292e-002, 2.539398330063230e-001, 9.504178996162932e-001, 2.097847961257068e000, 4.25)
    # loops rather than array expressions, which numba compiles for about a second each
    n = a.shape[0]
    x = np.empty((n, n))
    absa = np.empty((n, n))
    upper, lower, finite = True, True, True
    for i in range(n):
        for j in range(n):
            x[i, j] = a[i, j]
            absa[i, j] = abs(x[i, j])
            if x[i, j] != 0:
                if i > j:
                    upper = False
                elif i < j:
                    lower = False
            if not np.isfinite(x[i, j]):
                finite = False
    e = np.zeros((n, n))
    if upper and lower:
        for i in range(n):
            e[i, i] = np.exp(x[i, i])
        return e
    diag = np.zeros(n)
    near = np.zeros(n)  # the first off-diagonal of a triangular matrix
    for k in range(n):
        diag[k] = x[k, k]
        if k + 1 < n:
            near[k] = x[k, k + 1] if upper else x[k + 1, k]
    if not finite:  # scipy's arithmetic on a nan or inf gives nan throughout
        e = np.full((n, n), np.nan)
    else:
        v, norm_a = _sd_expm_spin(absa, np.ones(n), 1)
        a2 = _sd_expm_dot(x, x)
        a4 = _sd_expm_dot(a2, a2)
        a6 = _sd_expm_dot(a2, a4)
        d6 = _sd_expm_norm(a6) ** (1.0 / 6.0)
        eta1 = max(_sd_expm_norm(a4) ** 0.25, d6)
        m, s, eta2 = 13, 0, 0.0
        a8 = a2
        v, top = _sd_expm_spin(absa, v, 6)
        if eta1 < theta[0] and _sd_expm_steps(np.log2(top / norm_a / coeff[0]) / 6) == 0:
            m = 3
        if m == 13:
            v, top = _sd_expm_spin(absa, v, 4)
            if eta1 < theta[1] and _sd_expm_steps(np.log2(top / norm_a / coeff[1]) / 10) == 0:
                m = 5
        if m == 13:
            a8 = _sd_expm_dot(a4, a4)
            eta2 = max(d6, _sd_expm_norm(a8) ** 0.125)
            v, top = _sd_expm_spin(absa, v, 4)
            if eta2 < theta[2] and _sd_expm_steps(np.log2(top / norm_a / coeff[2]) / 14) == 0:
                m = 7
        if m == 13:
            v, top = _sd_expm_spin(absa, v, 4)
            if eta2 < theta[3] and _sd_expm_steps(np.log2(top / norm_a / coeff[3]) / 18) == 0:
                m = 9
        if m == 13:
            eta3 = max(_sd_expm_norm(a8) ** 0.125, _sd_expm_norm(_sd_expm_dot(a4, a6)) ** 0.1)
            s = _sd_expm_steps(np.log2(min(eta2, eta3) / theta[4]))
            if s:
                absa = _sd_expm_comb(absa, 2.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                for k in range(n):
                    v[k] *= 2.0 ** (-19.0 * s)
                norm_a = norm_a * 2.0 ** (-s)
            v, top = _sd_expm_spin(absa, v, 8)
            s += _sd_expm_steps(np.log2(top / norm_a / coeff[4]) / 26.0)
            if s:
                x = _sd_expm_comb(x, 2.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                a2 = _sd_expm_comb(a2, 4.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                a4 = _sd_expm_comb(a4, 16.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
                a6 = _sd_expm_comb(a6, 64.0 ** (-s), x, 0.0, x, 0.0, x, 0.0, 0.0)
        # U and V of the Pade approximant r_m = (V - U)⁻¹ (V + U)
        if m == 3:
            u = _sd_expm_comb(_sd_expm_dot(x, a2), 1.0, x, 60.0, x, 0.0, x, 0.0, 0.0)
            w = _sd_expm_comb(a2, 12.0, x, 0.0, x, 0.0, x, 0.0, 120.0)
        elif m == 5:
            u = _sd_expm_dot(x, _sd_expm_comb(a4, 1.0, a2, 420.0, x, 0.0, x, 0.0, 15120.0))
            w = _sd_expm_comb(a4, 30.0, a2, 3360.0, x, 0.0, x, 0.0, 30240.0)
        elif m == 7:
            u = _sd_expm_dot(x, _sd_expm_comb(a6, 1.0, a4, 1512.0, a2, 277200.0, x, 0.0, 8648640.0))
            w = _sd_expm_comb(a6, 56.0, a4, 25200.0, a2, 1995840.0, x, 0.0, 17297280.0)
        elif m == 9:
            u = _sd_expm_dot(x, _sd_expm_comb(a8, 1.0, a6, 3960.0, a4, 2162160.0, a2, 302702400.0, 8821612800.0))
            w = _sd_expm_comb(a8, 90.0, a6, 110880.0, a4, 30270240.0, a2, 2075673600.0, 17643225600.0)
        else:
            inner = _sd_expm_dot(a6, _sd_expm_comb(a6, 1.0, a4, 16380.0, a2, 40840800.0, x, 0.0, 0.0))
            outer = _sd_expm_comb(a6, 33522128640.0, a4, 10559470521600.0, a2, 1187353796428800.0, x, 0.0,
                                  32382376266240000.0)
            u = _sd_expm_dot(x, _sd_expm_comb(inner, 1.0, outer, 1.0, x, 0.0, x, 0.0, 0.0))
            low = _sd_expm_dot(a6, _sd_expm_comb(a6, 182.0, a4, 960960.0, a2, 1323241920.0, x, 0.0, 0.0))
            high = _sd_expm_comb(a6, 670442572800.0, a4, 129060195264000.0, a2, 7771770303897600.0, x, 0.0,
                                 64764752532480000.0)
            w = _sd_expm_comb(low, 1.0, high, 1.0, x, 0.0, x, 0.0, 0.0)
        # (V - U)⁻¹ (V + U) = I + 2 (V - U)⁻¹ U
        e = _sd_expm_comb(_sd_expm_solve(_sd_expm_comb(w, 1.0, u, -1.0, x, 0.0, x, 0.0, 0.0), u), 2.0,
                          x, 0.0, x, 0.0, x, 0.0, 1.0)
        if upper or lower:
            if s:
                for k in range(n):
                    e[k, k] = np.exp(diag[k] * 2.0 ** (-s))
            for i in range(s - 1, -1, -1):
                e = _sd_expm_dot(e, e)
                scale = 2.0 ** (-i)
                for k in range(n):
                    e[k, k] = np.exp(diag[k] * scale)
                for k in range(n - 1):  # scipy's _exp_sinch: (exp(y) - exp(x)) / (y - x), exp(x) at y = x
                    lo, hi = diag[k] * scale, diag[k + 1] * scale
                    sinch = np.exp(lo) if hi - lo == 0 else (np.exp(hi) - np.exp(lo)) / (hi - lo)
                    if upper:
                        e[k, k + 1] = sinch * (near[k] * scale)
                    else:
                        e[k + 1, k] = sinch * (near[k] * scale)
        else:
            for _ in range(s):
                e = _sd_expm_dot(e, e)
    for i in range(n):  # the other triangle of a triangular input stays zero
        for j in range(n):
            if (upper and i > j) or (lower and i < j):
                e[i, j] = 0.0
    return e
"""
# the bounds on the Pade approximants' backward error for float64 and float32 (scipy's coeff)
_EXPM_COEFF = {
    np.dtype(np.float64): "(1.1191048088221578e-11, 1.1167770708198077e-06, 4.9826124310493469e-01, "
    "6.5662862500000000e+05, 1.2573361865339437e+19)",
    np.dtype(np.float32): "(6.0081481933593750e-03, 5.9956512451171875e+02, 2.6750196800000000e+08, "
    "3.5252480874905600e+14, 6.7502722515508048e+27)",
}


def _p_expm(w: Writer, node: Node, a: list[str]) -> str:
    w.helper("_sd_expm", _EXPM_SOURCE)
    coeff = _EXPM_COEFF[node.dtype]
    cast = "" if node.dtype == np.float64 else f".astype({_dtype(node.dtype)})"
    return _batched(w, node, a, [2], _core_shape(a[0], 2), lambda m: f"_sd_expm({m}, {coeff}){cast}")


PRINTERS: dict[str, Callable[[Writer, Node, list[str]], str]] = {
    "sum": _p_reduction("sum"),
    "max": _p_reduction("max"),
    "min": _p_reduction("min"),
    "mean": _p_mean,
    "count": _p_count,
    "expand_dims": _p_expand_dims,
    "squeeze": _p_squeeze,
    "reshape": _p_reshape,
    "transpose": _p_transpose,
    "broadcast_to": _p_broadcast_to,
    "broadcast_like": _p_broadcast_like,
    "astype": _p_astype,
    "match_shape": _p_match_shape,
    "stop_gradient": lambda w, node, a: a[0],
    "zeros_like": lambda w, node, a: f"np.zeros_like({a[0]})" if node.ndim else "0.0",
    "ones_like": lambda w, node, a: f"np.ones_like({a[0]})" if node.ndim else "1.0",
    "getitem": _p_getitem,
    "unindex": _p_unindex,
    "concatenate": _p_concatenate,
    "matmul": _p_matmul,
    "inv": _p_linalg("inv"),
    "det": _p_linalg("det"),
    "adjugate": _p_adjugate,
    "adjugate_jvp": _p_adjugate,
    "solve": _p_linalg("solve"),
    "clip": lambda w, node, a: f"np.minimum(np.maximum({a[0]}, {a[1]}), {a[2]})",
    "round": lambda w, node, a: f"np.round({a[0]}, {node.attrs['decimals']})" if node.ndim else "",
    "var": _p_var,
    "std": functools.partial(_p_var, root=True),
    "outer": lambda w, node, a: f"np.outer({a[0]}, {a[1]})" if all(u.ndim == 1 for u in node.inputs) else "",
    "clip_below": lambda w, node, a: f"np.maximum({a[0]}, {a[1]})",
    "clip_above": lambda w, node, a: f"np.minimum({a[0]}, {a[1]})",
    # h or its matrix transpose, by the shape of ref, known at evaluation (a copy: one array type)
    "tall": lambda w, node, a: (
        f"(np.ascontiguousarray({a[0]}) if {a[1]}.shape[-2] >= {a[1]}.shape[-1] "
        f"else np.ascontiguousarray(np.swapaxes({a[0]}, -1, -2)))"
    ),
    "reshape_like": lambda w, node, a: (
        f"np.ascontiguousarray({a[0]}).reshape({a[0]}.shape[:{node.ndim - node.inputs[1].ndim}] + {a[1]}.shape)"
    ),
    "output": lambda w, node, a: f"{a[0]}[{node.attrs['index']}]",
    "cumsum": _p_running,
    "cumprod": _p_running,
    "prod": _p_prod,
    "arange": lambda w, node, a: f"np.arange(np.int64({a[0]})).astype({_dtype(node.dtype)})",
    "cholesky": _p_cholesky,
    "eigh": _p_eigh,
    "eigh_gaps": _p_eigh_gaps,
    "slogdet": _p_slogdet,
    "singular_values": _p_singular_values,
    "solve_triangular": _p_solve_triangular,
    "expm": _p_expm,
}


def lowers(op: Op) -> bool:
    """Whether this backend runs ``op`` as its lowering (symdiff.lower) rather than a printer of its own."""
    return op.lower is not None and op.name not in PRINTERS and op.name not in LOOPS and op.sparsity != "body"


def unsupported(op: Op) -> str | None:
    """Why this backend cannot run ``op`` (None: it can, for the shapes its printer accepts)."""
    if op.sparsity == "body":  # runs its body, each op of it as here
        return None
    if op.name in PRINTERS or op.name in LOOPS or lowers(op):
        return None
    if op.numpy in UFUNCS and op.elementwise or op.scalar is not None and op.elementwise:
        return None
    # every op of the registry has one of those; an op defined since without any lands here
    return (
        "it has no numba printer (PRINTERS), no lowering to primitives (define_op's lower=) "
        "and no elementwise scalar form"
    )


def support(op: Op) -> str:
    """How this backend runs ``op``, for docs/ops.md's table."""
    return described(
        unsupported(op),
        (op.sparsity == "body", "its body, a njit function of its own"),
        (op.name in LOOPS, "a native loop calling its bodies' njit functions"),
        (op.name in PRINTERS, "printer"),
        (lowers(op), "lowered to primitives"),
        otherwise=f"`np.{op.numpy}`" if op.numpy in UFUNCS else "scalar expression, looped",
    )


@functools.cache
def function(op: Op) -> Callable[..., str]:
    """The printer of ``op``: ``printer(writer, node, argument_names) -> expression``."""
    reason = unsupported(op)
    if reason is not None:
        raise unsupported_error("numba", op.name, reason)
    if op.sparsity == "body":
        return _p_body
    if op.name in PRINTERS or op.name in LOOPS:
        return PRINTERS.get(op.name) or LOOPS[op.name]
    if lowers(op):
        return _p_lowered
    return functools.partial(_elementwise, op)


function.prints = True  # a plan's steps hold printers, bodies included (symdiff.plan.Step)


_NUMBA_TYPES = {"bool": "boolean"}


def _numba_type(dtype: np.dtype) -> str:
    return _NUMBA_TYPES.get(dtype.name, dtype.name)


def _elementwise(op: Op, w: Writer, node: Node, a: list[str]) -> str:
    if op.numpy in UFUNCS:
        return f"np.{op.numpy}({', '.join(a)})"
    # the scalar expression mapped over the broadcast inputs (numba.vectorize's own disk cache
    # cannot load from a generated module, so the loop is written out)
    dims = [u.ndim for u in node.inputs]
    name = f"_map_{op.name}_" + "_".join(f"{u.dtype.name}{u.ndim}" for u in node.inputs)
    arrays = [k for k, d in enumerate(dims) if d]
    params = [f"a{k}" for k in range(len(a))]
    lines = [f"    shape = np.broadcast_shapes({', '.join(f'a{k}.shape' for k in arrays)})"]
    for k in arrays:
        lines.append(f"    b{k} = np.ascontiguousarray(np.broadcast_to(a{k}, shape)).reshape(-1)")
    lines.append(f"    out = np.empty(b{arrays[0]}.size, np.{node.dtype.name})")
    lines.append("    for i in range(out.size):")
    items = [f"b{k}[i]" if dims[k] else f"a{k}" for k in range(len(a))]
    lines.append(f"        out[i] = {sx.to_numba(op.scalar, items, node.dtype)}")
    lines.append("    return out.reshape(shape)")
    source = (
        f'\n@numba.njit(cache=True, error_model="numpy")\ndef {name}({", ".join(params)}):\n' + "\n".join(lines) + "\n"
    )
    return f"{w.helper(name, source)}({', '.join(a)})"


def _literal(node: Node) -> str | None:
    v = np.asarray(node.value)
    if v.ndim:
        return None
    item = v.item()
    if v.dtype == bool:
        return repr(item)
    if v.dtype.kind == "f":
        if math.isfinite(item):
            text = repr(float(item))
        else:
            text = "np.nan" if math.isnan(item) else f"{'-' if item < 0 else ''}np.inf"
        return text if v.dtype == np.float64 else f"np.{v.dtype.name}({text})"
    return f"np.{v.dtype.name}({item})"


def generate(plan: Plan) -> tuple[str, list[np.ndarray], list[Node], list[Node]]:
    """The module source (helpers, then ``def compiled(inputs..., constants...)``), the
    array constants to pass after the inputs, the nodes whose shape check the function
    returns after the outputs (True: passed), and then the nodes whose shapes it returns
    (``(shape, *input_shapes)`` each, last), for ``plan.check_shapes`` to check after the
    call: where numpy's broadcasting could take a None dimension bound to 1. A body (a
    composite's) is a njit function of its own, printed once, called where nodes run it."""
    w = Writer()
    outs = _print(w, plan)
    function_source = _function("compiled", len(plan.inputs), w, outs)
    helpers = "".join(w.helpers[k] for k in sorted(w.helpers))
    source = (
        "# generated by symdiff's numba backend\nimport math as _math\n\nimport numba\nimport numpy as np\n"
        f"{helpers}\n{function_source}"
    )
    return source, w.constants, [node for _, node in w.checks], [node for _, node in w.shaped]


def _function(name: str, arity: int, w: Writer, outs: list[str]) -> str:
    """``def name(x0.., constants..)`` of ``w``'s statements, returning ``outs``, the flags of
    its checks and the shapes to check."""
    result = ", ".join(outs + [flag for flag, _ in w.checks] + [shape for shape, _ in w.shaped])
    params = [f"x{k}" for k in range(arity)] + [f"_c{k}" for k in range(len(w.constants))]
    body = "\n".join(w.lines) or "    pass"
    return (
        f'\n\n@numba.njit(cache=True, error_model="numpy")\n'
        f"def {name}({', '.join(params)}):\n{body}\n    return ({result},)\n"
    )


def _print(w: Writer, plan: Plan) -> list[str]:
    """The plan's steps as statements of ``w``, chains of elementwise steps fused into loops
    (symdiff.backends.fusion); the names of its outputs."""
    shaped = {s.node for s in plan.compiled_checks()}
    names: dict[Node, str] = {}
    for n in (*plan.inputs, *(s.node for s in plan.steps)):
        if n.dtype == np.float16:  # numba types no half-precision arithmetic (NotImplementedError)
            what = f"variable {n}" if n.op == "variable" else f"op {n.op!r} (node #{n.index})"
            raise BackendError(
                f"the numba backend cannot run float16 ({what}): numba has no half-precision arithmetic; "
                "use backend='numpy' or backend='jax' for this graph"
            )
    w.wanted = wanted_outputs(plan.computed, plan.outputs)
    for k, n in enumerate(plan.inputs):
        names[n] = f"x{k}"
    for n in plan.leaves:
        if n not in names:
            names[n] = _literal(n) or w.constant(n.value)
    for item in fused(
        plan,
        lambda step: None if step.scalar or step.node in shaped else _element_template(step.node),
        lambda step: None if step.node in shaped else _reduced(step.node),
    ):
        if isinstance(item, Group):
            _loop(w, item, names)
        else:
            _emit(w, item, names, shaped)
    return [names[n] for n in plan.outputs]


def _emit(w: Writer, step: Step, names: dict[Node, str], shaped: set[Node], target: str | None = None) -> None:
    """One step as one statement ``tN = expr`` (its printer's, or its scalar expression's; ``target``
    in place of ``tN``)."""
    n = step.node
    args = [names[u] for u in n.inputs]
    if step.scalar:
        expr = sx.to_numba(REGISTRY[n.op].scalar, args, n.dtype)
    else:
        expr = step.fn(w, n, args)  # the plan's function of the op: this backend's printer
        if not expr:
            raise _refuse(n, "this form of it (broadcast operands, a scalar) has no numba printer")
    target = target or f"t{n.index}"
    w.lines.append(f"    {target} = {expr}")
    names[n] = target
    if n in shaped:  # a raise here would keep numba from caching: the caller checks
        parts = [f"{names[m]}.shape" if m.ndim else "()" for m in (n, *n.inputs)]
        w.shaped.append((w.temp(f"({', '.join(parts)},)"), n))


# elementwise ops printed by PRINTERS whose element is a scalar expression of their inputs' elements
_FUSED = {
    "stop_gradient": "{0}",
    "broadcast_to": "{0}",
    "broadcast_like": "{0}",  # input 1 gives the shape only
    "astype": "{0}",  # made the node's dtype as every member is
    "clip": "np.minimum(np.maximum({0}, {1}), {2})",
    "clip_below": "np.maximum({0}, {1})",
    "clip_above": "np.minimum({0}, {1})",
}
# the ops whose scalar form has numpy's meaning on integers and booleans too; any other is fused
# only where it makes floats (or ints, for _INTEGER): numpy's bool + bool or int ** -1 are its own
_ANY_KIND = frozenset(
    "equal not_equal less less_equal greater greater_equal where maximum minimum clip clip_below clip_above "
    "stop_gradient broadcast_to broadcast_like".split()
)
_INTEGER = frozenset("add sub mul neg abs".split())


def _static(shape: tuple) -> bool:
    return None not in shape


def _element_template(node: Node) -> str | None:
    """The scalar expression, a template over its inputs' elements, computing one element of
    ``node`` in a fused loop; None if the node is printed on its own. Fused: an elementwise op
    with a scalar form (numba's kernel of its numpy ufunc, else its scalar expression) of a static
    shape, whose inputs broadcast to it by size-1 axes alone, in a float, int or bool dtype
    where the scalar form means what numpy's array op does."""
    op = REGISTRY[node.op]
    if not (op.elementwise or node.op == "stop_gradient") or node.is_multi or node.regions:
        return None
    if not node.shape or not _static(node.shape) or node.dtype.kind not in "fbi":
        return None
    if node.op == "astype" and node.dtype.kind != "f":
        if node.dtype.kind != "i" or node.inputs[0].dtype.kind not in "ib":
            return None  # float to int or anything to bool: numpy's casts, not numba's scalar ones
    if node.dtype.kind != "f" and node.op not in _ANY_KIND and not (node.dtype.kind == "i" and node.op in _INTEGER):
        return None
    for u in node.inputs:
        if u.dtype.kind not in "fbi" or not _static(u.shape) or len(u.shape) > node.ndim:
            return None
        if any(d not in (1, s) for d, s in zip(u.shape, node.shape[node.ndim - u.ndim :])):
            return None
    if node.op in _FUSED:
        template = _FUSED[node.op]
    elif node.op in PRINTERS:
        return None
    elif op.numpy in UFUNCS:  # numba's own kernel of its array ufunc: the same numbers as unfused
        template = f"np.{op.numpy}({', '.join(f'{{{k}}}' for k in range(len(node.inputs)))})"
    elif op.scalar is not None:  # a format string over the inputs' elements, as the others
        template = sx.to_numba(op.scalar, [f"{{{k}}}" for k in range(len(node.inputs))], node.dtype)
    else:
        return None
    if node.dtype != np.float64 or any(u.dtype != np.float64 for u in node.inputs):
        # numba's scalar types are not numpy's arrays' (int32 + int32 is int64, float32 * a
        # float64 literal float64): each element is made the node's dtype, as numpy's result is
        template = f"{_dtype(node.dtype)}({template})"
    return template


def _reduced(node: Node) -> str | None:
    """The op ("sum" or "mean") of a float64 sum or mean of a float64 array over all its axes,
    which a loop over the array's elements accumulates (in numba's np.sum's order); else None."""
    if node.op not in ("sum", "mean") or node.shape != () or node.dtype != np.float64:
        return None
    (x,) = node.inputs
    if not x.shape or not _static(x.shape) or x.dtype != np.float64 or len(_axes(node, x.ndim)) != x.ndim:
        return None
    return node.op


def _loop(w: Writer, group: Group, names: dict[Node, str]) -> None:
    """A group of steps (symdiff.backends.fusion) as one loop over its shape: each map an element
    (its template, ``_element_template``), each sum an accumulator; arrays for the stored maps."""
    shape, stored = group.shape, group.stored
    index = [w.name() for _ in shape]
    for n in stored:
        w.lines.append(f"    t{n.index} = np.empty({shape}, {_dtype(n.dtype)})")
    for n in group.steps:
        if n in group.sums:
            w.lines.append(f"    t{n.index} = 0.0")
    for depth, (i, size) in enumerate(zip(index, shape)):
        w.lines.append("    " * (depth + 1) + f"for {i} in range({size}):")
    pad = "    " * (len(shape) + 1)
    local: dict[Node, str] = {}  # an element computed or loaded in the loop: its name there

    def element(u: Node) -> str:
        if u in local:
            return local[u]
        if not u.ndim:
            return names[u]
        skip = len(shape) - u.ndim
        at = [i if d == size else "0" for i, d, size in zip(index[skip:], u.shape, shape[skip:])]
        local[u] = w.name()
        w.lines.append(f"{pad}{local[u]} = {names[u]}[{', '.join(at)}]")
        return local[u]

    for n in group.steps:
        args = [element(u) for u in n.inputs]
        if n in group.sums:
            w.lines.append(f"{pad}t{n.index} += {args[0]}")
            continue
        local[n] = w.name()
        w.lines.append(f"{pad}{local[n]} = {group.maps[n].format(*args)}")
    for n in stored:
        w.lines.append(f"{pad}t{n.index}[{', '.join(index)}] = {local[n]}")
    for n in group.steps:
        if n.op == "mean":
            w.lines.append(f"    t{n.index} = t{n.index} / {math.prod(shape)}")
    for n in (*stored, *group.sums):
        names[n] = f"t{n.index}"


def cache_dir() -> Path:
    """Where generated modules and numba's machine code are kept."""
    if os.environ.get("SYMDIFF_CACHE_DIR"):
        return Path(os.environ["SYMDIFF_CACHE_DIR"]) / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symdiff" / "numba"


def load_module(source: str) -> Any:
    """The module of ``source``, written once under its hash (the key of numba's disk cache)."""
    digest = hashlib.sha256(f"{numba.__version__}\n{source}".encode()).hexdigest()[:24]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sd_{digest}.py"
    if not path.exists():  # never rewritten: numba's cache index keys on the file's time stamp
        partial = folder / f".sd_{digest}.{os.getpid()}.tmp"
        partial.write_text(source)
        os.replace(partial, path)
    name = f"symdiff_numba_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: numba's cache looks the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _signature(inputs: list[Node], constants: list[np.ndarray]) -> tuple:
    types = []
    for n in inputs:
        scalar = numba.from_dtype(n.dtype)
        types.append(scalar if n.ndim == 0 else numba.types.Array(scalar, n.ndim, "C"))
    for c in constants:
        types.append(numba.typeof(c))
    return tuple(types)


class Compiled(_NumpyCompiled):
    """``sd.compile(..., backend="numba")``: native code from the plan, cached on disk."""

    backend = "numba"

    def _build(self, outputs: list[Node], inputs: list[Node]) -> None:
        self._plan = plan = Plan(outputs, inputs, function)
        self._check_bound(plan)
        self.source, self._constants, self._checked, self._shaped = generate(plan)
        module = load_module(self.source)
        self._dispatcher = module.compiled
        signature = _signature(inputs, self._constants)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", numba.core.errors.NumbaPerformanceWarning)
                self._dispatcher.compile(signature)
        except numba.core.errors.NumbaError as exc:
            first = [line for line in str(exc).strip().splitlines() if line.strip()]  # the signature too
            raise BackendError(
                "the numba backend could not compile this graph: "
                + " ".join(line.strip() for line in first[:3])
                + " (the generated source is in "
                + str(module.__file__)
                + "); use backend='numpy' for it"
            ) from None
        self._code = self._dispatcher.overloads[signature].entry_point
        self._scalar = [n.ndim == 0 for n in inputs]
        self._kinds = [n.dtype for n in inputs]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != len(self.inputs):
            args = self._positional(args, kwargs)
        values = []
        for node, value, scalar in zip(self.inputs, args, self._scalar):
            if scalar:
                fast = type(value) is float and node.dtype == np.float64
                values.append(value if fast else check_value(node, value, "compiled function")[()])
            else:
                values.append(np.ascontiguousarray(check_value(node, value, "compiled function")))
        try:
            raw = self._code(*values, *self._constants)
        except Exception:
            self._refuse(values)  # the numpy backend's error for these values (a ShapeError naming them)
            raise
        if self._shaped:
            raw, shapes = raw[: len(raw) - len(self._shaped)], raw[len(raw) - len(self._shaped) :]
            for node, (shape, *inputs) in zip(self._shaped, shapes):
                try:
                    check_shapes(node, shape, inputs)
                except ShapeError:
                    self._refuse(values)
                    raise
        if self._checked:
            flags, raw = raw[len(raw) - len(self._checked) :], raw[: len(raw) - len(self._checked)]
            if not all(flags):
                self._refuse(values)  # unreachable past here: the interpreter raised
                failed = next(node for node, flag in zip(self._checked, flags) if not flag)
                if failed.op in LOOPS:
                    raise LoopError(f"{failed.attrs['name']}: ran out of its steps' bounds")
                raise ShapeError("a gradient has a shape other than its variable's")
        results = [_finish(v, node.dtype) for v, node in zip(raw, self.outputs)]
        return results[0] if self._single else results

    def _refuse(self, values: list[Any]) -> None:
        """Raise what the numpy interpreter raises for these values (the same ShapeError, naming
        the op and the variables, as every backend); return if it computes them."""
        Plan(self.outputs, self.inputs, numpy_function).run(dict(zip(self.inputs, values)))


def _finish(value: Any, dtype: np.dtype) -> Any:
    """A result as ``sd.evaluate`` returns it, in the output node's dtype: numba returns a
    float32 scalar as a Python float, and promotes float32 by int64 (a count) to float64."""
    if type(value) is float and dtype == np.float64:
        return np.float64(value)
    value = finish(value)
    if value.dtype != dtype:
        value = value.astype(dtype) if isinstance(value, np.ndarray) else dtype.type(value)
    return value
