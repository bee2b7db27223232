"""The C backend: the plan of a graph specialized to its inputs' shapes (symdiff.specialize),
printed as one C99 function (``sd.to_c``), or built with the system C compiler and called
through cffi (``sd.compile(..., backend="c")``).

The function is ``int NAME(const T *in..., T *out..., void *work)``: inputs and outputs are the
caller's C-contiguous arrays (a value of shape () a pointer to one element), ``work`` a buffer
of the size the header states (16-byte aligned); it returns 0, or an error code (``ERRORS``)
after which Python reruns the numpy interpreter for numpy's own error. Values of shape () are C
locals, so a chain of scalar ops is straight-line C; arrays live in the work buffer (a block
reused once its value is dead, by the plan's lifetimes) or in the caller's output arrays, and a
reshape-like op aliases its input. Each primitive has a printer (``PRINTERS``); the elementwise
ops print their scalar expression (``symdiff.scalar.to_c``) in a loop over the broadcast inputs.
Chains of elementwise steps over one shape are fused (symdiff.backends.fusion): one loop nest
computes each element into a C local, sums over all the elements accumulating in it, and
stores only the values read after the loop (in the work buffer, or the caller's output);
a small group whose arithmetic would stay live across calls of the C library gets a loop per
level of calls instead (``_levels``), with the same results.
No malloc, no globals (array constants are ``static const`` tables), no printf.

Cache: ``sd.compile(..., backend="c")`` writes the source under ``$SYMDIFF_CACHE_DIR/c`` (default
``~/.cache/symdiff/c``) with the shared library built from it, both named by the hash of the
source, the compiler and its flags, so another process loads the library without compiling.

Call: cffi's ABI mode. Each thread calling a library of fixed input shapes gets, at its first
call, a Python function generated for it (``_fast_function``: its float cells, work buffer and
per-argument steps written out), which passes values ready as they are and hands any other value,
and any nonzero return code, to the general path (``Compiled.__call__``, ``_Library.run``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import symdiff.scalar as sx
from symdiff.backends import described, unsupported_error
from symdiff.backends.base import Compiled as _NumpyCompiled
from symdiff.backends.base import as_outputs, check_value, resolve_inputs, sparse_outputs
from symdiff.backends.fusion import Group, fused
from symdiff.backends.numpy import function as numpy_function
from symdiff.errors import BackendError, GraphError, ShapeError, SymdiffError
from symdiff.graph import Node, ancestors, format_shape, regions_in
from symdiff.lower import lowered
from symdiff.ops import REGISTRY
from symdiff.ops.core import Op
from symdiff.plan import Plan, Step, wanted_outputs
from symdiff.sparse import SparseDerivative
from symdiff.specialize import specialized

# error codes the generated function returns (0: success); Python then reruns the numpy
# interpreter for numpy's own error, or raises a BackendError naming the node
ERRORS = {
    1: "an index out of bounds",
    2: "a singular matrix",
    3: "a matrix that is not positive definite",
    4: "an integer to a negative integer power",
    5: "a maximum or minimum of no elements",
    6: "a scan's trip count outside 0..length",
    7: "a while_loop whose condition still holds after max_steps steps",
}

_CTYPES = {
    "float64": "double",
    "float32": "float",
    "int64": "int64_t",
    "int32": "int32_t",
    "int16": "int16_t",
    "int8": "int8_t",
    "uint64": "uint64_t",
    "uint32": "uint32_t",
    "uint16": "uint16_t",
    "uint8": "uint8_t",
    "bool": "uint8_t",  # numpy's bool: one byte, 0 or 1
}


def ctype(dtype: np.dtype) -> str:
    """The C type of values of ``dtype``; BackendError for a dtype C99 does not have."""
    name = np.dtype(dtype).name
    if name not in _CTYPES:
        raise BackendError(f"the C backend cannot hold {name} values; use backend='numpy' for this graph")
    return _CTYPES[name]


def strides(shape: Sequence[int]) -> list[int]:
    """The row-major strides of ``shape``, in elements."""
    out, step = [], 1
    for size in reversed(shape):
        out.append(step)
        step *= int(size)
    return out[::-1]


def broadcast_strides(shape: Sequence[int], target: Sequence[int]) -> list[int]:
    """The strides (in elements) reading a C-contiguous array of ``shape`` broadcast to ``target``:
    0 on an axis it lacks or has of size 1."""
    own = strides(shape)
    lead = len(target) - len(shape)
    return [0 if k < lead or shape[k - lead] != size or size == 1 else own[k - lead] for k, size in enumerate(target)]


class _Blocks:
    """The work buffer: 16-byte aligned blocks taken and given back (first fit, neighbours merged).

    A block given back is reused only for values of the same C type (``kind``): memory of the
    buffer never changes type within a function, so the code is right under C's strict-aliasing
    rules (gcc's default at -O2), whatever buffer the caller passes. Scratch (``kind`` None: a
    kernel may view it as several types) is never reused."""

    def __init__(self) -> None:
        self.free: dict[str, list[tuple[int, int]]] = {}  # kind -> (offset, bytes), by offset
        self.taken: dict[int, tuple[int, str | None]] = {}
        self.high = 0

    def take(self, nbytes: int, kind: str | None) -> int:
        size = -(-max(int(nbytes), 1) // 16) * 16
        free = self.free.get(kind, []) if kind is not None else []
        for k, (offset, room) in enumerate(free):
            if room >= size:
                if room == size:
                    del free[k]
                else:
                    free[k] = (offset + size, room - size)
                self.taken[offset] = (size, kind)
                return offset
        offset, self.high = self.high, self.high + size
        self.taken[offset] = (size, kind)
        return offset

    def give(self, offset: int) -> None:
        size, kind = self.taken.pop(offset)
        if kind is None:
            return
        free = sorted([*self.free.get(kind, []), (offset, size)])
        merged: list[tuple[int, int]] = []
        for start, room in free:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + room)
            else:
                merged.append((start, room))
        self.free[kind] = merged


class CWriter:
    """Statements of the C function being printed, and the helpers printed before it."""

    def __init__(self, outer: CWriter | None = None) -> None:
        self.lines: list[str] = []
        # name -> source, printed before the function; shared with the writers of loop bodies
        self.helpers: dict[str, str] = outer.helpers if outer is not None else {}
        # (body, its outputs printed) -> its function (symdiff.backends.c_loops), printed once
        self.bodies: dict[tuple, Any] = outer.bodies if outer is not None else {}
        # the outputs the plan reads of each node with several (plan.wanted_outputs; None: all)
        self.wanted: dict[Node, frozenset[int] | None] = {}
        self.indent = 1
        self._k = 0
        self.blocks = _Blocks()
        self._scratch: list[int] = []  # the blocks scratch() gave the node being printed

    @property
    def work(self) -> int:
        """Bytes of the work buffer the function needs (its high-water mark)."""
        return self.blocks.high

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def name(self) -> str:
        self._k += 1
        return f"_u{self._k}"

    def local(self, ctype: str, expr: str) -> str:
        """``ctype _uN = expr;``; returns ``_uN``."""
        name = self.name()
        self.line(f"{ctype} {name} = {expr};")
        return name

    def scratch(self, nbytes: int) -> str:
        """A ``char *`` to ``nbytes`` of the work buffer (16-byte aligned), for this node's statements."""
        name = self.name()
        offset = self.blocks.take(nbytes, None)
        self._scratch.append(offset)
        self.line(f"char *{name} = (char *)work + {offset};")
        return name

    def release_scratch(self) -> None:
        """The scratch blocks of the node just printed, free again."""
        for offset in self._scratch:
            self.blocks.give(offset)
        self._scratch.clear()

    @contextlib.contextmanager
    def nest(self, sizes: Sequence[int], strides: Sequence[Sequence[int]]) -> Iterator[list[str]]:
        """Loops over an index of ``sizes`` (row-major), for operands read or written with
        ``strides`` (in elements, one list per operand, 0 on a broadcast axis): yields each
        operand's offset expression. Axes of size 1 are dropped and adjacent axes every operand
        walks alike are merged, so a contiguous operand is one loop over ``i``."""
        groups: list[tuple[int, list[int]]] = []
        for axis, size in enumerate(sizes):
            if size == 1:
                continue
            steps = [int(s[axis]) for s in strides]
            if groups and all(p == q * size for p, q in zip(groups[-1][1], steps)):
                groups[-1] = (groups[-1][0] * size, steps)
            else:
                groups.append((int(size), steps))
        names = [self.name() for _ in groups]
        with contextlib.ExitStack() as stack:
            for var, (size, _) in zip(names, groups):
                stack.enter_context(self.loop(var, size))
            yield [
                " + ".join(var if st == 1 else f"{var} * {st}" for var, (_, s) in zip(names, groups) if (st := s[k]))
                or "0"
                for k in range(len(strides))
            ]

    def helper(self, name: str, source: str) -> str:
        """A static function (or several) printed once before the entry point."""
        self.helpers.setdefault(name, source)
        return name

    def fail(self, condition: str, code: int, node: Node) -> None:
        """Return ``code`` (see ERRORS) from the function where ``condition`` holds."""
        self.line(f"if ({condition}) return {code};  /* {node.op} (node #{node.index}) */")

    def loop(self, var: str, count: int | str) -> contextlib.AbstractContextManager[None]:
        """``for (long var = 0; var < count; ++var) { ... }`` around the statements of the block."""
        return self.block(f"for (long {var} = 0; {var} < {count}; ++{var})")

    @contextlib.contextmanager
    def block(self, head: str) -> Iterator[None]:
        """``head { ... }`` (an ``if``, a loop) around the statements of the block."""
        self.line(f"{head} {{")
        self.indent += 1
        try:
            yield
        finally:
            self.indent -= 1
            self.line("}")

    @staticmethod
    def at(name: str, node: Node | tuple, index: str) -> str:
        """Element ``index`` (a flat, row-major C expression) of a value: ``name[index]`` for an
        array, ``name`` for a value of shape ()."""
        shape = node if isinstance(node, tuple) else node.shape
        return name if shape == () else f"{name}[{index}]"


