"""Loops whose derivatives are loops: ``sd.scan``, ``sd.fori_loop``, ``sd.while_loop``, ``sd.unroll``.

A loop is one node that owns its body (a :class:`symdiff.graph.Region`, traced once), so the
graph stays the size of the body whatever the number of steps. Its derivative rules build loops
too, as JAX's ``scan`` does (``jax/_src/lax/control_flow/loops.py``): reverse mode is a
``scan`` running the other way over the stored carries, whose body is the body's reverse pass;
forward mode a ``scan`` over primal and tangent carries, whose body is the body's forward pass.
Both are loops of the same op, so they differentiate again, to any order (a Hessian is forward
over reverse: a loop over the reverse loop).

A ``scan`` node's inputs are the initial carries, the sequences ``xs`` it slices along axis 0,
the outer nodes its body captured and, for a loop whose trip count is known only at evaluation
(a ``while_loop``'s reverse), that count. Its outputs are the final carries, the stacked ``ys``,
and the stacked carries each step started from: a derivative reads them, and the loop stores
them only when something does (``Op.runs``'s ``wanted``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symdiff.autodiff import DIFF, NONE, UNDEFINED, body_links, floating, forward_pass, full_tangent, reverse_pass
from symdiff.composite import batch_zeros, fresh_name
from symdiff.errors import GraphError, LoopError, NonDifferentiableError, ShapeError
from symdiff.graph import Graph, Node, Region, ancestors, describe, format_shape, unchanged_on_failure
from symdiff.ops import add, concatenate, expand_dims, flip, reshape, squeeze, stack, transpose
from symdiff.ops.constants import format_number
from symdiff.ops.core import as_nodes, define_op, graph_of, outputs_of, rebuild

__all__ = ["Checkpoint", "checkpoint", "fori_loop", "scan", "unroll", "while_loop"]


# -- checkpointing policies ----------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """How reverse mode through a ``scan`` keeps the carries it needs: every one (None, the
    default), every ``k``-th with the rest recomputed (``every``), or Griewank and Walther's
    binomial schedule with ``snapshots`` carries kept (``revolve``). Make one with
    ``sd.checkpoint.every(k)`` or ``sd.checkpoint.revolve(snapshots=s)``."""

    kind: str
    size: int

    def __post_init__(self) -> None:
        if self.kind not in ("every", "revolve") or isinstance(self.size, bool) or not isinstance(self.size, int):
            raise GraphError(
                f"Checkpoint({self.kind!r}, {self.size!r}): make one with sd.checkpoint.every(k) or "
                "sd.checkpoint.revolve(snapshots=s)"
            )
        if self.size < 1:
            raise GraphError(f"Checkpoint({self.kind!r}, {self.size}): the size must be a positive integer")

    def __repr__(self) -> str:
        return f"every({self.size})" if self.kind == "every" else f"revolve(snapshots={self.size})"


class _Checkpoints:
    """``sd.checkpoint``: the checkpointing policies of ``sd.scan(..., checkpoint=...)``."""

    @staticmethod
    def every(k: int) -> Checkpoint:
        """Store every ``k``-th carry; reverse mode recomputes the ``k - 1`` between from it (one
        more run of the body per step, ``T / k + k`` carries held instead of ``T``)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise GraphError(f"checkpoint.every: k must be a positive integer, got {k!r}")
        return Checkpoint("every", int(k))

    @staticmethod
    def revolve(snapshots: int) -> Checkpoint:
        """Binomial checkpointing (Griewank & Walther, "Algorithm 799: Revolve", ACM TOMS 26(1),
        2000): at most ``snapshots`` carries held, and the fewest recomputations that allows."""
        if isinstance(snapshots, bool) or not isinstance(snapshots, (int, np.integer)) or snapshots < 1:
            raise GraphError(f"checkpoint.revolve: snapshots must be a positive integer, got {snapshots!r}")
        return Checkpoint("revolve", int(snapshots))

    def __repr__(self) -> str:
        return "sd.checkpoint (every(k), revolve(snapshots=s))"


checkpoint = _Checkpoints()


# -- the scan op -------------------------------------------------------------------------------
def _attrs(node: Node) -> dict[str, Any]:
    return dict(node._attrs)


def _layout(node: Node) -> tuple[int, int, int, int]:
    """(carries, xs, ys, captured) counts of a scan node."""
    a = _attrs(node)
    nc, nx, ny = a["carries"], a["xs"], a["ys"]
    return nc, nx, ny, len(node.regions[0].params) - nc - nx


def _binomial(s: int, r: int) -> int:
    """Griewank's beta(s, r) = C(s + r, s): the most steps ``s`` snapshots reverse with each step
    run at most ``r`` times forward (0 for r < 0)."""
    return math.comb(s + r, s) if r >= 0 else 0


def _revolve_split(length: int, snapshots: int) -> int | None:
    """How far to advance from a segment's start before taking the next snapshot, in the
    binomial schedule for reversing ``length`` steps with ``snapshots`` carries (the start's one
    included); None where no split is made: ``length <= snapshots`` (every carry of the segment
    kept) or a single snapshot (each step recomputed from the start).

    With beta(s, r-1) < l <= beta(s, r), an advance j is optimal when j lies in
    [beta(s, r-2), beta(s, r-1)] and l - j in [beta(s-1, r-1), beta(s-1, r)] (the cost
    t(l, s) = r l - beta(s+1, r-1) is convex and piecewise linear in l). Of those, one side is
    taken of binomial length, so few distinct (length, snapshots) segments occur (their
    reverse bodies are shared)."""
    if length <= snapshots or snapshots == 1:
        return None
    r = 1
    while _binomial(snapshots, r) < length:
        r += 1
    j = _binomial(snapshots, r - 1)
    if length - j < _binomial(snapshots - 1, r - 1):
        j = length - _binomial(snapshots - 1, r - 1)
    return j


@functools.lru_cache(maxsize=256)
def kept_positions(length: int, policy: tuple | None) -> tuple[int, ...] | None:
    """The steps (positions in iteration order) whose starting carries a scan stores for its
    reverse mode; None: all of them. ``("every", k)``: 0, k, 2k, ...; ``("revolve", s)``: the
    snapshots of the schedule's first sweep (0, then each advance's end while a split is made),
    at most s."""
    if policy is None:
        return None
    kind, size = policy
    if kind == "every":
        return tuple(range(0, length, size))
    found, position, rest, snaps = [0] if length else [], 0, length, size
    while length and (j := _revolve_split(rest, snaps)) is not None:
        position, rest, snaps = position + j, rest - j, snaps - 1
        found.append(position)
    return tuple(found)


def _stored_length(length: int, policy: tuple | None) -> int:
    """How many carries a scan's residual output holds."""
    kept = kept_positions(length, policy)
    return length if kept is None else len(kept)


@dataclass(frozen=True)
class ScanCall:
    """A scan node's values sorted as every backend's runner reads them: the initial carries,
    the sequences, the captured values and the trip count (None: all ``length`` steps), with
    what the plan reads (``want_ys``, ``store``) and where each step's starting carry is kept
    (``slot(position, t)``: the index in the stored output, or None)."""

    init: tuple
    seqs: tuple
    caps: tuple
    count: Any
    want_ys: bool
    store: bool
    kept: tuple[int, ...] | None

    def slot(self, position: int, t: int) -> int | None:
        """Where the carry that starts step ``t`` (the ``position``-th run) is stored."""
        if self.kept is None:
            return t
        try:
            return self.kept.index(position)
        except ValueError:
            return None


def scan_call(
    args: Sequence[Any],
    *,
    carries: int,
    xs: int,
    ys: int,
    counted: bool,
    length: int,
    checkpoint: tuple | None,
    wanted: frozenset[int] | None,
    **_: Any,
) -> ScanCall:
    """A scan node's values and attributes as its runners read them (see ``ScanCall``)."""
    nc, nx, ny = carries, xs, ys
    return ScanCall(
        tuple(args[:nc]),
        tuple(args[nc : nc + nx]),
        tuple(args[nc + nx : len(args) - 1] if counted else args[nc + nx :]),
        args[-1] if counted else None,
        wanted is None or any(nc <= k < nc + ny for k in wanted),
        wanted is None or any(k >= nc + ny for k in wanted),
        kept_positions(length, checkpoint),
    )


def _identifier(text: str) -> str:
    """``text`` as an identifier (a body's name prints as a function's): other characters become
    ``_``, runs of them one."""
    name = "_".join(part for part in "".join(c if c.isalnum() or c == "_" else " " for c in text).split())
    return name if name.isidentifier() else f"b_{name}"


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise GraphError(f"{what}: name must be an identifier (the loop prints as a call of it), got {name!r}")
    return name


def bad_count(name: str, count: Any, length: int) -> LoopError:
    """The error of a counted scan whose trip count is outside 0..length (the same from every backend)."""
    return LoopError(f"{name}: a trip count of {count} is outside 0..{length}")


def carry_changed(name: str, k: int, before: tuple, after: tuple) -> ShapeError:
    """The error of a step whose new carry ``k`` has another shape than the carry it started from
    (a dimension declared None that the body changes); the same from every backend."""
    return ShapeError(
        f"{name}: a step turned carry item {k} of shape {tuple(before)} into shape {tuple(after)}; a loop's carry "
        "keeps its shape (a dimension declared None may not change from step to step)"
    )


