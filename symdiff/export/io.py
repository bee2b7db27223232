"""Saving and loading graphs as JSON (format "symdiff-graph", version 3; versions 1 and 2 are read too).

The file is plain data: loading never runs code from it. Every node names an op of
the registry and is checked again by its shape and dtype rules; a file that is
malformed, refers to unknown ops, or does not fit together is rejected with a
GraphError that names the node and the problem.

A loaded graph is the same graph: the same nodes in the same order (``h.nodes[k]`` is
the k-th node saved), nothing merged or folded on the way in, and constants that
derivative passes intern by what they are (identity seeds, broadcast fills) interned the
same way again, so differentiating the loaded graph reuses them as the original would.

Format::

    {"format": "symdiff-graph", "version": 3,
     "nodes": [
       {"op": "variable", "name": "x", "shape": [null, 3], "dtype": "float64", "is_gradient": false},
       {"op": "constant", "dtype": "float64", "shape": [2], "value": [1.0, "inf"], "is_gradient": false},
       {"op": "constant", "dtype": "float64", "shape": [3, 3], "eye": true, "is_gradient": true},
       {"op": "constant", "dtype": "float64", "shape": [5000], "fill": 0.0, "is_gradient": true},
       {"op": "mul", "inputs": [0, 1], "attrs": {}, "is_gradient": true},
       {"op": "eigh", "inputs": [5], "attrs": {}, "is_gradient": false},
       {"op": "output", "inputs": [6], "attrs": {"index": 0}, "is_gradient": false},
       {"op": "composite", "inputs": [0, 1], "attrs": {"name": "softclip"}, "regions": [0], ...},
       ...],
     "outputs": {"loss": 4},
     "bodies": [{"name": "softclip", "parent": null, "nodes": [...]}],
     "regions": [{"body": 0, "name": "softclip", "params": [0, 1], "outputs": [4], "several": false,
                  "derived": [[{"tuple": ["vjp", ...]}, 1]]}, ...]}

Nodes are listed in the graph's order; ``inputs`` are indices of earlier nodes, and so are
the named ``outputs``. Non-finite numbers are the strings "nan", "-nan" (a NaN whose sign
bit is set, as ``0 * inf`` gives), "inf" and "-inf".
Attributes are JSON values, with tuples as {"tuple": [...]} and indices as {"index": [...]}.
A constant holds its values, or says it is an identity (``"eye"``: ``shape`` is
``s + s``) or one value broadcast (``"fill"``).

An op with several outputs (``eigh``) is one node, and each output it gives a node of op
``"output"`` (attribute ``index``), as in the graph. A node that runs bodies (``sd.composite``)
lists them in ``regions``, indices into the file's ``regions``; each region names its body
(an index into ``bodies``), its parameters and outputs (indices of that body's nodes), and the
derivative bodies built from it (``derived``: what each computes, and its region). A body is
saved once, however many nodes run it, with every node of its graph (the derivative bodies
appended to it included) in the format of the top-level ``nodes``; its ``parent`` is the body
around it (null: the graph itself). Bodies come after the bodies their nodes run. A loop
(``scan``; ``while_loop``, which runs a condition and a body) is saved so too, with its
attributes (a checkpointing policy as a tuple) and its derivative bodies; loaded, it runs and
differentiates as before. A loaded composite node differentiates through its body (a ``vjp=``
rule given to ``sd.composite`` is Python code, and is not saved). Version 2 files'
``eigvalsh``, ``eigh_vectors``, ``signdet`` and ``logabsdet`` nodes load as the outputs of one
``eigh`` or ``slogdet`` node.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from symdiff.errors import GraphError, SymdiffError
from symdiff.graph import Graph, Node, Region, check_dtype, install, normalize_shape, shape_matches
from symdiff.loops import make_scan, make_while
from symdiff.ops import REGISTRY
from symdiff.ops.core import OUTPUT, restore
from symdiff.ops.indexing import Index

FORMAT = "symdiff-graph"
VERSION = 3
READABLE = (1, 2, 3)
# the ops of version 2 that are outputs of one node now: op -> (its node's op, output)
_SPLIT = {"eigvalsh": ("eigh", 0), "eigh_vectors": ("eigh", 1), "signdet": ("slogdet", 0), "logabsdet": ("slogdet", 1)}
# ops that files may hold but that are now other ops' transposes: op -> (the op, its input)
_TRANSPOSED = {"untake": ("take", 0)}  # untake(g, x, indices, axis): take's transpose, an unindex
MAX_NODES = 10_000_000
_LOOPS = ("scan", "while_loop")  # nodes whose inputs are not their body's parameters one for one


def _number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        if math.isnan(v):
            return "-nan" if math.copysign(1.0, v) < 0 else "nan"
        return "inf" if v > 0 else "-inf"
    return v


def _encode_value(array: np.ndarray) -> list:
    return [_number(v) for v in np.asarray(array).reshape(-1).tolist()]


def _encode_attr(value: Any) -> Any:
    if isinstance(value, Index):
        return {"index": [list(part) if part[0] != "a" else ["a", list(part[1]), list(part[2])] for part in value.key]}
    if isinstance(value, tuple):
        return {"tuple": [_encode_attr(v) for v in value]}
    if isinstance(value, np.dtype):  # in what a derivative body computes (its cotangents' types)
        return {"dtype": value.str}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise GraphError(f"save: cannot store attribute value {value!r} of type {type(value).__name__}")


def _constant_entry(n: Node) -> dict[str, Any]:
    entry: dict[str, Any] = {"dtype": n.dtype.name, "shape": list(n.shape)}
    kind = n._key[2] if n._key[:2] == ("constant", "keyed") else None
    if kind == "eye":
        entry["eye"] = True
    elif kind == "uniform":
        entry["fill"] = _number(n.uniform)
    else:
        entry["value"] = _encode_value(n.value)
    return entry


def _node_entries(graph: Graph, position: dict[Node, int], region_ids: dict[Region, int]) -> list[dict[str, Any]]:
    nodes = []
    for n in graph._nodes:
        entry: dict[str, Any] = {"op": n.op}
        if n.op == "variable":
            entry.update(name=n.name, shape=list(n.shape), dtype=n.dtype.name)
        elif n.op == "constant":
            entry.update(_constant_entry(n))
        else:
            entry["inputs"] = [position[u] for u in n.inputs]
            entry["attrs"] = {k: _encode_attr(v) for k, v in n._attrs}
            if n.regions:
                entry["regions"] = [region_ids[r] for r in n.regions]
        entry["is_gradient"] = n.is_gradient
        nodes.append(entry)
    return nodes


def _bodies(graph: Graph) -> tuple[list[Graph], list[Region]]:
    """The body graphs that ``graph``'s nodes run (at any depth), each after the bodies its own
    nodes run; and every region of them (derivative bodies included), in the same order."""
    bodies: dict[Graph, None] = {}
    seen: set[Graph] = set()

    def visit(body: Graph) -> None:  # recursion as deep as bodies nest
        if body not in seen:
            seen.add(body)
            for n in body._nodes:
                for r in n.regions:
                    visit(r.graph)
            bodies[body] = None

    for n in graph._nodes:
        for r in n.regions:
            visit(r.graph)
    regions: dict[Region, None] = {}
    pending = [r for g in (graph, *bodies) for n in g._nodes for r in n.regions]
    while pending:
        r = pending.pop()
        if r not in regions:
            regions[r] = None
            pending.extend(r.derived.values())
    order = {g: k for k, g in enumerate(bodies)}
    return list(bodies), sorted(regions, key=lambda r: order[r.graph])


def to_json(graph: Graph, outputs: Mapping[str, Node] | None = None) -> dict[str, Any]:
    """The graph as a JSON-ready dict (see the module docstring for the format)."""
    named = _check_outputs(graph, outputs)
    bodies, regions = _bodies(graph)
    region_ids = {r: k for k, r in enumerate(regions)}
    body_ids = {g: k for k, g in enumerate(bodies)}
    positions = {g: {n: k for k, n in enumerate(g._nodes)} for g in (graph, *bodies)}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "nodes": _node_entries(graph, positions[graph], region_ids),
    }
    data["outputs"] = {name: positions[graph][node] for name, node in named.items()}
    if bodies:
        data["bodies"] = [
            {"name": b.name, "parent": body_ids.get(b.parent), "nodes": _node_entries(b, positions[b], region_ids)}
            for b in bodies
        ]
        data["regions"] = [
            {
                "body": body_ids[r.graph],
                "name": r.name,
                "params": [positions[r.graph][p] for p in r.params],
                "outputs": [positions[r.graph][o] for o in r.outputs],
                "several": r.several,
                "derived": [[_encode_attr(key), region_ids[d]] for key, d in r.derived.items()],
            }
            for r in regions
        ]
    return data


def _check_outputs(graph: Graph, outputs: Mapping[str, Node] | None) -> dict[str, Node]:
    if outputs is None:
        return dict(graph._outputs)
    if not isinstance(outputs, Mapping):
        raise GraphError(f"save: outputs must be a dict of name -> node, got {type(outputs).__name__}")
    for name, node in outputs.items():
        if not isinstance(name, str) or not name:
            raise GraphError(f"save: output names must be non-empty strings, got {name!r}")
        if not isinstance(node, Node):
            raise GraphError(f"save: output {name!r} is a {type(node).__name__}, not a node")
        if node.graph is not graph:
            raise GraphError(f"save: output {name!r} belongs to another graph")
    return dict(outputs)


def save(graph: Graph, path: str | pathlib.Path, outputs: Mapping[str, Node] | None = None) -> None:
    """Write ``graph`` to ``path`` as JSON, with ``outputs`` named; see :func:`load`."""
    data = to_json(graph, outputs)
    pathlib.Path(path).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def _graph_save(self: Graph, path: Any, outputs: dict[str, Node] | None = None) -> None:
    """Write the graph to ``path`` as JSON (read it back with :func:`symdiff.load`).

    The file keeps every node in order with its names, shapes, dtypes, constants and
    ``is_gradient``, and the ``outputs`` named here (``{"loss": loss, "grad": gw}``),
    which the loaded graph gives back as ``h.outputs["loss"]``. Its format is described
    in ``symdiff/export/io.py`` and ``docs/export.md``.

    >>> import tempfile, pathlib
    >>> g = sd.Graph(); w = g.variable("w", shape=(2,)); loss = sd.sum(w ** 2)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.json"
    >>> g.save(path, outputs={"loss": loss, "grad": sd.grad(loss, w)})
    >>> print(sd.load(path).outputs["grad"])
    2*w
    """
    save(self, path, outputs)


install(Graph, {"save": _graph_save})


# -- loading ------------------------------------------------------------------------------
class _MalformedError(SymdiffError):
    """A problem with the file's content; reported as a GraphError naming the node."""


