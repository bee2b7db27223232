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
from typing import TYPE_CHECKING, Any

import numpy as np

from symdiff.errors import DTypeError, GraphError, ShapeError

if TYPE_CHECKING:
    import networkx

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
    ``==``, which stays identity).

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
        "_key",
        "__weakref__",
    )
    # Let numpy arrays on the left of an operator defer to our reflected methods.
    __array_ufunc__ = None

    def __array_function__(self, func, types, args, kwargs):
        """``np.sum(node)``, ``np.transpose(node)``...: numpy functions that symdiff has as ops
        (same name, same semantics) build that op; any other raises a TypeError saying so."""
        ops = _ops()
        name = func.__name__
        fn = getattr(ops, name) if name in ops.__all__ else None
        if fn is None or kwargs.get("out") is not None:
            hint = f"use sd.{name}(...), which builds a node" if fn else "docs/ops.md lists symdiff's ops"
            raise TypeError(f"numpy.{name} cannot compute on symdiff nodes, which are symbolic; {hint}")
        kwargs = {k: v for k, v in kwargs.items() if k != "out"}
        return fn(*args, **kwargs)

    def __init__(self, graph, op, inputs, attrs, shape, dtype, name, value, uniform, key):
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
        self._key = key
        self.is_gradient = graph._gradient_depth > 0
        self.index = len(graph._nodes)

    # -- properties ---------------------------------------------------------------
    @property
    def attrs(self) -> MappingProxyType:
        """The op's static attributes (axis, shape, index, ...), read-only."""
        return MappingProxyType(dict(self._attrs))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int | None:
        """Number of elements, or None if a dimension is unknown."""
        if any(d is None for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def T(self) -> Node:  # noqa: N802 (numpy's name)
        return _ops().transpose(self)

    # -- printing -----------------------------------------------------------------
    def __repr__(self) -> str:
        from symdiff.printing import short_text

        shape = "" if not self.shape else f" shape={format_shape(self.shape)}"
        dtype = "" if self.dtype == DEFAULT_DTYPE else f" dtype={self.dtype}"
        grad = " gradient" if self.is_gradient else ""
        return f"<Node #{self.index} {self.op}{shape}{dtype}{grad}: {short_text(self)}>"

    def __str__(self) -> str:
        from symdiff.printing import to_text

        return to_text(self)

    def _repr_svg_(self) -> str | None:
        """A drawing for Jupyter, when Graphviz is installed and the graph is small enough."""
        from symdiff.export.nx import subgraph_nodes
        from symdiff.export.render import to_svg

        if len(subgraph_nodes(self.graph, self)) > 200:
            return None
        return to_svg(self)

    def _repr_latex_(self) -> str | None:
        from symdiff.printing import latex_or_none

        return latex_or_none(self)

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

    # -- operators ----------------------------------------------------------------
    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().subtract(self, other)

    def __rsub__(self, other):
        return _ops().subtract(other, self)

    def __mul__(self, other):
        return _ops().multiply(self, other)

    def __rmul__(self, other):
        return _ops().multiply(other, self)

    def __truediv__(self, other):
        return _ops().divide(self, other)

    def __rtruediv__(self, other):
        return _ops().divide(other, self)

    def __pow__(self, other):
        return _ops().power(self, other)

    def __rpow__(self, other):
        return _ops().power(other, self)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __neg__(self):
        return _ops().negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops().abs(self)

    def __lt__(self, other):
        return _ops().less(self, other)

    def __le__(self, other):
        return _ops().less_equal(self, other)

    def __gt__(self, other):
        return _ops().greater(self, other)

    def __ge__(self, other):
        return _ops().greater_equal(self, other)

    def __getitem__(self, index):
        return _ops().getitem(self, index)

    # -- numpy-style methods ------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False) -> Node:
        return _ops().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> Node:
        return _ops().mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False) -> Node:
        return _ops().max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims: bool = False) -> Node:
        return _ops().min(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape) -> Node:
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return _ops().reshape(self, shape)

    def transpose(self, *axes) -> Node:
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return _ops().transpose(self, axes or None)

    def astype(self, dtype: Any) -> Node:
        """This node converted to ``dtype``, as ``ndarray.astype`` (``sd.astype``).

        >>> g = sd.Graph(); i = g.variable("i", dtype="int32")
        >>> i.astype("float32").dtype
        dtype('float32')
        """
        return _ops().astype(self, dtype)

    def dot(self, other: Any) -> Node:
        """The matrix product ``self @ other``, as ``ndarray.dot`` for vectors and matrices.

        >>> g = sd.Graph(); A = g.variable("A", shape=(2, 3)); v = g.variable("v", shape=(3,))
        >>> A.dot(v).shape
        (2,)
        """
        other_shape = other.shape if isinstance(other, Node) else np.shape(other)
        if self.ndim > 2 or len(other_shape) > 2:
            raise ShapeError(
                "dot: for arrays of more than 2 dimensions numpy's dot is not matmul; use sd.matmul "
                f"(shapes {format_shape(self.shape)} and {format_shape(other_shape)})"
            )
        if self.ndim == 0 or len(other_shape) == 0:
            return _ops().multiply(self, other)  # numpy's dot of a scalar is the product
        return _ops().matmul(self, other)