def run_scan(
    bodies: tuple,
    *args: Any,
    length: int,
    carries: int,
    xs: int,
    ys: int,
    reverse: bool,
    counted: bool,
    checkpoint: tuple | None,
    wanted: frozenset[int] | None = None,
    results: tuple | None = None,
    name: str = "scan",
    **_: Any,
) -> tuple:
    """A scan node's values, the body run once per step (the interpreter's and numpy's loop)."""
    body = bodies[0]
    nc, ny = carries, ys
    call = scan_call(
        args, carries=nc, xs=xs, ys=ny, counted=counted, length=length, checkpoint=checkpoint, wanted=wanted
    )
    init, seqs, caps, want_ys, store = call.init, call.seqs, call.caps, call.want_ys, call.store
    steps = length
    if counted:
        steps = int(call.count)
        if not 0 <= steps <= length:
            raise bad_count(name, steps, length)
    kept = call.kept
    slots = None if kept is None else dict(zip(kept, range(len(kept))))
    # the last step makes only the final carries and ys: a scan read for its stored carries alone
    # (a checkpointed reverse's recomputation) skips it
    last = steps - 1 if wanted is None or any(k < nc + ny for k in wanted) else steps - 2
    c = list(init)
    ys_buf: list[Any] = [None] * ny
    stored: list[Any] = [None] * nc
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for position, t in enumerate(order):
        slot = t if slots is None else slots.get(position)
        if store and slot is not None:
            for j in range(nc):
                if stored[j] is None:
                    stored[j] = _buffer(results[nc + ny + j], np.shape(c[j]))
                stored[j][slot] = c[j]
        if position > last:
            break
        out = body(*c, *(s[t] for s in seqs), *caps)
        for j in range(nc):
            if np.shape(out[j]) != np.shape(c[j]):
                raise carry_changed(name, j, np.shape(c[j]), np.shape(out[j]))
        c = list(out[:nc])
        if want_ys:
            for k in range(ny):
                if ys_buf[k] is None:
                    ys_buf[k] = _buffer(results[nc + k], np.shape(out[nc + k]))
                ys_buf[k][t] = out[nc + k]
    if want_ys:
        ys_buf = [b if b is not None else _buffer(results[nc + k], None) for k, b in enumerate(ys_buf)]
    if store:
        stored = [
            b if b is not None else _buffer(results[nc + ny + j], np.shape(init[j])) for j, b in enumerate(stored)
        ]
    return tuple(c) + tuple(ys_buf if want_ys else [None] * ny) + tuple(stored if store else [None] * nc)


def _buffer(result: tuple, item_shape: tuple | None) -> np.ndarray:
    """Zeros for a stacked output: its static length, then the item's shape as computed (its
    static shape, a None dimension 0, when no step ran)."""
    shape, dtype = result
    if item_shape is None:
        item_shape = tuple(0 if d is None else d for d in shape[1:])
    return np.zeros((shape[0], *item_shape), dtype=dtype)


def _scan_shapes(*_: Any, **__: Any) -> tuple:
    raise GraphError("a scan node takes its shapes from its body")


def _closure(links: list[tuple[frozenset[int], frozenset[int]]], nc: int, which: int) -> list[set[int]]:
    """For each body parameter, the body outputs it reaches over any number of steps (a carry
    output feeds the next step's carry parameter of the same position)."""
    n_params = 1 + max((max(d[which], default=-1) for d in links), default=-1)
    reach: list[set[int]] = []
    for p in range(n_params):
        seen: set[int] = set()
        frontier = {p}
        visited: set[int] = set()
        while frontier:
            q = frontier.pop()
            visited.add(q)
            for o, dep in enumerate(links):
                if q in dep[which] and o not in seen:
                    seen.add(o)
                    if o < nc and o not in visited:
                        frontier.add(o)
        reach.append(seen)
    return reach


def _edges(node: Node, nc: int, params: int, carried: bool) -> list[str]:
    """How a derivative flows to each input of a loop node: to a carry always (it is the final
    carry when no step runs, and the first stored one), to another parameter as the body's
    outputs reach it over the steps; no derivative to a trip count."""
    links = body_links(node.regions[0])
    diff, linked = _closure(links, nc, 0), _closure(links, nc, 1)
    kinds = []
    for i in range(len(node.inputs)):
        if i >= params:
            kinds.append(NONE)
        elif carried and i < nc:
            kinds.append(DIFF)
        elif i < len(diff) and diff[i]:
            kinds.append(DIFF)
        elif i < len(linked) and linked[i]:
            kinds.append(UNDEFINED)
        else:
            kinds.append(NONE)
    return kinds


def _scan_edges(node: Node) -> list[str]:
    nc, nx, _, ncap = _layout(node)
    return _edges(node, nc, nc + nx + ncap, True)


def _front(t: Node, nb: int) -> Node:
    """Axis ``nb`` (a stacked axis behind ``nb`` batch axes) moved to the front."""
    if not nb:
        return t
    return transpose(t, (nb, *range(nb), *range(nb + 1, t.ndim)))


def _back(t: Node, nb: int) -> Node:
    """Axis 0 moved behind ``nb`` batch axes (``_front`` undone)."""
    if not nb:
        return t
    return transpose(t, (*range(1, nb + 1), 0, *range(nb + 1, t.ndim)))


def make_scan(region: Region, inputs: Sequence[Node], attrs: dict[str, Any]) -> Node:
    """The scan node running ``region`` over ``inputs`` (see the module docstring for their
    order); ``attrs``: name, length, carries, xs, ys, reverse, counted, checkpoint."""
    nc, ny = attrs["carries"], attrs["ys"]
    length = attrs["length"]
    graph = graph_of(attrs["name"], inputs)
    params, outs = region.params, region.outputs
    if len(params) != len(inputs) - bool(attrs["counted"]) or len(outs) != nc + ny:
        raise GraphError(f"{attrs['name']}: {len(inputs)} inputs for a body of {len(params)} parameters")
    stored = _stored_length(length, attrs["checkpoint"])
    results = (
        tuple((p.shape, p.dtype) for p in params[:nc])
        + tuple(((length, *y.shape), y.dtype) for y in outs[nc:])
        + tuple(((stored, *p.shape), p.dtype) for p in params[:nc])
    )
    key = tuple((k, attrs[k]) for k in ("name", "length", "carries", "xs", "ys", "reverse", "counted", "checkpoint"))
    return graph._make("scan", tuple(inputs), key, None, None, results, (region,))


@dataclass
class _Seeds:
    """The cotangents reaching a loop node, sorted by what they seed."""

    carries: list[Node | None]
    ys: list[Node | None]
    stored: list[Node | None]
    first: Node
    nb: int


def _seeds(gs: Sequence[Node | None], node: Node, nc: int, ny: int) -> _Seeds:
    outs = outputs_of(node)
    k = next(i for i, g in enumerate(gs) if g is not None)
    first = gs[k]
    return _Seeds(
        list(gs[:nc]), list(gs[nc : nc + ny]), list(gs[nc + ny : nc + ny + nc]), first, first.ndim - outs[k].ndim
    )


def _reverse_body(
    region: Region,
    nc: int,
    nx: int,
    fc: list[int],
    ys_in: list[int],
    stored_in: list[int],
    x_out: list[int],
    cap_out: list[int],
    batch: tuple,
) -> Region:
    """The body of a loop's reverse: one step of the body's reverse pass, appended to the body's
    graph. Parameters: the carries' cotangents (float carries ``fc``) and the captured nodes'
    accumulated cotangents (``cap_out``), then per step the carries the forward step started from,
    its xs, the cotangents of its ys (``ys_in``) and of its stored carries (``stored_in``), then
    the captured nodes. Outputs: the cotangents of the carries before the step, the accumulated
    ones plus this step's, and this step's xs' cotangents (``x_out``)."""
    key = ("scan_vjp", tuple(fc), tuple(ys_in), tuple(stored_in), tuple(x_out), tuple(cap_out), batch)
    found = region.derived.get(key)
    if found is not None:
        return found
    body = region.graph
    params, outs = region.params, region.outputs
    carries, xs, caps = params[:nc], params[nc : nc + nx], params[nc + nx :]
    with body._derivative_pass():

        def seed(base: str, like: Node) -> Node:
            return body.variable(fresh_name(body, base), batch + like.shape, like.dtype)

        ct = [seed(f"ct_{carries[j].name}", carries[j]) for j in fc]
        acc = [seed(f"acc_{caps[m].name}", caps[m]) for m in cap_out]
        ct_y = [seed(f"ct_y{k}", outs[nc + k]) for k in ys_in]
        ct_s = [seed(f"ct_stored_{carries[j].name}", carries[j]) for j in stored_in]
        links = body_links(region)
        targets = [outs[j] for j in fc] + [outs[nc + k] for k in ys_in]
        target_links = [links[j][0] for j in fc] + [links[nc + k][0] for k in ys_in]
        reached = set().union(*target_links) if target_links else set()
        wrt = [carries[j] for j in fc] + [xs[k] for k in x_out] + [caps[m] for m in cap_out]
        wrt_reached = [w for w in wrt if params.index(w) in reached]
        got = reverse_pass(targets, ct + ct_y, wrt_reached, region.name) if targets and wrt_reached else {}
        nb = len(batch)
        lead = (ct + ct_y)[0]

        def cotangent(p: Node) -> Node:
            return got[p] if p in got else batch_zeros(p, lead, nb)

        before = []
        for j in fc:
            c = cotangent(carries[j])
            if j in stored_in:
                c = add(c, ct_s[stored_in.index(j)])
            before.append(c)
        summed = [add(acc[i], got[caps[m]]) if caps[m] in got else acc[i] for i, m in enumerate(cap_out)]
        step_x = [cotangent(xs[k]) for k in x_out]
        rev = Region(
            body,
            tuple(ct + acc) + tuple(carries) + tuple(xs) + tuple(ct_y + ct_s) + tuple(caps),
            tuple(before + summed + step_x),
            f"{region.name}_vjp",
            several=True,
        )
    region.derived[key] = rev
    return rev