def _need(condition: bool, problem: str) -> None:
    if not condition:
        raise _MalformedError(problem)


def _decode_number(v: Any) -> Any:
    if isinstance(v, str):
        _need(v in ("nan", "-nan", "inf", "-inf"), f"value {v!r} is not a number")
        return float(v)
    _need(isinstance(v, (int, float, bool)) and not isinstance(v, dict), f"value {v!r} is not a number")
    return v


def _decode_attr(value: Any) -> Any:
    if isinstance(value, dict):
        _need(len(value) == 1, f"attribute {value!r} is malformed")
        ((kind, items),) = value.items()
        if kind == "dtype":
            return check_dtype(items if isinstance(items, str) else None, "load")
        _need(isinstance(items, list), f"attribute {value!r} is malformed")
        if kind == "tuple":
            return tuple(_decode_attr(v) for v in items)
        if kind == "index":
            return Index(tuple(_decode_index_part(part) for part in items))
        raise _MalformedError(f"unknown attribute kind {kind!r}")
    _need(value is None or isinstance(value, (bool, int, float, str)), f"attribute {value!r} is malformed")
    return value


def _decode_index_part(part: Any) -> tuple:
    malformed = f"index part {part!r} is malformed"
    _need(isinstance(part, list) and part and part[0] in ("i", "s", "n", "a", "x"), malformed)
    kind, *rest = part
    if kind in ("i", "x"):
        _need(len(rest) == 1 and isinstance(rest[0], int), malformed)
    elif kind == "s":
        _need(len(rest) == 3 and all(v is None or isinstance(v, int) for v in rest), malformed)
    elif kind == "n":
        _need(not rest, malformed)
    else:
        _need(
            len(rest) == 2 and all(isinstance(v, int) for v in rest[0]) and all(isinstance(v, int) for v in rest[1]),
            malformed,
        )
        return ("a", tuple(rest[0]), tuple(rest[1]))
    return (kind, *rest)


