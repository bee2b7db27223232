"""Sparse Jacobians and Hessians: the pattern from the graph, the values from a few seeds.

The pattern is found statically: walking the graph from x, each node gets a boolean
sparse matrix D (its elements x its x's elements) of which elements of x it may depend
on; each op maps its inputs' D to its own by its kind (elementwise: the same element,
through broadcasting; a reduction: the union over the reduced elements; a selection
such as indexing, reshaping or joining: the element it selects, found by running the op
on element positions; its adjoint, which adds: the transpose of that; a matrix product:
rows times columns). An op without a finer rule is taken as dense: every output element
depends on everything its inputs depend on. The pattern never misses a non-zero; it is
exact for the first kinds. A node with several outputs (eigh) has one pattern per output,
each by the op's kind, and an output node takes its own; a node that runs a body (a
composite call, its derivative calls) has the body's patterns, found by the same walk
through the body with its parameters bound to the inputs' patterns. A loop carries them
over its steps: a scan's are exact, step by step, each step's ys and stored carries its
own (a step whose carries and xs have the patterns of the step before is not walked
again, so a scan costs the few walks its carries take to settle); a while_loop's, whose
trip count is known only at evaluation, are the fixed point over any number of steps,
which holds every trip count's. Derivatives of loops are loops, and go the same way.

A Hessian's pattern is the Jacobian pattern of the gradient graph, which symdiff has as a
graph. Columns that share no row get the same colour (a greedy distance-2 colouring,
Curtis-Powell-Reid / Gebremedhin-Manne-Pothen), and one forward-mode pass seeded with one
vector per colour gives every value: the graph computes the compressed Jacobian and
picks the non-zeros out of it. A Hessian is symmetric: a star colouring (ColPack's kind)
needs fewer colours (2 for an arrowhead, where columns sharing a row need n), and each
value is read from its row or its column.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from symdiff.errors import GraphError, ShapeError, SymdiffError
from symdiff.graph import Node, Region, ancestors, describe
from symdiff.ops import REGISTRY
from symdiff.ops.core import not_differentiable

# a conservative (dense) pattern larger than this is refused: the derivative is not sparse
DENSE_LIMIT = 20_000_000


class SparseDerivative:
    """A sparse Jacobian or Hessian: ``pattern`` (a scipy.sparse CSR matrix of booleans, the
    structure, found from the graph) and ``values`` (a node of the stored values, in the
    pattern's order). ``sd.evaluate`` and ``sd.compile`` return it as a ``scipy.sparse.csr_matrix``.
    ``colors``: how many seeds the values need.
    """

    def __init__(self, pattern: sp.csr_matrix, values: Node, colors: int, kind: str):
        self.pattern = pattern
        self.values = values
        self.colors = colors
        self.kind = kind
        self.shape = pattern.shape
        self.nnz = pattern.nnz
        # made once by scipy's own constructor (every attribute scipy sets), with arrays of its
        # own: each result takes its attributes and fresh arrays, so no two results (nor a
        # result and the pattern) share anything, and no call pays for the constructor's checks
        self._template = sp.csr_matrix(
            (np.zeros(pattern.nnz), pattern.indices.copy(), pattern.indptr.copy()), shape=pattern.shape
        )
        self._template.has_sorted_indices = True
        self._template.has_canonical_format = True

    def matrix(self, values: Any) -> sp.csr_matrix:
        """A new CSR matrix of these values on the pattern: its data, indices and indptr are
        its own, so changing it in place (``eliminate_zeros``, ``data *= 2``) changes nothing
        else, neither the pattern nor any other result."""
        template = self._template
        out = sp.csr_matrix.__new__(sp.csr_matrix)
        out.__dict__.update(template.__dict__)  # what copy.copy does, without its protocol's cost
        out.indices, out.indptr = template.indices.copy(), template.indptr.copy()
        data = np.asarray(values)
        # a fresh array from the evaluation is used as it is; a constant's (read-only) is copied
        out.data = data if data.flags.writeable and data.flags.owndata else data.copy()
        return out

    def __repr__(self) -> str:
        return f"<sparse {self.kind} {self.shape[0]}x{self.shape[1]}, {self.nnz} stored values, {self.colors} colours>"


def _static_size(node: Node, what: str, role: str) -> int:
    if node.size is None:
        raise ShapeError(
            f"{what}: {role} {describe(node)} has shape {node.shape} with an unknown (None) size; a sparsity "
            "pattern is found before evaluation, so every size must be known: declare the shape"
        )
    return node.size


def _positions(node: Node) -> np.ndarray:
    """Element positions + 1 (0 means "no element") shaped like the node."""
    return np.arange(1, node.size + 1, dtype=np.float64).reshape(node.shape)


def _gathered(rows: np.ndarray, size: int) -> sp.csr_matrix:
    """P with P[i, rows[i] - 1] = 1 where rows[i] > 0: output i selects input element rows[i] - 1."""
    rows = np.rint(np.asarray(rows, dtype=np.float64).reshape(-1)).astype(np.int64)
    keep = np.nonzero(rows > 0)[0]
    return sp.csr_matrix((np.ones(len(keep), dtype=bool), (keep, rows[keep] - 1)), shape=(len(rows), size), dtype=bool)


def _union(parts: list[sp.csr_matrix], shape: tuple[int, int]) -> sp.csr_matrix:
    if len(parts) == 1 and parts[0].dtype == bool and parts[0].format == "csr":
        return parts[0]
    total = sp.csr_matrix(shape, dtype=bool)
    for p in parts:
        total = total + p
    return total.astype(bool).tocsr()


def _dense(node: Node, deps: list[sp.csr_matrix], n: int) -> sp.csr_matrix:
    """Every output element depends on everything the inputs depend on (the safe default)."""
    cols = np.unique(np.concatenate([d.indices for d in deps])) if deps else np.zeros(0, np.int64)
    m = node.size
    if m * len(cols) > DENSE_LIMIT:
        raise SymdiffError(
            f"sparse pattern: op {node.op!r} (node #{node.index}, shape {node.shape}) has no sparsity rule finer than "
            f"'every output element depends on every input element', which gives {m} x {len(cols)} non-zeros: the "
            "derivative is not sparse here; use sd.jacobian or sd.hessian"
        )
    rows = np.repeat(np.arange(m), len(cols))
    return sp.csr_matrix((np.ones(len(rows), bool), (rows, np.tile(cols, m))), shape=(m, n), dtype=bool)


def _broadcast_map(u: Node, out: Node) -> np.ndarray:
    return np.broadcast_to(np.arange(u.size).reshape(u.shape), out.shape).reshape(-1)


def _groups(node: Node, x: Node, axes: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """For each element of x, the index of the reduction group (along ``axes``) it falls in."""
    kept = [d for k, d in enumerate(x.shape) if k not in axes]
    ids = np.arange(int(np.prod(kept, dtype=np.int64))).reshape([1 if k in axes else d for k, d in enumerate(x.shape)])
    return np.broadcast_to(ids, x.shape).reshape(-1), int(np.prod(kept, dtype=np.int64))


def _axes(node: Node, x: Node) -> tuple[int, ...]:
    axis = node.attrs.get("axis")
    if axis is None:
        return tuple(range(x.ndim))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(sorted(a % x.ndim for a in axis))


def _matmul(node: Node, a: Node, b: Node, da: Any, db: Any, n: int) -> sp.csr_matrix | None:
    """out[i, j] = sum_l a[i, l] b[l, j]: a[i, l] matters where b[l, j] may be non-zero (all of
    b unless it is a constant), and the other way round."""
    if a.ndim > 2 or b.ndim > 2:
        return None
    A = np.ones(a.shape if a.ndim == 2 else (1, a.shape[0]), bool)
    B = np.ones(b.shape if b.ndim == 2 else (b.shape[0], 1), bool)
    if a.op == "constant":
        A = np.asarray(a.value).reshape(A.shape) != 0
    if b.op == "constant":
        B = np.asarray(b.value).reshape(B.shape) != 0
    (m, k), p = A.shape, B.shape[1]
    parts = []
    if da is not None:
        bl, bj = np.nonzero(B)
        rows = (np.arange(m)[:, None] * p + bj[None, :]).reshape(-1)
        cols = (np.arange(m)[:, None] * k + bl[None, :]).reshape(-1)
        parts.append(sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(m * p, m * k)) @ da)
    if db is not None:
        ai, al = np.nonzero(A)
        rows = (ai[:, None] * p + np.arange(p)[None, :]).reshape(-1)
        cols = (al[:, None] * p + np.arange(p)[None, :]).reshape(-1)
        parts.append(sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(m * p, k * p)) @ db)
    return _union(parts, (node.size, n))


def dependencies(outputs: list[Node], x: Node | Sequence[Node], what: str) -> dict[Node, Any]:
    """For each node between x and the outputs, which elements of x each element may depend on
    (a node with several outputs: a tuple, one pattern or None per output). For a list of
    nodes x, the columns are their elements stacked in order (each flattened in C order)."""
    if isinstance(x, Node):
        n = _static_size(x, what, "x")
        return _propagate(outputs, {x: sp.identity(n, dtype=bool, format="csr")}, n, what)
    sizes = [_static_size(v, what, f"x[{k}]") for k, v in enumerate(x)]
    n, starts = sum(sizes), np.cumsum([0, *sizes])
    deps = {
        v: sp.csr_matrix((np.ones(m, bool), (np.arange(m), np.arange(m) + at)), shape=(m, n))
        for v, m, at in zip(x, sizes, starts)
    }
    return _propagate(outputs, deps, n, what)


def _propagate(outputs: Sequence[Node], deps: dict[Node, Any], n: int, what: str) -> dict[Node, Any]:
    """``deps`` (the patterns of some nodes: x, or a body's parameters) extended to every node
    between them and the outputs, in topological order."""
    starts = set(deps)
    for node in ancestors(outputs, lambda u: () if u in starts else u.inputs):
        if node in starts or not node.inputs:
            continue
        if node.op == "output":  # output k of a node with several: that output's pattern
            found = deps.get(node.inputs[0])
            if found is not None and found[node._attrs[0][1]] is not None:
                deps[node] = found[node._attrs[0][1]]
            continue
        op = REGISTRY[node.op]
        # an input without a derivative rule (a shape reference, an index) carries no dependence
        inputs = [deps.get(u) if _carries(op, i) else None for i, u in enumerate(node.inputs)]
        if all(d is None for d in inputs) or op.sparsity == "none":
            continue
        if not op.differentiable:
            continue  # comparisons, signs, indices: no derivative flows through them
        results = [_Result(node, k) for k in range(len(node.results))] if node.is_multi else [node]
        for r in results:
            _static_size(r, what, "an intermediate node")
        if op.sparsity == "body":
            patterns = _through_body(node, inputs, n, what)
        elif op.sparsity == "loop":
            patterns = (
                _through_while(node, inputs, n, what)
                if node.op == "while_loop"
                else _through_scan(node, inputs, n, what)
            )
        else:
            patterns = [_rule(r, op, inputs, n) for r in results]
        if any(p is not None for p in patterns):  # a body's outputs may depend on nothing seeded
            deps[node] = tuple(patterns) if node.is_multi else patterns[0]
    return deps


class _Result:
    """Output k of a node with several outputs, as the rules read a node: that output's shape
    and dtype, the node's op, inputs and attributes."""

    def __init__(self, node: Node, k: int):
        self.node, self.k = node, k
        self.shape, self.dtype = node.results[k]

    @property
    def size(self) -> int | None:
        return None if None in self.shape else int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.node, name)


def _through_body(node: Node, inputs: list, n: int, what: str) -> list[sp.csr_matrix | None]:
    """A node that runs its body on its inputs: the patterns of the body's outputs, found with
    its parameters bound to the inputs' patterns (a separable function stays separable)."""
    region = node.regions[0]
    found = _propagate(region.outputs, {p: d for p, d in zip(region.params, inputs) if d is not None}, n, what)
    return [found.get(y) for y in region.outputs]


def _same(a: sp.csr_matrix | None, b: sp.csr_matrix | None) -> bool:
    """Whether two patterns (None: depends on nothing) are equal."""
    if a is None or b is None or a is b:
        return a is b
    if a.shape != b.shape or a.nnz != b.nnz:
        return False
    if a.has_sorted_indices and b.has_sorted_indices and a.data.all() and b.data.all():
        return np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    return (a != b).nnz == 0


def _either(a: sp.csr_matrix | None, b: sp.csr_matrix | None) -> sp.csr_matrix | None:
    """The union of two patterns (None: depends on nothing)."""
    if a is None or b is None:
        return b if a is None else a
    return (a + b).astype(bool).tocsr()


def _stacked(blocks: Sequence[sp.csr_matrix | None], size: int, n: int) -> sp.csr_matrix | None:
    """A stacked output's pattern: block t (None: depends on nothing) for its item t."""
    if all(b is None for b in blocks):
        return None
    empty = sp.csr_matrix((size, n), dtype=bool)
    return sp.vstack([empty if b is None else b for b in blocks], format="csr", dtype=bool)


def _items_union(stacked: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """The union of a stacked pattern's items (of ``m`` elements each): what any one of them
    depends on."""
    length = stacked.shape[0] // m if m else 0
    pick = sp.csr_matrix(
        (np.ones(length * m, bool), (np.tile(np.arange(m), length), np.arange(length * m))), shape=(m, length * m)
    )
    return (pick @ stacked).astype(bool).tocsr()


def _repeated(block: sp.csr_matrix | None, times: int) -> sp.csr_matrix | None:
    """A stacked output whose every item has the pattern ``block``."""
    if block is None:
        return None
    return block[np.tile(np.arange(block.shape[0]), times)]


class _Step:
    """One step of a loop's body on patterns: the outputs' patterns for the carries' and xs'
    (its first parameters), the captured nodes bound once; a step given the same patterns as
    the step before returns that step's outputs without walking the body again."""

    def __init__(self, region: Region, captured: Sequence[sp.csr_matrix | None], n: int, what: str):
        self.region, self.n, self.what = region, n, what
        first = len(region.params) - len(captured)
        self.bound = {p: d for p, d in zip(region.params[first:], captured) if d is not None}
        self.last: tuple[list, list] | None = None

    def __call__(self, given: list[sp.csr_matrix | None]) -> list[sp.csr_matrix | None]:
        if self.last is not None and all(_same(a, b) for a, b in zip(self.last[0], given)):
            return self.last[1]
        deps = dict(self.bound)
        deps.update((p, d) for p, d in zip(self.region.params, given) if d is not None)
        found = _propagate(self.region.outputs, deps, self.n, self.what)
        out = [found.get(y) for y in self.region.outputs]
        self.last = (list(given), out)
        return out


def _fixed_point(step: _Step, init: list, extra: list) -> list[sp.csr_matrix | None]:
    """The carries' patterns after any number of steps: the least C holding ``init`` and the
    step's new carries from C (with the parameters after the carries bound to ``extra``). It is
    reached since patterns only grow and are finite; a union over every trip count, so a sound
    over-approximation of each one's."""
    carry = list(init)
    while True:
        new = [_either(c, d) for c, d in zip(carry, step(carry + extra)[: len(carry)])]
        if all(_same(a, b) for a, b in zip(carry, new)):
            return carry
        carry = new


def _through_scan(node: Node, inputs: list, n: int, what: str) -> list[sp.csr_matrix | None]:
    """A scan's patterns (see symdiff.loops for its inputs and outputs): the body's pattern
    carried over the steps in their order, step t reading xs[t], so each ys[t] and stored
    carry is exactly its step's; a step whose carries and xs have the patterns of the step
    before is not walked again, so a scan whose carries reach a fixed point costs a few walks
    of its body whatever its length. A counted scan (its trip count known only at evaluation)
    takes the union over the trip counts: exact per step when it runs forwards, and the
    carries' fixed point (any number of steps, from any xs) when backwards, whose steps then
    read xs from a place the count decides."""
    a = node.attrs
    nc, nx, ny, length = a["carries"], a["xs"], a["ys"], a["length"]
    region = node.regions[0]
    params = region.params
    seqs = inputs[nc : nc + nx]
    step = _Step(region, inputs[nc + nx : len(params)], n, what)
    sizes = [p.size for p in params[nc : nc + nx]]

    def xs_at(t: int) -> list[sp.csr_matrix | None]:
        return [None if d is None else d[t * m : (t + 1) * m] for d, m in zip(seqs, sizes)]

    order = range(length - 1, -1, -1) if a["reverse"] else range(length)
    ys: list[list[sp.csr_matrix | None]] = [[None] * length for _ in range(ny)]
    entering: list[list[sp.csr_matrix | None]] = [[None] * length for _ in range(nc)]
    carry = list(inputs[:nc])
    # counted backwards, step t's carries come from steps the count decides: take them all
    settled = a["counted"] and a["reverse"]
    if settled:
        carry = _fixed_point(step, carry, [None if d is None else _items_union(d, m) for d, m in zip(seqs, sizes)])
    final = carry
    for t in order:
        out = step(carry + xs_at(t))
        for k in range(ny):
            ys[k][t] = out[nc + k]
        for j in range(nc):
            entering[j][t] = carry[j]
        if not settled:
            carry = out[:nc]
            # a counted scan may stop after any step: its final carries may be any step's
            final = [_either(f, c) for f, c in zip(final, carry)] if a["counted"] else carry
    stored = []
    for j in range(nc):
        size, held = params[j].size, node.results[nc + ny + j][0][0]
        policy = a["checkpoint"]
        if policy is None:
            stored.append(_stacked(entering[j], size, n))
        elif policy[0] == "every":
            stored.append(_stacked([entering[j][order[i * policy[1]]] for i in range(held)], size, n))
        else:  # which carries another policy holds is decided as it runs: any of them
            kept = [e for e in entering[j] if e is not None]
            stored.append(_repeated(_union(kept, (size, n)) if kept else None, held))
    return list(final) + [_stacked(ys[k], region.outputs[nc + k].size, n) for k in range(ny)] + stored


def _through_while(node: Node, inputs: list, n: int, what: str) -> list[sp.csr_matrix | None]:
    """A while_loop's patterns: its trip count is known only at evaluation, so its carries'
    are their fixed point over any number of steps (a sound over-approximation: the union over
    every trip count), and so is every carry it stores; its condition and trip count carry no
    derivative."""
    a = node.attrs
    nc, conds = a["carries"], a["conds"]
    step = _Step(node.regions[1], inputs[nc + conds :], n, what)
    carry = _fixed_point(step, list(inputs[:nc]), [])
    if a["max_steps"] is None:
        return carry
    return carry + [_repeated(c, a["max_steps"]) for c in carry] + [None]


def _carries(op: Any, i: int) -> bool:
    rule = op.vjp_rule(i) if op.joint_vjp is None else op.joint_vjp
    return rule is not None and rule is not not_differentiable


def _rule(node: Node, op: Any, inputs: list, n: int) -> sp.csr_matrix:
    """The node's pattern from its inputs', by the op's declared ``sparsity`` (ops.core.SPARSITY)."""
    present = [(u, d) for u, d in zip(node.inputs, inputs) if d is not None]
    rule = op.sparsity
    if rule == "elementwise":
        return _union([d if u.shape == node.shape else d[_broadcast_map(u, node)] for u, d in present], (node.size, n))
    if rule in ("reduction", "lane") and len(present) == 1 and present[0][0] is node.inputs[0]:
        (x, d), *_ = present
        group, count = _groups(node, x, _axes(node, x))
        P = sp.csr_matrix((np.ones(x.size, bool), (group, np.arange(x.size))), shape=(count, x.size))
        reduced = (P @ d).astype(bool).tocsr()
        if rule == "lane":
            return reduced[group]  # each element: its whole lane
        if reduced.shape[0] == node.size:
            return reduced
    found = None
    if rule == "selection":
        found = _selection(node, op, inputs, n)
    elif rule.startswith("adjoint:"):
        found = _adjoint(node, REGISTRY[rule.split(":", 1)[1]], inputs, n)
    elif rule == "matmul":
        found = _matmul(node, *node.inputs, *inputs, n)
    if found is not None:
        return found
    return _dense(node, [d for _, d in present], n)


def _stand_in(u: Node, d: Any, offset: int) -> np.ndarray | None:
    """What the op runs on instead of u: its positions (offset) if x reaches it, its value if
    it is a constant, zeros of its shape if it is used for its shape (floats)."""
    if d is not None:
        return _positions(u) + offset
    if u.op == "constant":
        return np.asarray(u.value)
    if u.dtype.kind in "iu" or u.size is None:
        return None  # an index known only at evaluation: which element is selected is unknown
    return np.zeros(u.shape)


def _selection(node: Node, op: Any, inputs: list, n: int) -> sp.csr_matrix | None:
    """Run the op on the positions of its inputs' elements, twice, the second time shifted:
    an output element that moved with the shift is the element it names; one that did not
    (a border, a zero of tril) depends on nothing."""
    total = sum(u.size for u, d in zip(node.inputs, inputs) if d is not None)
    runs, sources = [], [d for d in inputs if d is not None]
    for shift in (0, total + 1):
        arrays, offset = [], 0
        for u, d in zip(node.inputs, inputs):
            a = _stand_in(u, d, offset + shift)
            if a is None:
                return None
            arrays.append(a)
            offset += u.size if d is not None else 0
        with np.errstate(all="ignore"):
            result = functools.partial(op.forward, np)(*arrays, **dict(node._attrs))
            if isinstance(node, _Result):  # one output of several
                result = result[node.k]
            runs.append(np.asarray(result, dtype=np.float64))
    plain, shifted = runs
    moved = shifted - plain
    if plain.size != node.size or not np.all((moved == 0) | (moved == total + 1)):
        return None  # not a selection after all (it adds or scales): no finer rule
    P = _gathered(np.where(moved == total + 1, plain, 0.0), total)
    D = sp.vstack(sources).tocsr() if len(sources) > 1 else sources[0]
    return (P @ D).astype(bool).tocsr()


def _adjoint(node: Node, gather: Any, inputs: list, n: int) -> sp.csr_matrix | None:
    """An op that adds g into places shaped like ref (untile, the scatter of indexing): the
    transpose of the selection it is the adjoint of, run on the positions of ref."""
    g, ref = node.inputs[:2]
    dg = inputs[0]
    if dg is None or node.ndim != ref.ndim:
        return None  # a batch of gradients: no finer rule
    rest = []
    for u in node.inputs[2:]:
        a = _stand_in(u, None, 0)
        if a is None:
            return None
        rest.append(a)
    picked = np.asarray(functools.partial(gather.forward, np)(_positions(ref), *rest, **dict(node._attrs)))
    if picked.size != g.size:
        return None
    P = _gathered(picked, ref.size)  # g's elements x ref's elements
    return (P.T.tocsr() @ dg).astype(bool).tocsr()


def _colouring(pattern: sp.csr_matrix) -> np.ndarray:
    """Columns that share no row get the same colour (greedy, largest degree first, each
    column the smallest colour none of its conflicting columns has). One pass over the
    conflicts in plain Python: a colour is marked taken for column j by storing j, so no
    array is made or cleared per column (a numpy call per column cost 15 us, 0.5 s at 30,000)."""
    p = pattern.astype(np.int32)
    conflict = (p.T @ p).tocsr()  # columns sharing a row (each column with itself too)
    n = pattern.shape[1]
    order = np.argsort(-np.diff(conflict.indptr), kind="stable").tolist()
    indptr, indices = conflict.indptr.tolist(), conflict.indices.tolist()
    colour = [-1] * n
    taken = [-1] * (n + 1)  # taken[c] == j: colour c is used by a column conflicting with j
    for j in order:
        for w in indices[indptr[j] : indptr[j + 1]]:
            c = colour[w]
            if c >= 0:
                taken[c] = j
        colour[j] = _smallest_free(taken, j)
    return np.asarray(colour, dtype=np.int64)


def _smallest_free(marks: list[int], owner: int) -> int:
    """The smallest colour c with ``marks[c] != owner`` (the colouring marks the colours a vertex
    may not take by storing the vertex, so the marks are never cleared)."""
    c = 0
    while marks[c] == owner:
        c += 1
    return c


def star_colouring(pattern: sp.csr_matrix) -> np.ndarray:
    """A greedy star colouring of a symmetric pattern's adjacency graph (Coleman & Moré;
    Gebremedhin, Manne & Pothen 2005, Algorithm 4.1): neighbours differ, and every path on
    four vertices has at least three colours, so each value of a symmetric matrix can be
    read from one seed's product, from its row or from its column. Largest degree first."""
    p = sp.csr_matrix(pattern, dtype=bool)
    p = (p + p.T).tocoo()
    off = p.row != p.col  # the adjacency graph has no loops: drop the diagonal (no LIL, 10 us a row)
    p = sp.csr_matrix((p.data[off], (p.row[off], p.col[off])), shape=p.shape)
    p.sum_duplicates()
    indptr, indices = p.indptr, p.indices.tolist()
    n = p.shape[0]
    bounds = indptr.tolist()
    adj = [indices[bounds[v] : bounds[v + 1]] for v in range(n)]
    colour = [-1] * n
    forbidden = [-1] * (n + 1)
    for v in np.argsort(-np.diff(indptr), kind="stable").tolist():
        for w in adj[v]:
            if colour[w] >= 0:
                forbidden[colour[w]] = v
        for w in adj[v]:
            cw = colour[w]
            if cw < 0:  # w uncoloured: v's colour must differ from w's other neighbours'
                for x in adj[w]:
                    if colour[x] >= 0:
                        forbidden[colour[x]] = v
                continue
            for x in adj[w]:  # no path v - w - x - y coloured c(v), cw, c(x), cw
                cx = colour[x]
                if x != v and cx >= 0 and any(y != w and colour[y] == cw for y in adj[x]):
                    forbidden[cx] = v
        colour[v] = _smallest_free(forbidden, v)
    return np.asarray(colour, dtype=np.int64)


def _symmetric_reads(pattern: sp.csr_matrix, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each stored value of a symmetric matrix is read from B = H S (rows x colours):
    at (i, colour j) when j is i's only neighbour of its colour, else at (j, colour i)."""
    rows, cols = pattern.nonzero()
    count = int(colour.max()) + 1
    keys, counts = np.unique(rows * count + colour[cols], return_counts=True)

    def unique(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        k = r * count + c
        at = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
        return (keys[at] == k) & (counts[at] == 1)

    direct = unique(rows, colour[cols])
    if not np.all(direct | unique(cols, colour[rows])):  # a star colouring never leaves one
        raise SymdiffError("sparse_hessian: the colouring is not a star colouring (an internal error)")
    return np.where(direct, rows, cols), np.where(direct, colour[cols], colour[rows])


def _seeded_values(
    output: Node, xs: list[Node], pattern: sp.csr_matrix, what: str, symmetric: bool = False
) -> tuple[Node, int]:
    """The values of the pattern's non-zeros as one node: a forward-mode pass with one seed
    per colour (the compressed matrix, colours x rows), and the non-zeros picked out of it;
    the columns are the elements of ``xs`` stacked in order."""
    from symdiff.autodiff import forward_pass
    from symdiff.ops.indexing import take
    from symdiff.ops.structure import reshape

    graph = output.graph
    if pattern.nnz == 0:
        # no element depends on x (a zero Jacobian, the Hessian of a linear function): no pass
        return graph.constant(np.zeros(0, dtype=output.dtype)), 0
    colour = star_colouring(pattern) if symmetric else _colouring(pattern)
    count = int(colour.max()) + 1
    seeds = np.zeros((count, pattern.shape[1]))
    seeds[colour, np.arange(pattern.shape[1])] = 1.0
    with graph._derivative_pass():
        tangents, at = [], 0
        for x in xs:  # each x's block of the seeds, in its shape and dtype
            block = seeds[:, at : at + x.size].astype(x.dtype if x.dtype.kind == "f" else np.float64)
            tangents.append(graph.constant(block.reshape((count, *x.shape))))
            at += x.size
        found = forward_pass([output], xs, tangents, what)
        if output not in found:  # the pattern is a superset of the dependence: zeros, (colours, y's size)
            found[output] = graph.uniform_constant(0, (count, *output.shape), output.dtype)
        flat = reshape(found[output], (count * output.size,))
        if symmetric:
            rows, colours = _symmetric_reads(pattern, colour)
        else:
            rows, cols = pattern.nonzero()  # in the CSR order
            colours = colour[cols]
        # compressed[colours, rows], as one integer constant: an index array in getitem is
        # checked and stored element by element (0.2 s for 10^5 values), a constant is not
        values = take(flat, graph.constant(colours.astype(np.int64) * output.size + rows))
    return values, count


def _check_node(node: Any, what: str, role: str) -> None:
    """Raise GraphError unless ``node`` is a node with one value (one output of eigh, not eigh)."""
    if not isinstance(node, Node):
        raise GraphError(f"{what}: {role} must be a node, got {type(node).__name__}")
    if node.is_multi:
        raise GraphError(
            f"{what}: {role} {describe(node)} has {len(node.results)} outputs and no value of its own; "
            f"pass one of them (sd.{node.op}(...)[k])"
        )


def _flat(node: Node, what: str, role: str) -> None:
    if node.dtype.kind != "f":
        raise GraphError(f"{what}: {role} {describe(node)} has dtype {node.dtype}; derivatives need floats")


def sparse_jacobian(y: Node, x: Node) -> SparseDerivative:
    """The Jacobian of ``y`` with respect to ``x`` as a sparse matrix (y.size x x.size, both
    flattened in C order): the pattern from the graph, the values from one forward-mode pass
    with a seed per colour of columns that share no row.

    >>> g = sd.Graph(); u = g.variable("u", shape=(5,))
    >>> r = u[2:] - 2 * u[1:-1] + u[:-2] + u[1:-1] ** 3   # a discretised 1-D PDE residual
    >>> J = sd.sparse_jacobian(r, u)
    >>> J
    <sparse jacobian 3x5, 9 stored values, 3 colours>
    >>> print(sd.evaluate(J, {u: np.ones(5)}).toarray())
    [[1. 1. 1. 0. 0.]
     [0. 1. 1. 1. 0.]
     [0. 0. 1. 1. 1.]]
    """
    from symdiff.graph import check_same_graph

    for role, node in (("y", y), ("x", x)):
        _check_node(node, "sparse_jacobian", role)
    check_same_graph("sparse_jacobian", y, x)
    _flat(y, "sparse_jacobian", "y")
    _static_size(y, "sparse_jacobian", "y")
    n = _static_size(x, "sparse_jacobian", "x")
    return stacked_jacobian(y, [x], n, "sparse_jacobian")


def stacked_jacobian(y: Node, xs: list[Node], n: int, what: str) -> SparseDerivative:
    """The sparse Jacobian of ``y`` (checked, static size) with respect to the elements of
    ``xs`` stacked in order (``n`` of them; each x checked, flattened in C order): its columns.
    sd.Problem's constraint Jacobian over several variables."""
    with y.graph._derivative_pass():  # a failure appends nothing
        deps = dependencies([y], xs[0] if len(xs) == 1 else xs, what)
        pattern = deps.get(y, sp.csr_matrix((y.size, n), dtype=bool))
        pattern = sp.csr_matrix(pattern, dtype=bool)
        pattern.sort_indices()
        values, colors = _seeded_values(y, xs, pattern, what)
    return SparseDerivative(pattern, values, colors, "jacobian")


def sparse_hessian(f: Node, x: Node) -> SparseDerivative:
    """The Hessian of a scalar ``f`` with respect to ``x`` as a sparse matrix (x.size x x.size):
    the pattern is the Jacobian pattern of the gradient graph, the values come from one
    forward-over-reverse pass with a seed per colour.

    >>> g = sd.Graph(); x = g.variable("x", shape=(4,))
    >>> f = sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)   # Rosenbrock
    >>> H = sd.sparse_hessian(f, x)
    >>> H.nnz, H.colors
    (10, 3)
    """
    from symdiff.graph import check_same_graph

    for role, node in (("f", f), ("x", x)):
        _check_node(node, "sparse_hessian", role)
    check_same_graph("sparse_hessian", f, x)
    if f.shape != ():
        raise ShapeError(
            f"sparse_hessian: f must be a scalar, but {describe(f)} has shape {f.shape}; "
            "for a vector, sparse_jacobian of its gradient, or sum it first"
        )
    _flat(f, "sparse_hessian", "f")
    n = _static_size(x, "sparse_hessian", "x")
    return stacked_hessian(f, [x], n, "sparse_hessian")


def stacked_hessian(f: Node, xs: list[Node], n: int, what: str) -> SparseDerivative:
    """The sparse Hessian of a scalar ``f`` (checked) with respect to the elements of ``xs``
    stacked in order (``n`` of them; each x checked, flattened in C order): sd.Problem's
    Lagrangian Hessian over several variables."""
    from symdiff.autodiff import gradient_pass
    from symdiff.ops.join import concatenate
    from symdiff.ops.structure import reshape

    with f.graph._derivative_pass():  # a failure appends nothing
        gradients = gradient_pass(f, xs, None, what)
        gradient = gradients[0] if len(xs) == 1 else concatenate([reshape(d, (-1,)) for d in gradients])
        deps = dependencies([gradient], xs[0] if len(xs) == 1 else xs, what)
        pattern = deps.get(gradient, sp.csr_matrix((n, n), dtype=bool))
        pattern = sp.csr_matrix(pattern + pattern.T, dtype=bool)  # the Hessian is symmetric; so is its pattern
        pattern.sort_indices()
        values, colors = _seeded_values(gradient, xs, pattern, what, symmetric=True)
    return SparseDerivative(pattern, values, colors, "hessian")