def reverse_loop(
    node: Node,
    region: Region,
    seeds: _Seeds,
    wanted: Sequence[int],
    *,
    nc: int,
    nx: int,
    ny: int,
    stored: Sequence[Node],
    length: int,
    reverse: bool,
    count: Node | None,
    x_inputs: Sequence[Node],
    cap_inputs: Sequence[Node],
    cap_offset: int,
    name: str,
) -> list[Node | None]:
    """Reverse mode through a loop of ``region`` (a scan's, or a while_loop's body) given the
    carries each step started from (``stored``): a scan the other way whose body is the body's
    reverse pass. Returns a cotangent (or None) per input of ``node``."""
    nb, first = seeds.nb, seeds.first
    init = node.inputs[:nc]
    fc = [j for j in range(nc) if floating(init[j])]
    ys_in = [k for k in range(ny) if seeds.ys[k] is not None]
    stored_in = [j for j in fc if seeds.stored[j] is not None]
    x_out = [k for k in range(nx) if nc + k in wanted]
    cap_out = [m for m in range(len(cap_inputs)) if cap_offset + m in wanted]
    batch = first.shape[:nb]
    rev = _reverse_body(region, nc, nx, fc, ys_in, stored_in, x_out, cap_out, batch)
    ct0 = [seeds.carries[j] if seeds.carries[j] is not None else batch_zeros(init[j], first, nb) for j in fc]
    acc0 = [batch_zeros(cap_inputs[m], first, nb) for m in cap_out]
    inputs = (
        ct0
        + acc0
        + list(stored)
        + list(x_inputs)
        + [_front(seeds.ys[k], nb) for k in ys_in]
        + [_front(seeds.stored[j], nb) for j in stored_in]
        + list(cap_inputs)
        + ([count] if count is not None else [])
    )
    attrs = {
        "name": f"{name}_vjp",
        "length": length,
        "carries": len(fc) + len(cap_out),
        "xs": nc + nx + len(ys_in) + len(stored_in),
        "ys": len(x_out),
        "reverse": not reverse,
        "counted": count is not None,
        "checkpoint": None,
    }
    back = make_scan(rev, inputs, attrs)
    outs = outputs_of(back)
    found: list[Node | None] = [None] * len(node.inputs)
    for idx, j in enumerate(fc):
        if j in wanted:
            found[j] = outs[idx]
    for idx, m in enumerate(cap_out):
        found[cap_offset + m] = outs[len(fc) + idx]
    for idx, k in enumerate(x_out):
        found[nc + k] = _back(outs[len(fc) + len(cap_out) + idx], nb)
    return found


def _scan_vjp(gs: tuple, node: Node, wanted: list[int]) -> list[Node | None]:
    a = _attrs(node)
    nc, nx, ny, ncap = _layout(node)
    if a["checkpoint"] is not None:
        return checkpointed_vjp(gs, node, wanted)
    seeds = _seeds(gs, node, nc, ny)
    return reverse_loop(
        node,
        node.regions[0],
        seeds,
        wanted,
        nc=nc,
        nx=nx,
        ny=ny,
        stored=outputs_of(node)[nc + ny : nc + ny + nc],
        length=a["length"],
        reverse=a["reverse"],
        count=node.inputs[-1] if a["counted"] else None,
        x_inputs=node.inputs[nc : nc + nx],
        cap_inputs=node.inputs[nc + nx : nc + nx + ncap],
        cap_offset=nc + nx,
        name=a["name"],
    )


def checkpointed_vjp(gs: tuple, node: Node, wanted: list[int]) -> list[Node | None]:
    """Reverse mode through a scan with a checkpointing policy: a rewrite of the derivative
    graph into scans that recompute carries from the stored ones, so it differentiates again
    (forward or reverse) as any scan does.

    The steps are taken in iteration order (a ``reverse=True`` scan's xs and ys cotangents are
    flipped). ``("every", k)``: a scan over the segments of k steps, last first, whose body
    recomputes the segment's carries from its stored start (a scan of k steps that keeps every
    carry) and runs the ordinary reverse scan over them; a shorter last segment (T not a
    multiple of k) is reversed the same way before it. ``("revolve", s)``: the first sweep's
    snapshots were stored by the scan itself (``kept_positions``); the pieces between them are
    reversed last first, piece i with s - i snapshots, by Griewank and Walther's binomial
    recursion: advance j steps, reverse the rest with one snapshot fewer, then the first j with
    as many (``_revolve_split``), down to segments short enough to keep every carry
    (``length <= snapshots``) or, with one snapshot, a scan that recomputes each step from the
    segment's start (a scan counted by the step). Each recursive segment is a body of its own,
    run by a one-step scan and shared by every segment of its (length, snapshots): the graph
    holds O(s log T) such bodies, not O(T) nodes (a dedicated op running the schedule's action
    list would be smaller still, but would need its own derivative rules and a runner per
    backend; scans differentiate and run everywhere)."""
    a = _attrs(node)
    nc, nx, ny, ncap = _layout(node)
    if a["counted"]:
        raise GraphError(f"{a['name']}: a counted scan does not take a checkpointing policy")
    seeds = _seeds(gs, node, nc, ny)
    nb, first = seeds.nb, seeds.first
    init, seqs, caps = node.inputs[:nc], node.inputs[nc : nc + nx], node.inputs[nc + nx : nc + nx + ncap]
    fc = [j for j in range(nc) if floating(init[j])]
    ys_in = [k for k in range(ny) if seeds.ys[k] is not None]
    if not fc and not ys_in:
        return [None] * len(node.inputs)
    stored_in = [j for j in fc if seeds.stored[j] is not None]
    x_out = [k for k in range(nx) if nc + k in wanted]
    cap_out = [m for m in range(ncap) if nc + nx + m in wanted]
    length, (kind, size), flipped = a["length"], a["checkpoint"], a["reverse"]
    batch = first.shape[:nb]
    rev = _Segments(node.regions[0], node.graph, a["name"], nc, nx, ny, fc, ys_in, x_out, cap_out, batch)
    kept = outputs_of(node)[nc + ny : nc + ny + nc]
    xs = [flip(x, 0) if flipped else x for x in seqs]
    ct_ys = [flip(seeds.ys[k], nb) if flipped else seeds.ys[k] for k in ys_in]
    ct = [seeds.carries[j] if seeds.carries[j] is not None else batch_zeros(init[j], first, nb) for j in fc]
    acc = [batch_zeros(caps[m], first, nb) for m in cap_out]
    pieces: list[list[Node]] = []  # the xs' cotangents, segment by segment, first step first

    def ct_stored(i: int, ct: list[Node]) -> list[Node]:
        return [add(c, _along(seeds.stored[j], nb, i)) if j in stored_in else c for c, j in zip(ct, fc)]

    def segment(start: int, stop: int, i: int, snapshots: int | None) -> None:
        nonlocal ct, acc
        ct, acc, got = rev.reverse(
            stop - start,
            snapshots,
            ct,
            acc,
            [s[i] for s in kept],
            [x[start:stop] for x in xs],
            [_along(c, nb, slice(start, stop)) for c in ct_ys],
            list(caps),
        )
        ct = ct_stored(i, ct)
        pieces.insert(0, got)

    if kind == "every":
        full, rest = divmod(length, size)
        if rest:
            segment(full * size, length, full, None)
        if full:
            ct_kept = [seeds.stored[j] for j in stored_in]
            ct, acc, got = rev.every(full, size, ct, acc, kept, xs, ct_ys, stored_in, ct_kept, list(caps))
            pieces.insert(0, got)
    else:
        bounds = [*kept_positions(length, (kind, size)), length]
        for i in range(len(bounds) - 2, -1, -1):
            segment(bounds[i], bounds[i + 1], i, size - i)
    found: list[Node | None] = [None] * len(node.inputs)
    for idx, j in enumerate(fc):
        if j in wanted:
            found[j] = ct[idx]
    for idx, m in enumerate(cap_out):
        found[nc + nx + m] = acc[idx]
    for idx, k in enumerate(x_out):
        parts = [p[idx] for p in pieces]
        got = parts[0] if len(parts) == 1 else concatenate(parts, nb) if parts else batch_zeros(seqs[k], first, nb)
        found[nc + k] = flip(got, nb) if flipped and parts else got
    return found


def _along(t: Node, nb: int, index: Any) -> Node:
    """``t``'s item (or slice) ``index`` along axis ``nb``, the stacked axis behind nb batch axes."""
    return t[(slice(None),) * nb + (index,)]


def _blocks(t: Node, count: int, size: int) -> Node:
    """The first ``count * size`` items of ``t`` along axis 0, as ``count`` blocks of ``size``."""
    rest = list(t.shape[1:])
    if rest.count(None) > 1:
        raise ShapeError(
            f"checkpoint.every: a sequence of shape {format_shape(t.shape)} has more than one dimension known "
            "only at evaluation; give the scan's xs and ys static shapes to checkpoint it"
        )
    return reshape(t[: count * size], (count, size, *(-1 if d is None else d for d in rest)))


def _unblock(t: Node) -> Node:
    rest = list(t.shape[2:])
    return reshape(t, (t.shape[0] * t.shape[1], *(-1 if d is None else d for d in rest)))


