"""Showing and sharing graphs: Graphviz DOT, networkx, sympy."""
