"""The graph as a networkx.DiGraph, for networkx's algorithms and drawing."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from symdiff.graph import Graph, Node, ancestors
from symdiff.printing import short_text


def subgraph_nodes(graph: Graph, outputs: Node | Sequence[Node] | None) -> list[Node]:
    """All of ``graph``'s nodes, or only those ``outputs`` need, in topological order."""
    if outputs is None:
        return list(graph._nodes)
    return ancestors([outputs] if isinstance(outputs, Node) else outputs)


def to_networkx(graph: Graph, outputs: Node | Sequence[Node] | None = None) -> nx.DiGraph:
    """See :meth:`symdiff.Graph.to_networkx`."""
    G = nx.DiGraph(name=graph.name or "symdiff")
    nodes = subgraph_nodes(graph, outputs)
    for n in nodes:
        G.add_node(
            n.index,
            op=n.op,
            name=n.name,
            shape=n.shape,
            dtype=str(n.dtype),
            is_gradient=n.is_gradient,
            label=short_text(n),
        )
    for n in nodes:
        for position, u in enumerate(n.inputs):
            # A node may use one input twice (x * x): a DiGraph keeps one edge, listing both positions.
            if G.has_edge(u.index, n.index):
                G.edges[u.index, n.index]["positions"].append(position)
            else:
                G.add_edge(u.index, n.index, position=position, positions=[position])
    return G
