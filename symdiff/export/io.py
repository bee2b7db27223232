"""Saving and loading graphs as JSON (format "symdiff-graph", version 2; version 1 is read too).

The file is plain data: loading never runs code from it. Every node names an op of
the registry and is checked again by its shape and dtype rules; a file that is
malformed, refers to unknown ops, or does not fit together is rejected with a
GraphError that names the node and the problem.

A loaded graph is the same graph: the same nodes in the same order (``h.nodes[k]`` is
the k-th node saved), nothing merged or folded on the way in, and constants that
derivative passes intern by what they are (identity seeds, broadcast fills) interned the
same way again, so differentiating the loaded graph reuses them as the original would.

Format::

    {"format": "symdiff-graph", "version": 2,
     "nodes": [
       {"op": "variable", "name": "x", "shape": [null, 3], "dtype": "float64", "is_gradient": false},
       {"op": "constant", "dtype": "float64", "shape": [2], "value": [1.0, "inf"], "is_gradient": false},
       {"op": "constant", "dtype": "float64", "shape": [3, 3], "eye": true, "is_gradient": true},
       {"op": "constant", "dtype": "float64", "shape": [5000], "fill": 0.0, "is_gradient": true},
       {"op": "mul", "inputs": [0, 1], "attrs": {}, "is_gradient": true},
       ...],
     "outputs": {"loss": 4}}

Nodes are listed in the graph's order; ``inputs`` are indices of earlier nodes, and so are
the named ``outputs``. Non-finite numbers are the strings "nan", "-nan" (a NaN whose sign
bit is set, as ``0 * inf`` gives), "inf" and "-inf".
Attributes are JSON values, with tuples as {"tuple": [...]} and indices as {"index": [...]}.
A constant holds its values, or says it is an identity (``"eye"``: ``shape`` is
``s + s``) or one value broadcast (``"fill"``).
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from symdiff.errors import GraphError, SymdiffError
from symdiff.graph import Graph, Node, check_dtype, normalize_shape
from symdiff.ops import REGISTRY
from symdiff.ops.core import restore
from symdiff.ops.indexing import Index

FORMAT = "symdiff-graph"
VERSION = 2
READABLE = (1, 2)
MAX_NODES = 10_000_000


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


def to_json(graph: Graph, outputs: Mapping[str, Node] | None = None) -> dict[str, Any]:
    """The graph as a JSON-ready dict (see the module docstring for the format)."""
    named = _check_outputs(graph, outputs)
    position = {n: k for k, n in enumerate(graph._nodes)}
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
        entry["is_gradient"] = n.is_gradient
        nodes.append(entry)
    data = {"format": FORMAT, "version": VERSION, "name": graph.name, "nodes": nodes}
    data["outputs"] = {name: position[node] for name, node in named.items()}
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


def _op_node(graph: Graph, entry: dict[str, Any], built: list[Node], k: int) -> Node:
    op = entry["op"]
    _need(op in REGISTRY, f"unknown op {op!r} (define it with sd.define_op before loading)")
    inputs = entry.get("inputs")
    _need(isinstance(inputs, list), "no input list")
    _need(
        all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in inputs),
        f"inputs {inputs!r} must be indices of earlier nodes",
    )
    attrs = entry.get("attrs", {})
    _need(isinstance(attrs, dict), "attrs is not an object")
    decoded = {key: _decode_attr(v) for key, v in attrs.items()}
    return restore(REGISTRY[op], [built[i] for i in inputs], decoded)


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
        entries = data.get("nodes")
        _need(isinstance(entries, list), "no node list")
        _need(len(entries) <= MAX_NODES, f"{len(entries)} nodes is more than this reader accepts")
        name = data.get("name")
        graph = Graph(name if isinstance(name, str) else None)
    except _MalformedError as exc:
        raise GraphError(f"load: {exc}") from None
    built: list[Node] = []
    for k, entry in enumerate(entries):
        try:
            _need(isinstance(entry, dict) and isinstance(entry.get("op"), str), "not a node object")
            gradient = entry.get("is_gradient", False)
            _need(isinstance(gradient, bool), "is_gradient is not true or false")
            node = _leaf(graph, entry) if entry["op"] in ("variable", "constant") else _op_node(graph, entry, built, k)
            node.is_gradient = gradient
            built.append(node)
        except (SymdiffError, TypeError, ValueError, KeyError, OverflowError) as exc:
            problem = str(exc) if isinstance(exc, _MalformedError) else f"{type(exc).__name__}: {exc}"
            raise GraphError(f"load: node {k}: {problem}") from None
    try:
        graph._outputs = _named_outputs(data, built)
    except _MalformedError as exc:
        raise GraphError(f"load: {exc}") from None
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
