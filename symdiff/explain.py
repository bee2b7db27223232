"""Back-propagation step by step, for learners: ``sd.explain(cost, wrt, values)``.

It walks the book's algorithm (Goodfellow et al., Alg. 6.2 and 6.5) on numbers: first the
forward values, node by node in topological order, then the grad_table filled node by node
in reverse topological order, each node's gradient the sum of one contribution per consumer
(the consumer's gradient times the local derivative along the edge). The contributions are
built by symdiff's own reverse pass (the same rules, the same order of sums), in a scratch
pass that is removed again: the learner's graph is left as it was, and the numbers are
exactly those of ``sd.grad``. ``print(ex)`` shows one line a step; ``ex.to_html(path)``
writes a page with the graph drawn at each step.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import pathlib
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from symdiff.autodiff import _cone, _contributions, _unbroadcast, add_all, gradient_pass
from symdiff.backends.base import unbound_error
from symdiff.errors import BackendError, GraphError, ShapeError
from symdiff.evaluate import _resolve, evaluate
from symdiff.export.dot import GRAD_COLOR, VALUE_COLOR
from symdiff.export.render import to_svg
from symdiff.graph import Node, ancestors, check_same_graph, describe, format_shape, node_list
from symdiff.ops import eye_like
from symdiff.plan import needed, unbound
from symdiff.printing import short_text

# A local derivative (the Jacobian of a consumer with respect to one input) is shown when it has
# at most this many elements; a larger one is only applied (its product with the gradient).
LOCAL_MAX = 256


@dataclasses.dataclass(frozen=True)
class Contribution:
    """What one consumer of a node passes back to it along one edge.

    ``value`` is ``local``'s transpose applied to ``upstream`` (for scalars, their product),
    shaped like the node; ``total`` is the sum of the node's contributions up to this one:
    the sum over the paths found so far.
    """

    consumer: Node  # the node that uses it (as its input ``position``)
    position: int
    upstream: Any  # d cost / d consumer: the consumer's gradient
    local: Any  # d consumer / d node: consumer.shape + node.shape; None where too large or not defined
    value: Any
    total: Any


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the walk: a forward value, or one entry of the grad_table.

    A forward step has ``gradient`` None and no contributions. A backward step's ``gradient``
    is d cost / d node, the sum of its ``contributions`` (the cost's own is 1, the start).
    ``name`` is how the text and the page call the node.
    """

    kind: str  # "forward" or "backward"
    node: Node
    name: str
    value: Any
    contributions: tuple[Contribution, ...] = ()
    gradient: Any = None