def _leaf(graph: Graph, entry: dict[str, Any]) -> Node:
    dtype = check_dtype(entry.get("dtype"), "load")
    shape = normalize_shape(entry.get("shape"), "load")
    if entry["op"] == "variable":
        name = entry.get("name")
        _need(isinstance(name, str), "a variable has no name")
        return graph.variable(name, shape=shape, dtype=dtype)
    _need(None not in shape, "a constant has an unknown dimension")
    size = int(np.prod(shape, dtype=np.int64))
    if entry.get("eye") is True:
        half = len(shape) // 2
        _need(len(shape) % 2 == 0 and shape[:half] == shape[half:], f"an identity of shape {tuple(shape)}")
        n = int(np.prod(shape[:half], dtype=np.int64))
        return graph._restore_constant(
            np.eye(n, dtype=dtype).reshape(shape), ("constant", "keyed", "eye", n, shape, dtype.str)
        )
    if "fill" in entry:
        fill = _decode_number(entry["fill"])
        value = np.broadcast_to(np.array(fill, dtype=dtype), shape)
        return graph._restore_constant(value, ("constant", "keyed", "uniform", dtype.str, shape, fill))
    values = entry.get("value")
    _need(isinstance(values, list), "a constant has no value list")
    _need(len(values) == size, f"a constant of shape {tuple(shape)} has {len(values)} values")
    return graph._restore_constant(np.array([_decode_number(v) for v in values], dtype=dtype).reshape(shape))