class _Segments:
    """Builds the reverse of segments of a checkpointed scan, in iteration order: given the
    cotangents of a segment's last carries (float carries ``fc``) and the captured nodes'
    accumulated cotangents (``cap_out``), its start carries, xs, ys' cotangents (``ys_in``, batch
    axes first) and the captured nodes, it gives the cotangents of the start carries, the
    accumulated ones, and the xs' cotangents (``x_out``, batch axes first). The bodies it makes
    live in ``graph`` (the scan's) and are kept in the scan body's ``derived``, by what they do."""

    def __init__(
        self,
        region: Region,
        graph: Graph,
        name: str,
        nc: int,
        nx: int,
        ny: int,
        fc: list[int],
        ys_in: list[int],
        x_out: list[int],
        cap_out: list[int],
        batch: tuple,
    ):
        self.region, self.graph, self.name = region, graph, name
        self.nc, self.nx, self.ny, self.nb, self.batch = nc, nx, ny, len(batch), batch
        self.fc, self.ys_in, self.x_out, self.cap_out = fc, ys_in, x_out, cap_out
        self.key = ("checkpointed", tuple(fc), tuple(ys_in), tuple(x_out), tuple(cap_out), batch)

    def _attrs(self, name: str, length: int, **more: Any) -> dict[str, Any]:
        attrs = {
            "name": name,
            "length": length,
            "carries": self.nc,
            "xs": self.nx,
            "ys": self.ny,
            "reverse": False,
            "counted": False,
            "checkpoint": None,
        }
        attrs.update(more)
        return attrs

    def reverse(
        self,
        length: int,
        snapshots: int | None,
        ct: list[Node],
        acc: list[Node],
        start: list[Node],
        xs: list[Node],
        ct_ys: list[Node],
        caps: list[Node],
    ) -> tuple[list[Node], list[Node], list[Node]]:
        """The segment's reverse with every carry kept (``snapshots`` None or at least the
        length), each recomputed from the start (one snapshot) or by the binomial recursion."""
        nc, nb = self.nc, self.nb
        if snapshots is None or length <= snapshots:
            return self._store_all(length, ct, acc, start, xs, ct_ys, caps)
        if snapshots == 1:
            return self._once_each(length, ct, acc, start, xs, ct_ys, caps)
        j = _revolve_split(length, snapshots)
        mid = outputs_of(make_scan(self.region, [*start, *(x[:j] for x in xs), *caps], self._advance(j)))[:nc]
        late = [_along(c, nb, slice(j, None)) for c in ct_ys]
        ct, acc, second = self._call(length - j, snapshots - 1, ct, acc, mid, [x[j:] for x in xs], late, caps)
        early = [_along(c, nb, slice(None, j)) for c in ct_ys]
        ct, acc, first = self._call(j, snapshots, ct, acc, start, [x[:j] for x in xs], early, caps)
        return ct, acc, [concatenate([f, s], nb) for f, s in zip(first, second)]

    def _advance(self, length: int, **more: Any) -> dict[str, Any]:
        return self._attrs(f"{self.name}_advance", length, **more)

    def _store_all(self, length, ct, acc, start, xs, ct_ys, caps):  # noqa: ANN001, ANN202
        nc, nx, ny = self.nc, self.nx, self.ny
        fwd = make_scan(self.region, [*start, *xs, *caps], self._attrs(f"{self.name}_recompute", length))
        seeds = _Seeds(
            [ct[self.fc.index(j)] if j in self.fc else None for j in range(nc)],
            [ct_ys[self.ys_in.index(k)] if k in self.ys_in else None for k in range(ny)],
            [None] * nc,
            (ct + ct_ys)[0],
            self.nb,
        )
        wanted = [*self.fc, *(nc + k for k in self.x_out), *(nc + nx + m for m in self.cap_out)]
        found = reverse_loop(
            fwd,
            self.region,
            seeds,
            wanted,
            nc=nc,
            nx=nx,
            ny=ny,
            stored=outputs_of(fwd)[nc + ny :],
            length=length,
            reverse=False,
            count=None,
            x_inputs=xs,
            cap_inputs=caps,
            cap_offset=nc + nx,
            name=self.name,
        )
        return (
            [found[j] for j in self.fc],
            [add(a, found[nc + nx + m]) for a, m in zip(acc, self.cap_out)],
            [found[nc + k] for k in self.x_out],
        )

    def _once_each(self, length, ct, acc, start, xs, ct_ys, caps):  # noqa: ANN001, ANN202
        """One snapshot: a scan over the steps, last first, whose body advances from the start
        to the step (a scan counted by it) and reverses that step."""
        nb, nf = self.nb, len(ct) + len(acc)

        def make(g: Graph) -> tuple[list[Node], list[Node]]:
            ct_v, acc_v, start_v, xs_v, _, caps_v = self._params(g, length)
            step = g.variable(fresh_name(g, "step"), (), np.int64)
            x_v = [self._var(g, "x", x.shape[1:], x.dtype) for x in xs_v]
            outs = self.region.outputs
            y_v = [
                self._var(g, f"ct_y{k}", self.batch + outs[self.nc + k].shape, outs[self.nc + k].dtype)
                for k in self.ys_in
            ]
            advance = self._advance(length, counted=True)
            here = outputs_of(make_scan(self.region, [*start_v, *xs_v, *caps_v, step], advance))[: self.nc]
            one = self._store_all(
                1, ct_v, acc_v, here, [expand_dims(x, 0) for x in x_v], [expand_dims(y, nb) for y in y_v], caps_v
            )
            outputs = [*one[0], *one[1], *(squeeze(x, nb) for x in one[2])]
            return [*ct_v, *acc_v, step, *x_v, *y_v, *start_v, *xs_v, *caps_v], outputs

        body = self._body(("once", length), make)
        steps = graph_of(self.name, [*ct, *acc]).constant(np.arange(length, dtype=np.int64))
        inputs = [*ct, *acc, steps, *xs, *(_front(c, nb) for c in ct_ys), *start, *xs, *caps]
        attrs = self._attrs(
            f"{self.name}_revolve_vjp", length, carries=nf, xs=1 + self.nx + len(self.ys_in), ys=len(self.x_out)
        )
        attrs["reverse"] = True
        outs = outputs_of(make_scan(body, inputs, attrs))
        nxo = len(self.x_out)
        return list(outs[: len(ct)]), list(outs[len(ct) : nf]), [_back(y, nb) for y in outs[nf : nf + nxo]]

    def _call(self, length, snapshots, ct, acc, start, xs, ct_ys, caps):  # noqa: ANN001, ANN202
        """The reverse of a segment, inline when it splits no further, else run by a one-step
        scan of the body shared by every segment of this (length, snapshots)."""
        if length <= snapshots or snapshots == 1:
            return self.reverse(length, snapshots, ct, acc, start, xs, ct_ys, caps)

        def make(g: Graph) -> tuple[list[Node], list[Node]]:
            params = self._params(g, length)
            got = self.reverse(length, snapshots, *params)
            return [p for group in params for p in group], [*got[0], *got[1], *got[2]]

        body = self._body(("revolve", length, snapshots), make)
        nf = len(ct) + len(acc)
        attrs = self._attrs(f"{self.name}_revolve", 1, carries=nf, xs=0, ys=len(self.x_out))
        outs = outputs_of(make_scan(body, [*ct, *acc, *start, *xs, *ct_ys, *caps], attrs))
        nxo = len(self.x_out)
        return list(outs[: len(ct)]), list(outs[len(ct) : nf]), [y[0] for y in outs[nf : nf + nxo]]

    def every(self, count, size, ct, acc, kept, xs, ct_ys, stored_in, ct_kept, caps):  # noqa: ANN001, ANN202
        """The first ``count`` segments of ``size`` steps: a scan over them, last first, whose body
        recomputes a segment's carries from its stored start and reverses it; the cotangents of
        the stored carries (``ct_kept`` of the float carries ``stored_in``) join the starts'."""
        nb, nf, nc = self.nb, len(ct) + len(acc), self.nc

        def make(g: Graph) -> tuple[list[Node], list[Node]]:
            ct_v, acc_v, start_v, xs_v, _, caps_v = self._params(g, size)
            outs = self.region.outputs
            y_v = [
                self._var(g, f"ct_y{k}", (size, *self.batch, *outs[nc + k].shape), outs[nc + k].dtype)
                for k in self.ys_in
            ]
            params = self.region.params
            s_v = [self._var(g, f"ct_stored{j}", self.batch + params[j].shape, params[j].dtype) for j in stored_in]
            got = self._store_all(size, ct_v, acc_v, start_v, xs_v, [_back(y, nb) for y in y_v], caps_v)
            before = [add(c, s_v[stored_in.index(j)]) if j in stored_in else c for c, j in zip(got[0], self.fc)]
            inputs = [*ct_v, *acc_v, *start_v, *xs_v, *y_v, *s_v, *caps_v]
            return inputs, [*before, *got[1], *(_front(x, nb) for x in got[2])]

        body = self._body(("every", size, tuple(stored_in)), make)
        inputs = [
            *ct,
            *acc,
            *(s[:count] for s in kept),
            *(_blocks(x, count, size) for x in xs),
            *(_blocks(_front(c, nb), count, size) for c in ct_ys),
            *(_front(s, nb)[:count] for s in ct_kept),
            *caps,
        ]
        xs_count = nc + self.nx + len(self.ys_in) + len(stored_in)
        attrs = self._attrs(f"{self.name}_vjp", count, carries=nf, xs=xs_count, ys=len(self.x_out), reverse=True)
        outs = outputs_of(make_scan(body, inputs, attrs))
        nxo = len(self.x_out)
        return list(outs[: len(ct)]), list(outs[len(ct) : nf]), [_back(_unblock(y), nb) for y in outs[nf : nf + nxo]]

    def _var(self, g: Graph, base: str, shape: tuple, dtype: Any) -> Node:
        return g.variable(fresh_name(g, base), shape, dtype)

    def _params(self, g: Graph, length: int) -> tuple[list[Node], ...]:
        """Variables of a segment's reverse body: the cotangents and accumulated ones, the start
        carries, the segment's xs, its ys' cotangents (batch axes first), the captured nodes."""
        nc, nx, batch = self.nc, self.nx, self.batch
        params, outs = self.region.params, self.region.outputs

        def var(base: str, shape: tuple, like: Node) -> Node:
            return self._var(g, base, shape, like.dtype)

        caps = params[nc + nx :]
        return (
            [var(f"ct_{params[j].name}", batch + params[j].shape, params[j]) for j in self.fc],
            [var(f"acc_{caps[m].name}", batch + caps[m].shape, caps[m]) for m in self.cap_out],
            [var(p.name, p.shape, p) for p in params[:nc]],
            [var(p.name, (length, *p.shape), p) for p in params[nc : nc + nx]],
            [var(f"ct_y{k}", (*batch, length, *outs[nc + k].shape), outs[nc + k]) for k in self.ys_in],
            [var(p.name, p.shape, p) for p in caps],
        )

    def _body(self, what: tuple, make: Callable[[Graph], tuple[list[Node], list[Node]]]) -> Region:
        """The body ``make`` builds in a new body graph of the scan's graph, made once per ``what``."""
        key = self.key + what
        found = self.region.derived.get(key)
        if found is None:
            g = self.graph.body(_identifier(f"{self.name}_{'_'.join(str(w) for w in what[:3])}"))
            try:
                with g._derivative_pass():
                    params, outputs = make(g)
            finally:
                read = g.seal()
            if read:  # every body it makes takes what it reads as parameters
                raise GraphError(f"{self.name}: a checkpointed reverse body read {len(read)} outer node(s)")
            found = Region(g, tuple(params), tuple(outputs), g.name, several=True)
            self.region.derived[key] = found
        return found