class Explanation:
    """The walk ``sd.explain`` made: ``steps`` (forward values, then the grad_table), the
    ``gradients`` of the cost with respect to each ``wrt`` (exactly ``sd.grad``'s), ``print``
    for one line a step, ``to_html`` for a page with the graph drawn at each step."""

    def __init__(
        self, cost: Node, wrt: list[Node], values: Mapping[Any, Any], name: str, steps: list[Step], gradients: list
    ):
        self.cost, self.wrt, self.values, self.name = cost, wrt, values, name
        self.steps, self.gradients = steps, gradients
        self._names = {s.node: s.name for s in steps}

    @property
    def forward(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "forward"]

    @property
    def backward(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "backward"]

    def line(self, step: Step) -> str:
        """One step as text: ``x + y = 3``, or ``∂f/∂(x + y) = 1 × -4 [via f] = -4``."""
        if step.kind == "forward":
            text = _definition(step.node)
            defined = "" if text == step.name else f" = {text}"
            return f"forward   {step.name}{defined} = {_number(step.value)}"
        d = f"∂{self.name}/∂{_wrapped(step.name)}"
        if not step.contributions:
            return f"backward  {d} = 1 (the start: grad_table[{self.name}] = 1)"
        terms = " + ".join(self._term(c) for c in step.contributions)
        if len(step.contributions) == 1 and _product(step.contributions[0]) is None:  # the term is the gradient
            return f"backward  {d} = {terms}"
        return f"backward  {d} = {terms} = {_gradient_text(step.gradient)}"

    def _via(self, c: Contribution) -> str:
        return self._names.get(c.consumer, f"#{c.consumer.index}")

    def _term(self, c: Contribution, via: bool = True) -> str:
        """A contribution as upstream × local (``1 × 3``, ``[0.5, 1] ⊙ [2, 4]``), or its value
        where the local derivative is not shown."""
        where = f" [via {self._via(c)}]" if via else ""
        product = _product(c)
        return f"{_number(c.value) if product is None else product}{where}"

    def __str__(self) -> str:
        width = len(str(len(self.steps)))
        return "\n".join(f"{k:>{width}}. {self.line(s)}" for k, s in enumerate(self.steps, 1))

    def __repr__(self) -> str:
        return f"<Explanation of {self.name}: {len(self.forward)} forward steps, {len(self.backward)} backward steps>"

    def to_html(self, path: str | pathlib.Path, title: str | None = None) -> pathlib.Path:
        """Write a self-contained HTML page (one file, no network) that shows the walk one frame
        a step: the graph (drawn by Graphviz, inline SVG) with the values computed so far, then
        the gradients arriving, the current node and the edges its contributions come along
        highlighted; prev/next buttons and the arrow keys move between frames.

        Returns the path. Raises BackendError when the Graphviz ``dot`` program is not
        installed, GraphError when the graph is too large to draw.
        """
        if shutil.which("dot") is None:
            raise BackendError(
                "explain: to_html draws the graph with the Graphviz 'dot' program, which is not installed; "
                "install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
                "conda: conda install graphviz), or print the explanation as text"
            )
        # the cost drawn under its name (the text's L), its op written below
        svg = to_svg({self.name: self.cost}, values=self.values, cost=self.cost, rankdir="LR")
        if svg is None:
            raise GraphError(f"explain: Graphviz could not draw the graph of {describe(self.cost)} (too large?)")
        svg = svg[svg.index("<svg") :]
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._page(svg, title or f"Backprop step by step: {self.name}"), encoding="utf-8")
        return path

    def _page(self, svg: str, title: str) -> str:
        frames, data = [], []
        for k, s in enumerate(self.steps):
            node_id = f"n{s.node.index}"
            item: dict[str, Any] = {
                "id": node_id,
                "kind": s.kind,
                "tag": s.name if s.node.op != "variable" and _TAGGED.fullmatch(s.name) else None,
            }
            details = ""
            if s.kind == "forward":
                item["value"] = "= " + _number(s.value) if s.value is not None else None
                item["edges"] = [[f"n{u.index}->{node_id}", None] for u in s.node.inputs]
            else:
                item["gradient"] = f"∂{self.name} = {_gradient_text(s.gradient)}"
                item["edges"] = [[f"{node_id}->n{c.consumer.index}", _number(c.value)] for c in s.contributions]
                rows = [
                    f"<li>via {html.escape(self._via(c))}: {html.escape(self._term(c, via=False))} = "
                    f"{html.escape(_number(c.value))}; sum of paths so far {html.escape(_gradient_text(c.total))}</li>"
                    for c in s.contributions
                ]
                details = f"<ul>{''.join(rows)}</ul>" if rows else ""
            data.append(item)
            hidden = "" if k == 0 else " hidden"
            frames.append(
                f'<section class="frame" data-step="{k}"{hidden}><p class="line"><b>{k + 1}.</b> '
                f"{html.escape(self.line(s))}</p>{details}</section>"
            )
        payload = json.dumps({"steps": data, "colors": {"value": VALUE_COLOR, "gradient": GRAD_COLOR}})
        return _PAGE.format(
            title=html.escape(title),
            count=len(self.steps),
            frames="\n".join(frames),
            svg=svg,
            data=payload.replace("</", "<\\/"),
            script=_SCRIPT,
            style=_STYLE,
        )


