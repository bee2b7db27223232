"""Loops as C loops: the printers of ``scan`` and ``while_loop`` (symdiff.loops) for the C backend.

A loop's body is printed once, as a function of its own (``static int symdiff_bodyK_NAME(const T
*param..., T *out..., void *work)``, its plan printed by the same ``CFunction`` as the entry
point), and the loop node becomes a ``for`` (scan) or ``for (;;)`` (while_loop) calling it per
step: the carries double-buffered (the node's own output and one block of the work buffer, the
pointers swapped after each step; a carry of shape () a pair of C locals), each ``y`` written by
the body straight into its row of the stacked output, the carries each step started from stored
where the plan reads them (at the kept positions of a checkpointed scan) and a body's error code
passed on. The generated code is the size of the body whatever the number of steps; the work
buffer holds the body's own and the stored carries (a reverse loop's snapshot buffer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from symdiff.backends.c import PRINTERS, CFunction, CWriter, ctype
from symdiff.graph import Node, Region
from symdiff.loops import scan_call

__all__: list[str] = []

# the error codes (symdiff.backends.c.ERRORS) a loop returns; Python reruns the interpreter for
# its LoopError
_BAD_COUNT = 6
_TOO_MANY_STEPS = 7


@dataclass
class _Body:
    """A body's function: its C name and the work buffer a call needs."""

    name: str
    work: int


def _body(w: CWriter, region: Region, kept: tuple[int, ...]) -> _Body:
    """The function of ``region`` computing its outputs at ``kept``, printed once per writer tree
    (before the functions calling it: a helper of the entry point)."""
    key = (region, kept)
    found = w.bodies.get(key)
    if found is None:
        label = re.sub(r"[^A-Za-z0-9_]+", "_", region.name or "body").strip("_")
        name = f"symdiff_body{len(w.bodies)}_{label}"
        w.bodies[key] = None  # its number taken before the bodies it calls take theirs
        fn = CFunction([region.outputs[k] for k in kept], list(region.params), name, outer=w)
        params, _ = fn._arguments()
        lines = "\n".join(fn.w.lines)
        w.helper(name, f"static int {name}({', '.join([*params, 'void *work'])})\n{{\n{lines}\n}}\n")
        found = w.bodies[key] = _Body(name, fn.work_bytes)
    return found


def _size(shape: tuple) -> int:
    return math.prod(shape)


def _row(name: str, t: str, size: int) -> str:
    """The pointer to row ``t`` (of ``size`` elements) of a stacked array."""
    return f"{name} + {t} * {size}" if size != 1 else f"{name} + {t}"


class _Loop:
    """The carries of a loop being printed: each the node's output (``final``) and a spare, the
    current one read by the body (``cur``: its pointer or address) and the next one it writes."""

    def __init__(self, w: CWriter, node: Node, finals: list[str | None], init: list[str]):
        self.w = w
        self.cur: list[str] = []  # what the body reads (a pointer, or a local's address)
        self.nxt: list[str] = []  # what the body writes
        self.swap: list[str] = []  # statements after each step
        self.finish: list[str] = []  # statements after the loop
        for j, (final, first) in enumerate(zip(finals, init)):
            shape, dtype = node.results[j]
            t = ctype(dtype)
            if shape == ():
                now = final if final is not None else w.local(t, "0")
                w.line(f"{now} = {first};")
                after = w.local(t, "0")
                self.cur.append(f"&{now}")
                self.nxt.append(f"&{after}")
                self.swap.append(f"{now} = {after};")
                continue
            nbytes = _size(shape) * dtype.itemsize
            home = final if final is not None else f"({t} *){w.scratch(nbytes)}"
            spare = f"({t} *){w.scratch(nbytes)}"
            now = w.local(f"const {t} *", first)
            after = w.local(f"{t} *", home)
            self.cur.append(now)
            self.nxt.append(after)
            self.swap += [f"{now} = {after};", f"{after} = {now} == {home} ? {spare} : {home};"]
            if final is not None:
                self.finish.append(f"if ({now} != {final}) memcpy({final}, {now}, {nbytes});")

    def store(self, node: Node, stored: list[str | None], slot: str) -> None:
        """The current carries written at ``slot`` of the stored outputs (those the plan reads)."""
        for j, (buf, now) in enumerate(zip(stored, self.cur)):
            if buf is None:
                continue
            shape, dtype = node.results[j]
            if shape == ():
                self.w.line(f"{buf}[{slot}] = {now[1:]};")
            else:
                size = _size(shape)
                self.w.line(f"memcpy({_row(buf, slot, size)}, {now}, {size * dtype.itemsize});")

    def call(self, body: _Body, args: list[str], work: str) -> None:
        """A call of ``body``; its error code returned from the function."""
        rc = self.w.local("int", f"{body.name}({', '.join([*args, work])})")
        self.w.line(f"if ({rc}) return {rc};")

    def step(self) -> None:
        for text in self.swap:
            self.w.line(text)

    def close(self) -> None:
        for text in self.finish:
            self.w.line(text)


def _addressed(w: CWriter, node: Node, name: str) -> str:
    """An argument a body takes as a pointer: an array's pointer, or a scalar's address."""
    return name if node.shape != () else f"&{w.local(f'const {ctype(node.dtype)}', name)}"