# op name -> printer(w, node, out, args): appends the statements computing ``node`` into ``out``
# (a pointer for an array, a local for shape (); a list of them for a node with several outputs)
# from ``args`` (its inputs' names likewise). Shapes are concrete: the graph is specialized.
PRINTERS: dict[str, Callable[[CWriter, Node, str | list[str], list[str]], None]] = {}


# -- constants and casts ----------------------------------------------------------------------
_PROGRESSION_MIN = 64  # shorter constants print as tables


def progression(value: np.ndarray) -> Callable[[str], str] | None:
    """For a constant of at least 64 numbers whose flat values are ``i * step`` or all one value,
    bit for bit as C computes them (one rounding): the C expression of element ``i``; else None."""
    flat = value.reshape(-1)
    if flat.size < _PROGRESSION_MIN or flat.dtype.kind not in "iuf":
        return None
    t = ctype(flat.dtype)
    bits = flat.view(f"u{flat.dtype.itemsize}")
    if (bits == bits[0]).all():
        first = literal(flat[0].item(), flat.dtype)
        return lambda i: first
    if flat.dtype.kind in "iu" and abs(int(flat[1])) * (flat.size - 1) > np.iinfo(flat.dtype).max:
        return None  # numpy's product wraps around where C's would overflow
    with np.errstate(all="ignore"):
        made = np.arange(flat.size).astype(flat.dtype) * flat[1]
    if (made.view(bits.dtype) == bits).all():
        step = literal(flat[1].item(), flat.dtype)
        return lambda i: f"({t}){i} * {step}"
    return None


def literal(value: Any, dtype: Any) -> str:
    """A number as a C constant expression of ``dtype`` (``2.0``, ``0.5f``, ``((int32_t)3)``)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return "1" if bool(value) else "0"
    if dtype.kind == "f":
        ctype(dtype)
        return sx.to_c(sx.const(float(value)), [], dtype)
    v = int(value)
    if dtype.kind == "u" and v > 2**31 - 1:
        return f"UINT64_C({v})"
    if v == -(2**63):
        return "INT64_MIN"
    if abs(v) > 2**31 - 1:
        return f"INT64_C({v})" if v > 0 else f"(-INT64_C({-v}))"
    return f"(({ctype(dtype)}){v})"


def _literals(flat: np.ndarray, dtype: Any) -> list[str]:
    """``literal`` of each value, each distinct value printed once."""
    seen: dict[Any, str] = {}
    out = []
    for v in flat.tolist():
        text = seen.get(v) if not (isinstance(v, float) and v == 0.0) else None  # -0.0 == 0.0
        if text is None:
            text = literal(v, dtype)
            if not (isinstance(v, float) and (v != v or v == 0.0)):
                seen[v] = text
        out.append(text)
    return out


_FLOAT_TO_INT = """static inline int64_t symdiff_f2i64(double x)
{
    /* numpy's cast on x86: out of range and nan give the smallest integer */
    return (x >= -9223372036854775808.0 && x < 9223372036854775808.0) ? (int64_t)x : INT64_MIN;
}
static inline int32_t symdiff_f2i32(double x)
{
    return (x > -2147483649.0 && x < 2147483648.0) ? (int32_t)x : INT32_MIN;
}
static inline uint64_t symdiff_f2u64(double x)
{
    return (x >= 0.0 && x < 18446744073709551616.0) ? (uint64_t)x : (uint64_t)symdiff_f2i64(x);
}
"""
_VIA = {"int64": "symdiff_f2i64", "int32": "symdiff_f2i32", "uint64": "symdiff_f2u64", "uint32": "symdiff_f2i64"}


def cast(w: CWriter, text: str, src: Any, dst: Any) -> str:
    """``text``, a value of dtype ``src``, as ``dst`` with numpy's ``astype`` (no undefined behaviour:
    a float out of an integer type's range gives what numpy gives on x86)."""
    src, dst = np.dtype(src), np.dtype(dst)
    if src == dst:
        return text
    if dst == np.bool_:
        return f"({text} != 0)"
    if dst.kind in "iu" and src.kind == "f":
        w.helper("symdiff_f2i", _FLOAT_TO_INT)
        fn = _VIA.get(dst.name, "symdiff_f2i32")
        text = f"{fn}({text})"
        return text if dst.name in ("int64", "int32", "uint64") else f"(({ctype(dst)}){text})"
    return f"(({ctype(dst)}){text})"


# -- the elementwise ops ----------------------------------------------------------------------
a0, a1, a2 = sx.arg(0), sx.arg(1), sx.arg(2)
# the elementwise primitives declared without a scalar expression, which C prints from one
_TREES = {
    "maximum": sx.maximum(a0, a1),
    "minimum": sx.minimum(a0, a1),
    "sign": sx.sign(a0),
    "clip": sx.minimum(sx.maximum(a0, a1), a2),
    "clip_below": sx.maximum(a0, a1),
    "clip_above": sx.minimum(a0, a1),
}
del a0, a1, a2
# elementwise primitives printed by rules of their own
_SPECIAL = frozenset(("astype", "broadcast_to", "broadcast_like", "logaddexp", "round"))

_LOGADDEXP = """static inline double symdiff_logaddexp(double x, double y)
{
    /* numpy's npy_logaddexp: exact at equal infinities, nan for nan */
    double d;
    if (x == y) return x + 0.693147180559945309417232121458176568;
    d = x - y;
    if (d > 0) return x + log1p(exp(-d));
    if (d <= 0) return y + log1p(exp(d));
    return d;
}
static inline float symdiff_logaddexpf(float x, float y)
{
    float d;
    if (x == y) return x + 0.693147180559945309417232121458176568f;
    d = x - y;
    if (d > 0) return x + log1pf(expf(-d));
    if (d <= 0) return y + log1pf(expf(d));
    return d;
}
"""

_IPOW = """static inline uint64_t symdiff_upow(uint64_t b, uint64_t e)
{
    /* numpy's integer power: by squaring, wrapping around as numpy's integers do */
    uint64_t r = 1;
    while (e > 0) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return r;
}
"""


def elementwise(op: Op) -> bool:
    """Whether ``op`` is an elementwise primitive the C backend prints element by element."""
    return op.elementwise and op.lower is None and (op.scalar is not None or op.name in _TREES or op.name in _SPECIAL)


def _wrapped(t: str, symbol: str, a: str, b: str) -> str:
    # integer arithmetic modulo 2**64, then narrowed: numpy's wrap-around, never C's undefined overflow
    return f"(({t})((uint64_t){a} {symbol} (uint64_t){b}))"


def _integer(w: CWriter, node: Node, dt: np.dtype, a: list[str]) -> str | None:
    """One element of an elementwise node computed in an integer or boolean dtype ``dt`` (its
    inputs' elements ``a`` already of it); None for an op computed in double instead."""
    t, name = ctype(dt), node.op
    signed = dt.kind == "i"
    if name in ("add", "mul") and dt == np.bool_:
        return f"({a[0]} {'||' if name == 'add' else '&&'} {a[1]})"
    if name in ("add", "sub", "mul"):
        return _wrapped(t, {"add": "+", "sub": "-", "mul": "*"}[name], a[0], a[1])
    if name == "neg":
        return _wrapped(t, "-", "0", a[0])
    if name == "abs":
        return f"({a[0]} < 0 ? {_wrapped(t, '-', '0', a[0])} : {a[0]})" if signed else a[0]
    if name == "sign":
        return f"(({t})(({a[0]} > 0) - ({a[0]} < 0)))" if signed else f"(({t})({a[0]} > 0))"
    if name in ("maximum", "clip_below"):
        return f"({a[0]} > {a[1]} ? {a[0]} : {a[1]})"
    if name == "relu":  # exact for every integer (its scalar expression in double is not above 2**53)
        return f"({a[0]} > 0 ? {a[0]} : 0)" if signed else a[0]
    if name in ("minimum", "clip_above"):
        return f"({a[0]} < {a[1]} ? {a[0]} : {a[1]})"
    if name == "clip":
        low = f"({a[0]} > {a[1]} ? {a[0]} : {a[1]})"
        return f"({low} < {a[2]} ? {low} : {a[2]})"
    if name == "where":
        return f"({a[0]} ? {a[1]} : {a[2]})"
    if name in sx.COMPARISONS:
        return f"({a[0]} {sx.COMPARISONS[name]} {a[1]})"
    if name in ("floor", "ceil") or (name == "round" and node.attrs["decimals"] >= 0):
        return a[0]
    if name == "pow":
        if signed:
            w.fail(f"{a[1]} < 0", 4, node)
        w.helper("symdiff_upow", _IPOW)
        return f"(({t})symdiff_upow((uint64_t){a[0]}, (uint64_t){a[1]}))"
    return None