def _op_node(graph: Graph, entry: dict[str, Any], built: list[Node], k: int, loading: _Loading) -> Node:
    op = entry["op"]
    if op in _SPLIT and loading.version < 3:
        return _split(graph, entry, built, k, loading)
    _need(op in REGISTRY or op in _TRANSPOSED, f"unknown op {op!r} (define it with sd.define_op before loading)")
    inputs = entry.get("inputs")
    _need(isinstance(inputs, list), "no input list")
    _need(
        all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in inputs),
        f"inputs {inputs!r} must be indices of earlier nodes",
    )
    attrs = entry.get("attrs", {})
    _need(isinstance(attrs, dict), "attrs is not an object")
    decoded = {key: _decode_attr(v) for key, v in attrs.items()}
    ids = entry.get("regions", [])
    _need(
        isinstance(ids, list) and all(isinstance(i, int) and 0 <= i < len(loading.regions) for i in ids),
        f"regions {ids!r} must be indices of the file's regions",
    )
    regions = tuple(loading.regions[i] for i in ids)
    _need(all(r is not None for r in regions), f"regions {ids!r}: a body must come before the nodes that run it")
    if op in _LOOPS and regions:
        return _loop(graph, op, [built[i] for i in inputs], decoded, regions)
    if op in _TRANSPOSED:
        partner, position = _TRANSPOSED[op]
        ct, *operands = (built[i] for i in inputs)
        return REGISTRY[partner].transpose_rule(position)(ct, *operands, **decoded)
    return restore(REGISTRY[op], [built[i] for i in inputs], decoded, regions)


def _loop(graph: Graph, op: str, inputs: list[Node], attrs: dict[str, Any], regions: tuple[Region, ...]) -> Node:
    """A loop node (``scan``, ``while_loop``), made as the loop makes it (its results from its body
    and attributes), its inputs checked against its bodies' parameters, and not merged."""
    if op == "scan":
        _need(len(regions) == 1, "a scan runs one body")
        nc, nx = attrs.get("carries"), attrs.get("xs")
        _need(isinstance(nc, int) and isinstance(nx, int) and 0 <= nc + nx <= len(inputs), "bad carries or xs")
        item = [x.shape[1:] if nc <= k < nc + nx else x.shape for k, x in enumerate(inputs)]
        _fits(regions[0], item[: len(regions[0].params)], inputs)
        before = len(graph)
        node = make_scan(regions[0], inputs, attrs)
    else:
        _need(len(regions) == 2, "a while_loop runs a condition and a body")
        nc, ncond = attrs.get("carries"), attrs.get("conds")
        _need(isinstance(nc, int) and isinstance(ncond, int) and 0 <= nc + ncond <= len(inputs), "bad carries or conds")
        init, ccaps, bcaps = inputs[:nc], inputs[nc : nc + ncond], inputs[nc + ncond :]
        _fits(regions[0], [x.shape for x in init + ccaps], init + ccaps)
        _fits(regions[1], [x.shape for x in init + bcaps], init + bcaps)
        before = len(graph)
        node = make_while(regions[0], regions[1], init, ccaps, bcaps, attrs)
    if len(graph) == before:  # an equal node was loaded already: this one stays a node of its own, as saved
        node = graph._append(
            Node(
                graph, op, node.inputs, node._attrs, None, None, None, None, None, node._key, node.results, node.regions
            )
        )
    return node