def explain(cost: Node, wrt: Node | Sequence[Node], values: Mapping[Any, Any], name: str | None = None) -> Explanation:
    """Back-propagation step by step: the forward values, then the grad_table filled node by
    node in reverse topological order (book Alg. 6.2/6.5), on the numbers ``values``.

    Parameters
    ----------
    cost : Node
        A scalar node (the cost).
    wrt : Node or list of Node
        Variables of the graph: the walk covers the nodes on a path from one of them to the cost.
    values : dict
        A value for every variable the cost needs, keyed by node or name (as for ``evaluate``).
    name : str, optional
        What the text calls the cost (``∂f/∂x``): by default the cost's name if it is a
        variable, else ``"f"``.

    Returns
    -------
    Explanation
        ``ex.steps`` (a list of :class:`Step`: node, value, contributions, gradient),
        ``ex.gradients`` (one array per ``wrt``, exactly what ``sd.grad`` evaluates to),
        ``print(ex)`` (one line a step), ``ex.to_html(path)`` (a page, one frame a step).
        The graph is left unchanged.

    Raises
    ------
    ShapeError
        If ``cost`` is not a scalar.
    GraphError
        If ``cost`` is not a node or a ``wrt`` is not a variable of its graph.
    UnboundVariableError
        Naming every variable the cost needs that ``values`` leaves out.
    NonDifferentiableError
        If the cost depends on a ``wrt`` only through ops that have no derivative.

    >>> g = sd.Graph(); x, y, z = g.variable("x"), g.variable("y"), g.variable("z")
    >>> ex = sd.explain((x + y) * z, [x, y, z], {x: -2.0, y: 5.0, z: -4.0})
    >>> print(ex)
     1. forward   x = -2
     2. forward   y = 5
     3. forward   z = -4
     4. forward   x + y = 3
     5. forward   f = (x + y)*z = -12
     6. backward  ∂f/∂f = 1 (the start: grad_table[f] = 1)
     7. backward  ∂f/∂(x + y) = 1 × -4 [via f] = -4
     8. backward  ∂f/∂z = 1 × 3 [via f] = 3
     9. backward  ∂f/∂y = -4 × 1 [via x + y] = -4
    10. backward  ∂f/∂x = -4 × 1 [via x + y] = -4
    >>> [float(v) for v in ex.gradients]
    [-4.0, -4.0, 3.0]
    """
    if not isinstance(cost, Node):
        raise GraphError(f"explain: cost must be a node, got {type(cost).__name__}")
    wrts, _ = node_list(wrt, "explain", "wrt")
    check_same_graph("explain", cost, *wrts)
    if cost.shape != ():
        raise ShapeError(
            f"explain: cost has shape {format_shape(cost.shape)}, not a scalar; back-propagation starts from "
            "one number: reduce it first (sd.sum, sd.mean)"
        )
    for k, w in enumerate(wrts):
        if w.op != "variable":
            raise GraphError(
                f"explain: wrt[{k}] is {describe(w)}, not a variable; explain differentiates with respect to "
                "variables (g.variable)"
            )
    graph = cost.graph
    bound, unknown = _resolve(graph, values, "explain")
    missing = unbound(needed([cost], bound), bound)
    if missing:
        raise unbound_error("explain", missing, unknown, graph)
    if name is None:
        name = cost.name if cost.op == "variable" else "f"
    with graph._scratch(), graph._derivative_pass():
        return _walk(cost, wrts, values, name)


