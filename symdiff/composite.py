"""Composite ops: a Python function traced once into a body, called as one node (PyTensor's
``OpFromGraph``; the first user of nodes that own bodies, see ``symdiff.graph.Region``).

A call of a composite is one node of op ``"composite"`` whose region is the body and whose
inputs are the call's arguments followed by the outer nodes the body captured. Its derivatives
are composite nodes too: the reverse-mode rule builds, once per kind of cotangent, a derivative
body (the body's reverse pass, appended to the body's own graph) and calls it; forward mode
likewise. So a derivative of a composite is as small as one call, whatever the number of
calls, and differentiates again (to any order) the same way.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from symdiff.autodiff import forward_pass, full_tangent, reverse_pass, zeros_for
from symdiff.errors import GraphError, NonDifferentiableError, ShapeError
from symdiff.graph import Graph, Node, Region, describe, format_shape, shape_matches
from symdiff.ops.core import as_nodes, define_op, graph_of, outputs_of
from symdiff.ops.creation import zeros_like
from symdiff.ops.reduce import sum as reduce_sum

__all__ = ["Composite", "composite"]


class Composite:
    """A function of nodes, traced once per graph and input types into a body, and called as
    one node that prints by its name. Make one with :func:`composite`."""

    def __init__(self, fn: Callable[..., Any], name: str, vjp: Callable[..., Sequence[Any]] | None = None):
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError) as exc:
            raise GraphError(f"composite {name!r}: cannot read the parameters of {fn!r}") from exc
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if any(p.kind not in kinds for p in params):
            raise GraphError(
                f"composite {name!r}: the function must take positional parameters only "
                "(no *args, **kwargs or keyword-only parameters: each parameter is an input node)"
            )
        if not name.isidentifier():
            raise GraphError(f"composite name {name!r} is not an identifier")
        self.fn, self.name, self.vjp = fn, name, vjp
        self.params = tuple(p.name for p in params)
        # graph -> {input types: (body, captured outer nodes)}
        self._bodies: weakref.WeakKeyDictionary[Graph, dict[tuple, tuple[Region, tuple[Node, ...]]]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<composite {self.name}({', '.join(self.params)})>"

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.params):
            raise TypeError(
                f"{self.name}() takes {len(self.params)} argument(s) ({', '.join(self.params)}), got {len(args)}"
            )
        graph = graph_of(self.name, args)
        with graph._transaction():  # a failed call (a failing body) leaves the graph as it was
            inputs = as_nodes(self.name, *args)
            types = tuple((x.shape, x.dtype) for x in inputs)
            bodies = self._bodies.setdefault(graph, {})
            found = bodies.get(types)
            if found is None or not all(_alive(c) for c in found[1]):  # traced in a pass rolled back since
                found = bodies[types] = self._trace(graph, inputs)
            region, captured = found
            node = call(region, inputs + captured, (("name", self.name),))
        return outputs_of(node) if node.is_multi else node

    def _trace(self, graph: Graph, inputs: tuple[Node, ...]) -> tuple[Region, tuple[Node, ...]]:
        """Run the function once on placeholder variables of a new body graph."""
        body = graph.body(self.name)
        try:
            params = tuple(body.variable(p, x.shape, x.dtype) for p, x in zip(self.params, inputs))
            result = self.fn(*params)
            several = isinstance(result, (tuple, list))
            items = list(result) if several else [result]
            if not items:
                raise GraphError(f"composite {self.name!r}: the function returned no output")
            outs = tuple(
                as_nodes(self.name, item, *params)[0] if not isinstance(item, Node) else item for item in items
            )
            outs = tuple(o if o.graph is body else body.capture(o) for o in outs)
        finally:
            captures = body.seal()
        region = Region(body, params + tuple(captures.values()), outs, self.name, several)
        region.vjp = self.vjp  # kept with the body: every node that runs it (rebuilt ones too) uses it
        region.arguments = len(params)
        return region, tuple(captures)


def composite(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, vjp: Callable[..., Sequence[Any]] | None = None
) -> Any:
    """A composite op: ``fn`` (a function of nodes) traced once into a body, called as one node.

    Each call ``f(x, ...)`` is one node that prints as ``name(x, ...)``, owns the body, and
    computes what ``fn`` computes; the body is built once per graph and input shapes and
    dtypes, however many times it is called. Nodes of the graph that ``fn`` uses without taking
    them as arguments (weights, say) are captured: the node reads them as extra inputs.
    Derivatives go through the body, to any order, as composite nodes of their own (a
    derivative body recomputes the forward body's values it needs: one more run of the body
    per derivative call, the price of a graph that stays one call in size). With ``vjp``
    given, reverse mode uses it instead: ``vjp(g, out, *inputs)`` returns one cotangent (or
    None) per argument, built from symdiff ops, shaped like the argument after ``g``'s leading
    batch axes (``g`` is shaped like ``out`` with leading batch axes when a Jacobian or Hessian
    pushes a batch of seeds; for several outputs ``g`` and ``out`` are tuples, ``g`` holding None
    for an unused output). Forward mode is then refused (it would go through the body, which
    could disagree with the rule), and a saved graph keeps the body, not the rule.

    Parameters
    ----------
    fn : callable
        ``fn(*nodes) -> node`` or a tuple of nodes (then a call returns a tuple of nodes).
        Positional parameters only; their names name the body's variables.
    name : str, optional
        How calls print (an identifier); ``fn.__name__`` by default.
    vjp : callable, optional
        A reverse-mode rule for the arguments (see above).

    Returns
    -------
    Composite
        Callable on nodes and numbers (numbers become constants, as for any op). Also usable as
        a decorator: ``@sd.composite`` or ``@sd.composite(name="f")``.

    Raises
    ------
    GraphError
        If ``fn`` takes ``*args``, a name is not an identifier, or a node of a body is used
        outside it; a ``vjp`` that returns something other than nodes (ShapeError: of the wrong
        shape).
    NonDifferentiableError
        With ``vjp``: a derivative through a captured node (pass it as an argument instead), or
        in forward mode.

    Examples
    --------
    >>> g = sd.Graph(); x = g.variable("x", shape=(3,))
    >>> softclip = sd.composite(lambda x, c: c * sd.tanh(x / c), name="softclip")
    >>> y = sd.sum(softclip(x, 2.0) + softclip(2 * x, 2.0))
    >>> print(y)
    softclip(x, c) = c*tanh(x/c)
    sum(softclip(x, 2) + softclip(2*x, 2))
    >>> print(sd.evaluate(sd.grad(y, x), {x: [0.0, 0.0, 0.0]}))
    [3. 3. 3.]
    """
    if fn is None:
        return lambda f: composite(f, name=name, vjp=vjp)
    if name is None:
        name = getattr(fn, "__name__", "composite")
        name = "composite" if name == "<lambda>" else name
    return Composite(fn, name, vjp)


def _alive(node: Node) -> bool:
    """Whether ``node`` is still in its graph (not removed by a failed call's rollback)."""
    nodes = node.graph._nodes
    return node.index < len(nodes) and nodes[node.index] is node


def call(region: Region, inputs: Sequence[Node], attrs: tuple) -> Node:
    """The node that runs ``region`` on ``inputs`` (one per body parameter): one output's
    node, or a node with several outputs if the body has several (or returned a tuple)."""
    graph = inputs[0].graph
    for k, (x, p) in enumerate(zip(inputs, region.params)):
        if not shape_matches(p.shape, x.shape):
            raise GraphError(f"{region.name}: input {k} has shape {x.shape}, the body's {p.name!r} {p.shape}")
    outs = region.outputs
    if region.several:
        node = graph._make(
            "composite", tuple(inputs), attrs, None, None, tuple((o.shape, o.dtype) for o in outs), (region,)
        )
    else:
        node = graph._make("composite", tuple(inputs), attrs, outs[0].shape, outs[0].dtype, None, (region,))
    return node


def fresh_name(graph: Graph, base: str) -> str:
    name, k = base, 0
    while name in graph.variables:
        k += 1
        name = f"{base}{k}"
    return name


def _batch(t: Node, like: Node) -> int:
    return t.ndim - like.ndim


def batch_zeros(p: Node, seed: Node, nb: int) -> Node:
    """Zeros shaped ``seed``'s nb leading (batch) axes + ``p.shape``."""
    if not nb:
        return zeros_for(p)
    lead = zeros_like(reduce_sum(seed, tuple(range(nb, seed.ndim)))) if seed.ndim > nb else zeros_like(seed)
    return zeros_for(p, lead)


def _results(node: Node) -> tuple[Node, ...]:
    return outputs_of(node) if node.is_multi else (node,)


def _call_vjp(gs: tuple, node: Node, wanted: list[int]) -> list[Node | None]:
    """Reverse mode through a composite node: one derivative body per kind of cotangent."""
    region = node.regions[0]
    if region.vjp is not None:
        return _user_vjp(region, gs, node, wanted)
    present = tuple(k for k, g in enumerate(gs) if g is not None)
    key = ("vjp", present, tuple((gs[k].shape, gs[k].dtype) for k in present), tuple(wanted))
    derived = region.derived.get(key)
    if derived is None:
        body = region.graph
        with body._derivative_pass():
            seeds = tuple(
                body.variable(fresh_name(body, f"g_{region.outputs[k].name or 'out'}{k}"), gs[k].shape, gs[k].dtype)
                for k in present
            )
            nb = _batch(seeds[0], region.outputs[present[0]])
            params = [region.params[i] for i in wanted]
            found = reverse_pass([region.outputs[k] for k in present], list(seeds), params, region.name)
            outs = tuple(found[p] if p in found else batch_zeros(p, seeds[0], nb) for p in params)
        derived = Region(body, region.params + seeds, outs, f"{region.name}_vjp")
        region.derived[key] = derived
    name = dict(node._attrs)["name"]
    d = call(derived, node.inputs + tuple(gs[k] for k in present), (("name", f"{name}_vjp"),))
    results = _results(d)
    found_by_input = dict(zip(wanted, results))
    return [found_by_input.get(i) for i in range(len(node.inputs))]


def _call_jvp(ts: list, node: Node) -> list[Node | None]:
    """Forward mode through a composite node: one derivative body per kind of tangent."""
    region = node.regions[0]
    present = tuple(i for i, t in enumerate(ts) if t is not None)
    if not present:
        return [None] * len(_results(node))
    if region.vjp is not None:  # the body's forward mode could disagree with the user's rule
        raise NonDifferentiableError(
            f"composite {region.name!r} has a vjp rule, which serves reverse mode only; forward mode through "
            "this call (sd.jvp, or an hvp, hessian or jacobian where symdiff pushes tangents through it) would "
            "go through its body and could disagree with the rule: use reverse mode (grad, a jacobian of few "
            "outputs), or drop vjp="
        )
    key = ("jvp", present, tuple((ts[i].shape, ts[i].dtype) for i in present))
    derived = region.derived.get(key)
    if derived is None:
        body = region.graph
        with body._derivative_pass():
            params = [region.params[i] for i in present]
            tangents = tuple(
                body.variable(fresh_name(body, f"t_{p.name}"), ts[i].shape, ts[i].dtype)
                for i, p in zip(present, params)
            )
            nb = _batch(tangents[0], params[0])
            found = forward_pass(list(region.outputs), params, list(tangents), region.name)
            outs = tuple(
                full_tangent(found[y], y, nb) if y in found else batch_zeros(y, tangents[0], nb) for y in region.outputs
            )
        derived = Region(body, region.params + tangents, outs, f"{region.name}_jvp", region.several)
        region.derived[key] = derived
    name = dict(node._attrs)["name"]
    d = call(derived, node.inputs + tuple(ts[i] for i in present), (("name", f"{name}_jvp"),))
    return list(_results(d))


def _user_vjp(region: Region, gs: tuple, node: Node, wanted: list[int]) -> list[Node | None]:
    """The user's rule, checked: one node (or None) per argument, shaped like the argument after
    the cotangent's leading batch axes."""
    args = region.arguments
    captured = [i for i in wanted if i >= args]
    if captured:
        names = ", ".join(describe(node.inputs[i]) for i in captured)
        raise NonDifferentiableError(
            f"composite {region.name!r} has a vjp rule for its arguments, but the derivative needs its body's "
            f"captured {names}: pass {'them' if len(captured) > 1 else 'it'} as an argument instead"
        )
    g = gs if node.is_multi else gs[0]
    found = list(region.vjp(g, _results(node) if node.is_multi else node, *node.inputs[:args]))
    if len(found) != args:
        raise GraphError(f"composite {region.name!r}: its vjp returned {len(found)} cotangents for {args} arguments")
    first = next(c for c in gs if c is not None)
    nb = first.ndim - region.outputs[[k for k, c in enumerate(gs) if c is not None][0]].ndim
    for i in wanted:
        c, x = found[i], node.inputs[i]
        if c is None:
            continue
        if not isinstance(c, Node) or c.graph is not node.graph:
            raise GraphError(
                f"composite {region.name!r}: its vjp returned {type(c).__name__} for argument {i}; a rule returns "
                "nodes built from its arguments with symdiff ops (or None for no gradient)"
            )
        want = first.shape[:nb] + x.shape
        if len(c.shape) != len(want) or any(a is not None and b is not None and a != b for a, b in zip(c.shape, want)):
            raise ShapeError(
                f"composite {region.name!r}: its vjp returned shape {format_shape(c.shape)} for argument {i}, which "
                f"needs {format_shape(want)} (the cotangent's {nb} leading batch axes, then the argument's shape)"
            )
    return [found[i] if i in wanted else None for i in range(len(node.inputs))]


def _runs_body(*_: Any, **__: Any) -> Any:
    raise GraphError("a composite node runs its body: evaluate it through a plan (sd.evaluate, sd.compile)")


def _run_call(bodies: tuple, *args: Any, **_: Any) -> Any:
    return bodies[0](*args)


def _no_shape(*_: Any, **__: Any) -> tuple:
    raise GraphError("a composite node takes its shape from its body")


def _latex_call(node: Node, args: list, wrap: Any) -> tuple[str, int]:
    name = dict(node._attrs)["name"].replace("_", r"\_")
    return rf"\operatorname{{{name}}}\left({', '.join(a[0] for a in args)}\right)", 100


COMPOSITE = define_op(
    "composite",
    _runs_body,
    _no_shape,
    joint_vjp=_call_vjp,
    joint_jvp=_call_jvp,
    runs=_run_call,
    sparsity="body",
    text=lambda node, args, wrap: (f"{dict(node._attrs)['name']}({', '.join(a[0] for a in args)})", 100),
    latex=_latex_call,
    label=lambda node: dict(node._attrs)["name"],
    fold=False,
    sympy="body",
    doc="a call of a body (sd.composite); derivatives are calls of derivative bodies",
)