def element(w: CWriter, node: Node, items: list[str]) -> str:
    """The C expression of one element of the elementwise ``node`` from its inputs' elements
    (``items``, each in its input's C type), in numpy's arithmetic: a float result computed in
    its own type (operands cast to it, as numpy casts them), comparisons in the operands'
    common type, integers wrapping around."""
    name, dt, ins = node.op, node.dtype, node.inputs
    if name in ("broadcast_to", "broadcast_like"):
        return items[0]
    if name == "astype":
        return cast(w, items[0], ins[0].dtype, dt)
    kinds = [u.dtype for u in ins if u.dtype != np.bool_]
    compute = dt if dt != np.bool_ else (np.result_type(*kinds) if kinds else dt)
    if compute.kind in "iub":
        args = [
            it if name == "where" and k == 0 else cast(w, it, u.dtype, compute)  # where's condition stays
            for k, (it, u) in enumerate(zip(items, ins))
        ]
        text = _integer(w, node, compute, args)
        if text is not None:
            return text
        compute = np.dtype(np.float64)  # any other op on integers: its scalar expression in double
    args = [it if u.dtype == np.bool_ else cast(w, it, u.dtype, compute) for it, u in zip(items, ins)]
    single = "f" if compute == np.float32 else ""
    if name == "logaddexp":
        w.helper("symdiff_logaddexp", _LOGADDEXP)
        text = f"symdiff_logaddexp{single}({args[0]}, {args[1]})"
    elif name == "round":
        # numpy's: rint(x * 10**d) / 10**d (rint(x / 10**-d) * 10**-d for d < 0), ties to even
        d = node.attrs["decimals"]
        scale = literal(10.0 ** abs(d), compute)
        inner = args[0] if d == 0 else f"{args[0]} * {scale}" if d > 0 else f"{args[0]} / {scale}"
        text = f"rint{single}({inner})" + ("" if d == 0 else f" / {scale}" if d > 0 else f" * {scale}")
        text = f"({text})"
    else:
        op = REGISTRY[name]
        text = sx.to_c(op.scalar if op.scalar is not None else _TREES[name], args, compute)
    return text if compute == dt or dt == np.bool_ else cast(w, text, compute, dt)


