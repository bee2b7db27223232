"""The graph as a networkx.DiGraph, for networkx's algorithms and drawing."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from symdiff.graph import Graph, Node, Region, ancestors, install
from symdiff.printing import short_text


def subgraph_nodes(graph: Graph, outputs: Node | Sequence[Node] | None) -> list[Node]:
    """All of ``graph``'s nodes, or only those ``outputs`` need, in topological order."""
    if outputs is None:
        return list(graph._nodes)
    return ancestors([outputs] if isinstance(outputs, Node) else outputs)


def to_networkx(graph: Graph, outputs: Node | Sequence[Node] | None = None) -> nx.DiGraph:
    """See :meth:`symdiff.Graph.to_networkx`."""
    return _digraph(graph, subgraph_nodes(graph, outputs), {})


def _digraph(graph: Graph, nodes: list[Node], bodies: dict[Region, nx.DiGraph]) -> nx.DiGraph:
    """``nodes`` as a DiGraph; the bodies they run as DiGraphs of their own, made once each."""
    G = nx.DiGraph(name=graph.name or "symdiff")
    for n in nodes:
        extra = {}
        if n.is_multi:  # shape and dtype per output; the output nodes carry them
            extra["results"] = [(shape, str(dtype)) for shape, dtype in n.results]
        if n.regions:
            extra["regions"] = [_body(r, bodies) for r in n.regions]
        G.add_node(
            n.index,
            op=n.op,
            name=n.name,
            shape=n.shape,
            dtype=None if n.dtype is None else str(n.dtype),
            is_gradient=n.is_gradient,
            label=short_text(n),
            **extra,
        )
    for n in nodes:
        for position, u in enumerate(n.inputs):
            # A node may use one input twice (x * x): a DiGraph keeps one edge, listing both positions.
            if G.has_edge(u.index, n.index):
                G.edges[u.index, n.index]["positions"].append(position)
            else:
                G.add_edge(u.index, n.index, position=position, positions=[position])
    return G


def _body(region: Region, bodies: dict[Region, nx.DiGraph]) -> nx.DiGraph:
    """A body as a DiGraph (keyed by its nodes' indices in its own graph), with graph attributes
    ``name``, ``params`` and ``outputs`` (node keys), made once however many nodes run it."""
    found = bodies.get(region)
    if found is None:
        found = bodies[region] = _digraph(region.graph, ancestors([*region.params, *region.outputs]), bodies)
        found.graph.update(
            name=region.name, params=[p.index for p in region.params], outputs=[o.index for o in region.outputs]
        )
    return found


def _graph_to_networkx(self: Graph, outputs: Node | list[Node] | None = None) -> nx.DiGraph:
    """The graph (or the part ``outputs`` need) as a ``networkx.DiGraph``.

    Nodes are keyed by their index in ``g.nodes`` and carry ``op``, ``name``,
    ``shape``, ``dtype``, ``is_gradient`` and ``label``; edges carry ``position``
    (which input of the consumer the edge feeds). A node with several outputs (``eigh``)
    has shape and dtype None and ``results``, a (shape, dtype) per output; each output is a
    node of op ``"output"``. A node that runs bodies (``sd.composite``) has ``regions``: a
    ``networkx.DiGraph`` per body, in this form, with graph attributes ``name``, ``params``
    and ``outputs`` (its node keys); a body run by several nodes is one DiGraph object.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> G = g.to_networkx()
    >>> G.nodes[x.index]["op"]
    'variable'
    """
    return to_networkx(self, outputs)


install(Graph, {"to_networkx": _graph_to_networkx})