def _tangent_body(
    region: Region, nc: int, nx: int, fc: list[int], x_in: list[int], cap_in: list[int], batch: tuple
) -> Region:
    """The body of a loop's forward mode: one step of the body's forward pass, appended to the
    body's graph. Parameters: carries and the float carries' tangents, xs and the tangents of
    ``x_in``, captured nodes and the tangents of ``cap_in``; outputs: the new carries and their
    tangents (float ones), the ys and their tangents (float ones)."""
    key = ("scan_jvp", tuple(fc), tuple(x_in), tuple(cap_in), batch)
    found = region.derived.get(key)
    if found is not None:
        return found
    body = region.graph
    params, outs = region.params, region.outputs
    carries, xs, caps = params[:nc], params[nc : nc + nx], params[nc + nx :]
    nb = len(batch)
    with body._derivative_pass():

        def tangent(p: Node) -> Node:
            return body.variable(fresh_name(body, f"t_{p.name}"), batch + p.shape, p.dtype)

        tc = [tangent(carries[j]) for j in fc]
        tx = [tangent(xs[k]) for k in x_in]
        tcap = [tangent(caps[m]) for m in cap_in]
        wrt = [carries[j] for j in fc] + [xs[k] for k in x_in] + [caps[m] for m in cap_in]
        tangents = tc + tx + tcap
        links = body_links(region)
        reached = set().union(*(d for d, _ in links))
        keep = [i for i, w in enumerate(wrt) if params.index(w) in reached]
        got = forward_pass(list(outs), [wrt[i] for i in keep], [tangents[i] for i in keep], region.name) if keep else {}
        lead = tangents[0]

        def result(y: Node) -> Node:
            return full_tangent(got[y], y, nb) if y in got else batch_zeros(y, lead, nb)

        fy = [k for k in range(len(outs) - nc) if floating(outs[nc + k])]
        new_t = [result(outs[j]) for j in fc]
        y_t = [result(outs[nc + k]) for k in fy]
        rev = Region(
            body,
            tuple(carries) + tuple(tc) + tuple(xs) + tuple(tx) + tuple(caps) + tuple(tcap),
            tuple(outs[:nc]) + tuple(new_t) + tuple(outs[nc:]) + tuple(y_t),
            f"{region.name}_jvp",
            several=True,
        )
    region.derived[key] = rev
    return rev


def _first_tangent(ts: list, node: Node) -> tuple[Node, int] | None:
    """The first tangent reaching a loop node and its number of leading batch axes; None if none does."""
    for t, x in zip(ts, node.inputs):
        if t is not None:
            return t, t.ndim - x.ndim
    return None


def _scan_jvp(ts: list, node: Node) -> list[Node | None]:
    a = _attrs(node)
    nc, nx, ny, ncap = _layout(node)
    region = node.regions[0]
    n_out = len(node.results)
    seeded = _first_tangent(ts, node)
    if seeded is None:
        return [None] * n_out
    first, nb = seeded
    batch = first.shape[:nb]
    init, seqs, caps = node.inputs[:nc], node.inputs[nc : nc + nx], node.inputs[nc + nx : nc + nx + ncap]
    fc = [j for j in range(nc) if floating(init[j])]
    x_in = [k for k in range(nx) if ts[nc + k] is not None]
    cap_in = [m for m in range(ncap) if ts[nc + nx + m] is not None]
    tangent_body = _tangent_body(region, nc, nx, fc, x_in, cap_in, batch)
    t_init = [full_tangent(ts[j], init[j], nb) if ts[j] is not None else batch_zeros(init[j], first, nb) for j in fc]
    t_xs = [_front(full_tangent(ts[nc + k], seqs[k], nb), nb) for k in x_in]
    t_caps = [full_tangent(ts[nc + nx + m], caps[m], nb) for m in cap_in]
    outs = region.outputs
    fy = [k for k in range(ny) if floating(outs[nc + k])]
    inputs = list(init) + t_init + list(seqs) + t_xs + list(caps) + t_caps + ([node.inputs[-1]] if a["counted"] else [])
    attrs = dict(a)
    attrs.update(name=f"{a['name']}_jvp", carries=nc + len(fc), xs=nx + len(x_in), ys=ny + len(fy))
    new = outputs_of(make_scan(tangent_body, inputs, attrs))
    nc2, ny2 = nc + len(fc), ny + len(fy)
    found: list[Node | None] = [None] * n_out
    for idx, j in enumerate(fc):
        found[j] = new[nc + idx]
        found[nc + ny + j] = _back(new[nc2 + ny2 + nc + idx], nb)
    for idx, k in enumerate(fy):
        found[nc + k] = _back(new[nc2 + ny + idx], nb)
    return found


# -- how a loop is written (symdiff.printing passes the names its bodies print by) --------------
def _loop_call(node: Node, texts: list[str], bodies: Sequence[str] | None, latex: bool) -> tuple[str, int]:
    """``scan(body, init, xs, *captured, length=, reverse=, checkpoint=, steps=)`` or
    ``while_loop(cond, body, init, *captured, max_steps=)``, as JAX writes them: one init or xs
    item bare, several as a tuple, no xs as None; keywords where they matter."""
    a = _attrs(node)
    names = list(bodies) if bodies is not None else [r.name for r in node.regions]
    if not latex:  # a scalar constant keeps its dtype: 0.0 is a float carry, 0 an int one
        texts = [_typed(u, t) for u, t in zip(node.inputs, texts)]
    keys: dict[str, str] = {}
    if node.op == "scan":
        nc, nx, _, ncap = _layout(node)
        parts = [_group(texts[:nc], latex), _group(texts[nc : nc + nx], latex) if nx else "None"]
        parts += texts[nc + nx : nc + nx + ncap]
        if not nx or node.inputs[nc].shape[0] != a["length"]:
            keys["length"] = str(a["length"])
        if a["reverse"]:
            keys["reverse"] = "True"
        if a["checkpoint"] is not None:
            keys["checkpoint"] = f'("{a["checkpoint"][0]}", {a["checkpoint"][1]})'
        if a["counted"]:
            keys["steps"] = texts[-1]
    else:
        nc = a["carries"]
        parts = [_group(texts[:nc], latex), *texts[nc:]]
        if a["max_steps"] is not None:
            keys["max_steps"] = str(a["max_steps"])
    if not latex:
        items = names + parts + [f"{k}={v}" for k, v in keys.items()]
        return f"{node.op}({', '.join(items)})", 100
    heads = [rf"\operatorname{{{_escaped(n)}}}" for n in names]
    items = heads + parts + [rf"\mathrm{{{_escaped(k)}}}={v}" for k, v in keys.items()]
    return rf"\operatorname{{{_escaped(node.op)}}}\left({', '.join(items)}\right)", 100


def _escaped(name: str) -> str:
    return name.replace("_", r"\_")


def _group(items: list[str], latex: bool) -> str:
    if len(items) == 1:
        return items[0]
    return (r"\left(" if latex else "(") + ", ".join(items) + (r"\right)" if latex else ")")


def _typed(u: Node, text: str) -> str:
    """A scalar constant's text that reads back with its dtype (a float64 with a point)."""
    if u.op != "constant" or u.shape != () or text != format_number(u.value.item()):
        return text
    if u.dtype == np.float64:
        return repr(float(u.value))
    if u.dtype == np.int64:
        return text
    return f'full((), {text}, dtype="{u.dtype.name}")'


def _loop_text(node: Node, args: list, wrap: Any, bodies: Sequence[str] | None = None) -> tuple[str, int]:
    return _loop_call(node, [t for t, _ in args], bodies, latex=False)


def _loop_latex(node: Node, args: list, wrap: Any, bodies: Sequence[str] | None = None) -> tuple[str, int]:
    return _loop_call(node, [t for t, _ in args], bodies, latex=True)


def _loop_label(node: Node) -> str:
    """A loop node in a drawing: ``scan rnn (4 steps)``; its body is drawn as a cluster beside it."""
    a = _attrs(node)
    head = node.op if a["name"] == node.op else f"{node.op} {a['name']}"
    if node.op == "while_loop":
        return head
    steps = f"at most {a['length']} steps" if a["counted"] else f"{a['length']} steps"
    return f"{head} ({steps}{', reversed' if a['reverse'] else ''})"


def _numbered(base: str, n: int) -> list[str]:
    return [base] if n == 1 else [f"{base}[{k}]" for k in range(n)]


def _scan_outputs(node: Node) -> list[str]:
    """A scan's outputs by name: ``carry`` (``carry[0]``, ... for several), ``ys``, ``stored``."""
    nc, _, ny, _ = _layout(node)
    return _numbered("carry", nc) + _numbered("ys", ny) + _numbered("stored", nc)


def _while_outputs(node: Node) -> list[str]:
    """A while_loop's outputs by name: ``carry``; with max_steps, ``stored`` and ``steps`` too."""
    a = _attrs(node)
    names = _numbered("carry", a["carries"])
    return names if a["max_steps"] is None else names + _numbered("stored", a["carries"]) + ["steps"]


def _runs_in_plan(*_: Any, **__: Any) -> Any:
    raise GraphError("a loop node runs its body: evaluate it through a plan (sd.evaluate, sd.compile)")


def _loop_op(name: str, **declaration: Any) -> Any:
    """A loop op: runs its bodies by ``runs``, its shapes from its bodies, printed as a call of them."""
    return define_op(
        name,
        _runs_in_plan,
        _scan_shapes,
        sparsity="loop",
        text=_loop_text,
        latex=_loop_latex,
        label=_loop_label,
        fold=False,
        **declaration,
    )


SCAN = _loop_op(
    "scan",
    joint_vjp=_scan_vjp,
    joint_jvp=_scan_jvp,
    runs=run_scan,
    edges=_scan_edges,
    output_names=_scan_outputs,
    sympy="body",
    doc="a loop of a body over steps (sd.scan); its derivatives are loops of derivative bodies",
)


