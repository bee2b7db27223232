"""Saving and loading graphs as JSON (format "symdiff-graph", version 1).

The file is plain data: loading never runs code from it. Every node names an op of
the registry and is rebuilt through it, so its shape rule checks it again; a file
that is malformed, refers to unknown ops, or does not fit together is rejected with
a GraphError that names the node and the problem.

Format::

    {"format": "symdiff-graph", "version": 1,
     "nodes": [
       {"op": "variable", "name": "x", "shape": [null, 3], "dtype": "float64", "is_gradient": false},
       {"op": "constant", "dtype": "float64", "shape": [2], "value": [1.0, "inf"], "is_gradient": false},
       {"op": "mul", "inputs": [0, 1], "attrs": {}, "is_gradient": true},
       ...]}

Nodes are listed in the graph's order; ``inputs`` are indices of earlier nodes.
Non-finite numbers are the strings "nan", "inf" and "-inf". Attributes are JSON
values, with tuples as {"tuple": [...]} and indices as {"index": [...]}.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

from symdiff.errors import GraphError, SymdiffError
from symdiff.graph import Graph, Node, check_dtype, normalize_shape
from symdiff.ops import REGISTRY, apply
from symdiff.ops.shape import Index

FORMAT = "symdiff-graph"
VERSION = 1
MAX_NODES = 10_000_000


def _number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
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


def to_json(graph: Graph) -> dict[str, Any]:
    """The graph as a JSON-ready dict (see the module docstring for the format)."""
    position = {n: k for k, n in enumerate(graph._nodes)}
    nodes = []
    for n in graph._nodes:
        entry: dict[str, Any] = {"op": n.op}
        if n.op == "variable":
            entry.update(name=n.name, shape=list(n.shape), dtype=n.dtype.name)
        elif n.op == "constant":
            entry.update(dtype=n.dtype.name, shape=list(n.shape), value=_encode_value(n.value))
        else:
            entry["inputs"] = [position[u] for u in n.inputs]
            entry["attrs"] = {k: _encode_attr(v) for k, v in n._attrs}
        entry["is_gradient"] = n.is_gradient
        nodes.append(entry)
    return {"format": FORMAT, "version": VERSION, "name": graph.name, "nodes": nodes}


def save(graph: Graph, path: str | pathlib.Path) -> None:
    """Write ``graph`` to ``path`` as JSON; see :func:`load`."""
    pathlib.Path(path).write_text(json.dumps(to_json(graph), separators=(",", ":")), encoding="utf-8")


# -- loading ------------------------------------------------------------------------------
class _MalformedError(SymdiffError):
    """A problem with the file's content; reported as a GraphError naming the node."""


def _need(condition: bool, problem: str) -> None:
    if not condition:
        raise _MalformedError(problem)


def _decode_number(v: Any) -> Any:
    if isinstance(v, str):
        _need(v in ("nan", "inf", "-inf"), f"value {v!r} is not a number")
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
    _need(isinstance(part, list) and part and part[0] in ("i", "s", "n", "a"), malformed)
    kind, *rest = part
    if kind == "i":
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
    values = entry.get("value")
    _need(isinstance(values, list), "a constant has no value list")
    size = int(np.prod(shape, dtype=np.int64))
    _need(len(values) == size, f"a constant of shape {tuple(shape)} has {len(values)} values")
    return graph.constant(np.array([_decode_number(v) for v in values], dtype=dtype).reshape(shape))


def from_json(data: Any) -> Graph:
    """Rebuild a graph from the dict :func:`to_json` makes, checking everything."""
    try:
        _need(isinstance(data, dict), "the file does not hold a JSON object")
        _need(data.get("format") == FORMAT, f"not a symdiff graph (format {data.get('format')!r})")
        _need(data.get("version") == VERSION, f"unsupported version {data.get('version')!r}")
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
            op = entry["op"]
            gradient = entry.get("is_gradient", False)
            _need(isinstance(gradient, bool), "is_gradient is not true or false")
            context = graph._derivative_pass() if gradient else graph._transaction()
            with context:
                if op in ("variable", "constant"):
                    built.append(_leaf(graph, entry))
                    continue
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
                built.append(apply(REGISTRY[op], *(built[i] for i in inputs), **decoded))
        except (SymdiffError, TypeError, ValueError, KeyError, OverflowError) as exc:
            problem = str(exc) if isinstance(exc, _MalformedError) else f"{type(exc).__name__}: {exc}"
            raise GraphError(f"load: node {k}: {problem}") from None
    return graph


def _reject_constant(name: str) -> Any:
    raise _MalformedError(f"{name} is not JSON (non-finite numbers are written as strings)")


def load(path: str | pathlib.Path) -> Graph:
    """Read a graph saved with ``g.save(path)``.

    Loading never executes code from the file: every node must name an op that is
    registered (define your own ops before loading graphs that use them), and is
    rebuilt through it, shape checks included. Variables keep their names, so
    ``g["x"]`` finds them; nodes keep their order, so ``g.nodes[k]`` is the k-th.

    >>> import tempfile, pathlib
    >>> g = sd.Graph(); x = g.variable("x"); dy = sd.grad(sd.sin(x) * x, x)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "g.json"
    >>> g.save(path)
    >>> h = sd.load(path)
    >>> print(h.nodes[-1], h.nodes[-1].is_gradient)
    sin(x) + x*cos(x) True
    """
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, _MalformedError) as exc:
        raise GraphError(f"load: cannot read {str(path)!r}: {exc}") from None
    return from_json(data)