def _walk(cost: Node, wrts: list[Node], values: Mapping[Any, Any], name: str) -> Explanation:
    """The walk, its nodes built in the scratch pass ``explain`` opens and evaluated at once.

    The reverse sweep is ``symdiff.autodiff``'s (its cone, its rules, its order of sums), with
    each contribution and each partial sum kept: the sums interned are the very nodes
    ``sd.grad`` builds, so the numbers are its numbers."""
    forward = [n for n in ancestors([cost]) if n.op != "constant" and not n.is_multi]
    cone = _cone([cost], wrts, "explain")
    in_cone = set(cone)
    seed = cost.graph.uniform_constant(1, (), cost.dtype)
    pending: dict[Node, list[tuple[Node | None, int, Node, Node | None]]] = {cost: [(None, 0, seed, None)]}
    by_output: dict[Node, list[list[tuple[Node, int, Node, Node | None]]]] = {}
    table: dict[Node, Any] = {}  # the grad_table: a node, or a tuple for a node with several outputs
    walked: list[tuple[Node, list[tuple[Node, int, Node, Node | None, Node | None]]]] = []
    for n in reversed(cone):
        if n.is_multi:
            slots = by_output.pop(n, None)
            if slots is None:
                continue
            table[n] = tuple(add_all([p[2] for p in slot]) if slot else None for slot in slots)
            walked.append((n, [(*p, None) for slot in slots for p in slot]))
        else:
            parts = pending.pop(n, None)
            if parts is None:
                continue
            sums = [add_all([p[2] for p in parts[: k + 1]]) for k in range(len(parts))]
            table[n] = sums[-1]
            walked.append((n, [(*p, total) for p, total in zip(parts, sums) if p[0] is not None]))
            if n.op == "output":
                source = n.inputs[0]
                slots = by_output.setdefault(source, [[] for _ in source.results])
                slots[n._attrs[0][1]].append((n, 0, table[n], None))
                continue
        if not n.inputs:
            continue
        reached = [u in in_cone for u in n.inputs]
        for i, (u, c) in enumerate(zip(n.inputs, _contributions(n, table[n], reached))):
            if c is not None:
                pending.setdefault(u, []).append((n, i, _unbroadcast(c, u, 0, n), _local(n, i, u)))
    gradients = gradient_pass(cost, wrts, None, "explain")

    # everything evaluated in one call: each node once
    todo: dict[Node, int] = {}

    def slot(node: Node | None) -> int | None:
        return None if node is None else todo.setdefault(node, len(todo))

    plan_forward = [(n, slot(n)) for n in forward]
    plan_backward = []
    for n, parts in walked:
        g = table[n]
        g_slots = tuple(slot(x) for x in g) if isinstance(g, tuple) else slot(g)
        contributions = [
            (c, i, None if c.is_multi else slot(table[c]), slot(local), slot(v), slot(total))
            for c, i, v, local, total in parts
        ]
        plan_backward.append((n, g_slots, contributions))
    grad_slots = [slot(x) for x in gradients]
    computed = evaluate(list(todo), values)

    def value(k: Any) -> Any:
        if isinstance(k, tuple):
            return tuple(value(x) for x in k)
        return None if k is None else computed[k]

    names = _names(forward, cost, name)
    forward_slots = dict(plan_forward)
    steps = [Step("forward", n, names[n], value(k)) for n, k in plan_forward]
    for n, g, contributions in plan_backward:
        made = tuple(
            Contribution(c, i, value(up), value(local), value(v), value(total))
            for c, i, up, local, v, total in contributions
        )
        known = value(forward_slots.get(n))
        steps.append(Step("backward", n, names.get(n) or _name(n, cost, name), known, made, value(g)))
    return Explanation(cost, wrts, values, name, steps, [value(k) for k in grad_slots])


def _product(c: Contribution) -> str | None:
    """The chain rule's product for one edge, as a learner writes it: ``1 × 3`` for a scalar
    consumer (its gradient times the local derivative); ``up ⊙ d`` for an elementwise one (the
    consumer's gradient times the derivative of each element by its own input: the local
    Jacobian's diagonal); ``up · J`` otherwise (a row of J per element of the consumer: J
    written as a matrix, consumer elements by input elements). None where the local
    derivative is not shown (large, or not defined)."""
    if c.local is None:
        return None
    up, local = np.asarray(c.upstream), np.asarray(c.local)
    if up.ndim == 0:
        return f"{_number(up)} × {_number(local)}"
    inputs = local.size // max(up.size, 1)
    jacobian = local.reshape(up.size, inputs)
    value_shape = np.shape(c.value)
    if up.shape == value_shape and inputs == up.size and np.count_nonzero(jacobian - np.diag(np.diag(jacobian))) == 0:
        return f"{_number(up)} ⊙ {_number(np.diag(jacobian).reshape(up.shape))}"
    return f"{_number(up)} · {_number(jacobian)}"


def _local(n: Node, i: int, u: Node) -> Node | None:
    """d n / d u along input ``i`` alone, shaped ``n.shape + u.shape``, built with ``n``'s own rule
    (its vector-Jacobian product applied to the identity); None where it would be large."""
    if n.is_multi or n.size is None or u.size is None or n.size * u.size > LOCAL_MAX:
        return None
    reached = [k == i for k in range(len(n.inputs))]
    if n.ndim == 0:
        seed = n.graph.uniform_constant(1, (), n.dtype)
    else:
        seed = eye_like(n)
    c = _contributions(n, seed, reached)[i]
    return None if c is None else _unbroadcast(c, u, n.ndim, n)


_TAGGED = re.compile(r"t\d+|#\d+")  # a node called by a line name: the page writes it beside the node