# -- tracing a body ------
class _Pending:
    """An initial value given as a number, before the loop's graph is known: its shape and dtype
    (what tracing needs), made a constant of the graph once the body has said which it is."""

    def __init__(self, value: Any):
        self.value = np.asarray(value)
        if self.value.dtype.kind not in "biuf":
            raise GraphError(f"a loop's initial value must be a node or a number, got {value!r}")
        if self.value.dtype.kind == "f":
            self.value = self.value.astype(np.float64)
        elif self.value.dtype.kind in "iu":
            self.value = self.value.astype(np.int64)
        self.shape, self.dtype = self.value.shape, self.value.dtype


def _leaf(name: str, v: Any, graph: Graph | None) -> Any:
    if isinstance(v, Node):
        if graph is not None and v.graph is not graph:
            raise GraphError(f"{name}: {describe(v)} belongs to another graph than the loop's other inputs")
        return v
    return _Pending(v)


def _placed(v: Any, graph: Graph) -> Node:
    return graph.constant(v.value) if isinstance(v, _Pending) else v


def _adopt(name: str, graph: Graph | None, inner: Graph) -> Graph:
    """The loop's graph: its inputs', or the graph the body read (a loop started from numbers)."""
    if graph is not None:
        return graph
    if inner.parent is None:
        raise GraphError(
            f"{name}: neither its initial values nor its body use a node of a graph, so there is no graph to build "
            "the loop in (make the initial value a node: g.constant(...))"
        )
    return inner.parent


def _items(value: Any) -> tuple[list[Any], bool]:
    """A node or number, or a tuple/list of them: (the items, whether it was a tuple)."""
    if isinstance(value, (tuple, list)):
        return list(value), True
    return [value], False


def _pack(items: Sequence[Node], several: bool) -> Any:
    return tuple(items) if several else items[0]


def _body_outputs(body: Graph, name: str, items: Sequence[Any], params: Sequence[Node], what: str) -> list[Node]:
    """A body function's results as nodes of the body graph: numbers made constants, outer
    nodes captured."""
    found = []
    for k, item in enumerate(items):
        if isinstance(item, Node):
            found.append(item if item.graph is body else body.capture(item))
        elif isinstance(item, (int, float, bool, np.number, np.ndarray)):
            found.append(body.constant(np.asarray(item)) if not params else as_nodes(name, item, *params)[0])
        else:
            raise GraphError(
                f"{name}: the body returned {type(item).__name__} as {what} {k}; it returns nodes or numbers"
            )
    return found


def check_carry(name: str, new: Sequence[Node], old: Sequence[Node], several: bool) -> None:
    """Raise ShapeError unless each new carry has its carry's shape and dtype."""
    if len(new) != len(old):
        raise ShapeError(f"{name}: the body returned {len(new)} carry item(s) for a carry of {len(old)}")
    for k, (n, o) in enumerate(zip(new, old)):
        same_shape = len(n.shape) == len(o.shape) and all(
            a == b or a is None or b is None for a, b in zip(n.shape, o.shape)
        )
        if not same_shape or n.dtype != o.dtype:
            item = f"carry item {k}" if several else "carry"
            raise ShapeError(
                f"{name}: the body's new {item} has shape {format_shape(n.shape)} and dtype {n.dtype}, but the "
                f"{item} has shape {format_shape(o.shape)} and dtype {o.dtype}; a loop's carry keeps its shape and "
                "dtype (cast with astype, or broadcast the initial value)"
            )


def _unchanged_on_failure(graph: Graph | None) -> Any:
    """A failed loop call leaves the graph as it was, including the nodes a body's function built
    in it from outer nodes alone while it was traced (a loop started from numbers learns its graph
    from its body: then every graph appended to is rolled back)."""
    return graph._transaction() if graph is not None else unchanged_on_failure()


def _trace(
    graph: Graph | None,
    name: str,
    fn: Callable[..., Any],
    groups: Sequence[tuple[str, Sequence[tuple], bool]],
) -> tuple[Graph, list[list[Node]], Any]:
    """Open a body graph and call ``fn`` once on placeholder variables:
    one group of variables per argument (base name, the (shape, dtype) of each, whether a tuple),
    None for an empty group. Returns the body graph (still open: capture, then seal), the groups'
    variables and what ``fn`` returned."""
    body = graph.body(name) if graph is not None else Graph.detached_body(name)
    made: list[list[Node]] = []
    args = []
    for base, types, several in groups:
        vs = [
            body.variable(fresh_name(body, base if len(types) == 1 else f"{base}{k}"), shape, dtype)
            for k, (shape, dtype) in enumerate(types)
        ]
        made.append(vs)
        args.append(None if not types and not several else _pack(vs, several) if vs else ())
    return body, made, fn(*args)


def _static_length(name: str, seqs: Sequence[Node], length: int | None) -> int:
    lengths = set()
    for k, x in enumerate(seqs):
        if len(x.shape) == 0:
            raise ShapeError(f"{name}: xs item {k} is a scalar; xs are sliced along axis 0")
        if x.shape[0] is None:
            raise ShapeError(
                f"{name}: xs item {k} has shape {format_shape(x.shape)}, whose length along axis 0 is known only at "
                "evaluation; a scan's number of steps is fixed when it is built: declare that length in the "
                "variable's shape, or loop over an index with sd.while_loop(..., max_steps=N) reading x[i]"
            )
        lengths.add(x.shape[0])
    if len(lengths) > 1:
        listed = ", ".join(format_shape(x.shape) for x in seqs)
        raise ShapeError(f"{name}: xs have shapes {listed}, of different lengths along axis 0")
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise GraphError(f"{name}: length must be a non-negative integer, got {length!r}")
        if lengths and int(length) not in lengths:
            raise ShapeError(f"{name}: length={length} but the xs have length {lengths.pop()}")
        return int(length)
    if not lengths:
        raise GraphError(f"{name}: with no xs, give length= (the number of steps)")
    return lengths.pop()