def _zeroed(w: CWriter, node: Node, outs: list[str | None], at: int) -> None:
    """Stacked outputs (from ``at``) set to zeros, as the interpreter's for rows no step writes."""
    for k, buf in enumerate(outs):
        if buf is not None:
            shape, dtype = node.results[at + k]
            w.line(f"memset({buf}, 0, {_size(shape) * dtype.itemsize});")


def _p_scan(w: CWriter, node: Node, out: list[str | None], args: list[str]) -> None:
    """A scan: ``for`` over the steps calling the body's function (as ``loops.run_scan``)."""
    at = node.attrs
    nc, nx, ny, length = at["carries"], at["xs"], at["ys"], at["length"]
    region = node.regions[0]
    wanted = w.wanted.get(node)
    call = scan_call(args, **at, wanted=wanted)
    finals, ys, stored = out[:nc], out[nc : nc + ny], out[nc + ny :]
    if not call.store:
        stored = [None] * nc
    body = _body(w, region, tuple(range(nc + ny if call.want_ys else nc)))
    steps = str(length)
    if at["counted"]:
        steps = w.local("long", f"(long){call.count}")
        w.fail(f"{steps} < 0 || {steps} > {length}", _BAD_COUNT, node)
        _zeroed(w, node, ys, nc)
        _zeroed(w, node, stored, nc + ny)
    params = region.params
    caps = [_addressed(w, u, a) for u, a in zip(params[nc + nx :], call.caps)]
    loop = _Loop(w, node, finals, list(call.init))
    targets: list[tuple[str, int | None]] = []  # (the stacked y, its row's size); None: one row, overwritten
    for k in range(ny if call.want_ys else 0):
        (_, *item), dtype = node.results[nc + k]
        size = _size(item)
        targets.append(
            (ys[k], size) if ys[k] is not None else (f"({ctype(dtype)} *){w.scratch(size * dtype.itemsize)}", None)
        )
    work = w.scratch(body.work)
    # the last step makes only the final carries and ys: a scan read for its stored carries
    # alone (a checkpointed reverse's recomputation) stops before it, as run_scan
    skip_last = wanted is not None and not any(k < nc + ny for k in wanted)
    kept = call.kept
    storing = any(s is not None for s in stored)
    if storing and kept is not None and at["checkpoint"][0] == "revolve":
        # the kept positions (at most the snapshots, increasing) and the next one's index
        positions, slot = w.name(), w.local("long", "0")
        w.line(f"static const long {positions}[{max(len(kept), 1)}] = {{{', '.join(map(str, kept)) or '0'}}};")
    p = w.name()
    with w.loop(p, steps):
        t = p
        if at["reverse"]:
            t = w.local("long", f"{steps} - 1 - {p}")
            w.line(f"(void){t};")
        if storing and kept is None:
            loop.store(node, stored, t)
        elif storing and at["checkpoint"][0] == "revolve":
            with w.block(f"if ({slot} < {len(kept)} && {p} == {positions}[{slot}])"):
                loop.store(node, stored, slot)
                w.line(f"++{slot};")
        elif storing:  # every(k): the positions 0, k, 2k, ...
            k = at["checkpoint"][1]
            with w.block(f"if ({p} % {k} == 0)"):
                loop.store(node, stored, f"({p} / {k})")
        if skip_last:
            w.line(f"if ({p} == {steps} - 1) break;")
        xs = [_row(a, t, _size(u.shape)) for u, a in zip(params[nc : nc + nx], call.seqs)]
        ys_at = [buf if size is None else _row(buf, t, size) for buf, size in targets]
        loop.call(body, [*loop.cur, *xs, *caps, *loop.nxt, *ys_at], work)
        loop.step()
    if not skip_last:
        loop.close()


def _p_while(w: CWriter, node: Node, out: list[str | None], args: list[str]) -> None:
    """A while_loop: ``for (;;)`` while the condition's function says so, calling the body's;
    with ``max_steps``, the carries each step started from stored (where the plan reads them),
    the trip count kept, and error 7 past ``max_steps`` steps (as ``loops.run_while``)."""
    at = node.attrs
    nc, nconds, bound = at["carries"], at["conds"], at["max_steps"]
    cond_region, body_region = node.regions
    cond, body = _body(w, cond_region, (0,)), _body(w, body_region, tuple(range(nc)))
    ccaps = [_addressed(w, u, a) for u, a in zip(cond_region.params[nc:], args[nc : nc + nconds])]
    bcaps = [_addressed(w, u, a) for u, a in zip(body_region.params[nc:], args[nc + nconds :])]
    stored: list[str | None] = list(out[nc : 2 * nc]) if bound is not None else [None] * nc
    count = None
    if bound is not None:
        count = out[2 * nc] if out[2 * nc] is not None else w.local("int64_t", "0")
        w.line(f"{count} = 0;")
        _zeroed(w, node, stored, nc)
    loop = _Loop(w, node, out[:nc], args[:nc])
    holds = w.local(ctype(cond_region.outputs[0].dtype), "0")
    work = w.scratch(max(cond.work, body.work))
    with w.block("for (;;)"):
        loop.call(cond, [*loop.cur, *ccaps, f"&{holds}"], work)
        w.line(f"if (!{holds}) break;")
        if count is not None:
            w.fail(f"{count} >= {bound}", _TOO_MANY_STEPS, node)
            loop.store(node, stored, count)
        loop.call(body, [*loop.cur, *bcaps, *loop.nxt], work)
        loop.step()
        if count is not None:
            w.line(f"++{count};")
    loop.close()


PRINTERS.update({"scan": _p_scan, "while_loop": _p_while})
