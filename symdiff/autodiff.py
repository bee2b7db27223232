"""Symbol-to-symbol derivatives: every function here appends nodes to the graph.

``grad`` is the book's back-propagation (Goodfellow et al., Alg. 6.5/6.6): prune
to the nodes that lie on a path from ``wrt`` to the cost, walk them once in reverse
topological order, ask each op's rule for its inputs' contributions and sum them.
``jvp`` is the same walk forwards. ``jacobian`` and ``hessian`` push a batch of
identity seeds through one pass (each rule carries leading batch axes) instead of
running one pass per element; ``hvp`` is forward-over-reverse and never forms the
Hessian. Nothing recurses on graph depth.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from symdiff.errors import GraphError, NonDifferentiableError, ShapeError
from symdiff.graph import Node, Region, ancestors, check_same_graph, describe, format_shape, node_list
from symdiff.ops import REGISTRY, add, astype, broadcast_like, expand_dims, eye_like, match_shape, transpose, zeros_like
from symdiff.ops import sum as reduce_sum
from symdiff.ops.core import not_differentiable, outputs_of
from symdiff.ops.structure import lift

DIFF, NONE, UNDEFINED = "diff", "none", "undefined"


def _edge(node: Node, i: int) -> str:
    """How a derivative flows from ``node`` back to its input ``i``.

    NONE: by the op's definition no gradient flows (where's condition, stop_gradient).
    UNDEFINED: the derivative does not exist (comparisons; integer or boolean values).
    """
    op = REGISTRY[node.op]
    rule = op.vjp_rule(i) if op.joint_vjp is None else op.joint_vjp
    if not op.differentiable or rule is not_differentiable:
        return UNDEFINED
    if rule is None:
        return NONE
    if node.regions and node.regions[0].vjp is None:  # as the body's outputs depend on its parameter i
        kind = op.edges(node)[i] if op.edges is not None else _body_edges(node.regions[0])[i]
        if kind != DIFF:
            return kind
    if not floating(node) or not floating(node.inputs[i]):
        return UNDEFINED
    return DIFF


_BODY_EDGES: weakref.WeakKeyDictionary[Region, list[str]] = weakref.WeakKeyDictionary()


def _body_edges(region: Region) -> list[str]:
    """How a derivative flows from a body's outputs back to each of its parameters: DIFF, or
    UNDEFINED where only ops with no derivative connect them, or NONE where nothing does (as
    ``_edge`` says of an op's inputs, so a call differentiates as its body inline would)."""
    found = _BODY_EDGES.get(region)
    if found is None:
        diff = set(_ancestors(region.outputs, (DIFF,)))
        linked = set(_ancestors(region.outputs, (DIFF, UNDEFINED)))
        found = [DIFF if p in diff else UNDEFINED if p in linked else NONE for p in region.params]
        _BODY_EDGES[region] = found
    return found


_BODY_LINKS: weakref.WeakKeyDictionary[Region, list[tuple[frozenset[int], frozenset[int]]]] = (
    weakref.WeakKeyDictionary()
)


def body_links(region: Region) -> list[tuple[frozenset[int], frozenset[int]]]:
    """For each output of a body: the positions of the parameters it depends on differentiably,
    and of those it depends on at all through derivative edges of any kind (DIFF or UNDEFINED),
    so an op that runs its body many times (a loop) can close them over its steps."""
    found = _BODY_LINKS.get(region)
    if found is None:
        position = {p: k for k, p in enumerate(region.params)}
        found = []
        for out in region.outputs:
            diff = frozenset(position[n] for n in _ancestors([out], (DIFF,)) if n in position)
            linked = frozenset(position[n] for n in _ancestors([out], (DIFF, UNDEFINED)) if n in position)
            found.append((diff, linked))
        _BODY_LINKS[region] = found
    return found


def floating(node: Node) -> bool:
    """Whether a node (any output of a node with several) has float values, which carry derivatives."""
    if node.is_multi:
        return any(dtype.kind == "f" for _, dtype in node.results)
    return node.dtype.kind == "f"


def _ancestors(roots: Sequence[Node], kinds: tuple[str, ...]) -> list[Node]:
    """The nodes the roots depend on along edges of the given kinds, in topological order."""
    return ancestors(roots, lambda n: [u for i, u in enumerate(n.inputs) if _edge(n, i) in kinds])


def _cone(outputs: Sequence[Node], wrt: Sequence[Node], what: str) -> list[Node]:
    """Nodes on a differentiable path from some ``wrt`` to some output, in topological order.

    Raises NonDifferentiableError for a ``wrt`` that the outputs reach only through
    ops with no derivative; a ``wrt`` they do not reach at all is simply absent.
    """
    above = _ancestors(outputs, (DIFF,))
    starts = set(wrt)
    reached: set[Node] = set()
    for n in above:
        if n in starts or any(u in reached and _edge(n, i) == DIFF for i, u in enumerate(n.inputs)):
            reached.add(n)
    missing = [w for w in wrt if w not in reached]
    if missing:
        _explain_undefined(outputs, missing, what)
    return [n for n in above if n in reached]


def _explain_undefined(outputs: Sequence[Node], missing: Sequence[Node], what: str) -> None:
    linked = _ancestors(outputs, (DIFF, UNDEFINED))
    linked_set = set(linked)
    for w in missing:
        if w not in linked_set:
            continue  # genuinely disconnected: its derivative is zero
        name = describe(w)
        if w.dtype.kind != "f":
            raise NonDifferentiableError(
                f"{what}: {name} has dtype {w.dtype}; integer and boolean values have no derivative"
            )
        # The first ops with no derivative met walking forward from w.
        reach, culprits = {w}, []
        for n in linked:
            for i, u in enumerate(n.inputs):
                if u in reach:
                    kind = _edge(n, i)
                    if kind == DIFF:
                        reach.add(n)
                    elif kind == UNDEFINED and n not in culprits:
                        culprits.append(n)
        ops = ", ".join(f"{c.op} (node #{c.index}, dtype {c.dtype})" for c in culprits[:3])
        raise NonDifferentiableError(
            f"{what}: the output depends on {name} only through ops that have no derivative: {ops}. "
            "Comparisons, integer indices and integer or boolean values carry no gradient; "
            "use sd.where(cond, a, b) to select differentiable values, or sd.stop_gradient to "
            "declare a path constant"
        )


def _sum_present(parts: Any) -> Node | None:
    """The sum of the parts that are not None; None if none is."""
    present = [p for p in parts if p is not None]
    return add_all(present) if present else None


def add_all(parts: list[Node]) -> Node:
    """The sum of one or more nodes, left to right."""
    total = parts[0]
    for p in parts[1:]:
        total = add(total, p)
    return total


def _unbroadcast(c: Node, x: Node, nb: int, consumer: Node) -> Node:
    """Reduce a contribution shaped (batch + broadcast shape) to batch + ``x.shape``.

    The one place where the broadcasting of every op is undone.
    """
    extra = c.ndim - nb - x.ndim
    if extra < 0:
        if nb:
            raise GraphError(
                f"the derivative rule of {consumer.op} returned shape {format_shape(c.shape)} for an "
                f"input of shape {format_shape(x.shape)} with {nb} batch axes"
            )
        c = broadcast_like(c, x)
        extra = c.ndim - x.ndim
    if extra:
        c = reduce_sum(c, axis=tuple(range(nb, nb + extra)))
    keep = tuple(j - x.ndim for j, d in enumerate(x.shape) if d == 1 and c.shape[nb + j] != 1)
    if keep:
        c = reduce_sum(c, axis=keep, keepdims=True)
    if any(cd == 1 and xd != 1 for cd, xd in zip(c.shape[nb:], x.shape)):
        c = broadcast_like(c, x)
    if c.dtype != x.dtype:
        c = astype(c, x.dtype)
    return c


def _backprop(outputs: Sequence[Node], seeds: Sequence[Node], wrt: Sequence[Node], what: str) -> dict[Node, Node]:
    """Reverse mode: the gradient node of each reached ``wrt`` given output seeds."""
    cone = _cone(outputs, wrt, what)
    nb = seeds[0].ndim - outputs[0].ndim
    in_cone = set(cone)
    pending: dict[Node, list[Node]] = {}
    for out, seed in zip(outputs, seeds):
        pending.setdefault(out, []).append(seed)
    wanted = set(wrt)
    result: dict[Node, Node] = {}
    # a node with several outputs collects one cotangent per output, from its output nodes
    by_output: dict[Node, list[list[Node]]] = {}
    for n in reversed(cone):
        if n.is_multi:
            slots = by_output.pop(n, None)
            if slots is None:
                continue
            g: Any = tuple(add_all(p) if p else None for p in slots)
        else:
            parts = pending.pop(n, None)
            if parts is None:
                continue
            g = add_all(parts)
            if n in wanted:
                result[n] = g
            if n.op == "output":
                source = n.inputs[0]
                slots = by_output.setdefault(source, [[] for _ in source.results])
                slots[n._attrs[0][1]].append(g)
                continue
        if not n.inputs:
            continue
        for u, c in zip(n.inputs, _contributions(n, g, [u in in_cone for u in n.inputs])):
            if c is not None:
                pending.setdefault(u, []).append(_unbroadcast(c, u, nb, n))
    return result


def _contributions(n: Node, g: Any, reached: list[bool]) -> list[Node | None]:
    """Each input's cotangent contribution from ``n``'s cotangent ``g`` (a tuple, one item or
    None per output, for a node with several outputs); None where none flows."""
    op = REGISTRY[n.op]
    wanted = [i for i, r in enumerate(reached) if r and _edge(n, i) == DIFF]
    if op.joint_vjp is not None:
        found = op.joint_vjp(g if n.is_multi else (g,), n, wanted)
        return [found[i] if i in wanted else None for i in range(len(n.inputs))]
    attrs = dict(n._attrs)
    out = outputs_of(n) if n.is_multi else n
    return [op.vjp_rule(i)(g, out, *n.inputs, **attrs) if i in wanted else None for i in range(len(n.inputs))]


def _forward(outputs: Sequence[Node], wrt: Sequence[Node], tangents: Sequence[Node], what: str) -> dict[Node, Node]:
    """Forward mode: the tangent node of each reached output given ``wrt`` tangents."""
    cone = _cone(outputs, wrt, what)
    nb = tangents[0].ndim - wrt[0].ndim
    tan: dict[Node, Any] = dict(zip(wrt, tangents))
    for n in cone:
        if n in tan:
            continue
        if n.op == "output":  # a node with several outputs has a tuple of tangents (None: zero)
            t = tan.get(n.inputs[0])
            if t is not None and t[n._attrs[0][1]] is not None:
                tan[n] = t[n._attrs[0][1]]
            continue
        op = REGISTRY[n.op]
        ts = [tan.get(u) if _edge(n, i) == DIFF else None for i, u in enumerate(n.inputs)]
        if op.joint_jvp is not None:
            found = op.joint_jvp(ts, n)
            if n.is_multi:
                tan[n] = tuple(found)
                continue
            if found[0] is None:
                continue
            parts = [found[0]]
        else:
            attrs = dict(n._attrs)
            out = outputs_of(n) if n.is_multi else n
            parts = []
            for i, t in enumerate(ts):
                if t is not None:
                    if op.elementwise:
                        t = lift(t, n.ndim, nb)
                    parts.append(op.jvp_rule(i)(t, out, *n.inputs, **attrs))
            if n.is_multi:  # each input's rule gives a tuple, one tangent or None per output
                tan[n] = tuple(_sum_present(p[k] for p in parts) for k in range(len(n.results)))
                continue
        if not parts:
            continue  # no tangent reaches it (only zero ones): absent, as zero
        tan[n] = full_tangent(add_all(parts), n, nb)
    return tan


def full_tangent(t: Node, n: Node, nb: int) -> Node:
    """A tangent of ``n`` that rules may leave broadcast short of its shape (a parameter's own
    tangent, a scalar's), made ``nb`` batch axes + ``n.shape``."""
    if t.ndim < nb + n.ndim or any(a == 1 and b != 1 for a, b in zip(t.shape[nb:], n.shape)):
        t = broadcast_like(lift(t, n.ndim, nb), n)
    return t


# the passes as other derivative passes seed them (sparse Jacobians and Hessians, by colour)
forward_pass = _forward


# and bodies' derivatives (symdiff.composite); inside a derivative pass, errors naming ``what``
reverse_pass = _backprop


# -- public API -------------------------------------------------------------------
def zeros_for(w: Node, lead: Node | None = None) -> Node:
    """Zeros shaped like ``w``, or like ``lead.shape + w.shape`` (a Jacobian's)."""
    if lead is None:
        return zeros_like(w)
    shape = lead.shape + w.shape
    if None not in shape:
        return w.graph.uniform_constant(0, shape, w.dtype)
    zeros = astype(zeros_like(lead), w.dtype)
    return broadcast_like(expand_dims(zeros, tuple(range(-w.ndim, 0))) if w.ndim else zeros, w)


def _require_nodes(what: str, **arguments: Any) -> None:
    """Raise GraphError naming the first argument that is not a node, or nodes of two graphs."""
    for arg, value in arguments.items():
        if not isinstance(value, Node):
            raise GraphError(f"{what}: {arg} must be a node, got {type(value).__name__}")
    check_same_graph(what, *arguments.values())


def _seed(node: Node, value: Any, what: str, arg: str, like: str = "the output") -> Node:
    if isinstance(value, Node):
        check_same_graph(what, node, value)
        seed = value
    else:
        seed = node.graph.constant(np.asarray(value, dtype=node.dtype))
    if len(seed.shape) != node.ndim or any(
        a is not None and b is not None and a != b for a, b in zip(seed.shape, node.shape)
    ):
        raise ShapeError(
            f"{what}: {arg} has shape {format_shape(seed.shape)} but {like} has shape {format_shape(node.shape)}"
        )
    return seed


def _grad(cost: Node, wrts: list[Node], grad_output: Any, what: str) -> list[Node]:
    """The gradients of ``cost`` (inside a derivative pass); errors name ``what``."""
    if grad_output is None:
        if cost.shape != ():
            raise ShapeError(
                f"{what}: cost has shape {format_shape(cost.shape)}, not a scalar; reduce it (sd.sum) or "
                "pass grad_output= (the incoming gradient, shaped like cost), or use sd.jacobian"
            )
        seed = cost.graph.uniform_constant(1, (), cost.dtype if cost.dtype.kind == "f" else np.float64)
    else:
        seed = _seed(cost, grad_output, what, "grad_output", "cost")
    found = _backprop([cost], [seed], wrts, what)
    # With unknown dimensions, a binding that broadcasts one would give a gradient of
    # the wrong shape: check it at evaluation rather than let it pass.
    return [match_shape(found[w], w) if w in found else zeros_for(w) for w in wrts]


gradient_pass = _grad  # for other derivative passes (the sparse Hessian's gradient)


def grad(cost: Node, wrt: Node | Sequence[Node], grad_output: Any = None) -> Node | list[Node]:
    """Gradient of a scalar ``cost`` with respect to ``wrt``, as nodes appended to the graph.

    Parameters
    ----------
    cost : Node
        A scalar node. For a non-scalar node give ``grad_output`` (as TensorFlow's
        ``grad_ys``): the gradient is then the vector-Jacobian product with it.
    wrt : Node or list of Node
        Variables (or any nodes) to differentiate with respect to.
    grad_output : Node or array, optional
        The incoming gradient, shaped like ``cost``.

    Returns
    -------
    Node or list of Node
        One gradient per ``wrt``, each shaped like it (a list for a list). A ``wrt``
        that ``cost`` does not depend on gets zeros.

    Raises
    ------
    NonDifferentiableError
        If ``cost`` depends on a ``wrt`` only through ops with no derivative.

    Examples
    --------
    >>> g = sd.Graph(); x = g.variable("x")
    >>> dy = sd.grad(sd.sin(x) * x, x)
    >>> print(dy)
    sin(x) + x*cos(x)
    >>> print(sd.evaluate(sd.grad(dy, x), {x: 0.0}))
    2.0
    """
    wrts, single = node_list(wrt, "grad", "wrt", allow_empty=True)
    _require_nodes("grad", cost=cost)
    check_same_graph("grad", cost, *wrts)
    with cost.graph._derivative_pass():
        out = _grad(cost, wrts, grad_output, "grad")
    return out[0] if single else out


def _jvp(outs: list[Node], wrts: list[Node], tans: list[Any], what: str, arg: str = "tangent") -> list[Node]:
    """The tangents of ``outs`` (inside a derivative pass); errors name ``what`` and ``arg``."""
    if len(tans) != len(wrts):
        raise GraphError(f"{what}: {len(wrts)} wrt nodes but {len(tans)} tangents")
    seeds = [
        _seed(w, t, what, arg if len(wrts) == 1 else f"{arg} {k}", describe(w))
        for k, (w, t) in enumerate(zip(wrts, tans))
    ]
    found = _forward(outs, wrts, seeds, what)
    return [found[y] if y in found else zeros_for(y) for y in outs]


def jvp(outputs: Node | Sequence[Node], wrt: Node | Sequence[Node], tangents: Any) -> Node | list[Node]:
    """Forward-mode derivative: the directional derivative of ``outputs`` along ``tangents``.

    ``jvp(y, x, t)`` is ``J t`` where J is the Jacobian of y with respect to x; it is a
    node shaped like y. Lists of ``wrt`` take a list of tangents (one per wrt).

    >>> g = sd.Graph(); x = g.variable("x"); t = g.variable("t")
    >>> print(sd.jvp(x ** 2, x, t))
    t*2*x
    """
    outs, single = node_list(outputs, "jvp", "outputs")
    wrts, wrt_single = node_list(wrt, "jvp", "wrt")
    tans = [tangents] if wrt_single else list(tangents)
    check_same_graph("jvp", *outs, *wrts)
    with outs[0].graph._derivative_pass():
        result = _jvp(outs, wrts, tans, "jvp")
    return result[0] if single else result


# An identity seed of at most this many elements is cheap whatever the sizes known later.
SMALL_SEED = 1 << 16


def _known_size(node: Node) -> int:
    """The product of a node's known dimensions: a lower bound of its size (1 per unknown)."""
    return int(np.prod([d for d in node.shape if d is not None], dtype=np.int64))


def _forward_mode(y: Node, xs: list[Node]) -> list[bool]:
    """For each x, whether its Jacobian is built in forward mode (an identity on x's elements)
    rather than in the one reverse pass (an identity on y's elements) that serves the others.

    The seed is never larger than the Jacobian it gives: y.size**2 against y.size * sum of the
    x sizes in reverse mode, x.size**2 against y.size * x.size in forward mode. With static
    sizes that settles it. An unknown size is known only at evaluation: a seed over it is
    made then (eye_like), never while building, and a constant seed is built only where it
    is no larger than the Jacobian's known part or small (SMALL_SEED) whatever the binding.
    """
    known_x = sum(_known_size(w) for w in xs)
    if y.size is not None and y.size <= known_x:
        return [False] * len(xs)  # one reverse pass, its seed no larger than the Jacobians
    known_y = _known_size(y)
    return [y.size is not None if w.size is None else (w.size <= known_y or w.size * w.size <= SMALL_SEED) for w in xs]


def _jacobian(y: Node, xs: list[Node], what: str) -> list[Node]:
    """One Jacobian per x, each shaped ``y.shape + x.shape`` (inside a derivative pass).

    A reverse-mode seed is the identity shaped ``y.shape + y.shape``: its leading y.ndim axes
    are the batch axes every rule carries, so the result needs no reshape, whatever is
    unknown. A forward-mode seed is the identity on x's elements, and the seed axes are moved
    to the end. ``_forward_mode`` picks, so that no seed outgrows the Jacobian.
    """
    forward = _forward_mode(y, xs)
    out: dict[Node, Node] = {}
    backward = [w for w, f in zip(xs, forward) if not f]
    if backward:
        try:
            with y.graph._transaction():
                found = _backprop([y], [eye_like(y)], backward, what)
            out.update((w, found[w] if w in found else zeros_for(w, y)) for w in backward)
        except NonDifferentiableError:
            # reverse mode refused where forward mode may go (a while_loop without max_steps): try
            # that; where it is refused too, its own error says why
            forward = [True] * len(xs)
    for w in (w for w, f in zip(xs, forward) if f):
        if w in out:
            continue
        found = _forward([y], [w], [eye_like(w, y.dtype if y.dtype.kind == "f" else None)], what)
        if y not in found:
            out[w] = zeros_for(w, y)
            continue
        batched = found[y]  # w.shape + y.shape: move the seed axes to the end
        out[w] = transpose(batched, tuple(range(w.ndim, batched.ndim)) + tuple(range(w.ndim)))
    return [out[w] for w in xs]


def jacobian(y: Node, x: Node | Sequence[Node]) -> Node | list[Node]:
    """The Jacobian of ``y`` with respect to ``x``, shaped ``y.shape + x.shape``.

    Built as one vectorised pass: a batch of identity seeds is carried through each rule,
    so the graph is that of a single gradient, not one per element. Reverse mode (a seed
    per element of y) when y has no more elements than the x's, else forward mode (a seed
    per element of x), so with static sizes the seeds never outgrow the Jacobian. A seed
    over a size known only at evaluation is made then, never while building; with such
    sizes, forward mode is used for an x no larger than y's known part or small
    (``SMALL_SEED`` seed elements), reverse mode otherwise.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> J = sd.jacobian(sd.tanh(w), w)
    >>> J.shape
    (2, 2)
    >>> print(sd.evaluate(J, {w: [0.0, 0.0]}))
    [[1. 0.]
     [0. 1.]]
    """
    xs, single = node_list(x, "jacobian", "x")
    _require_nodes("jacobian", y=y)
    check_same_graph("jacobian", y, *xs)
    with y.graph._derivative_pass():
        out = _jacobian(y, xs, "jacobian")
    return out[0] if single else out


def hessian(f: Node, x: Node | Sequence[Node]) -> Node | list[list[Node]]:
    """The Hessian of a scalar ``f`` with respect to ``x``, shaped ``x.shape + x.shape``.

    The gradient graph is built once and differentiated again with a batch of
    identity seeds: n Hessian-vector products' worth of work in one graph. For a list of
    variables ``[a, b, ...]``, the blocks as a nested list: ``H[i][j]`` is the derivative
    of ``df/dx_i`` with respect to ``x_j``, shaped ``x_i.shape + x_j.shape``.

    Raises ShapeError if ``f`` is not a scalar; a variable ``f`` does not depend on gets
    zero blocks.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> H = sd.hessian(sd.sum(w ** 3), w)
    >>> print(sd.evaluate(H, {w: [1.0, 2.0]}))
    [[ 6.  0.]
     [ 0. 12.]]
    >>> s = g.variable("s")
    >>> [[b.shape for b in row] for row in sd.hessian(s * sd.sum(w ** 2), [w, s])]
    [[(2, 2), (2,)], [(2,), ()]]
    """
    xs, single = node_list(x, "hessian", "x")
    _require_nodes("hessian", f=f)
    check_same_graph("hessian", f, *xs)
    with f.graph._derivative_pass():
        gradients = _grad(f, xs, None, "hessian")
        blocks = [_jacobian(gradient, xs, "hessian") for gradient in gradients]
    return blocks[0][0] if single else blocks


def hvp(f: Node, x: Node | Sequence[Node], v: Any) -> Node | list[Node]:
    """Hessian-vector product ``H v`` of a scalar ``f``, shaped like ``x``; the Hessian is never formed.

    Computed forward-over-reverse: the directional derivative of the gradient along v.
    For a list of variables, ``v`` is a list (one direction per variable, each shaped like
    it) and the result a list: item i is ``sum_j H[i][j] v[j]``, shaped like ``x[i]``.

    Raises ShapeError if ``f`` is not a scalar or a direction's shape differs from its
    variable's, GraphError if the number of directions differs from the variables'.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,)); v = g.variable("v", shape=(2,))
    >>> Hv = sd.hvp(sd.sum(w ** 3), w, v)
    >>> print(sd.evaluate(Hv, {w: [1.0, 2.0], v: [1.0, 1.0]}))
    [ 6. 12.]
    """
    xs, single = node_list(x, "hvp", "x")
    _require_nodes("hvp", f=f)
    check_same_graph("hvp", f, *xs)
    vs = [v] if single else v
    if not isinstance(vs, (list, tuple)) or len(vs) != len(xs):
        raise GraphError(f"hvp: {len(xs)} variables need a list of {len(xs)} directions v, got {type(v).__name__}")
    with f.graph._derivative_pass():
        for k, (w, d) in enumerate(zip(xs, vs)):  # checked before anything is built
            _seed(w, d, "hvp", "v" if single else f"v[{k}]", describe(w))
        gradients = _grad(f, xs, None, "hvp")
        products = _jvp(gradients, xs, list(vs), "hvp", "v")
    return products[0] if single else products


def value_and_grad(f: Node, wrt: Node | Sequence[Node]) -> tuple[Node, Node | list[Node]]:
    """``f`` and its gradient: ``(f, df/dx)`` for one variable, ``(f, [df/da, df/db])`` for a list.

    Both are nodes of f's graph (evaluate or compile them together: the gradient reuses
    the forward values). ``f`` must be a scalar (else ShapeError); a variable ``f`` does not
    depend on gets zeros.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> value, gw = sd.value_and_grad(sd.sum(w ** 2), w)
    >>> print(sd.evaluate([value, gw], {w: [1.0, 2.0]}))
    [np.float64(5.0), array([2., 4.])]
    """
    wrts, single = node_list(wrt, "value_and_grad", "wrt")
    _require_nodes("value_and_grad", f=f)
    check_same_graph("value_and_grad", f, *wrts)
    with f.graph._derivative_pass():
        gradients = _grad(f, wrts, None, "value_and_grad")
    return f, gradients[0] if single else gradients