def _names(forward: Sequence[Node], cost: Node, cost_name: str) -> dict[Node, str]:
    """How the text calls each node: the cost's name, a variable's, its expression if short,
    else ``t1``, ``t2``, ... in the order the forward pass computes them (no variable's name),
    each defined in its forward step (``t1 = exp(-(w0*x0 + w1*x1 + w2))``)."""
    taken = {n.name for n in forward if n.op == "variable"} | {cost_name}
    names: dict[Node, str] = {}
    counter = itertools.count(1)
    for n in forward:
        if n is cost:
            names[n] = cost_name
        elif n.op == "variable":
            names[n] = n.name
        else:
            text = short_text(n, 24)
            if "#" in text or "\n" in text:
                text = next(f"t{k}" for k in counter if f"t{k}" not in taken)
            names[n] = text
    return names


def _name(n: Node, cost: Node, cost_name: str) -> str:
    """A node outside the forward walk (none has a name there): its expression if short, else ``#index``."""
    if n is cost:
        return cost_name
    if n.op == "variable":
        return n.name
    text = short_text(n, 24)
    return f"#{n.index}" if "#" in text or "\n" in text else text


def _definition(n: Node) -> str:
    return n.name if n.op == "variable" else short_text(n, 60)


def _wrapped(name: str) -> str:
    return f"({name})" if re.search(r"[ +\-*/@<>=]", name) else name


def _scalar(v: Any) -> str:
    if isinstance(v, float | np.floating):
        text = f"{float(v):.4g}"
        return "0" if text == "-0" else text
    return str(v)


def _number(value: Any) -> str:
    """A value as a learner reads it: 4 significant digits, small arrays written out."""
    if value is None:
        return "0"
    arr = np.asarray(value)
    if arr.ndim == 0:
        return _scalar(arr.item())
    if arr.size <= 9:
        return np.array2string(arr, separator=", ", formatter={"all": _scalar}).replace("\n", "")
    mean, largest = _scalar(float(arr.mean())), _scalar(float(abs(arr).max()))
    return f"array {format_shape(arr.shape)}, mean {mean}, max |.| {largest}"


def _gradient_text(g: Any) -> str:
    """A gradient: a value, or for a node with several outputs one value per output."""
    if isinstance(g, tuple):
        return "(" + ", ".join(_number(x) for x in g) + ")"
    return _number(g)