def _refuse_comparison(symbol: str, instead: str, other: object) -> None:
    """``node == 0`` would be identity (False), so ``sd.where(x == 0, ...)`` would silently pick
    a branch: comparing a node with a number or an array is refused. ``node == node`` stays
    identity, as nodes are dict keys; anything else (None, a string) is simply not equal."""
    if isinstance(other, (int, float, complex, np.number, np.bool_, np.ndarray, list, tuple)):
        raise TypeError(
            f"a symdiff node compared with {type(other).__name__} by {symbol}: on nodes, {symbol} is identity, "
            f"not elementwise; use {instead}(node, value) for the elementwise comparison"
        )


def _ops():
    # Node's operators are defined by the op table, which imports this module.
    from symdiff import ops

    return ops


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
        node = self._keyed_constant(
            ("uniform", dt.str, tuple(shape), fill), lambda: np.broadcast_to(np.array(fill, dtype=dt), shape)
        )
        node.uniform = dt.type(fill).item()
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
    def _make(self, op: str, inputs: tuple, attrs: tuple, shape: Shape, dtype: np.dtype) -> Node:
        key = (op, inputs, attrs)
        found = self._table.get(key)
        if found is not None:
            return found
        return self._add(Node(self, op, inputs, attrs, shape, dtype, None, None, None, key))

    def _lookup(self, op: str, inputs: tuple, attrs: tuple) -> Node | None:
        return self._table.get((op, inputs, attrs))

    def _alias(self, op: str, inputs: tuple, attrs: tuple, node: Node) -> Node:
        """Record that ``op(inputs, attrs)`` is ``node`` (a constant it folded to)."""
        key = (op, inputs, attrs)
        if key not in self._table:
            self._table[key] = node
            self._aliases.append(key)
        return node

    def _add(self, node: Node) -> Node:
        self._table[node._key] = node
        self._nodes.append(node)
        return node

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

    # -- export -------------------------------------------------------------------
    def save(self, path: Any, outputs: dict[str, Node] | None = None) -> None:
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
        from symdiff.export.io import save

        save(self, path, outputs)

    def to_networkx(self, outputs: Node | list[Node] | None = None) -> networkx.DiGraph:
        """The graph (or the part ``outputs`` need) as a ``networkx.DiGraph``.

        Nodes are keyed by their index in ``g.nodes`` and carry ``op``, ``name``,
        ``shape``, ``dtype``, ``is_gradient`` and ``label``; edges carry ``position``
        (which input of the consumer the edge feeds).

        >>> g = sd.Graph(); x = g.variable("x")
        >>> G = g.to_networkx()
        >>> G.nodes[x.index]["op"]
        'variable'
        """
        from symdiff.export.nx import to_networkx

        return to_networkx(self, outputs)


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
