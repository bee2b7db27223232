"""Graph and Node: the immutable, interned vertices of a symdiff computation.

A :class:`Graph` owns its nodes and only grows by appending. Building the same
op on the same inputs with the same attributes twice returns the node built the
first time (interning), so equal subexpressions are one node: derivative graphs
share work with the forward graph and with each other by construction.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from symdiff.errors import DTypeError, GraphError, ShapeError

Shape = tuple  # tuple[int | None, ...]; None is a dimension known only at evaluation

DEFAULT_DTYPE = np.dtype(np.float64)
# Constants up to this many elements are interned by value (cheap to hash).
INTERN_MAX_SIZE = 4096
_ALLOWED_KINDS = "biuf"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_dtype(dtype: Any, what: str) -> np.dtype:
    """Return ``dtype`` as a numpy dtype, or raise DTypeError if symdiff cannot hold it."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"{what}: {dtype!r} is not a dtype") from exc
    if dt.kind not in _ALLOWED_KINDS:
        raise DTypeError(
            f"{what}: dtype {dt} is not supported; symdiff holds float, integer and "
            "boolean values (complex, object and string values are not)"
        )
    return dt


def normalize_shape(shape: Any, what: str) -> Shape:
    """Return ``shape`` as a tuple of non-negative ints and Nones, or raise ShapeError."""
    if shape is None:
        return ()
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as exc:
        raise ShapeError(f"{what}: shape {shape!r} is not a tuple of ints") from exc
    out = []
    for d in dims:
        if d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise ShapeError(f"{what}: shape {shape!r} has dimension {d!r}; each dimension is an int >= 0 or None")
    return tuple(out)


def format_shape(shape: Shape) -> str:
    """``(None, 3)`` -> ``'(?, 3)'``, the way shapes appear in messages."""
    dims = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def shape_matches(static: Shape, actual: tuple[int, ...]) -> bool:
    """True if a runtime shape conforms to a static shape (None matches any size)."""
    return len(static) == len(actual) and all(s is None or s == a for s, a in zip(static, actual))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk pass over a graph.

    Its full collections walk every live node; on a graph of 10^4-10^5 nodes they
    make building derivatives and compiling grow faster than linearly. The previous
    state is restored afterwards; nothing a pass creates needs collecting during it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def describe(node: Node) -> str:
    """How messages name a node: ``variable 'x'`` or ``node #12 (mul)``."""
    return f"variable {node.name!r}" if node.op == "variable" else f"node #{node.index} ({node.op})"


def node_list(value: Any, what: str, arg: str, allow_empty: bool = False) -> tuple[list[Node], bool]:
    """``value`` (a node, or a list or tuple of nodes) as a list, and whether it was one node.

    Raises GraphError naming ``what`` (the function) and ``arg`` (the argument) otherwise.
    """
    single = isinstance(value, Node)
    items = [value] if single else value
    if not isinstance(items, (list, tuple)) or not (items or allow_empty):
        raise GraphError(f"{what}: {arg} must be a node or a non-empty list of nodes, got {type(value).__name__}")
    for k, n in enumerate(items):
        if not isinstance(n, Node):
            raise GraphError(f"{what}: {arg}[{k}] is a {type(n).__name__}, not a node of the graph")
    return list(items), single


def check_same_graph(what: str, *nodes: Node) -> None:
    """Raise GraphError if the nodes do not all belong to one graph."""
    for n in nodes[1:]:
        if n.graph is not nodes[0].graph:
            raise GraphError(f"{what}: {describe(n)} belongs to a different graph than {describe(nodes[0])}")


def ancestors(roots: Iterable[Node], inputs_of: Callable[[Node], Iterable[Node]] | None = None) -> list[Node]:
    """``roots`` and every node they depend on, in topological order (no recursion).

    ``inputs_of(node)`` chooses which inputs to follow (all of them by default).
    """
    follow = inputs_of or (lambda n: n.inputs)
    seen: set[Node] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(follow(n))
    return sorted(seen, key=lambda n: n.index)