_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #212529; }
h1 { font-size: 1.3em; }
#controls { margin: 0.5em 0; }
#controls button { font-size: 1em; padding: 0.2em 0.8em; }
#frames { min-height: 4.5em; font-family: Menlo, Consolas, monospace; font-size: 0.95em; }
#frames ul { margin: 0.2em 0; }
#graph svg { max-width: 100%; height: auto; }
.current > polygon, .current > ellipse { stroke: #1971c2; stroke-width: 3px; }
.edge.feeding > path { stroke: #2b8a3e; stroke-width: 2.5px; }
.edge.feeding > polygon { stroke: #2b8a3e; fill: #2b8a3e; }
.edge.arriving > path { stroke: #c92a2a; stroke-width: 2.5px; }
.edge.arriving > polygon { stroke: #c92a2a; fill: #c92a2a; }
.tag { fill: #868e96; font-size: 9px; }
.contribution { fill: #c92a2a; font-size: 10px; font-weight: bold; paint-order: stroke;
  stroke: #ffffff; stroke-width: 3px; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("explain-data").textContent);
  var steps = data.steps;
  var frames = Array.prototype.slice.call(document.querySelectorAll("section.frame"));
  var svg = document.querySelector("#graph svg");
  var top = svg.querySelector("g.graph") || svg;
  var overlay = document.createElementNS(NS, "g");
  top.appendChild(overlay);
  var nodes = {}, edges = {};
  Array.prototype.forEach.call(svg.querySelectorAll("g.node"), function (g) {
    nodes[g.querySelector("title").textContent] = g;
  });
  Array.prototype.forEach.call(svg.querySelectorAll("g.edge"), function (g) {
    // "n3->n5:ne": an operand's edge names the port it enters at; the steps name nodes only
    edges[g.querySelector("title").textContent.replace(/:[a-z_]+(?=-|$)/g, "")] = g;
  });
  // each drawn node's value and gradient rows, centred so that any text fits
  var rows = {};
  function row(g, color, below) {
    var found = null;
    Array.prototype.forEach.call(g.querySelectorAll("text"), function (t) {
      if ((t.getAttribute("fill") || "").toLowerCase() === color.toLowerCase()) { found = t; }
    });
    var box = g.getBBox();
    if (found === null) {
      found = document.createElementNS(NS, "text");
      found.setAttribute("y", box.y + box.height + 11 * below);
      found.setAttribute("font-size", "11");
      found.setAttribute("fill", color);
      g.appendChild(found);
    }
    found.setAttribute("text-anchor", "middle");
    found.setAttribute("x", box.x + box.width / 2);
    found.textContent = "";
    return found;
  }
  steps.forEach(function (s) {
    var g = nodes[s.id];
    if (g && !rows[s.id]) {
      if (s.tag) {  // the name the text gives a node without one (#12)
        var box = g.getBBox(), tag = document.createElementNS(NS, "text");
        tag.setAttribute("class", "tag");
        tag.setAttribute("x", box.x + box.width / 2);
        tag.setAttribute("y", box.y - 2);
        tag.setAttribute("text-anchor", "middle");
        tag.textContent = s.tag;
        g.appendChild(tag);
      }
      rows[s.id] = { value: row(g, data.colors.value, 1), gradient: row(g, data.colors.gradient, 2) };
    }
  });
  var current = 0;
  function show(k) {
    k = Math.max(0, Math.min(steps.length - 1, k));
    current = k;
    frames.forEach(function (f, i) { f.hidden = i !== k; });
    var values = {}, gradients = {};
    for (var i = 0; i <= k; i++) {
      if (steps[i].kind === "forward") { values[steps[i].id] = steps[i].value; }
      else { gradients[steps[i].id] = steps[i].gradient; }
    }
    Object.keys(rows).forEach(function (id) {
      rows[id].value.textContent = values[id] || "";
      rows[id].gradient.textContent = gradients[id] || "";
    });
    Object.keys(nodes).forEach(function (id) { nodes[id].classList.remove("current"); });
    Object.keys(edges).forEach(function (id) { edges[id].classList.remove("feeding", "arriving"); });
    while (overlay.firstChild) { overlay.removeChild(overlay.firstChild); }
    var s = steps[k];
    if (nodes[s.id]) { nodes[s.id].classList.add("current"); }
    s.edges.forEach(function (e) {
      var g = edges[e[0]];
      if (!g) { return; }
      g.classList.add(s.kind === "forward" ? "feeding" : "arriving");
      var path = g.querySelector("path");
      if (e[1] !== null && path) {
        var at = path.getPointAtLength(path.getTotalLength() / 2);
        var t = document.createElementNS(NS, "text");
        t.setAttribute("class", "contribution");
        t.setAttribute("x", at.x);
        t.setAttribute("y", at.y - 3);
        t.setAttribute("text-anchor", "middle");
        t.textContent = e[1];
        overlay.appendChild(t);
      }
    });
    document.getElementById("counter").textContent = (k + 1) + " / " + steps.length;
    document.body.setAttribute("data-frame", String(k));
  }
  document.getElementById("prev").addEventListener("click", function () { show(current - 1); });
  document.getElementById("next").addEventListener("click", function () { show(current + 1); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowRight" || e.key === "ArrowDown") { show(current + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") { show(current - 1); e.preventDefault(); }
    else if (e.key === "Home") { show(0); } else if (e.key === "End") { show(steps.length - 1); }
  });
  document.body.setAttribute("data-frames", String(frames.length));
  var hash = window.location.hash;
  if (hash === "#check") {  // every frame drawn once (a test of the page)
    for (var j = 0; j < steps.length; j++) { show(j); }
    document.body.setAttribute("data-checked", String(steps.length));
    show(0);
  } else {
    var m = /^#frame=(\d+)$/.exec(hash);
    show(m ? parseInt(m[1], 10) : 0);
  }
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body data-steps="{count}">
<h1>{title}</h1>
<p>The forward values node by node, then the gradients arriving in reverse order: each node's
gradient is the sum of what its consumers pass back (their gradient times the local derivative).
Use the buttons or the arrow keys.</p>
<div id="controls"><button id="prev" type="button">&#9664; prev</button>
<span id="counter">1 / {count}</span>
<button id="next" type="button">next &#9654;</button></div>
<div id="frames">
{frames}
</div>
<div id="graph">
{svg}
</div>
<script type="application/json" id="explain-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