def scan(
    body: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any = None,
    length: int | None = None,
    checkpoint: Checkpoint | None = None,
    *,
    reverse: bool = False,
    name: str = "scan",
) -> tuple[Any, Any]:
    """Loop ``body`` over steps, carrying a state: JAX's ``lax.scan``, as one node of the graph.

    ``body(carry, x) -> (new_carry, y)`` is traced once, on placeholder nodes, into a body
    that the node runs once per step: step ``t`` reads ``x = xs[t]`` (each item of ``xs``
    sliced along axis 0) and the carry the step before left; the ``y`` of every step are
    stacked on a new axis 0. In Python terms::

        carry = init
        for t in range(length):            # reversed(range(length)) with reverse=True
            carry, ys[t] = body(carry, xs[t])

    Derivatives are loops too (``grad``: a scan the other way over the stored carries, its
    body the body's reverse pass; ``jvp``: a scan over primal and tangent), so ``hessian``,
    ``hvp``, ``jacobian`` and higher derivatives go through the loop and the graph stays the
    size of the body, whatever the number of steps.

    Parameters
    ----------
    body : callable
        ``body(carry, x) -> (new_carry, y)``. ``carry`` has the structure of ``init`` (a node,
        or a tuple of nodes); ``x`` that of ``xs`` (None without xs); ``y`` may be None, a node
        or a tuple of nodes. Nodes of the graph the body uses are captured (read on each step).
    init : node, number or tuple of them
        The initial carry. ``new_carry`` must have its structure, shapes and dtypes.
    xs : node or tuple of nodes, optional
        Sequences of one length along axis 0 (known when the scan is built).
    length : int, optional
        The number of steps: required without xs, else it must equal theirs.
    checkpoint : optional
        How reverse mode keeps the carries: ``sd.checkpoint.every(k)`` or
        ``sd.checkpoint.revolve(snapshots=s)`` (default: every carry stored).
    reverse : bool
        Run the steps from last to first (``ys[t]`` is still step t's).
    name : str
        How the node prints.

    Returns
    -------
    (carry, ys)
        The final carry (a node, or a tuple as ``init``) and the stacked ys (None, a node of
        shape ``(length,) + y.shape``, or a tuple of them).

    Raises
    ------
    ShapeError
        A new carry whose shape or dtype differs from the carry's (naming the item), xs of
        different lengths, or a length that disagrees with them.
    GraphError
        No length, a body that does not return ``(new_carry, y)``, or nodes of two graphs.
        A failed call leaves the graph as it was.

    Examples
    --------
    >>> g = sd.Graph(); x = g.variable("x")
    >>> carry, ys = sd.scan(lambda c, _: (c * c, c), x, length=3)   # x**8, and x, x**2, x**4
    >>> print(sd.evaluate([carry, ys], {x: 2.0}))
    [np.float64(256.0), array([ 2.,  4., 16.])]
    >>> print(sd.evaluate(sd.grad(carry, x), {x: 2.0}))                # 8 x**7
    1024.0
    """
    _check_name(name, "scan")
    if not callable(body):
        raise GraphError(f"{name}: body must be a function (carry, x) -> (new_carry, y), got {type(body).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise GraphError(f"{name}: checkpoint must be sd.checkpoint.every(k) or sd.checkpoint.revolve(snapshots=s)")
    init_items, init_tuple = _items(init)
    x_items, x_tuple = _items(xs) if xs is not None else ([], False)
    if not init_items:
        raise GraphError(f"{name}: init is empty; a scan carries at least one node")
    known = [v for v in init_items + x_items if isinstance(v, Node)]
    graph = graph_of(name, known) if known else None
    with _unchanged_on_failure(graph):
        # nothing is built in the graph before the body is traced (a failing body leaves it as it was)
        carries = [_leaf(name, v, graph) for v in init_items]
        seqs = [_leaf(name, v, graph) for v in x_items]
        steps = _static_length(name, seqs, length)
        inner, (cvars, xvars), result = _trace(
            graph,
            name,
            body,
            [
                ("carry", [(c.shape, c.dtype) for c in carries], init_tuple),
                ("x", [(x.shape[1:], x.dtype) for x in seqs], x_tuple),
            ],
        )
        try:
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise GraphError(f"{name}: the body must return (new_carry, y), got {type(result).__name__}")
            new_items, new_tuple = _items(result[0])
            if new_tuple != init_tuple:
                raise ShapeError(
                    f"{name}: the body returned a {'tuple' if new_tuple else 'single node'} as its new carry for "
                    f"a carry that is {'a tuple' if init_tuple else 'a single node'}"
                )
            params = cvars + xvars
            new = _body_outputs(inner, name, new_items, params, "carry item")
            check_carry(name, new, cvars, init_tuple)
            y_items, y_tuple = ([], False) if result[1] is None else _items(result[1])
            ys = _body_outputs(inner, name, y_items, params, "y item")
        finally:
            captures = inner.seal()
        graph = _adopt(name, graph, inner)
        with graph._transaction():
            carries, seqs = [_placed(v, graph) for v in carries], [_placed(v, graph) for v in seqs]
            region = Region(inner, tuple(params) + tuple(captures.values()), tuple(new + ys), name, several=True)
            region.arguments = len(params)
            attrs = {
                "name": name,
                "length": steps,
                "carries": len(carries),
                "xs": len(seqs),
                "ys": len(ys),
                "reverse": bool(reverse),
                "counted": False,
                "checkpoint": None if checkpoint is None else (checkpoint.kind, checkpoint.size),
            }
            node = make_scan(region, carries + seqs + list(captures), attrs)
    outs = outputs_of(node)
    nc, ny = len(carries), len(ys)
    carry = _pack(outs[:nc], init_tuple)
    stacked = None if result[1] is None else _pack(outs[nc : nc + ny], y_tuple)
    return carry, stacked


def fori_loop(lower: Any, upper: Any, body: Callable[[Node, Any], Any], init: Any, *, name: str = "fori_loop") -> Any:
    """``body(i, carry) -> carry`` for ``i`` from ``lower`` to ``upper - 1``: JAX's ``lax.fori_loop``.

    With integer bounds it is a :func:`scan` over ``i`` (an int64 scalar node in the body), so
    every derivative goes through it. Bounds that are nodes (known only at evaluation) make it
    a :func:`while_loop` without ``max_steps``: forward mode only (reverse mode needs a bound
    on the steps: write the ``while_loop`` with ``max_steps``).

    >>> g = sd.Graph(); x = g.variable("x")
    >>> y = sd.fori_loop(1, 4, lambda i, c: c * x + i, 0.0)   # (1*x + 2)*x + 3
    >>> print(sd.evaluate([y, sd.grad(y, x)], {x: 2.0}))      # and 2x + 2
    [np.float64(11.0), np.float64(6.0)]
    """
    static = [_static_int(b) for b in (lower, upper)]
    if None not in static:
        lo, hi = static
        items, several = _items(init)

        def counted(state: Any, _: Any) -> Any:  # i is an int64 carry, as in JAX: no xs of length T
            new_items, new_tuple = _items(body(state[0], _pack(list(state[1:]), several)))
            if new_tuple != several:
                raise ShapeError(f"{name}: the body returned a {'tuple' if new_tuple else 'single node'} as its carry")
            given = [v if isinstance(v, Node) else as_nodes(name, v, c)[0] for v, c in zip(new_items, state[1:])]
            check_carry(name, given, list(state[1:]), several)
            return (state[0] + 1, *new_items), None

        final, _ = scan(counted, (np.int64(lo), *items), length=max(hi - lo, 0), name=name)
        return _pack(list(final[1:]), several)
    items, several = _items(init)

    def cond(state: Any) -> Node:
        return state[0] < upper

    def step(state: Any) -> Any:
        new = body(state[0], _pack(list(state[1:]), several))
        return (state[0] + 1, *_items(new)[0])

    graph = graph_of(name, [lower, upper, *items])
    start = lower if isinstance(lower, Node) else graph.constant(np.int64(lower))
    final = while_loop(cond, step, (start.astype(np.int64), *items), name=name)
    return _pack(list(final[1:]), several)


def _static_int(b: Any) -> int | None:
    if isinstance(b, Node):
        if b.op == "constant" and b.shape == () and b.dtype.kind in "iu":
            return int(b.value)
        return None
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
        raise GraphError(f"fori_loop: a bound must be an integer or an integer scalar node, got {b!r}")
    return int(b)


# -- while_loop ------------------------------------------------------------------------------------
def _while_layout(node: Node) -> tuple[int, int, int]:
    """(carries, captured by cond, captured by body) of a while_loop node."""
    a = _attrs(node)
    nc, ncond = a["carries"], a["conds"]
    return nc, ncond, len(node.inputs) - nc - ncond


def run_while(
    bodies: tuple,
    *args: Any,
    carries: int,
    conds: int,
    max_steps: int | None,
    name: str = "while_loop",
    wanted: frozenset[int] | None = None,
    results: tuple | None = None,
    **_: Any,
) -> tuple:
    cond, body = bodies
    nc = carries
    c = list(args[:nc])
    ccaps, bcaps = args[nc : nc + conds], args[nc + conds :]
    store = max_steps is not None and (wanted is None or any(k >= nc for k in wanted))
    stored: list[Any] = [None] * nc
    n = 0
    while bool(cond(*c, *ccaps)):
        if max_steps is not None and n >= max_steps:
            raise too_many_steps(name, max_steps)
        if store:
            for j in range(nc):
                if stored[j] is None:
                    stored[j] = _buffer(results[nc + j], np.shape(c[j]))
                stored[j][n] = c[j]
        out = body(*c, *bcaps)
        for j in range(nc):
            if np.shape(out[j]) != np.shape(c[j]):
                raise carry_changed(name, j, np.shape(c[j]), np.shape(out[j]))
        c = list(out)
        n += 1
    if max_steps is None:
        return tuple(c)
    if store:
        stored = [b if b is not None else _buffer(results[nc + j], np.shape(args[j])) for j, b in enumerate(stored)]
    return tuple(c) + tuple(stored) + (np.int64(n),)


def too_many_steps(name: str, max_steps: int) -> LoopError:
    """The error of a while_loop whose condition still holds after ``max_steps`` steps (every
    backend raises this one)."""
    return LoopError(
        f"{name}: the condition still holds after max_steps={max_steps} steps; raise max_steps (the loop "
        "stores a carry per step for its reverse mode)"
    )


def _while_edges(node: Node) -> list[str]:
    nc, ncond, nb = _while_layout(node)
    body = node.regions[1]
    links = body_links(body)
    diff, linked = _closure(links, nc, 0), _closure(links, nc, 1)
    kinds = []
    for i in range(len(node.inputs)):
        if i < nc:
            kinds.append(DIFF)
        elif i < nc + ncond:
            kinds.append(NONE)  # the condition decides the trip count: no derivative flows to it
        else:
            p = i - ncond
            kinds.append(DIFF if p < len(diff) and diff[p] else UNDEFINED if p < len(linked) and linked[p] else NONE)
    return kinds


def _while_vjp(gs: tuple, node: Node, wanted: list[int]) -> list[Node | None]:
    a = _attrs(node)
    nc, ncond, nbody = _while_layout(node)
    if a["max_steps"] is None:
        raise NonDifferentiableError(
            f"{a['name']}: reverse mode through a while_loop (a fori_loop whose bounds are nodes is one) needs "
            "max_steps= (a bound on its steps: the loop keeps each step's carry for the reverse pass); give it "
            "(write the loop as sd.while_loop(cond, body, init, max_steps=N)), or use forward mode (sd.jvp)"
        )
    outs = outputs_of(node)
    k = next(i for i, g in enumerate(gs) if g is not None)
    first = gs[k]
    seeds = _Seeds(list(gs[:nc]), [], list(gs[nc : 2 * nc]), first, first.ndim - outs[k].ndim)
    body = node.regions[1]
    found = reverse_loop(
        node,
        body,
        seeds,
        [i - ncond if i >= nc + ncond else i for i in wanted],
        nc=nc,
        nx=0,
        ny=0,
        stored=outs[nc : 2 * nc],
        length=a["max_steps"],
        reverse=False,
        count=outs[2 * nc],
        x_inputs=[],
        cap_inputs=node.inputs[nc + ncond :],
        cap_offset=nc,
        name=a["name"],
    )
    # reverse_loop numbered the body's captured nodes right after the carries: renumber
    result: list[Node | None] = [None] * len(node.inputs)
    for i in range(nc):
        result[i] = found[i]
    for m in range(nbody):
        result[nc + ncond + m] = found[nc + m] if nc + m < len(found) else None
    return result


def _while_jvp(ts: list, node: Node) -> list[Node | None]:
    a = _attrs(node)
    nc, ncond, nbody = _while_layout(node)
    n_out = len(node.results)
    seeded = _first_tangent(ts, node)
    if seeded is None:
        return [None] * n_out
    first, nb = seeded
    batch = first.shape[:nb]
    cond, body = node.regions
    init, ccaps, bcaps = node.inputs[:nc], node.inputs[nc : nc + ncond], node.inputs[nc + ncond :]
    fc = [j for j in range(nc) if floating(init[j])]
    cap_in = [m for m in range(nbody) if ts[nc + ncond + m] is not None]
    tangent_body = _tangent_body(body, nc, 0, fc, [], cap_in, batch)
    cond_key = ("while_jvp_cond", tuple(fc), batch)
    wide_cond = cond.derived.get(cond_key)
    if wide_cond is None:
        cg = cond.graph
        ignored = tuple(
            cg.variable(fresh_name(cg, f"t_{cond.params[j].name}"), batch + cond.params[j].shape, cond.params[j].dtype)
            for j in fc
        )
        wide_cond = Region(cg, cond.params[:nc] + ignored + cond.params[nc:], cond.outputs, cond.name)
        cond.derived[cond_key] = wide_cond
    t_init = [full_tangent(ts[j], init[j], nb) if ts[j] is not None else batch_zeros(init[j], first, nb) for j in fc]
    t_caps = [full_tangent(ts[nc + ncond + m], bcaps[m], nb) for m in cap_in]
    attrs = dict(a)
    attrs.update(name=f"{a['name']}_jvp", carries=nc + len(fc))
    new = outputs_of(make_while(wide_cond, tangent_body, list(init) + t_init, list(ccaps), list(bcaps) + t_caps, attrs))
    nc2 = nc + len(fc)
    found: list[Node | None] = [None] * n_out
    for idx, j in enumerate(fc):
        found[j] = new[nc + idx]
        if a["max_steps"] is not None:
            found[nc + j] = _back(new[nc2 + nc + idx], nb)  # stacked (steps, batch...): batch first
    return found


def make_while(
    cond: Region, body: Region, init: Sequence[Node], ccaps: Sequence[Node], bcaps: Sequence[Node], attrs: dict
) -> Node:
    """The while_loop node (inputs: carries, the condition's captured nodes, the body's)."""
    nc = attrs["carries"]
    graph = graph_of(attrs["name"], list(init) + list(ccaps) + list(bcaps))
    results = tuple((p.shape, p.dtype) for p in body.params[:nc])
    if attrs["max_steps"] is not None:
        results += tuple(((attrs["max_steps"], *p.shape), p.dtype) for p in body.params[:nc])
        results += (((), np.dtype(np.int64)),)
    key = tuple((k, attrs[k]) for k in ("name", "carries", "conds", "max_steps"))
    return graph._make("while_loop", tuple(init) + tuple(ccaps) + tuple(bcaps), key, None, None, results, (cond, body))


def while_loop(
    cond: Callable[[Any], Any],
    body: Callable[[Any], Any],
    init: Any,
    max_steps: int | None = None,
    *,
    name: str = "while_loop",
) -> Any:
    """``carry = body(carry)`` while ``cond(carry)``: JAX's ``lax.while_loop``, as one node.

    Both functions are traced once. Forward mode goes through it as a while loop over primal
    and tangent; reverse mode (``grad``, and so ``hessian``) needs ``max_steps``: the loop then
    keeps each step's carry (at most ``max_steps`` of them) and its trip count, and its
    gradient is a scan the other way over the steps it took. The condition carries no
    derivative (the trip count is piecewise constant).

    Parameters
    ----------
    cond : callable
        ``cond(carry) -> bool scalar node``.
    body : callable
        ``body(carry) -> new carry`` of the same structure, shapes and dtypes.
    init : node, number or tuple of them
    max_steps : int, optional
        A bound on the steps: more raises :class:`symdiff.LoopError` at evaluation.

    Returns
    -------
    The final carry (a node, or a tuple as ``init``).

    Raises
    ------
    ShapeError
        A new carry of another shape or dtype (naming the item); a condition that is not a
        boolean scalar.
    NonDifferentiableError
        Reverse mode without ``max_steps``.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> y = sd.while_loop(lambda c: c < 100.0, lambda c: c * x, 1.0, max_steps=50)
    >>> print(sd.evaluate([y, sd.grad(y, x)], {x: 3.0}))         # 3**5, 5 * 3**4
    [np.float64(243.0), np.float64(405.0)]
    """
    _check_name(name, "while_loop")
    if not callable(cond) or not callable(body):
        raise GraphError(f"{name}: cond and body must be functions of the carry")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 0
    ):
        raise GraphError(f"{name}: max_steps must be a non-negative integer, got {max_steps!r}")
    items, several = _items(init)
    if not items:
        raise GraphError(f"{name}: init is empty; a while_loop carries at least one node")
    known = [v for v in items if isinstance(v, Node)]
    graph = graph_of(name, known) if known else None
    with _unchanged_on_failure(graph):
        carries = [_leaf(name, v, graph) for v in items]
        types = [(c.shape, c.dtype) for c in carries]
        cgraph, (cvars,), flag = _trace(graph, f"{name}_cond", cond, [("carry", types, several)])
        try:
            (flag_node,) = _body_outputs(cgraph, name, [flag], cvars, "condition")
            if flag_node.shape != () or flag_node.dtype != np.bool_:
                raise ShapeError(
                    f"{name}: the condition must be a boolean scalar node, got shape "
                    f"{format_shape(flag_node.shape)} and dtype {flag_node.dtype}"
                )
        finally:
            ccaps = cgraph.seal()
        bgraph, (bvars,), result = _trace(graph, name, body, [("carry", types, several)])
        try:
            new_items, new_tuple = _items(result)
            if new_tuple != several:
                raise ShapeError(f"{name}: the body returned a {'tuple' if new_tuple else 'single node'} as its carry")
            new = _body_outputs(bgraph, name, new_items, bvars, "carry item")
            check_carry(name, new, bvars, several)
        finally:
            bcaps = bgraph.seal()
        graph = _adopt(name, graph, cgraph if cgraph.parent is not None else bgraph)
        if cgraph.parent is not None and bgraph.parent is not None and cgraph.parent is not bgraph.parent:
            raise GraphError(f"{name}: its condition and its body read nodes of different graphs")
        with graph._transaction():
            carries = [_placed(v, graph) for v in carries]
            cond_region = Region(cgraph, tuple(cvars) + tuple(ccaps.values()), (flag_node,), f"{name}_cond")
            body_region = Region(bgraph, tuple(bvars) + tuple(bcaps.values()), tuple(new), name, several=True)
            attrs = {"name": name, "carries": len(carries), "conds": len(ccaps), "max_steps": max_steps}
            node = make_while(cond_region, body_region, carries, list(ccaps), list(bcaps), attrs)
    return _pack(outputs_of(node)[: len(carries)], several)