def consumers(nodes: Iterable[Node], outputs: Iterable[Node] = ()) -> tuple[dict[Node, int], dict[Node, Node]]:
    """How many times each node is used as an input among ``nodes`` (an output counts as one
    use), and the last of ``nodes`` that uses it. One count for the evaluation plan,
    simplification, printing and the sympy export."""
    uses: dict[Node, int] = dict.fromkeys(outputs, 1)
    consumer: dict[Node, Node] = {}
    for n in nodes:
        for u in n.inputs:
            uses[u] = uses.get(u, 0) + 1
            consumer[u] = n
    return uses, consumer


class Node:
    """One value in a :class:`Graph`: an op applied to input nodes.

    Nodes are immutable and compare by identity (they are dict keys). Arithmetic
    operators build new nodes: ``+ - * / ** @``, unary ``-``, ``x[i]``, ``x.T``;
    ``<, <=, >, >=`` build elementwise comparisons (use :func:`symdiff.equal` for
    ``==``, which stays identity). The operators and numpy-style methods (``x.sum()``,
    ``x.astype``, ``np.sum(x)``) are the op table's (``symdiff.ops.methods``), the text of
    ``repr`` and ``str`` the printers' (``symdiff.printing``): those layers sit above this
    module and install them (``install``) when symdiff is imported.

    Attributes
    ----------
    op : str
        The op's name (``"mul"``, ``"sin"``, ``"matmul"``, ``"variable"``, ``"constant"``).
    inputs : tuple of Node
    name : str or None
        The variable's name; None for other nodes.
    shape : tuple
        Static shape; ``None`` entries are known only at evaluation.
    dtype : numpy.dtype
    graph : Graph
    is_gradient : bool
        True if a derivative pass (grad, jacobian, hessian, hvp, jvp) created it.
    value : numpy.ndarray or None
        The (read-only) value of a constant; None for other nodes.
    """

    __slots__ = (
        "graph",
        "op",
        "inputs",
        "_attrs",
        "shape",
        "dtype",
        "name",
        "is_gradient",
        "index",
        "value",
        "uniform",
        "origin",
        "results",
        "regions",
        "_key",
        "__weakref__",
    )
    # Let numpy arrays on the left of an operator defer to our reflected methods.
    __array_ufunc__ = None

    def __init__(self, graph, op, inputs, attrs, shape, dtype, name, value, uniform, key, results=None, regions=()):
        self.graph = graph
        self.op = op
        self.inputs = inputs
        self._attrs = attrs
        self.shape = shape
        self.dtype = dtype
        self.name = name
        self.value = value
        self.uniform = uniform  # the one element value if a constant's elements are all equal
        self.origin: tuple | None = None  # (op, inputs) a constant was first folded from: prints log(2)
        # an op with several outputs: ((shape, dtype), ...) per output, and shape = dtype = None;
        # its outputs are the nodes sd.ops.core.output(node, k) (see Node.is_multi)
        self.results: tuple[tuple[Shape, np.dtype], ...] | None = results
        self.regions: tuple[Region, ...] = regions  # the bodies the node runs (see Region)
        self._key = key
        self.is_gradient = graph._gradient_depth > 0
        self.index = len(graph._nodes)

    # -- properties ---------------------------------------------------------------
    @property
    def attrs(self) -> MappingProxyType:
        """The op's static attributes (axis, shape, index, ...), read-only."""
        return MappingProxyType(dict(self._attrs))

    @property
    def is_multi(self) -> bool:
        """True for the node of an op with several outputs (``eigh``): it has no value of its own;
        each output is a node of op ``"output"`` reading it (``sd.eigh(A)`` returns those)."""
        return self.results is not None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int | None:
        """Number of elements, or None if a dimension is unknown."""
        if any(d is None for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    # -- printing -----------------------------------------------------------------
    def __repr__(self) -> str:
        # symdiff.printing installs the repr that adds the expression's text to this
        return f"<{self._header()}>"

    def _header(self) -> str:
        """``Node #3 mul shape=(2,) dtype=float32 gradient``: what repr says before the text."""
        shape = "" if not self.shape else f" shape={format_shape(self.shape)}"
        dtype = "" if self.dtype == DEFAULT_DTYPE else f" dtype={self.dtype}"
        grad = " gradient" if self.is_gradient else ""
        return f"Node #{self.index} {self.op}{shape}{dtype}{grad}"

    # -- identity -----------------------------------------------------------------
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            _refuse_comparison("==", "sd.equal", other)
        return self is other

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Node):
            _refuse_comparison("!=", "sd.not_equal", other)
        return self is not other

    def __bool__(self) -> bool:
        raise TypeError(
            "a symdiff node has no truth value (it is symbolic); build the condition "
            "with sd.where(cond, a, b) or evaluate it first"
        )

    def __iter__(self) -> Iterator[Node]:
        if not self.shape:
            raise TypeError("iteration over a scalar (0-d) node")
        if self.shape[0] is None:
            raise TypeError("cannot iterate over a node whose first dimension is unknown (None)")
        return (self[i] for i in range(self.shape[0]))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar (0-d) node")
        if self.shape[0] is None:
            raise TypeError("len() of a node whose first dimension is unknown (None)")
        return self.shape[0]

    def __pos__(self):
        return self