def _p_elementwise(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    """An elementwise node: its element in a loop over its shape, each input read by its own
    strides (0 on a broadcast axis)."""
    if node.shape == ():
        w.line(f"{out} = {element(w, node, args)};")
        return
    shape = node.shape
    with w.nest(shape, [strides(shape)] + [broadcast_strides(u.shape, shape) for u in node.inputs]) as at:
        items = [a if u.shape == () else f"{a}[{i}]" for a, u, i in zip(args, node.inputs, at[1:])]
        w.line(f"{out}[{at[0]}] = {element(w, node, items)};")


# -- reductions, products, structure ----------------------------------------------------------
def _axes(node: Node, ndim: int) -> list[int]:
    axes = node.attrs["axis"]
    axes = range(ndim) if axes is None else (axes,) if isinstance(axes, int) else axes
    return sorted({a % ndim for a in axes}) if ndim else []


def _p_reduction(kind: str) -> Callable[[CWriter, Node, str, list[str]], None]:
    def printer(w: CWriter, node: Node, out: str, args: list[str]) -> None:
        """sum, prod, max or min over axes, accumulated in the node's dtype (numpy's accumulator:
        int32 sums in int64); max and min propagate nan as numpy's."""
        (x,), (a,), dt = node.inputs, args, node.dtype
        t = ctype(dt)
        if x.shape == ():
            w.line(f"{out} = {cast(w, a, x.dtype, dt)};")
            return
        axes = _axes(node, x.ndim)
        kept = [d for d in range(x.ndim) if d not in axes]
        xs = strides(x.shape)
        kept_shape = [x.shape[d] for d in kept]
        reduced = [x.shape[d] for d in axes]
        wide = kind == "sum" and dt == np.float32 and math.prod(reduced) > 8
        with w.nest(kept_shape, [strides(kept_shape), [xs[d] for d in kept]]) as (o, xo):
            if kind in ("max", "min"):
                if math.prod(reduced) == 0:
                    w.fail("1", 5, node)
                acc = w.local(t, cast(w, f"{a}[{xo}]", x.dtype, dt))
            elif wide:
                # in double: numpy's pairwise float32 sum keeps ~1e-7 over 10^5 terms, a float
                # running sum would lose 1e-4 (up to 8 terms numpy adds in order, as here)
                acc = w.local("double", "0.0")
            else:
                acc = w.local(t, literal(0 if kind == "sum" else 1, dt))
            with w.nest(reduced, [[xs[d] for d in axes]]) as (xi,):
                v = w.local(t, cast(w, f"{a}[{xo if xo != '0' else ''}{' + ' if xo != '0' else ''}{xi}]", x.dtype, dt))
                if kind in ("max", "min"):
                    nan = f" || {v} != {v}" if dt.kind == "f" else ""
                    w.line(f"if ({v} {'>' if kind == 'max' else '<'} {acc}{nan}) {acc} = {v};")
                elif dt.kind == "f":
                    w.line(f"{acc} {'+' if kind == 'sum' else '*'}= {v};")
                else:
                    w.line(f"{acc} = {_wrapped(t, '+' if kind == 'sum' else '*', acc, v)};")
            w.line(f"{w.at(out, node, o)} = {'(float)' if wide else ''}{acc};")

    return printer


def _p_matmul(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    """matmul over the broadcast stack axes: operands cast to the result's dtype (as numpy),
    each row of the result accumulated over k in order (integers wrapping, booleans any-of)."""
    x, y = node.inputs
    dt = node.dtype
    t = ctype(dt)
    n = x.shape[-2] if x.ndim >= 2 else 1
    k = x.shape[-1]
    m = y.shape[-1] if y.ndim >= 2 else 1
    batch = node.shape[: node.ndim - (x.ndim >= 2) - (y.ndim >= 2)]
    xb = broadcast_strides(x.shape[:-2], batch) if x.ndim >= 2 else [0] * len(batch)
    yb = broadcast_strides(y.shape[:-2], batch) if y.ndim >= 2 else [0] * len(batch)
    xb, yb = [s * n * k for s in xb], [s * k * m for s in yb]

    def update(acc: str, p: str, q: str) -> str:
        p, q = cast(w, p, x.dtype, dt), cast(w, q, y.dtype, dt)
        if dt == np.bool_:
            return f"{acc} = {acc} || ({p} && {q});"
        if dt.kind == "f":
            return f"{acc} += {p} * {q};"
        return f"{acc} = {_wrapped(t, '+', acc, _wrapped(t, '*', p, q))};"

    zero = literal(0, dt)
    with w.nest(batch, [strides(batch) and [s * n * m for s in strides(batch)], xb, yb]) as (ob, xo, yo):
        if node.shape == ():
            acc = w.local(t, zero)
            with w.loop("_k", k):
                w.line(update(acc, f"{args[0]}[_k]", f"{args[1]}[_k]"))
            w.line(f"{out} = {acc};")
            return
        with w.loop("_i", n):
            row = f"{ob} + _i * {m}"
            with w.loop("_j", m):
                w.line(f"{out}[{row} + _j] = {zero};")
            with w.loop("_k", k):
                p = w.local(ctype(x.dtype), f"{args[0]}[{xo} + _i * {k} + _k]")
                with w.loop("_j", m):
                    w.line(update(f"{out}[{row} + _j]", p, f"{args[1]}[{yo} + _k * {m} + _j]"))


def _p_transpose(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    (x,) = node.inputs
    if node.shape == ():
        w.line(f"{out} = {args[0]};")
        return
    xs = strides(x.shape)
    with w.nest(node.shape, [strides(node.shape), [xs[p] for p in node.attrs["axes"]]]) as (o, i):
        w.line(f"{out}[{o}] = {args[0]}[{i}];")


def _p_fill(value: int) -> Callable[[CWriter, Node, str, list[str]], None]:
    def printer(w: CWriter, node: Node, out: str, args: list[str]) -> None:
        """zeros_like, ones_like: the node's shape filled."""
        if node.shape == ():
            w.line(f"{out} = {literal(value, node.dtype)};")
            return
        with w.nest(node.shape, [strides(node.shape)]) as (o,):
            w.line(f"{out}[{o}] = {literal(value, node.dtype)};")

    return printer


PRINTERS.update(
    {
        "sum": _p_reduction("sum"),
        "prod": _p_reduction("prod"),
        "max": _p_reduction("max"),
        "min": _p_reduction("min"),
        "matmul": _p_matmul,
        "transpose": _p_transpose,
        "zeros_like": _p_fill(0),
        "ones_like": _p_fill(1),
    }
)
# ops whose value is their first input's, regrouped (C-contiguous): the same storage, no copy
ALIASES = frozenset(("reshape", "reshape_like", "expand_dims", "squeeze", "stop_gradient", "match_shape"))
LOOPS = ("scan", "while_loop")
# the graph is specialized to the input shapes before printing: an op whose lowering needs concrete
# shapes is lowered then, not refused (tests/test_backends.py asks)
specializes = True


def printable(op: Op) -> bool:
    """Whether the C backend prints ``op`` itself (a primitive with a printer)."""
    return op.name in PRINTERS or op.name in ALIASES or op.name == "output" or elementwise(op)


def lowers(op: Op) -> bool:
    """Whether this backend runs ``op`` as its lowering (symdiff.lower): every op that is not a primitive."""
    return op.lower is not None and op.sparsity != "body" and op.name not in PRINTERS


def unsupported(op: Op) -> str | None:
    """Why this backend cannot run ``op`` (None: it can)."""
    if op.sparsity == "body" or lowers(op) or printable(op):
        return None
    return "it has no C printer (symdiff.backends.c.PRINTERS), no lowering to primitives and no scalar form"


def support(op: Op) -> str:
    """How this backend runs ``op``, for docs/ops.md's table."""
    return described(
        unsupported(op),
        (op.sparsity == "body", "its body, inlined"),
        (op.name in LOOPS, "a C loop calling its bodies' functions (symdiff.backends.c_loops)"),
        (lowers(op), "lowered to primitives"),
        (op.name in ALIASES, "the same storage"),
        (elementwise(op), "scalar expression, looped"),
        otherwise="printer",
    )


def _not_lowered(w: CWriter, node: Node, out: Any, args: list[str]) -> None:
    raise BackendError(f"the C backend prints specialized graphs: {node.op} (node #{node.index}) is lowered first")


def function(op: Op) -> Callable[..., None]:
    """The printer of ``op``: ``printer(writer, node, out, argument_names)``; BackendError naming the
    op if this backend cannot run it."""
    reason = unsupported(op)
    if reason is not None:
        raise unsupported_error("c", op.name, reason)
    if op.name in PRINTERS:
        return PRINTERS[op.name]
    if elementwise(op):
        return _p_elementwise
    return _not_lowered  # an alias, an output or a lowered op: the function printer handles them


function.prints = True  # a plan's steps hold printers (symdiff.plan.Step)


def _refuse_unprintable(outputs: Sequence[Node]) -> None:
    """A BackendError naming the first op the outputs need that C cannot print, reached through
    lowerings (where their shapes allow tracing them now) and bodies."""
    seen: set[Node] = set()
    pending = list(outputs)
    while pending:
        reached = ancestors(pending)
        for region in regions_in(reached):
            reached += ancestors(list(region.outputs))
        pending = []
        for n in reached:
            if n in seen or n.op in ("variable", "constant"):
                continue
            seen.add(n)
            op = REGISTRY[n.op]
            reason = unsupported(op)
            if reason is not None:
                shapes = ", ".join(format_shape(u.shape) for u in n.inputs)
                raise BackendError(
                    f"the c backend cannot run op {n.op!r} (node #{n.index}, inputs of shapes {shapes}): {reason}; "
                    "use backend='numpy' for this graph"
                )
            if lowers(op):
                try:
                    pending += list(lowered(n).outputs)
                except ShapeError:
                    pass  # written as primitives once its shapes are known (specialized)


# -- fused loops (symdiff.backends.fusion) ------------------------------------------------------
def _maps(step: Step) -> bool | None:
    """True if the step joins a fused loop as an element: an elementwise primitive of an array
    shape (values of shape () stay straight-line C on locals)."""
    n = step.node
    if not n.shape or n.is_multi or n.op in ALIASES or n.op in PRINTERS or not elementwise(REGISTRY[n.op]):
        return None
    return True


def _sums(step: Step) -> bool | None:
    """True if the step joins a fused loop as an accumulator: a sum of an array over all its axes."""
    n = step.node
    return True if n.op == "sum" and n.shape == () and n.inputs[0].shape != () else None


def _element_inputs(node: Node) -> tuple[Node, ...]:
    """The inputs whose elements ``element`` reads (a broadcast_like's second gives its shape alone)."""
    return node.inputs[:1] if node.op == "broadcast_like" else node.inputs


# a fused group of at most this many elements gets a loop of its own for each call to the C library
SPLIT_ELEMENTS = 4096
# the elementwise ops whose C element calls a function of the C library (not an instruction)
_LIBRARY_OPS = frozenset(("logaddexp",))
_LIBRARY_FUNCTIONS = frozenset(
    "exp expm1 log log1p sin cos tan sinh cosh tanh arcsin arccos arctan arcsinh arccosh arctanh erf erfc "
    "hypot arctan2 pow".split()
)


def _calls(node: Node) -> bool:
    """True if the element of the elementwise ``node`` calls a C library function (sin, exp, pow, ...)."""
    if node.op in _LIBRARY_OPS:
        return True
    if node.op == "pow" and node.inputs[1].op == "constant" and node.inputs[1].shape == ():
        # the compiler writes x**2, x**1 and x**-1 as products and a quotient (no call)
        return float(node.inputs[1].value) not in (2.0, 1.0, -1.0)
    op = REGISTRY[node.op]
    tree = op.scalar if op.scalar is not None else _TREES.get(node.op)
    stack = [tree] if tree is not None else []
    while stack:
        t = stack.pop()
        if t.op in _LIBRARY_FUNCTIONS:
            return True
        stack.extend(t.args)
    return False


def _levels(group: Group, order: list[Node], split: bool) -> dict[Node, tuple[int, int]]:
    """The loop of each member of ``group`` (``order``: the live ones, in order): (level, 0) for
    a call of the C library, (level, 1) for the rest, the loops in that order. A call's level is
    one more than its inputs', any other member's the highest of its inputs' (0 without them),
    then raised to the lowest level its readers allow.
    All (0, 1), one loop, unless ``split`` and, in one loop, the value of some member that is not
    a call would be live across a call (computed before it, read after it): a loop whose calls
    only read loaded elements and give values to the arithmetic after them loses nothing to them."""
    calls = [k for k, n in enumerate(order) if n in group.maps and _calls(n)]
    if not split or not calls:
        return dict.fromkeys(order, (0, 1))
    at = {n: k for k, n in enumerate(order)}
    last: dict[Node, int] = {}
    for k, n in enumerate(order):
        for u in _element_inputs(n):
            last[u] = k
    if not any(at[n] < c < last.get(n, -1) for n in order if n in group.maps and not _calls(n) for c in calls):
        return dict.fromkeys(order, (0, 1))
    level: dict[Node, int] = {}
    call = {n: n in group.maps and _calls(n) for n in order}
    readers: dict[Node, list[Node]] = {}
    for n in order:
        base = max((level[u] for u in _element_inputs(n) if u in level), default=0)
        level[n] = base + 1 if call[n] else base
        for u in _element_inputs(n):
            if u in level:
                readers.setdefault(u, []).append(n)
    # then as late as its readers allow (a call's argument one level before it): fewer values
    # pass through arrays; a member only stored or summed stays where its inputs put it
    for n in reversed(order):
        if not call[n] and readers.get(n):
            level[n] = max(level[n], min(level[r] - call[r] for r in readers[n]))
    return {n: (level[n], 0 if call[n] else 1) for n in order}


def _wide(node: Node) -> bool:
    """A float32 sum of more than 8 terms, which accumulates in double (see ``_p_reduction``)."""
    return node.dtype == np.float32 and math.prod(node.inputs[0].shape) > 8


# -- the function -----------------------------------------------------------------------------
_RESERVED = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "work n memcpy memset exp expm1 log log1p sqrt sin cos tan sinh cosh tanh asin acos atan asinh acosh atanh erf "
    "erfc hypot floor ceil pow atan2 fabs rint main".split()
)


def _identifier(name: str | None) -> bool:
    return (
        bool(name)
        and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,40}", name) is not None
        and name not in _RESERVED
        and not name.startswith("symdiff")
        and name not in ("NAN", "INFINITY", "NULL", "EOF")
        and not (name.isupper() and "_" in name)  # <stdint.h>'s macros, the header's own
        and re.fullmatch(r"(out|in)[0-9]+", name) is None
    )


class CFunction:
    """A specialized plan printed as the C function ``name`` (``source``: the .c text;
    ``header``: the .h text; ``work_bytes``; the arguments' names, dtypes and shapes)."""

    def __init__(self, outputs: Sequence[Node], inputs: Sequence[Node], name: str, outer: CWriter | None = None):
        # outer: the writer of the function calling this one (a loop body's), whose helpers it shares
        self.name = name
        self.plan = plan = Plan(list(outputs), list(inputs), function, scalars=False)
        for n in (*inputs, *outputs, *plan.computed):
            for shape, dtype in n.results if n.is_multi else ((n.shape, n.dtype),):
                if None in shape:
                    raise GraphError(f"the C backend prints concrete shapes; {n.op} (node #{n.index}) has {shape}")
                ctype(dtype)
        used = {name, f"{name}_batch", f"{name}_work_bytes"}
        self.params: list[str] = []
        for k, x in enumerate(inputs):
            p = x.name if _identifier(x.name) and x.name not in used else f"in{k}"
            used.add(p)
            self.params.append(p)
        self.outs = [f"out{k}" for k in range(len(outputs))]
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.patterns: dict[int, Any] = {}  # output position -> its sparsity pattern (to_c of a sparse derivative)
        self.w = w = CWriter(outer)
        w.wanted = wanted_outputs(plan.computed, outputs)
        self.names: dict[Node, Any] = {}
        self.holds: dict[Node, list[int]] = {}
        self.refs: dict[int, int] = {}
        self.direct: dict[Node, str] = {}
        self.multi_holds: dict[Node, list[list[int]]] = {}  # a node with several outputs: each one's blocks
        computed = set(plan.computed)
        for o, target in zip(outputs, self.outs):
            if o in computed and o not in self.direct and o.shape != () and not o.is_multi and o.op not in ALIASES:
                if o.op != "output":
                    self.direct[o] = target
        w.line("(void)work;")
        for p in (*self.params, *self.outs):
            w.line(f"(void){p};")
        for leaf in plan.leaves:
            self._leaf(leaf)
        # a value's block is given back once every step reading it is printed (fusion prints a
        # step reading a loop's results after the loop: not in the plan's order); outputs live on
        unread: dict[Node, int] = {}
        for step in plan.steps:
            for u in dict.fromkeys(step.node.inputs):
                unread[u] = unread.get(u, 0) + 1
        kept = set(outputs)
        for item in fused(plan, _maps, _sums):
            if isinstance(item, Group):
                self._group(item)
                printed = list(item.steps)
            else:
                self._emit(item.node)
                printed = [item.node]
            w.release_scratch()
            for n in printed:
                for u in dict.fromkeys(n.inputs):
                    unread[u] -= 1
                    if not unread[u] and u not in kept:
                        for offset in self.holds.pop(u, []):
                            self._unref(offset)
        for o, target in zip(outputs, self.outs):
            if self.direct.get(o) == target:
                continue
            if o.shape == ():
                w.line(f"{target}[0] = {self.names[o]};")
            else:
                w.line(f"memcpy({target}, {self.names[o]}, {math.prod(o.shape) * o.dtype.itemsize});")
        w.line("return 0;")
        self.work_bytes = w.work

    # values
    def _leaf(self, n: Node) -> None:
        t = ctype(n.dtype)
        if n in self.plan.inputs:
            p = self.params[self.inputs.index(n)]
            if n.shape == ():
                self.names[n] = self.w.local(f"const {t}", f"{p}[0]")
            else:
                self.names[n] = p
            return
        value = np.asarray(n.value)
        if value.ndim == 0:
            self.names[n] = literal(value.item(), n.dtype)
            return
        element = progression(value)
        if element is not None:
            # evenly spaced (a loop's time grid np.arange(T) * dt, a long fill): a loop writes it
            # into the work buffer, so the source does not grow with its length (a trip count)
            name, i = f"_c{n.index}", self.w.name()
            self.w.line(f"{t} *{name} = ({t} *)((char *)work + {self.w.blocks.take(value.nbytes, t)});")
            with self.w.loop(i, value.size):
                self.w.line(f"{name}[{i}] = {element(i)};")
            self.names[n] = name
            return
        if value.size >= _PROGRESSION_MIN and self._filled(n, value):
            return
        flat = _literals(value.reshape(-1), n.dtype) or ["0"]
        rows = ",\n".join("        " + ", ".join(flat[i : i + 8]) for i in range(0, len(flat), 8))
        name = f"_c{n.index}"
        self.w.line(f"static const {t} {name}[{len(flat)}] = {{\n{rows}\n    }};")
        self.names[n] = name

    def _filled(self, n: Node, value: np.ndarray) -> bool:
        """A large constant that is mostly one value (an identity matrix seeding a Jacobian, a
        one-hot block) written by loops into the work buffer: the value everywhere, then the
        others, by a loop where they are one value at evenly spaced places (a diagonal), else from
        a table of (place, value). The source grows with the exceptions, not with the size."""
        flat = value.reshape(-1)
        bits = flat.view(f"u{flat.dtype.itemsize}") if flat.dtype != np.bool_ else flat.view(np.uint8)
        kinds, counts = np.unique(bits, return_counts=True)
        common = kinds[np.argmax(counts)]
        places = np.flatnonzero(bits != common)
        if len(places) > flat.size // 4:
            return False
        t, w = ctype(n.dtype), self.w
        name, i = f"_c{n.index}", w.name()
        background = literal(flat[np.flatnonzero(bits == common)[0]].item(), n.dtype)
        w.line(f"{t} *{name} = ({t} *)((char *)work + {w.blocks.take(value.nbytes, t)});")
        with w.loop(i, flat.size):
            w.line(f"{name}[{i}] = {background};")
        if len(places):
            others = flat[places]
            steps = np.diff(places)
            one = (others.view(bits.dtype) == others[:1].view(bits.dtype)).all()
            if one and (len(places) == 1 or (steps == steps[0]).all()):
                step = int(steps[0]) if len(places) > 1 else 1
                with w.loop(i, len(places)):
                    w.line(f"{name}[{int(places[0])} + {i} * {step}] = {literal(others[0].item(), n.dtype)};")
            else:
                table = ", ".join(str(int(k)) for k in places)
                items = ", ".join(_literals(others, n.dtype))
                w.line(f"static const long {name}_at[{len(places)}] = {{{table}}};")
                w.line(f"static const {t} {name}_is[{len(places)}] = {{{items}}};")
                with w.loop(i, len(places)):
                    w.line(f"{name}[{name}_at[{i}]] = {name}_is[{i}];")
        self.names[n] = name
        return True

    def _storage(self, name: str, shape: tuple, dtype: np.dtype, node: Node | None) -> tuple[str, list[int]]:
        t = ctype(dtype)
        if shape == ():
            self.w.line(f"{t} {name} = 0;")
            return name, []
        if node is not None and node in self.direct:
            return self.direct[node], []
        offset = self.w.blocks.take(math.prod(shape) * dtype.itemsize, t)
        self.refs[offset] = 1
        self.w.line(f"{t} *{name} = ({t} *)((char *)work + {offset});")
        return name, [offset]

    def _unref(self, offset: int) -> None:
        self.refs[offset] -= 1
        if not self.refs[offset]:
            del self.refs[offset]
            self.w.blocks.give(offset)

    def _share(self, n: Node, offsets: list[int]) -> None:
        for offset in offsets:
            self.refs[offset] += 1
        self.holds[n] = list(offsets)

    def _emit(self, n: Node) -> None:
        w, names = self.w, self.names
        args = [names[u] for u in n.inputs]
        name = f"_t{n.index}"
        if n.op == "output":
            k = n.attrs["index"]
            names[n] = args[0][k]
            self._share(n, self.multi_holds.get(n.inputs[0], [[]] * (k + 1))[k])
            return
        if n.op in ALIASES:
            self._alias(n, args)
            return
        op = REGISTRY[n.op]
        if elementwise(op) and n.shape == ():  # straight-line C on locals
            w.line(f"{ctype(n.dtype)} {name} = {element(w, n, args)};")
            names[n] = name
            return
        printer = PRINTERS.get(n.op) or (_p_elementwise if elementwise(op) else None)
        if printer is None:
            shapes = ", ".join(format_shape(u.shape) for u in n.inputs)
            raise BackendError(
                f"the c backend cannot run op {n.op!r} (node #{n.index}, inputs of shapes {shapes}): "
                f"{unsupported(op) or 'it has no C printer'}; use backend='numpy' for this graph"
            )
        if n.is_multi:
            # a loop gets no storage for the outputs the plan does not read (its name None)
            read = w.wanted.get(n) if n.op in LOOPS else None
            made = [
                self._storage(f"{name}_{k}", s, d, None) if read is None or k in read else (None, [])
                for k, (s, d) in enumerate(n.results)
            ]
            out: Any = [m[0] for m in made]
            self.multi_holds[n] = [m[1] for m in made]
            self.holds[n] = [o for m in made for o in m[1]]
            for (s, _), o in zip(n.results, out):
                if s == () and o is not None:
                    w.line(f"(void){o};")
        else:
            out, self.holds[n] = self._storage(name, n.shape, n.dtype, n)
        names[n] = out
        printer(w, n, out, args)

    def _group(self, group: Group) -> None:
        """A group of steps (symdiff.backends.fusion) as loop nests over its shape: each map an
        element computed into a C local (``element``, as ``_p_elementwise`` computes it), each sum an
        accumulator (as ``_p_reduction`` accumulates it, in the same order); only the stored maps
        get storage (a work-buffer block, or the caller's output array).

        One loop nest, unless the group calls the C library (``_calls``) and has at most
        ``SPLIT_ELEMENTS`` elements: then each call gets a loop of its own (``_levels``), its
        argument and result passing through arrays of the work buffer, and the arithmetic
        between the calls runs in loops with no call in them. A call in a loop makes every value
        live across it go to the stack and back (the C calling convention saves no floating-point
        register), and keeps the compiler from vectorizing the loop; a small array costs less.
        Every element is computed by the same operations in the same order, so the results are
        the same bits either way."""
        w, names, shape = self.w, self.names, group.shape
        # the members some stored value or sum reads (a broadcast_like's shape operand is not read)
        live: set[Node] = set(group.stored) | set(group.sums)
        for n in reversed(group.steps):
            if n in live:
                live.update(u for u in _element_inputs(n) if u in group.maps)
        order = [n for n in group.steps if n in live]
        loop_of = _levels(group, order, math.prod(shape) <= SPLIT_ELEMENTS)
        for n in group.stored:
            names[n], self.holds[n] = self._storage(f"_t{n.index}", shape, n.dtype, n)
        # the arrays the loops pass values in: the stored maps, and the members read in another loop
        arrays: dict[Node, str] = {n: names[n] for n in group.stored}
        temps = []
        for n in order:
            if n in arrays or n not in group.maps:
                continue
            if any(u is n and loop_of[r] != loop_of[n] for r in order for u in _element_inputs(r)):
                t = ctype(n.dtype)
                temps.append(w.blocks.take(math.prod(shape) * n.dtype.itemsize, t))
                arrays[n] = w.local(f"{t} *", f"({t} *)((char *)work + {temps[-1]})")
        sums = {}
        for n in group.sums:
            t = ctype(n.dtype)
            wide = _wide(n)
            sums[n] = w.local("double", "0.0") if wide else w.local(t, literal(0, n.dtype))
        for key in sorted(set(loop_of.values())):
            members = [n for n in order if loop_of[n] == key]
            writes = [n for n in members if n in arrays]
            reads = list(
                dict.fromkeys(
                    u
                    for n in members
                    for u in _element_inputs(n)
                    if u.shape and (u not in group.maps or loop_of[u] != key)
                )
            )
            operands = [strides(shape)] * len(writes)
            operands += [strides(shape) if u in group.maps else broadcast_strides(u.shape, shape) for u in reads]
            with w.nest(shape, operands) as at:
                where = dict(zip(reads, at[len(writes) :]))
                local: dict[Node, str] = {}  # an element computed or loaded in the loop: its local

                def item(u: Node) -> str:
                    if u.shape == ():
                        return names[u]
                    if u not in local:
                        source = arrays[u] if u in group.maps else names[u]
                        local[u] = w.local(f"const {ctype(u.dtype)}", f"{source}[{where[u]}]")
                    return local[u]

                for n in members:
                    if n in group.sums:
                        (x,), dt, acc = n.inputs, n.dtype, sums[n]
                        v = w.local(ctype(dt), cast(w, item(x), x.dtype, dt))
                        if dt.kind == "f":
                            w.line(f"{acc} += {v};")
                        else:
                            w.line(f"{acc} = {_wrapped(ctype(dt), '+', acc, v)};")
                        continue
                    items = [item(u) for u in _element_inputs(n)]
                    local[n] = w.local(f"const {ctype(n.dtype)}", element(w, n, items))
                for n, o in zip(writes, at):
                    w.line(f"{arrays[n]}[{o}] = {local[n]};")
        for offset in temps:
            w.blocks.give(offset)
        for n, acc in sums.items():
            names[n] = f"_t{n.index}"
            w.line(f"{ctype(n.dtype)} {names[n]} = {'(float)' if _wide(n) else ''}{acc};")
            self.holds[n] = []

    def _alias(self, n: Node, args: list[str]) -> None:
        src, a = n.inputs[0], args[0]
        if n.op == "match_shape" and src.shape != n.inputs[1].shape:
            raise ShapeError(
                f"match_shape (node #{n.index}): a value of shape {src.shape} where one of shape "
                f"{n.inputs[1].shape} is required"
            )
        if n.shape == ():
            self.names[n] = a if src.shape == () else self.w.local(ctype(n.dtype), f"{a}[0]")
        elif src.shape == ():
            out, self.holds[n] = self._storage(f"_t{n.index}", n.shape, n.dtype, n)
            self.w.line(f"{out}[0] = {a};")
            self.names[n] = out
        else:
            self.names[n] = a
            self._share(n, self.holds.get(src, []))

    # text
    def _arguments(self) -> tuple[list[str], list[str]]:
        """The C parameters (``const double *x``) and, per argument, its comment."""
        params, notes = [], []
        for p, x in zip(self.params, self.inputs):
            params.append(f"const {ctype(x.dtype)} *{p}")
            notes.append(f"{p}: {_described(x.dtype, x.shape)}")
        for p, o in zip(self.outs, self.outputs):
            params.append(f"{ctype(o.dtype)} *{p}")
            notes.append(f"{p}: {_described(o.dtype, o.shape)}")
        return params, notes

    def prototypes(self) -> str:
        """The declarations of the three functions (the header's, and cffi's cdef)."""
        params, _ = self._arguments()
        args = ", ".join([*params, "void *work"])
        return (
            f"size_t {self.name}_work_bytes(void);\nint {self.name}({args});\nint {self.name}_batch(long n, {args});\n"
        )

    @property
    def source(self) -> str:
        """The .c file: helpers, then the function, its batched entry point and its work size."""
        params, _ = self._arguments()
        args = ", ".join([*params, "void *work"])
        calls = []
        for p, x in zip([*self.params, *self.outs], [*self.inputs, *self.outputs]):
            size = math.prod(x.shape)
            calls.append(f"{p} + _b * {size}" if size != 1 else f"{p} + _b")
        helpers = "".join(h if h.endswith("\n") else h + "\n" for h in self.w.helpers.values())
        body = f"int {self.name}({args})\n{{\n" + _read_tables("\n".join(self.w.lines)) + "\n}\n\n"
        include, prelude = sx.C_PRELUDE.split("\n", 1)
        return (
            f"/* {self.name}.c: generated by symdiff (C99, no allocation, no globals) */\n"
            f"#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n{include}\n"
            f"{_used(prelude + helpers, body)}\n"
            f"size_t {self.name}_work_bytes(void)\n{{\n    return {self.work_bytes};\n}}\n\n"
            + body
            + f"int {self.name}_batch(long n, {args})\n{{\n"
            "    long _b;\n"
            "    for (_b = 0; _b < n; ++_b) {\n"
            f"        int rc = {self.name}({', '.join([*calls, 'work'])});\n"
            "        if (rc) return rc;\n"
            "    }\n"
            "    return 0;\n}\n" + "".join(self._pattern_source(k, m) for k, m in self.patterns.items())
        )

    def _pattern_prototype(self, k: int) -> str:
        return f"void {self.name}_{self.outs[k]}_pattern(long *indptr, long *indices)"

    def _pattern_source(self, k: int, pattern: Any) -> str:
        def table(values: Any) -> str:
            return ", ".join(str(int(v)) for v in values) or "0"

        return (
            f"\n{self._pattern_prototype(k)}\n{{\n"
            f"    static const long ptr[{len(pattern.indptr)}] = {{{table(pattern.indptr)}}};\n"
            f"    static const long ind[{max(pattern.nnz, 1)}] = {{{table(pattern.indices)}}};\n"
            f"    memcpy(indptr, ptr, sizeof ptr);\n"
            f"    memcpy(indices, ind, {pattern.nnz} * sizeof(long));\n}}\n"
        )

    def _pattern_header(self, k: int, pattern: Any) -> str:
        out, macro = self.outs[k], f"{self.name.upper()}_{self.outs[k].upper()}"
        rows, cols = pattern.shape
        return (
            f"/* {out} is a sparse {rows} x {cols} matrix: its {pattern.nnz} stored values, in CSR order.\n"
            f" * {self.name}_{out}_pattern writes the structure: row i's values are {out}[indptr[i]] ..\n"
            f" * {out}[indptr[i + 1] - 1], in the columns indices[indptr[i]] .. (indptr: {rows + 1} longs,\n"
            f" * indices: {macro}_NNZ longs; scipy.sparse.csr_matrix((values, indices, indptr))) */\n"
            f"#define {macro}_ROWS {rows}\n#define {macro}_COLS {cols}\n#define {macro}_NNZ {pattern.nnz}\n"
            f"{self._pattern_prototype(k)};\n\n"
        )

    @property
    def header(self) -> str:
        """The .h file: the work buffer's size and the prototypes, each argument described."""
        guard = f"{self.name.upper()}_H"
        _, notes = self._arguments()
        described = "".join(f" *   {note}\n" for note in notes)
        return (
            f"/* {self.name}.h: generated by symdiff */\n#ifndef {guard}\n#define {guard}\n\n"
            "#include <stddef.h>\n#include <stdint.h>\n\n"
            f"#define {self.name.upper()}_WORK_BYTES {self.work_bytes} /* the work buffer, 16-byte aligned */\n\n"
            f"/* the work buffer's size in bytes ({self.name.upper()}_WORK_BYTES) */\n"
            f"size_t {self.name}_work_bytes(void);\n\n"
            f"/* {self.name}: computes the outputs from the inputs; returns 0, or an error code (nonzero):\n"
            + "".join(f" *   {code}: {text}\n" for code, text in ERRORS.items())
            + " * compile with -fno-strict-aliasing (gcc 12 at -O2 miscompiles a float32 round trip without it)\n"
            + " * arguments (C-contiguous arrays, row-major; inputs and outputs must not overlap):\n"
            + described
            + " */\n"
            + f"int {self.name}({', '.join([*self._arguments()[0], 'void *work'])});\n\n"
            "/* n input sets: each argument holds n of its values back to back (a leading axis of n); one\n"
            " * work buffer of the size above serves them all. Stops at the first set whose code is\n"
            " * nonzero and returns that code: the outputs of the sets after it are not written. */\n"
            f"int {self.name}_batch(long n, {', '.join([*self._arguments()[0], 'void *work'])});\n\n"
            + "".join(self._pattern_header(k, m) for k, m in self.patterns.items())
            + f"#endif /* {guard} */\n"
        )


def _used(definitions: str, body: str) -> str:
    """The static functions of ``definitions`` that ``body`` calls, directly or through each
    other (an unused one is a warning, an error under -Werror, for clang)."""
    chunks = re.split(r"(?m)^(?=static )", definitions)
    named = {name: chunk for chunk in chunks for name in _names(chunk)}
    kept: set[str] = set()
    reached = body
    while True:
        more = {name for name in named if name not in kept and re.search(rf"\b{name}\s*\(", reached)}
        if not more:
            break
        kept |= more
        reached = body + "".join(named[name] for name in kept)
    return "".join(c for c in chunks if not c.startswith("static ") or next(iter(_names(c)), None) in kept)


def _read_tables(body: str) -> str:
    """``body`` without the constant tables it never reads (a constant a printer needs only for
    its shape: an unused variable is a warning, an error under -Werror)."""
    tables = list(re.finditer(r"(?ms)^ *static const \w+ (_c\d+)\[\d+\] = \{.*?\};\n?", body))
    for table in reversed(tables):
        rest = body[: table.start()] + body[table.end() :]
        if not re.search(rf"\b{table.group(1)}\b", rest):
            body = rest
    return body


def _names(chunk: str) -> list[str]:
    found = re.match(r"static [^(]*?(\w+)\s*\(", chunk)
    return [found.group(1)] if found else []


def _described(dtype: np.dtype, shape: tuple) -> str:
    dims = "".join(f"[{d}]" for d in shape)
    return f"{np.dtype(dtype).name} {ctype(dtype)}{dims or ' (one value)'}"


def to_c(
    outputs: Node | Sequence[Node],
    inputs: Sequence[Node | str] | None = None,
    name: str = "f",
    shapes: Mapping[Node | str, Sequence[int]] | None = None,
) -> dict[str, str]:
    """Standalone C99 computing ``outputs``: ``{"<name>.c": source, "<name>.h": header}``.

    The function ``int name(const T *in..., T *out..., void *work)`` takes each input and
    output as a C-contiguous array (a value of shape () as a pointer to one element) and a
    work buffer of ``NAME_WORK_BYTES`` (the header's; 16-byte aligned); it returns 0, or a
    nonzero error code (the header lists them). ``name_batch(long n, ...)`` evaluates n input
    sets stacked along a leading axis. No allocation, no globals, no Python; compiles with
    ``-std=c99 -Wall -Wextra -Werror -pedantic`` (link with ``-lm``).

    Parameters
    ----------
    outputs : Node or list of Node
    inputs : list of Node or str, optional
        The variables the function takes, in order (default: those the outputs need).
    name : str
        The C function's name (a C identifier).
    shapes : dict, optional
        A concrete shape for each variable with a None dimension (keys: nodes or names).

    Raises
    ------
    ShapeError
        A variable with a None dimension not given in ``shapes``, or shapes that do not fit.
    BackendError
        An op C cannot print (named), or a dtype C99 does not have (float16).

    >>> g = sd.Graph(); x = g.variable("x", shape=(3,))
    >>> files = sd.to_c([sd.sum(x ** 2), sd.grad(sd.sum(x ** 2), x)], [x], name="sq")
    >>> sorted(files)
    ['sq.c', 'sq.h']
    >>> print(next(line for line in files["sq.h"].splitlines() if line.startswith("int sq(")))
    int sq(const double *x, double *out0, double *out1, void *work);
    """
    if not isinstance(name, str) or not _identifier(name):
        raise GraphError(f"to_c: name {name!r} is not a C identifier free for the function")
    outs, _ = as_outputs(sparse_outputs(outputs)[0], "to_c")
    ins = resolve_inputs(outs, inputs, "to_c")
    _NumpyCompiled._check_bound(Plan(outs, ins, numpy_function), "to_c")
    given: dict[Node, Sequence[int]] = {}
    for key, shape in (shapes or {}).items():
        node = outs[0].graph[key] if isinstance(key, str) else key
        given[node] = shape
    concrete = []
    for x in ins:
        shape = tuple(given.get(x, x.shape))
        if None in shape:
            raise ShapeError(
                f"to_c: variable {x.name!r} has shape {format_shape(x.shape)}; C is printed for concrete shapes: "
                f"pass shapes={{{x.name!r}: (...)}} with its sizes"
            )
        concrete.append(shape)
    _refuse_unprintable(outs)
    new_outs, new_ins = specialized(outs, ins, concrete)
    fn = CFunction(new_outs, new_ins, name)
    listed = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    fn.patterns = {k: o.pattern for k, o in enumerate(listed) if isinstance(o, SparseDerivative)}
    return {f"{name}.c": fn.source, f"{name}.h": fn.header}


# -- building and loading ---------------------------------------------------------------------
# -fno-math-errno: the code never reads errno, so sin/cos/exp are pure functions to the optimizer
# (common subexpressions, sincos). -fno-strict-aliasing: gcc 12 at -O2 miscompiles valid code
# (a float64 -> float32 -> float64 round trip through the work buffer loses its rounding: the
# vectorized store of the floats is forwarded as the doubles); tests/test_c_backend.py keeps the
# case. The header asks a user's build for the same flag.
FLAGS = ("-O2", "-std=c99", "-fno-math-errno", "-fno-strict-aliasing", "-shared", "-fPIC")
STATS = {"compiled": 0, "loaded": 0}  # libraries built by the compiler / found in the disk cache
_OPEN: dict[str, tuple[Any, Any]] = {}  # library path -> (cffi FFI, library)
_OPEN_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where generated C and the libraries built from it are kept."""
    if os.environ.get("SYMDIFF_CACHE_DIR"):
        return Path(os.environ["SYMDIFF_CACHE_DIR"]) / "c"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symdiff" / "c"


def compiler() -> list[str]:
    """The C compiler's command (``$CC``, else ``cc``); BackendError if there is none."""
    command = shlex.split(os.environ.get("CC") or "cc")
    found = shutil.which(command[0]) if command else None
    if found is None:
        raise BackendError(
            f"the c backend needs a C compiler: {command[0] if command else '$CC'!r} (from $CC, else cc) was not "
            "found; install gcc or clang, or set $CC to one"
        )
    return [os.path.realpath(found), *command[1:]]


def _cffi() -> Any:
    try:
        import cffi
    except ImportError:
        raise BackendError("backend 'c' needs cffi, which is not installed: pip install 'symdiff[c]'") from None
    return cffi


def build(source: str) -> Path:
    """The shared library of ``source``, built once per (source, compiler, flags) into
    ``cache_dir()`` and found there by later calls and processes."""
    command = compiler()
    key = "\n".join([source, *command, *FLAGS])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(
            f"the c backend keeps the libraries it builds in {folder}, which cannot be made ({exc.strerror}); "
            "set SYMDIFF_CACHE_DIR to a writable folder"
        ) from None
    library = folder / f"sd_{digest}.so"
    if library.exists():
        STATS["loaded"] += 1
        return library
    path = folder / f"sd_{digest}.c"
    partial = folder / f".sd_{digest}.{os.getpid()}.{threading.get_ident()}"
    Path(f"{partial}.c").write_text(source)
    os.replace(f"{partial}.c", path)
    done = subprocess.run([*command, *FLAGS, "-o", f"{partial}.so", str(path), "-lm"], capture_output=True, text=True)
    if done.returncode:
        Path(f"{partial}.so").unlink(missing_ok=True)
        first = " ".join(done.stderr.strip().splitlines()[:4])
        raise BackendError(f"the c backend could not compile {path}: {first}; use backend='numpy' for this graph")
    os.replace(f"{partial}.so", library)
    STATS["compiled"] += 1
    return library


def _open(library: Path, cdef: str) -> tuple[Any, Any]:
    with _OPEN_LOCK:
        found = _OPEN.get(str(library))
        if found is None:
            ffi = _cffi().FFI()
            ffi.cdef(cdef)
            found = _OPEN[str(library)] = (ffi, ffi.dlopen(str(library)))
    return found


class _Library:
    """One specialization: the C function for one tuple of input shapes, built and opened."""

    def __init__(self, fn: CFunction):
        self.source = fn.source
        path = build(self.source)
        try:
            self.ffi, lib = _open(path, fn.prototypes())
        except OSError:  # a cached library cut short or damaged (a full disk, a killed build): again
            path.unlink(missing_ok=True)
            path = build(self.source)
            try:
                self.ffi, lib = _open(path, fn.prototypes())
            except OSError as exc:
                raise BackendError(f"the c backend built {path} but cannot load it: {exc}") from None
        self.call, self.batch = getattr(lib, fn.name), getattr(lib, f"{fn.name}_batch")
        self.work = fn.work_bytes
        self._local = threading.local()
        # the cffi types of the arrays (resolved once: from_buffer parses a string each call)
        self.kinds = [self.ffi.typeof(ctype(x.dtype) + "[]") for x in fn.inputs]
        self.results = [(o.shape, o.dtype, self.ffi.typeof(ctype(o.dtype) + "[]")) for o in fn.outputs]
        # float scalars pass through one-element cells of the calling thread, not numpy arrays
        self.cells = [x.shape == () and x.dtype.kind == "f" for x in [*fn.inputs, *fn.outputs]]
        self.types = [x.dtype.type for x in fn.outputs]
        self.inputs = [(x.shape, x.dtype) for x in fn.inputs]

    def fast(self, single: bool) -> Callable[..., Any]:
        """The calling thread's call of this library with its checks unrolled (made at its first
        call, by :func:`_fast_source`): the outputs for values that are ready as they are (a
        Python float for a float64 scalar; else an ndarray of the variable's dtype and shape,
        C-contiguous), else ``SLOW`` (a value to check or convert, or a nonzero return code),
        for which the caller takes the general path."""
        found = getattr(self._local, "fast", None)
        if found is None:
            cells, args = self._prepared()
            found = self._local.fast = _fast_function(self, cells, args[-1], single)
        return found

    def _prepared(self) -> tuple[list[Any], list[Any]]:
        """The calling thread's float cells and argument list (work buffer last), made at its
        first call: a call fills them in place."""
        found = getattr(self._local, "prepared", None)
        if found is None:
            kinds = [*self.kinds, *(kind for _, _, kind in self.results)]
            cells = [self.ffi.new(self.ffi.getctype(k.item, "[1]")) if c else None for k, c in zip(kinds, self.cells)]
            found = self._local.prepared = (cells, [*cells, self.buffer()])
        return found

    def buffer(self) -> Any:
        """The calling thread's work buffer (16-byte aligned), made at its first call."""
        if not self.work:
            return self.ffi.NULL
        found = getattr(self._local, "work", None)
        if found is None:
            raw = self.ffi.new("char[]", self.work + 16)
            found = self._local.work = (raw, raw + (-int(self.ffi.cast("uintptr_t", raw)) % 16))
        return found[1]

    def run(self, arrays: list[Any], lead: tuple[int, ...] = ()) -> tuple[int, list[Any]]:
        """The return code and the outputs for ``arrays`` (C-contiguous, of the inputs' dtypes; a
        float for a float scalar); with ``lead`` = (n,), the batched entry point's."""
        ffi = self.ffi
        if not lead:
            cells, args = self._prepared()
            n = len(arrays)
            for k, a in enumerate(arrays):
                cell = cells[k]
                if cell is None:
                    args[k] = ffi.from_buffer(self.kinds[k], a)
                else:
                    cell[0] = a if type(a) is float else float(a)
            outs: list[Any] = []
            for j, (shape, dtype, kind) in enumerate(self.results):
                if cells[n + j] is None:
                    out = np.empty(shape, dtype)
                    args[n + j] = ffi.from_buffer(kind, out)
                    outs.append(out)
                else:
                    outs.append(None)
            rc = self.call(*args)
            for j, t in enumerate(self.types):
                if outs[j] is None:
                    outs[j] = t(cells[n + j][0])
                elif outs[j].ndim == 0:  # an integer or boolean scalar: numpy's scalar, as every backend
                    outs[j] = outs[j][()]
            return rc, outs
        outs = [np.empty(lead + shape, dtype) for shape, dtype, _ in self.results]
        args = [ffi.from_buffer(kind, a) for kind, a in zip(self.kinds, arrays)]
        args += [ffi.from_buffer(kind, o, require_writable=True) for o, (_, _, kind) in zip(outs, self.results)]
        return self.batch(lead[0], *args, self.buffer()), outs


SLOW = object()  # what a library's fast call returns for values the general path must take


def _fast_function(library: _Library, cells: list[Any], work: Any, single: bool) -> Callable[..., Any]:
    """A Python function of the inputs calling ``library`` with one thread's ``cells`` and
    ``work`` buffer, its per-argument steps written out (no loops, no lists of kinds): each
    input's check is the general path's test for a value ready as it is (a Python float for a
    float64 scalar, else an ndarray of its dtype, shape and C-contiguous strides); any other
    value, or a nonzero return code, returns SLOW."""
    names: dict[str, Any] = {
        "SLOW": SLOW,
        "ndarray": np.ndarray,
        "empty": np.empty,
        "fb": library.ffi.from_buffer,
        "call": library.call,
        "work": work,
    }
    n, body, args, outs = len(library.inputs), [], [], []
    for k, ((shape, dtype), cell) in enumerate(zip(library.inputs, cells)):
        a = f"a{k}"
        if cell is not None:
            names[f"c{k}"] = cell
            if dtype != np.float64:  # a float32 scalar: the general path rounds it
                return lambda *args: SLOW
            body.append(f"    if type({a}) is not float: return SLOW")
            body.append(f"    c{k}[0] = {a}")
            args.append(f"c{k}")
            continue
        contiguous = np.empty(shape, dtype).strides
        names.update({f"D{k}": dtype, f"S{k}": shape, f"T{k}": contiguous, f"K{k}": library.kinds[k]})
        body.append(
            f"    if type({a}) is not ndarray or not ({a}.dtype is D{k} or {a}.dtype == D{k}) "
            f"or {a}.shape != S{k} or {a}.strides != T{k}: return SLOW"
        )
        args.append(f"fb(K{k}, {a})")
    head = [f"a{k}" for k in range(n)]
    for j, ((shape, dtype, kind), cell) in enumerate(zip(library.results, cells[n:])):
        if cell is not None:
            names.update({f"c{n + j}": cell, f"F{j}": dtype.type})
            args.append(f"c{n + j}")
            outs.append(f"F{j}(c{n + j}[0])")
            continue
        names.update({f"R{j}": shape, f"E{j}": dtype, f"Q{j}": kind})
        body.append(f"    o{j} = empty(R{j}, E{j})")
        args.append(f"fb(Q{j}, o{j})")
        outs.append(f"o{j}[()]" if shape == () else f"o{j}")  # an integer or boolean scalar: numpy's scalar
    body.append(f"    if call({', '.join([*args, 'work'])}): return SLOW")
    body.append(f"    return {outs[0] if single else '[' + ', '.join(outs) + ']'}")
    source = f"def fast({', '.join(head)}):\n" + "\n".join(body) + "\n"
    exec(compile(source, "<symdiff c fast call>", "exec"), names)  # noqa: S102 (text built above)
    return names["fast"]


class Compiled(_NumpyCompiled):
    """``sd.compile(..., backend="c")``: the graph specialized per tuple of input shapes, printed as
    C, built with the system C compiler (cached on disk) and called through cffi.
    ``f.batch(*stacked)`` evaluates a leading axis of input sets in one C call."""

    backend = "c"

    def _build(self, outputs: list[Node], inputs: list[Node]) -> None:
        self._plan = plan = Plan(outputs, inputs, numpy_function)
        self._check_bound(plan)
        _refuse_unprintable(outputs)
        _cffi()
        compiler()
        self._libraries: dict[tuple, _Library] = {}
        self._lock = threading.Lock()
        self._as_float = [x.shape == () and x.dtype == np.float64 for x in inputs]
        self.source: str | None = None  # the C of the latest specialization
        self._fast = threading.local()  # .call: the calling thread's fast call of the static library
        # static shapes: the values' shapes are checked against them, so one library serves
        self._static = (
            self._library(tuple(x.shape for x in inputs), None) if all(None not in x.shape for x in inputs) else None
        )

    def _library(self, shapes: tuple, values: list[Any] | None) -> _Library:
        with self._lock:
            found = self._libraries.get(shapes)
            if found is not None:
                return found
            try:
                outs, ins = specialized(self.outputs, self.inputs, shapes)
                fn = CFunction(outs, ins, "symdiff_compiled")
            except ShapeError:
                if values is not None:
                    self._refuse(values)  # numpy's error for these values, naming the variables
                raise
            found = self._libraries[shapes] = _Library(fn)
            self.source = found.source
            return found

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._static is not None and not kwargs and len(args) == len(self.inputs):
            try:
                found = self._fast.call(*args)
            except AttributeError:  # this thread's first call
                self._fast.call = self._static.fast(self._single)
                found = self._fast.call(*args)
            if found is not SLOW:
                return found
        if kwargs or len(args) != len(self.inputs):
            args = self._positional(args, kwargs)
        values = []
        for node, value, as_float in zip(self.inputs, args, self._as_float):
            if as_float and type(value) is float:  # a Python float for a float64 scalar is ready
                pass
            elif not (  # an array of the variable's dtype and (static) shape, C-contiguous, is ready
                type(value) is np.ndarray
                and value.dtype == node.dtype
                and value.shape == node.shape
                and value.flags.c_contiguous
            ):
                value = check_value(node, value, "compiled function")
                if not value.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d value 1-d)
                    value = np.ascontiguousarray(value)
            values.append(value)
        library = self._static
        if library is None:  # a None dimension: one library per tuple of shapes
            shapes = tuple(np.shape(v) for v in values)
            library = self._libraries.get(shapes) or self._library(shapes, values)
        rc, results = library.run(values)
        if rc:
            results = self._failed(rc, values)
        return results[0] if self._single else results

    def batch(self, *args: Any, **kwargs: Any) -> Any:
        """The outputs for n input sets in one C call: each input with a leading axis of n (its
        values stacked), each output likewise."""
        if kwargs or len(args) != len(self.inputs):
            args = self._positional(args, kwargs)
        arrays, n = [], None
        for x, value in zip(self.inputs, args):
            arr = np.asarray(value)
            if arr.ndim != len(x.shape) + 1 or (n is not None and arr.shape[0] != n):
                raise ShapeError(
                    f"compiled function batch: variable {x.name!r} was given a value of shape {arr.shape}; "
                    f"batch takes its n values stacked along a leading axis, a shape (n, *{format_shape(x.shape)})"
                    + (f" with n = {n} as the inputs before it" if n is not None else "")
                    + " (np.broadcast_to(value, (n, *value.shape)) repeats one value for every input set)"
                )
            n = arr.shape[0]
            check_value(x, arr[0] if n else np.zeros(arr.shape[1:], arr.dtype), "compiled function batch")
            arrays.append(np.ascontiguousarray(arr, dtype=x.dtype))
        shapes = tuple(a.shape[1:] for a in arrays)
        rows = [[a[i] for a in arrays] for i in range(min(n, 1))]
        library = self._libraries.get(shapes) or self._library(shapes, rows[0] if rows else None)
        rc, outs = library.run(arrays, (n,))
        if rc:
            rows = []
            for i in range(n):  # numpy's error for the first input set that has one
                try:
                    rows.append(self._refuse([a[i] for a in arrays]))
                except SymdiffError as exc:
                    exc.add_note(f"(raised for input set {i} of the batch: index {i} of the inputs' leading axis)")
                    raise
            if rc not in (2, 3):
                self._failed(rc, None)
            outs = [np.stack([np.asarray(row[k], o.dtype) for row in rows]) for k, o in enumerate(outs)]
        return outs[0] if self._single else outs

    def _failed(self, rc: int, values: list[Any] | None) -> list[Any]:
        """After the C function returned ``rc``: numpy's error for these values; or, for a matrix
        the C kernels found singular (or not positive definite) where LAPACK's rounding found a
        tiny nonzero pivot, the interpreter's values (the two agree on every matrix not singular
        to rounding: tests/test_c_kernels.py)."""
        if values is not None:
            results = self._refuse(values)
            if rc in (2, 3):
                return results
        raise BackendError(
            f"the C function stopped with error {rc} ({ERRORS.get(rc, 'unknown')}), which numpy's evaluation of "
            "the same values does not raise; please report it"
        )

    def _refuse(self, values: list[Any]) -> list[Any]:
        """Raise what the numpy interpreter raises for these values; else its results."""
        return self._plan.run(dict(zip(self.inputs, values)))


# the printer modules register their printers in PRINTERS (they import this module)
from symdiff.backends import c_index, c_linalg, c_loops  # noqa: E402, F401