def _fits(region: Region, shapes: list[tuple], inputs: list[Node]) -> None:
    """Raise unless a loop's inputs (each step's item of a sequence) fit its body's parameters."""
    params = region.params
    fits = len(shapes) == len(params) and all(
        shape_matches(p.shape, s) and p.dtype == x.dtype for p, s, x in zip(params, shapes, inputs)
    )
    _need(fits, f"its inputs do not fit the parameters of its body {region.name!r}")


def _split(graph: Graph, entry: dict[str, Any], built: list[Node], k: int, loading: _Loading) -> Node:
    """A version 2 node of an op that is now an output of one node (``eigvalsh``: ``eigh``'s
    output 0): that output, of a node made once per input."""
    op, index = _SPLIT[entry["op"]]
    inputs = entry.get("inputs")
    valid = isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], int) and 0 <= inputs[0] < k
    _need(valid, f"inputs {inputs!r} must be the index of one earlier node")
    source = loading.split.get((op, inputs[0]))
    if source is None:
        source = loading.split[op, inputs[0]] = restore(REGISTRY[op], [built[inputs[0]]], {})
    return restore(OUTPUT, [source], {"index": index})


class _Loading:
    """What loading one file keeps between its graphs: its version, its regions (built when
    their body is), and the nodes made for version 2's split ops."""

    def __init__(self, version: int, count: int):
        self.version = version
        self.regions: list[Region | None] = [None] * count
        self.split: dict[tuple[str, int], Node] = {}


def _load_nodes(graph: Graph, entries: Any, loading: _Loading, where: str) -> list[Node]:
    """Append the nodes of ``entries`` to ``graph``: for each entry, its node."""
    _need(isinstance(entries, list), f"{where}no node list")
    _need(len(entries) <= MAX_NODES, f"{len(entries)} nodes is more than this reader accepts")
    built: list[Node] = []
    for k, entry in enumerate(entries):
        try:
            _need(isinstance(entry, dict) and isinstance(entry.get("op"), str), "not a node object")
            gradient = entry.get("is_gradient", False)
            _need(isinstance(gradient, bool), "is_gradient is not true or false")
            if entry["op"] in ("variable", "constant"):
                node = _leaf(graph, entry)
            else:
                node = _op_node(graph, entry, built, k, loading)
            node.is_gradient = gradient
            built.append(node)
        except (SymdiffError, TypeError, ValueError, KeyError, OverflowError) as exc:
            problem = str(exc) if isinstance(exc, _MalformedError) else f"{type(exc).__name__}: {exc}"
            raise GraphError(f"load: {where}node {k}: {problem}") from None
    return built


def _load_bodies(data: dict[str, Any], graph: Graph, loading: _Loading) -> None:
    """Build the file's bodies, and their regions as each body is built (derivative links last)."""
    bodies, regions = data.get("bodies", []), data.get("regions", [])
    _need(isinstance(bodies, list) and isinstance(regions, list), "bodies and regions must be lists")
    graphs = []
    for b, entry in enumerate(bodies):
        _need(isinstance(entry, dict), f"body {b} is not an object")
        name = entry.get("name")
        graphs.append(Graph(name if isinstance(name, str) else None))
    for b, entry in enumerate(bodies):  # each body inside the graph or another body; no cycles
        parent = entry.get("parent")
        _need(parent is None or (isinstance(parent, int) and 0 <= parent < len(graphs)), f"body {b}: bad parent")
        graphs[b].parent = graph if parent is None else graphs[parent]
    for b in range(len(bodies)):  # every parent set first: an inner body is saved before its parent
        chain, g = set(), graphs[b]
        while g is not graph:
            _need(g not in chain, f"body {b}: its parents form a cycle")
            chain.add(g)
            g = g.parent
    for k, entry in enumerate(regions):
        _need(isinstance(entry, dict) and entry.get("body") in range(len(graphs)), f"region {k}: bad body")
    for b, entry in enumerate(bodies):
        built = _load_nodes(graphs[b], entry.get("nodes"), loading, f"body {b}, ")
        for k, region in enumerate(regions):
            if region["body"] == b:
                loading.regions[k] = _region(graphs[b], region, built, k)
    for k, region in enumerate(regions):
        derived = region.get("derived", [])
        _need(isinstance(derived, list), f"region {k}: derived is not a list")
        for item in derived:
            valid = isinstance(item, list) and len(item) == 2 and item[1] in range(len(regions))
            _need(valid, f"region {k}: derived {item!r} is not [what it computes, a region's index]")
            key = _decode_attr(item[0])
            loading.regions[k].derived[key] = loading.regions[item[1]]