def _refuse_comparison(symbol: str, instead: str, other: object) -> None:
    """``node == 0`` would be identity (False), so ``sd.where(x == 0, ...)`` would silently pick
    a branch: comparing a node with a number or an array is refused. ``node == node`` stays
    identity, as nodes are dict keys; anything else (None, a string) is simply not equal."""
    if isinstance(other, (int, float, complex, np.number, np.bool_, np.ndarray, list, tuple)):
        raise TypeError(
            f"a symdiff node compared with {type(other).__name__} by {symbol}: on nodes, {symbol} is identity, "
            f"not elementwise; use {instead}(node, value) for the elementwise comparison"
        )


class Graph:
    """Owns every node of a computation; derivative passes append to it.

    >>> g = sd.Graph()
    >>> x = g.variable("x")
    >>> y = x * x + 1.0
    >>> len(g), [n.op for n in g.nodes]
    (4, ['variable', 'mul', 'constant', 'add'])

    Building graphs is not thread-safe: build (and differentiate) a graph from one
    thread at a time. Evaluating and calling compiled functions is thread-safe.
    """

    def __init__(self, name: str | None = None):
        self.name = name
        self._nodes: list[Node] = []
        self._table: dict[tuple, Node] = {}
        self._variables: dict[str, Node] = {}
        self._gradient_depth = 0
        self._aliases: list[tuple] = []  # table keys that name an existing node (folded results)
        self._outputs: dict[str, Node] = {}  # named at saving; set by sd.load
        # a body's graph (see Region): the graph it is part of, and the outer nodes it reads
        # (each stands inside as one of its variables), while its function is traced
        self.parent: Graph | None = None
        self._captures: dict[Node, Node] | None = None
        self._adopting = False  # a body traced before its graph is known (see detached_body)

    # -- inspection ---------------------------------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        """All nodes, each after its inputs (creation order is a topological order)."""
        return tuple(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(tuple(self._nodes))

    def __contains__(self, node: object) -> bool:
        return isinstance(node, Node) and node.graph is self

    @property
    def outputs(self) -> MappingProxyType:
        """The nodes named when the graph was saved (``g.save(path, outputs={...})``), read-only.

        Empty for a graph that was not loaded by :func:`symdiff.load`.
        """
        return MappingProxyType(self._outputs)

    @property
    def variables(self) -> MappingProxyType:
        """The graph's variables by name, read-only."""
        return MappingProxyType(dict(self._variables))

    def __getitem__(self, name: str) -> Node:
        """The variable called ``name``."""
        try:
            return self._variables[name]
        except KeyError:
            known = ", ".join(sorted(self._variables)) or "none"
            raise GraphError(f"no variable named {name!r} in this graph (variables: {known})") from None

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Graph{label} {len(self)} nodes, variables: {', '.join(self._variables) or 'none'}>"

    # -- bodies -------------------------------------------------------------------
    def body(self, name: str) -> Graph:
        """A new, empty graph for a body traced inside this one (see :class:`Region`): while it
        is open for tracing, an outer node used in it is captured (see ``capture``)."""
        inner = Graph(name)
        inner.parent = self
        inner._captures = {}
        return inner

    def capture(self, node: Node) -> Node:
        """The variable that stands in this body graph for ``node``, a node of a graph around it
        (made the first time): the body reads it as a parameter, its caller passes ``node``.

        Raises GraphError if this graph is not a body being traced (a node of a finished body
        used outside it, say), or ``node`` is not from a graph around it.
        """
        if self.parent is None and self._adopting:
            adopts(self, node.graph)  # the first outer node the body reads says which graph it is part of
        if self._captures is None or self.parent is None or not encloses(node.graph, self.parent):
            where = f"the body {self.name!r}" if self.parent is not None else "this graph"
            raise GraphError(
                f"{describe(node)} belongs to another graph, which {where} cannot read: a node of a body "
                "(an sd.composite's parameter, say) can only be used while that body is traced"
            )
        if node.graph is not self.parent:
            node = self.parent.capture(node)
        found = self._captures.get(node)
        if found is None:
            base = node.name if node.op == "variable" else "captured"
            name, k = base, 0
            while name in self._variables:
                k += 1
                name = f"{base}_{k}"
            found = self.variable(name, node.shape, node.dtype)
            self._captures[node] = found
        return found

    @staticmethod
    def detached_body(name: str) -> Graph:
        """A body graph whose outer graph is not known yet (a loop started from numbers): the
        first outer node its function reads makes that node's graph its parent."""
        inner = Graph(name)
        inner._captures = {}
        inner._adopting = True
        return inner

    def seal(self) -> dict[Node, Node]:
        """End the tracing of this body graph; the outer nodes it captured, each with its stand-in."""
        captures, self._captures = self._captures or {}, None
        return captures

    # -- leaves -------------------------------------------------------------------
    def variable(self, name: str, shape: Any = (), dtype: Any = DEFAULT_DTYPE) -> Node:
        """A named input, bound to a value at evaluation.

        Parameters
        ----------
        name : str
            A Python identifier, unique in the graph.
        shape : tuple, optional
            Static shape; ``()`` (the default) is a scalar; a dimension may be
            ``None`` when it is known only at evaluation.
        dtype : optional
            float64 by default; float32, integer and boolean variables are allowed
            (integer and boolean ones have no gradient).

        >>> g = sd.Graph()
        >>> X = g.variable("X", shape=(None, 3))
        >>> X.shape
        (None, 3)
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise GraphError(
                f"variable name {name!r} is not a valid identifier (letters, digits and _, not starting with a digit)"
            )
        shape = normalize_shape(shape, f"variable {name!r}")
        dt = check_dtype(dtype, f"variable {name!r}")
        existing = self._variables.get(name)
        if existing is not None:
            raise GraphError(
                f"a variable named {name!r} already exists in this graph "
                f"(shape {format_shape(existing.shape)}, {existing.dtype}); use g[{name!r}] to get it"
            )
        node = self._add(Node(self, "variable", (), (), shape, dt, name, None, None, ("variable", name)))
        self._variables[name] = node
        return node

    def constant(self, value: Any, dtype: Any = None) -> Node:
        """A constant node holding a (read-only copy of a) numpy value.

        Python and numpy values mixed into ops are wrapped with this automatically.

        >>> g = sd.Graph()
        >>> c = g.constant(np.eye(2))
        >>> c.shape, c.op
        ((2, 2), 'constant')
        """
        if isinstance(value, Node):
            raise GraphError("constant() takes a numeric value, not a node")
        try:
            # C order: a folded transpose is stored as a loaded copy is, so both compute alike (a
            # reduction over a strided view can round differently)
            arr = np.array(value, dtype=dtype, order="C")
        except (TypeError, ValueError) as exc:
            raise DTypeError(f"constant: cannot convert {type(value).__name__} to an array: {exc}") from exc
        if dtype is None and arr.dtype.kind in "iu" and isinstance(value, float):
            arr = arr.astype(DEFAULT_DTYPE)
        check_dtype(arr.dtype, "constant")
        arr.setflags(write=False)
        key, uniform = _value_key(arr)
        found = self._table.get(key)
        if found is not None:
            return found
        return self._add(Node(self, "constant", (), (), arr.shape, arr.dtype, None, arr, uniform, key))

    def _restore_constant(self, value: np.ndarray, key: tuple | None = None) -> Node:
        """Append a constant as it was saved, merged with nothing (see ``export/io.py``).

        ``key`` is the interning key it had (an identity seed, a broadcast fill); by default
        its value's. A node already under that key keeps it: the loaded node is still appended.
        """
        arr = np.asarray(value)
        arr.setflags(write=False)
        own_key, uniform = _value_key(arr)
        if key is not None and key[2] == "uniform":
            uniform = arr.dtype.type(key[-1]).item()
        node = Node(self, "constant", (), (), arr.shape, arr.dtype, None, arr, uniform, key or own_key)
        return self._append(node)

    def _append(self, node: Node) -> Node:
        """Append without merging: a node equal to one already there stays a node of its own."""
        self._table.setdefault(node._key, node)
        self._nodes.append(node)
        return node

    def uniform_constant(self, fill: float, shape: Shape, dtype: Any = DEFAULT_DTYPE) -> Node:
        """A constant of ``shape`` whose elements all equal ``fill`` (stored as a broadcast view)."""
        dt = np.dtype(dtype)
        if int(np.prod(shape, dtype=np.int64)) <= INTERN_MAX_SIZE:
            return self.constant(np.full(shape, fill, dtype=dt))
        one = np.array(fill, dtype=dt)
        # keyed by the value's bytes: -0.0 == 0.0, and each must stay its own constant
        node = self._keyed_constant(
            ("uniform", dt.str, tuple(shape), one.tobytes()), lambda: np.broadcast_to(one, shape)
        )
        node.uniform = one.item()
        return node

    def _keyed_constant(self, key: tuple, make) -> Node:
        """A constant interned under ``key`` rather than by its bytes (for large structured values)."""
        full = ("constant", "keyed") + key
        found = self._table.get(full)
        if found is not None:
            return found
        arr = np.asarray(make())
        arr.setflags(write=False)
        uniform = _uniform(arr)
        return self._add(Node(self, "constant", (), (), arr.shape, arr.dtype, None, arr, uniform, full))

    # -- building (used by the op table) -----------------------------------------
    def _make(
        self,
        op: str,
        inputs: tuple,
        attrs: tuple,
        shape: Shape | None,
        dtype: np.dtype | None,
        results: tuple | None = None,
        regions: tuple[Region, ...] = (),
    ) -> Node:
        key = (op, inputs, attrs, regions) if regions else (op, inputs, attrs)
        found = self._table.get(key)
        if found is not None:
            return found
        return self._add(Node(self, op, inputs, attrs, shape, dtype, None, None, None, key, results, regions))

    def _lookup(self, op: str, inputs: tuple, attrs: tuple, regions: tuple = ()) -> Node | None:
        return self._table.get((op, inputs, attrs, regions) if regions else (op, inputs, attrs))

    def _alias(self, op: str, inputs: tuple, attrs: tuple, node: Node) -> Node:
        """Record that ``op(inputs, attrs)`` is ``node`` (a constant it folded to)."""
        key = (op, inputs, attrs)
        if key not in self._table:
            if _JOURNALS:
                self._journal()
            self._table[key] = node
            self._aliases.append(key)
        return node

    def _add(self, node: Node) -> Node:
        if _JOURNALS:
            self._journal()
        self._table[node._key] = node
        self._nodes.append(node)
        return node

    def _journal(self) -> None:
        for journal in _JOURNALS:
            journal.setdefault(self, (len(self._nodes), len(self._aliases)))

    @contextlib.contextmanager
    def _derivative_pass(self) -> Iterator[None]:
        """Nodes first created inside are marked ``is_gradient``; a failure appends nothing."""
        self._gradient_depth += 1
        try:
            with self._transaction(), gc_paused():
                yield
        finally:
            self._gradient_depth -= 1

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Nodes appended inside are removed again if it fails: a failed call changes nothing."""
        mark = (len(self._nodes), len(self._aliases))
        try:
            yield
        except BaseException:
            self._rollback(mark)
            raise

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[None]:
        """Nodes appended inside are always removed afterwards (for a computation on the side)."""
        mark = (len(self._nodes), len(self._aliases))
        try:
            yield
        finally:
            self._rollback(mark)

    def _rollback(self, mark: tuple[int, int]) -> None:
        nodes, aliases = mark
        for key in self._aliases[aliases:]:
            self._table.pop(key, None)
        del self._aliases[aliases:]
        for node in self._nodes[nodes:]:
            if self._table.get(node._key) is node:
                del self._table[node._key]
            if node.op == "variable":
                self._variables.pop(node.name, None)
        del self._nodes[nodes:]


class Region:
    """A body that a node runs: a function written as a graph of its own (a composite op's
    definition; a loop's step).

    ``graph`` is the body's graph, whose ``parent`` is the graph of the nodes that run it;
    ``params`` are its variables, bound on each run to the running node's inputs, in order;
    ``outputs`` are what it returns. A body is closed: an outer node it reads was captured
    while it was traced and is one of its params too (the running node passes it as one of
    its last inputs), so ``node.inputs`` stays the whole dependency set of every node, and
    every pass that walks inputs (ordering, pruning, sparsity) is right without looking inside.
    Several regions may share one body graph: a derivative body is built, as derivatives are,
    by appending to the graph of the body it differentiates.
    """

    __slots__ = ("graph", "params", "outputs", "name", "several", "derived", "vjp", "arguments", "__weakref__")

    def __init__(
        self, graph: Graph, params: tuple[Node, ...], outputs: tuple[Node, ...], name: str, several: bool | None = None
    ):
        for n in (*params, *outputs):
            if n.graph is not graph:
                raise GraphError(f"{name}: {describe(n)} is not a node of the body's graph")
        self.graph, self.params, self.outputs, self.name = graph, tuple(params), tuple(outputs), name
        # whether a node running it has several outputs (a function may return a 1-tuple)
        self.several = len(self.outputs) > 1 if several is None else several
        self.vjp: Any = None  # a reverse-mode rule of the user's for the body's arguments (sd.composite)
        self.arguments = len(self.params)  # how many params are arguments; the rest stand for captured nodes
        self.derived: dict[tuple, Region] = {}  # derivative bodies built from this one, by what they compute

    def __repr__(self) -> str:
        params = ", ".join(p.name for p in self.params)
        return f"<Region {self.name}({params}) -> {len(self.outputs)} output(s), {len(self.graph)} nodes>"


def encloses(outer: Graph, inner: Graph) -> bool:
    """True if ``inner`` is ``outer`` or a body graph inside it (at any depth)."""
    g: Graph | None = inner
    while g is not None:
        if g is outer:
            return True
        g = g.parent
    return False


# the graphs appended to inside each open ``unchanged_on_failure`` block, with their sizes before
_JOURNALS: list[dict[Graph, tuple[int, int]]] = []


@contextlib.contextmanager
def unchanged_on_failure() -> Iterator[None]:
    """If the block fails, every graph it appended nodes to is rolled back to what it was (for a
    body traced before its graph is known: a loop started from numbers, whose function may build
    nodes of the graph from its nodes alone before it meets a body's)."""
    journal: dict[Graph, tuple[int, int]] = {}
    _JOURNALS.append(journal)
    try:
        yield
    except BaseException:
        for graph, mark in journal.items():
            graph._rollback(mark)
        raise
    finally:
        _JOURNALS.remove(journal)


def adopts(inner: Graph, outer: Graph) -> bool:
    """If ``inner`` is inside a detached body still being traced (``Graph.detached_body``) whose
    outer graph is not known yet, make ``outer`` that graph and return True: the body met its
    first outer node."""
    root = inner
    while root.parent is not None:
        root = root.parent
    if root._adopting and root._captures is not None and root is not outer and not encloses(root, outer):
        root.parent = outer
        return True
    return False


def regions_in(nodes: Iterable[Node]) -> list[Region]:
    """The bodies ``nodes`` run and, inside them, the bodies their nodes run: each once, every
    one after the bodies it runs (the order in which printing defines them and a drawing or a
    file lists them)."""
    found: dict[Region, None] = {}

    def visit(region: Region) -> None:  # recursion as deep as bodies nest
        if region not in found:
            for n in ancestors(region.outputs):
                for inner in n.regions:
                    visit(inner)
            found[region] = None

    for n in nodes:
        for region in n.regions:
            visit(region)
    return list(found)


_constant_ids = itertools.count()


def _value_key(arr: np.ndarray) -> tuple[tuple, Any]:
    """How a constant is interned (by value when small, else by identity), and its ``_uniform``."""
    if arr.size > INTERN_MAX_SIZE:
        return ("constant", "id", next(_constant_ids)), None
    return ("constant", arr.dtype.str, arr.shape, arr.tobytes()), _uniform(arr)


def _uniform(arr: np.ndarray) -> Any:
    """The one element value of a small array whose elements are all equal, else None."""
    if arr.size > INTERN_MAX_SIZE:
        return None
    flat = arr.reshape(-1)
    return flat[0].item() if flat.size and (flat == flat[0]).all() else None


# -- what the layers above install ----------------------------------------------------------
# Node's operators and numpy-style methods come from the op table, its text from the printers,
# its drawings and Graph's files from the exports: each layer imports this module, so this
# module names them only. Until installed, each is a stub that says so (a clear error instead
# of an AttributeError or an unsupported operand, should a graph be built mid-import).
_INSTALLED_LATER: dict[type, dict[str, str]] = {
    Node: {
        **dict.fromkeys(
            "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __pow__ __rpow__ "
            "__matmul__ __rmatmul__ __neg__ __abs__ __lt__ __le__ __gt__ __ge__ __getitem__ __array_function__ "
            "T sum mean max min reshape transpose astype dot".split(),
            "symdiff.ops",
        ),
        "__repr__": "symdiff.printing",
        "__str__": "symdiff.printing",
        "_repr_latex_": "symdiff.export.sympy",
        "_repr_svg_": "symdiff.export.render",
    },
    Graph: {"save": "symdiff.export.io", "to_networkx": "symdiff.export.nx"},
}
_OPTIONAL = ("__repr__", "__str__", "_repr_latex_", "_repr_svg_")  # a working default, or absent


def _stub(cls: type, name: str, by: str) -> Any:
    def missing(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise GraphError(f"{cls.__name__}.{name} is installed by {by}, which is not imported yet: import symdiff")

    missing.__name__, missing.__qualname__ = name, f"{cls.__name__}.{name}"
    return property(missing) if name == "T" else missing


for _cls, _names in _INSTALLED_LATER.items():
    for _name, _by in _names.items():
        if _name not in _OPTIONAL:
            setattr(_cls, _name, _stub(_cls, _name, _by))
del _cls, _names, _name, _by


def install(cls: type, methods: dict[str, Any]) -> None:
    """Give ``cls`` (Node or Graph) methods defined by a layer above this module: the op table
    installs Node's operators, the printers its text, the exports Graph.save and to_networkx.

    Raises GraphError for a name this module does not list as installed later, so every
    method Node and Graph have is named here.
    """
    for name, method in methods.items():
        if name not in _INSTALLED_LATER.get(cls, {}):
            raise GraphError(f"{cls.__name__}.{name} is not among the methods symdiff.graph lets a layer install")
        fn = method.fget if isinstance(method, property) else method
        fn.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, method)


def not_installed(cls: type) -> list[str]:
    """The methods of ``cls`` still missing their layer's definition (none once symdiff is imported).

    >>> from symdiff.graph import not_installed
    >>> not_installed(sd.Node), not_installed(sd.Graph)
    ([], [])
    """
    return [
        name
        for name in _INSTALLED_LATER.get(cls, {})
        if name not in _OPTIONAL and getattr(getattr(cls, name), "fget", getattr(cls, name)).__module__ == __name__
    ]