WHILE = _loop_op(
    "while_loop",
    joint_vjp=_while_vjp,
    joint_jvp=_while_jvp,
    runs=run_while,
    edges=_while_edges,
    output_names=_while_outputs,
    unsupported={"sympy": "its number of steps is known only at evaluation"},
    doc="a loop of a body while a condition holds (sd.while_loop); reverse mode is a scan over its steps",
)


# -- unroll ---------------------------------------------------------------------------------------
def unroll(node: Node | Sequence[Node]) -> Any:
    """The same computation with every ``scan`` (and ``fori_loop``) expanded into its steps, as
    nodes of the same graph: what the loop means, written out (a test oracle; a graph that grows
    with the number of steps). Loops inside bodies are expanded too; composite calls are kept.

    Raises GraphError for a ``while_loop``, whose number of steps is known only at evaluation.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> c, _ = sd.scan(lambda c, _: (c * c, None), x, length=2)
    >>> print(sd.unroll(c))
    x*x*x*x
    """
    nodes, single = ([node], True) if isinstance(node, Node) else (list(node), False)
    graph = graph_of("unroll", nodes)
    with graph._transaction():
        memo: dict[Node, Any] = {}
        for n in ancestors(nodes):
            memo[n] = _replay(n, [memo[u] for u in n.inputs]) if n.inputs else n
    return memo[nodes[0]] if single else [memo[n] for n in nodes]


def _replay(n: Node, inputs: list[Any]) -> Any:
    if n.op == "scan":
        return _unroll_scan(n, inputs)
    if n.op == "while_loop":
        raise GraphError(
            f"unroll: {describe(n)} is a while_loop ({_attrs(n)['name']!r}), whose number of steps is known only at "
            "evaluation"
        )
    return rebuild(n, inputs)


def _inline(region: Region, args: Sequence[Node]) -> list[Node]:
    """The region's outputs computed on ``args`` (nodes of an outer graph), its loops unrolled."""
    memo: dict[Node, Any] = dict(zip(region.params, args))
    target = args[0].graph if args else None
    for n in ancestors(region.outputs, lambda m: () if m in memo else m.inputs):
        if n in memo:
            continue
        if n.op == "constant":
            memo[n] = (target or n.graph).constant(n.value)
        elif not n.inputs:
            raise GraphError(
                f"unroll: the body {region.name!r} reads {describe(n)}, which is not one of its parameters"
            )
        else:
            memo[n] = _replay(n, [memo[u] for u in n.inputs])
    return [memo[o] for o in region.outputs]


def _unroll_scan(n: Node, inputs: list[Any]) -> tuple:
    a = _attrs(n)
    nc, nx, ny, ncap = _layout(n)
    region = n.regions[0]
    c = list(inputs[:nc])
    seqs, caps = inputs[nc : nc + nx], inputs[nc + nx : nc + nx + ncap]
    steps = a["length"]
    if a["counted"]:
        count = inputs[-1]
        if not isinstance(count, Node) or count.op != "constant":
            raise GraphError(f"unroll: {a['name']} runs a number of steps known only at evaluation")
        steps = int(count.value)
    ys: list[list[Node]] = [[] for _ in range(ny)]
    stored: list[list[Node]] = [[] for _ in range(nc)]
    order = range(steps - 1, -1, -1) if a["reverse"] else range(steps)
    for t in order:
        for j in range(nc):
            stored[j].append(c[j])
        out = _inline(region, c + [s[t] for s in seqs] + list(caps))
        c = out[:nc]
        for k in range(ny):
            ys[k].append(out[nc + k])
    positions = kept_positions(a["length"], a["checkpoint"])  # in iteration order
    if positions is not None:
        stored = [[s[p] for p in positions if p < len(s)] for s in stored]
    if a["reverse"]:
        ys = [y[::-1] for y in ys]
        stored = stored if positions is not None else [s[::-1] for s in stored]
    graph = inputs[0].graph

    def stacked(items: list[Node], result: tuple) -> Node:
        shape, dtype = result
        length = shape[0]
        if len(items) == length and items:
            return stack(items, 0)
        pad = graph.uniform_constant(0, tuple(0 if d is None else d for d in shape[1:]), dtype)
        return stack(items + [pad] * (length - len(items)), 0) if length else graph.constant(np.zeros(shape, dtype))

    res = n.results
    return (
        tuple(c)
        + tuple(stacked(ys[k], res[nc + k]) for k in range(ny))
        + tuple(stacked(stored[j], res[nc + ny + j]) for j in range(nc))
    )