def _region(body: Graph, entry: dict[str, Any], built: list[Node], k: int) -> Region:
    def nodes(field: str) -> tuple[Node, ...]:
        ids = entry.get(field)
        valid = isinstance(ids, list) and all(isinstance(i, int) and 0 <= i < len(built) for i in ids)
        _need(valid, f"region {k}: {field} must be indices of its body's nodes")
        return tuple(built[i] for i in ids)

    params, outputs = nodes("params"), nodes("outputs")
    _need(all(p.op == "variable" for p in params), f"region {k}: a parameter is not a variable of its body")
    _need(bool(outputs) and not any(o.is_multi for o in outputs), f"region {k}: its outputs must be value nodes")
    name, several = entry.get("name"), entry.get("several")
    _need(isinstance(name, str) and isinstance(several, bool), f"region {k}: bad name or several")
    return Region(body, params, outputs, name, several)


def _named_outputs(data: dict[str, Any], built: list[Node]) -> dict[str, Node]:
    outputs = data.get("outputs", {})
    _need(isinstance(outputs, dict), "outputs is not an object")
    for name, k in outputs.items():
        _need(
            isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(built),
            f"output {name!r} is not the index of a node",
        )
    return {name: built[k] for name, k in outputs.items()}


def from_json(data: Any) -> Graph:
    """Rebuild a graph from the dict :func:`to_json` makes, checking everything."""
    try:
        _need(isinstance(data, dict), "the file does not hold a JSON object")
        _need(data.get("format") == FORMAT, f"not a symdiff graph (format {data.get('format')!r})")
        _need(data.get("version") in READABLE, f"unsupported version {data.get('version')!r}")
        name = data.get("name")
        graph = Graph(name if isinstance(name, str) else None)
        regions = data.get("regions", [])
        loading = _Loading(data["version"], len(regions) if isinstance(regions, list) else 0)
        _load_bodies(data, graph, loading)
        built = _load_nodes(graph, data.get("nodes"), loading, "")
        graph._outputs = _named_outputs(data, built)
    except _MalformedError as exc:
        raise GraphError(f"load: {exc}") from None
    except (SymdiffError, TypeError, ValueError, KeyError, AttributeError) as exc:
        if isinstance(exc, GraphError) and str(exc).startswith("load: "):
            raise
        raise GraphError(f"load: {type(exc).__name__}: {exc}") from None
    return graph


def _reject_constant(name: str) -> Any:
    raise _MalformedError(f"{name} is not JSON (non-finite numbers are written as strings)")


def load(path: str | pathlib.Path) -> Graph:
    """Read a graph saved with ``g.save(path)``: the same graph, and its named outputs.

    Loading never executes code from the file: every node must name an op that is
    registered (define your own ops before loading graphs that use them), and is
    checked again by its shape and dtype rules. Nodes keep their order and nothing is
    merged, so ``h.nodes[k]`` is the k-th node saved; variables keep their names
    (``h["x"]``), and the outputs named at saving are ``h.outputs[name]``.

    >>> import tempfile, pathlib
    >>> g = sd.Graph(); x = g.variable("x"); y = sd.sin(x) * x; dy = sd.grad(y, x)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "g.json"
    >>> g.save(path, outputs={"y": y, "dy": dy})
    >>> h = sd.load(path)
    >>> print(h.outputs["dy"], h.outputs["dy"].is_gradient, h.outputs["dy"].index == dy.index)
    sin(x) + x*cos(x) True True
    """
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, _MalformedError) as exc:
        raise GraphError(f"load: cannot read {str(path)!r}: {exc}") from None
    return from_json(data)
