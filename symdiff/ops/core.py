"""The op table's machinery: the Op record, the registry, and ``apply``.

Every op is one :class:`Op` entry: its numpy forward, its shape rule, its dtype
rule, one derivative rule per input for reverse mode (``vjp``) and forward mode
(``jvp``), its sympy translation and how it prints. Nothing else in symdiff knows
about a particular op; a new op is one ``define_op`` call.

Derivative rules build graph nodes from symdiff ops and nothing else (never
numbers), which is why every derivative can be differentiated again.

Derivative rule conventions
---------------------------
``vjp[i](g, out, *inputs, **attrs)`` returns the gradient contribution for input
``i`` given the incoming gradient ``g`` (a cotangent shaped like ``out``, possibly
with extra *leading* batch axes, which a rule must carry through: use negative
axes). The result may be shaped like ``out`` rather than like input ``i``: the
driver sums broadcast axes away in one place. ``None`` in place of a rule means
"no gradient flows along this input" (e.g. the condition of ``where``: zero);
``not_differentiable`` means the derivative does not exist (an integer index):
``grad`` raises NonDifferentiableError if it is needed.

``jvp[i](t, out, *inputs, **attrs)`` returns the contribution of input ``i``'s
tangent ``t`` to the tangent of ``out``, with the same batch convention.

An op linear in an input declares, instead of that input's ``vjp``, its *transpose*
(``transpose[i](ct, *inputs, **attrs)``, as JAX's linear primitives do): the adjoint of the
map ``x_i -> op(..., x_i, ...)`` applied to a cotangent ``ct`` shaped like the output (with
the same leading batch axes), giving a cotangent shaped like input ``i`` (or like the output,
for a broadcast input). Its ``vjp`` is that transpose applied to the incoming gradient and its
``jvp`` the op itself applied to the tangent; the transpose rules of the ops a transpose is
built from make the transpose of the transpose, so derivatives of every order follow.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from symdiff.errors import GraphError, ShapeError
from symdiff.graph import Node, Region, Shape, adopts, describe, encloses, format_shape, shape_matches
from symdiff.scalar import Expr, from_function, parameters
from symdiff.scalar import arity as expression_arity
from symdiff.scalar import differentiable as differentiable_expression

DerivativeRule = Callable[..., Node]  # one input's vjp or jvp (not a rewrite rule: symdiff.rewrite)


class _NotDifferentiable:
    """Marks an input whose derivative does not exist (an integer index), unlike ``None``,
    which marks an input through which no gradient flows by definition (where's condition)."""

    def __repr__(self) -> str:
        return "not_differentiable"


not_differentiable: Any = _NotDifferentiable()
DerivativeRules = Sequence[DerivativeRule | None] | Callable[[int], DerivativeRule | None]  # one per input

# What an op is decides what symdiff can derive for it (the jvp rule, the public function,
# the sparsity pattern): an op writes out only what its kind cannot derive.
KINDS = {
    "elementwise": "broadcasting, one output element per input element: the Jacobian is diagonal, "
    "so the forward-mode rule is the reverse-mode rule with the tangent in place of the cotangent",
    "structural": "moves, selects or broadcasts elements without computing on them",
    "reduction": "combines elements along axes",
    "linalg": "dense linear algebra on the last two axes (stacks of matrices)",
    "other": "none of the above; every rule written out",
}
# Properties an op's nodes have, read by the rewrite rules and the derivation of rules:
# linear (in every input that carries a gradient: the jvp is the op on the tangents),
# commutative (two inputs that may swap), positive / nonzero (every value, up to underflow).
PROPERTIES = frozenset({"linear", "commutative", "positive", "nonzero"})


@dataclass(frozen=True, eq=False)
class Notation:
    """How an op is written, for every printer (text, LaTeX, DOT, sympy, the parser).

    ``symbol``/``precedence``: infix form and binding strength (``"+"``, 10); with
    ``strict_right`` the right operand is parenthesised at equal strength (``x - (y - z)``).
    ``text``/``latex``: ``fn(node, args, wrap) -> (text, strength)`` for a form of its own
    (``x**2``, ``\\frac{a}{b}``) or None for the usual one; ``args`` are the inputs' texts and
    strengths, ``wrap(i, need)`` input i's text in parentheses if it binds weaker than
    ``need``. ``latex`` may instead be a function name (``"\\sin"``). ``label``: the short
    name in a drawing (``"T"``), or a function of the node. ``transparent``: printed as its
    first input (a check, an implicit broadcast). ``function``: the public function's name
    where it differs from the op's (``subtract`` for ``sub``). ``outputs``: for an op whose
    outputs are named per node (a loop's ``carry``, ``ys[0]``), ``fn(node) -> names``. The
    ``text``/``latex`` of a node that runs bodies may take a keyword ``bodies``: the names
    its bodies print by (a printer renames a body whose name is taken).
    """

    symbol: str | None = None
    precedence: int = 100
    latex: str | Callable[..., Any] | None = None
    sympy: Callable[..., Any] | None = None
    sympy_name: str | None = None
    text: Callable[..., Any] | None = None
    label: str | Callable[..., str] | None = None
    transparent: bool = False
    strict_right: bool = False
    function: str | None = None
    outputs: Callable[..., Sequence[str]] | None = None


@dataclass(frozen=True, eq=False)
class Op:
    """One entry of the op table. Build ops with :func:`define_op`.

    ``forward(xp, *arrays, **attrs)`` computes the op with the array module ``xp``
    (numpy, or another with numpy's names); ``generic`` is False for a forward written
    for numpy arrays only. ``numpy`` is the numpy function the op is (``"sin"``,
    ``"linalg.solve"``), by which other backends find their own. ``derived`` names the
    aspects the op's kind supplied rather than the declaration (``"jvp"``; ``"transpose"``
    when its reverse-mode rules are its transpose rules). ``transpose``: for an op linear in
    some inputs, their transpose rules (see the module docstring).
    """

    name: str
    kind: str
    forward: Callable[..., Any]
    shape: Callable[..., Shape]
    dtype: Callable[..., np.dtype]
    vjp: DerivativeRules | None = None
    jvp: DerivativeRules | None = None
    differentiable: bool = True
    numpy: str | None = None
    generic: bool = True
    properties: frozenset[str] = frozenset()
    notation: Notation = Notation()
    scalar: Expr | None = None
    doc: str = ""
    fold: bool = True
    arity: int | None = None
    derived: frozenset[str] = frozenset()
    unsupported: dict[str, str] = field(default_factory=dict)
    sparsity: str = "dense"
    outputs: tuple[str, ...] | None = None
    joint_vjp: Callable[..., list[Node | None]] | None = None
    joint_jvp: Callable[..., list[Node | None]] | None = None
    runs: Callable[..., Any] | None = None
    edges: Callable[..., list[str]] | None = None
    lower: Callable[..., Any] | None = None
    transpose: DerivativeRules | None = None

    @property
    def elementwise(self) -> bool:
        return self.kind == "elementwise"

    @property
    def symbol(self) -> str | None:
        return self.notation.symbol

    @property
    def precedence(self) -> int:
        return self.notation.precedence

    @property
    def sympy(self) -> Callable[..., Any] | None:
        return self.notation.sympy

    @property
    def sympy_name(self) -> str | None:
        return self.notation.sympy_name

    def vjp_rule(self, i: int) -> DerivativeRule | None:
        return _rule(self.vjp, i)

    def jvp_rule(self, i: int) -> DerivativeRule | None:
        return _rule(self.jvp, i)

    def transpose_rule(self, i: int) -> DerivativeRule | None:
        """Input ``i``'s transpose rule ``rule(ct, *inputs, **attrs)``, or None where the op gives
        none for it (not linear in it, an index, a reference for a shape)."""
        rule = _rule(self.transpose, i)
        return rule if callable(rule) and rule is not not_differentiable else None

    def __repr__(self) -> str:
        return f"<Op {self.name}>"


def _rule(table: DerivativeRules | None, i: int) -> DerivativeRule | None:
    if table is None:
        return None
    if callable(table):
        return table(i)
    return table[i] if i < len(table) else None


REGISTRY: dict[str, Op] = {}


def numpy_function(xp: Any, name: str) -> Callable[..., Any]:
    """``xp.linalg.solve`` for the name ``"linalg.solve"``."""
    fn = xp
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn


def has_function(xp: Any, name: str) -> bool:
    """Whether the array module ``xp`` has the numpy function ``name`` (``"linalg.solve"``)."""
    try:
        numpy_function(xp, name)
    except AttributeError:
        return False
    return True


def index_add(xp: Any, out: Any, index: Any, values: Any) -> Any:
    """``out`` with ``values`` added at ``index``, repeated indices accumulating: in place for
    numpy's mutable arrays, by ``out.at[index].add`` for immutable ones (jax)."""
    if hasattr(out, "at"):
        return out.at[index].add(values)
    xp.add.at(out, index, values)
    return out


def index_set(xp: Any, out: Any, index: Any, values: Any) -> Any:
    """``out`` with ``values`` written at ``index`` (in place where arrays are mutable)."""
    if hasattr(out, "at"):
        return out.at[index].set(values)
    out[index] = values
    return out


def special_function(xp: Any, name: str) -> Callable[..., Any]:
    """The special function ``name`` (``"erf"``) for the array module ``xp``: scipy.special's for
    numpy, the module's own ``scipy.special`` (jax) or top-level function otherwise."""
    if xp is np:
        import scipy.special

        return getattr(scipy.special, name)
    module = importlib.import_module(xp.__name__.split(".")[0] + ".scipy.special") if "." in xp.__name__ else xp
    return getattr(module, name)


def _forward_of(name: str, forward: Callable[..., Any] | None, numpy: str | None) -> tuple[Callable[..., Any], bool]:
    """The op's forward as ``fn(xp, *arrays, **attrs)``, and whether it works for any ``xp``.

    A forward whose first parameter is named ``xp`` is written against the array module
    it is given; one without it is a numpy function of arrays (as user ops declare it).
    """
    if forward is None:
        if numpy is None:
            raise GraphError(f"define_op {name!r}: give a forward, or the numpy function it is (numpy='sin')")
        return (lambda xp, *arrays, **attrs: numpy_function(xp, numpy)(*arrays, **attrs)), True
    try:
        params = list(inspect.signature(forward).parameters)
    except (TypeError, ValueError):  # numpy ufuncs have no signature in some versions
        params = []
    if params[:1] == ["xp"]:
        return forward, True
    return (lambda xp, *arrays, **attrs: forward(*arrays, **attrs)), False


def _linear_jvp(op_name: str, i: int) -> DerivativeRule:
    """A linear op's forward-mode rule: the op itself, applied with the tangent in input i's place."""

    def rule(t: Node, out: Node, *inputs: Node, **attrs: Any) -> Node:
        args = list(inputs)
        args[i] = t
        return apply(REGISTRY[op_name], *args, **attrs)

    return rule


class per_input:  # noqa: N801 (a marker, read as a declaration's word)
    """A table of rules written as a function of the input's position, ``per_input(lambda i: rule)``,
    for ``transpose=`` of an op that takes any number of inputs (concatenate: each input's
    transpose is its part of the cotangent). ``vjp=`` and ``jvp=`` take such a function bare."""

    def __init__(self, table: Callable[[int], Any]) -> None:
        self.table = table

    def __call__(self, i: int) -> Any:
        return self.table(i)


def _transpose_table(name: str, transpose: Any) -> DerivativeRules:
    """``transpose=`` as a rule table (a sequence, or a function of the position): a bare rule is
    the transpose of an op of one input."""
    if isinstance(transpose, per_input):
        return transpose.table
    if isinstance(transpose, (tuple, list)):
        for i, entry in enumerate(transpose):
            if entry is not None and entry is not not_differentiable and not callable(entry):
                raise GraphError(
                    f"define_op {name!r}: transpose[{i}] is {entry!r}, not a rule, None or not_differentiable"
                )
        return tuple(transpose)
    if callable(transpose):
        return (transpose,)
    raise GraphError(
        f"define_op {name!r}: transpose is a rule (an op of one input), a sequence with one entry per input, "
        f"or per_input(lambda i: ...), not {transpose!r}"
    )


def _from_transpose(rule: DerivativeRule) -> DerivativeRule:
    """A linear input's reverse-mode rule: its transpose applied to the incoming gradient."""

    def vjp(g: Node, out: Node, *inputs: Node, **attrs: Any) -> Node:
        return rule(g, *inputs, **attrs)

    return vjp


def _merged_vjp(
    name: str, transposes: DerivativeRules, vjp: DerivativeRules | None, arity: int | None
) -> DerivativeRules:
    """The op's reverse-mode table: input i's transpose where it has one (``_from_transpose``), else
    the entry ``transpose`` gives it (None, not_differentiable), else its ``vjp`` entry. An input
    may have a transpose or a vjp, not both."""
    known = len(transposes) if isinstance(transposes, tuple) else arity
    if vjp is not None and known is not None:
        for i in range(known):
            if _rule(transposes, i) is not None and _rule(vjp, i) is not None:
                raise GraphError(
                    f"define_op {name!r}: input {i} has both a vjp and a transpose rule; a linear input's vjp "
                    "is its transpose (give one)"
                )
    elif vjp is not None:
        raise GraphError(
            f"define_op {name!r}: give arity to combine a vjp with transpose=per_input(...) "
            "(which inputs each covers must be known)"
        )

    def entry(i: int) -> DerivativeRule | None:
        t = _rule(transposes, i)
        if callable(t) and t is not not_differentiable:
            return _from_transpose(t)
        return t if t is not None or vjp is None else _rule(vjp, i)

    if isinstance(transposes, tuple) and not callable(vjp):
        n = max(len(transposes), len(vjp) if vjp is not None else 0)
        return tuple(entry(i) for i in range(n))
    return entry


def _transposed_jvp(name: str, transposes: DerivativeRules, i: int) -> DerivativeRule:
    """A linear input's forward-mode rule: the op on the tangent, the other inputs as they are
    (valid while no other input is linear too: then the op is not linear in input i alone)."""
    apply_op = _linear_jvp(name, i)

    def rule(t: Node, out: Node, *inputs: Node, **attrs: Any) -> Node:
        others = [j for j in range(len(inputs)) if j != i and _rule(transposes, j) not in (None, not_differentiable)]
        if others:
            raise GraphError(
                f"{name}: the op is linear in inputs {i} and {others[0]} together; its jvp must be written "
                "(the op with the other linear inputs zero)"
            )
        return apply_op(t, out, *inputs, **attrs)

    return rule


def _derived_jvp(name: str, transposes: DerivativeRules, vjp: DerivativeRules) -> DerivativeRules:
    """The forward-mode table of an op with transpose rules: the op on the tangent for a linear
    input, the reverse table's None or not_differentiable for the others (an input with a
    written vjp needs a written jvp too)."""

    def entry(i: int) -> DerivativeRule | None:
        if _rule(transposes, i) not in (None, not_differentiable):
            return _transposed_jvp(name, transposes, i)
        r = _rule(vjp, i)
        if r is not None and r is not not_differentiable:
            raise GraphError(f"define_op {name!r}: input {i} has a written vjp; write the jvp beside it")
        return r

    if isinstance(vjp, tuple):
        return tuple(entry(i) for i in range(len(vjp)))
    return entry


def define_op(
    name: str,
    forward: Callable[..., Any] | None = None,
    shape: Callable[..., Shape] | None = None,
    *,
    numpy: str | None = None,
    kind: str | None = None,
    dtype: Callable[..., np.dtype] | None = None,
    vjp: DerivativeRules | None = None,
    jvp: DerivativeRules | None = None,
    transpose: DerivativeRules | per_input | None = None,
    partials: Sequence[Callable[..., Node] | None] | None = None,
    differentiable: bool = True,
    elementwise: bool = False,
    properties: Sequence[str] = (),
    symbol: str | None = None,
    precedence: int = 100,
    latex: str | Callable[..., Any] | None = None,
    sympy: Callable[..., Any] | str | None = None,
    sympy_name: str | None = None,
    text: Callable[..., Any] | None = None,
    label: str | Callable[..., str] | None = None,
    transparent: bool = False,
    strict_right: bool = False,
    function: str | None = None,
    unsupported: dict[str, str] | None = None,
    doc: str = "",
    fold: bool = True,
    scalar: Callable[..., Any] | Expr | None = None,
    arity: int | None = None,
    sparsity: str | None = None,
    outputs: Sequence[str] | None = None,
    output_names: Callable[..., Sequence[str]] | None = None,
    joint_vjp: Callable[..., list[Node | None]] | None = None,
    joint_jvp: Callable[..., list[Node | None]] | None = None,
    runs: Callable[..., Any] | None = None,
    edges: Callable[..., list[str]] | None = None,
    lower: Callable[..., Any] | None = None,
) -> Op:
    """Register a new op and return it; build nodes of it with :func:`apply`.

    Parameters
    ----------
    name : str
        Unique op name (``node.op``).
    forward : callable, optional
        ``forward(*arrays, **attrs) -> array``: the numpy computation; or
        ``forward(xp, *arrays, **attrs)`` (first parameter named ``xp``), written against
        the array module it is given, so every backend with numpy's names can run it.
    shape : callable
        ``shape(*input_shapes, **attrs) -> tuple``: the static output shape; raise
        :class:`~symdiff.ShapeError` for inputs that do not fit.
    numpy : str, optional
        The numpy function the op is (``"tanh"``, ``"linalg.solve"``): the forward when
        none is given, and the name backends look up.
    kind : str, optional
        ``"elementwise"``, ``"structural"``, ``"reduction"``, ``"linalg"`` or ``"other"``
        (see ``KINDS``); ``elementwise=True`` is the same as ``kind="elementwise"``.
    dtype : callable, optional
        ``dtype(*input_dtypes, **attrs) -> numpy.dtype``; by default the inputs'
        common dtype promoted to at least float64.
    vjp, jvp : sequence of callables, optional
        One derivative rule per input (see the module docstring); ``None`` for an
        input through which no gradient flows. The kind derives ``jvp`` where it can:
        for an elementwise op it is ``vjp`` with the tangent in place of the cotangent,
        for a ``"linear"`` op the op itself applied to the tangent.
    transpose : callable, sequence or per_input, optional
        For an op linear in some inputs (a reshape, a gather, a sum, a concatenation), their
        transpose rules instead of their ``vjp``: ``transpose[i](ct, *inputs, **attrs)`` is the
        adjoint of ``x_i -> op(..., x_i, ...)`` applied to ``ct`` (shaped like the output, with
        the same leading batch axes). A bare rule serves an op of one input; a
        sequence has one entry per input (None: no gradient, ``not_differentiable``: an index);
        ``per_input(lambda i: rule)`` serves an op of any number of inputs. The ``vjp`` is the
        transpose applied to the gradient and, where one input is linear, the ``jvp`` the op on
        the tangent (``derived`` says so; an op linear in several inputs together, as
        concatenate, writes its ``jvp``). The op gets the ``"linear"`` property. An input may
        have a ``vjp`` or a transpose, not both. A transpose built from ops with transpose rules
        (getitem's is ``unindex``, whose own is ``getitem``) transposes back, so derivatives of
        every order follow; ``tests/test_transpose.py`` checks every registered one.
    partials : sequence of callables, optional
        For an elementwise op, instead of ``vjp``: ``partials[i](out, *inputs)``, the
        derivative of the output by input i, element by element (``vjp[i]`` is ``g * it``).
    differentiable : bool
        False for ops whose derivative is undefined (comparisons): ``grad`` then
        raises :class:`~symdiff.NonDifferentiableError` when it needs them.
    properties : sequence of str
        Any of ``"linear"``, ``"commutative"``, ``"positive"``, ``"nonzero"`` (see ``PROPERTIES``).
    symbol, precedence, latex, text, label, transparent, strict_right, function : optional
        How the op is written (see :class:`Notation`): infix symbol and binding strength
        (``"+"``, 10), the LaTeX function name (``"\\sin"``) or form, and so on.
    unsupported : dict, optional
        Aspects the op does not have, with the reason shown to users
        (``{"sympy": "a count of elements is not an expression"}``).
    sympy : callable, "forward" or "body", optional
        ``sympy(*object_arrays, **attrs)``: the op on numpy arrays of sympy
        expressions, used by :func:`symdiff.to_sympy`; ``"forward"`` when the forward
        itself does that (it only moves elements); ``"body"`` for a node that runs a body
        (converted as its body). Structural ops get it by default.
    sympy_name : str, optional
        The sympy function this op corresponds to, for :func:`symdiff.from_sympy`.
    doc : str
        A one-line math description (``"d sin x = cos x dx"``).
    fold : bool
        Whether to compute the op at build time when every input is a constant (the
        rule table's last build rule, ``constant_folding``).
    scalar : callable or symdiff.scalar.Expr, optional
        For an elementwise op, what it computes on one element, as a scalar expression tree
        (``symdiff.scalar``), or a function building it from its inputs' elements
        (``scalar=lambda x: sx.maximum(x, 0.0) + sx.log1p(sx.exp(-abs(x)))``, with
        ``import symdiff.scalar as sx``). Printed per language: float64 scalar nodes run it on
        Python floats in the evaluator and the compiled code (where ``math`` raises, as at
        ``log(0)``, the numpy forward gives the IEEE result instead), the numba backend loops
        and fuses it. An elementwise op that gives neither ``vjp`` nor ``partials`` gets its
        partials from it (``symdiff.scalar.partial``), unless its value is a boolean.
    arity : int, optional
        How many inputs the op takes; by default the length of ``vjp`` (or ``partials``)
        when it is a sequence (None for ops that take any number).
    sparsity : str, optional
        How the op maps its inputs' dependency patterns (``sd.sparse_jacobian``; see
        ``SPARSITY``); by default from its kind: elementwise ops ``"elementwise"``,
        structural ops ``"selection"``, reductions ``"reduction"``, others ``"dense"``.
    outputs : sequence of str, optional
        For an op with several outputs, their names (``("eigenvalues", "eigenvectors")``, as
        numpy's result tuple names them). The forward then returns a tuple, the shape and dtype
        rules a tuple (one per output), :func:`apply` returns the output nodes (see
        :func:`output`); ``vjp[i](gs, outs, *inputs, **attrs)`` receives the tuple of the
        outputs' cotangents (None where an output has none) and the output nodes, and
        ``jvp[i](t, outs, *inputs, **attrs)`` returns a tuple of tangents (None for zero).
    output_names : callable, optional
        ``output_names(node) -> names``: the names of a node's outputs where they depend on the
        node (a loop's ``carry``, ``ys[0]``, ``stored``), for an op without ``outputs``.
    joint_vjp, joint_jvp : callable, optional
        Rules for all inputs at once, for an op whose derivative is best built in one piece (a
        node with a body: one derivative body, not one per input).
        ``joint_vjp(gs, node, wanted) -> [cotangent or None per input]`` (``wanted``: the
        input positions the pass needs) and ``joint_jvp(ts, node) -> [tangent or None per
        output]`` (``ts``: a tangent or None per input); ``gs`` holds a cotangent or None per
        output (one item for a one-output op). The driver calls them instead of ``vjp``/``jvp``.
    lower : callable, optional
        ``lower(*inputs, **attrs) -> node or tuple of nodes``: the op written with other ops, for
        the backends that print code from a small set of primitives (numba, C); called on the
        variables of a body of its own (see :func:`symdiff.lower.lowered`). An op without it is
        a primitive: every printing backend must print it. The op keeps its own forward (the
        interpreter, numpy, jax), name, printing and derivative rules.

    See ``docs/adding-an-op.md`` for a worked example.
    """
    if not isinstance(name, str) or not name:
        raise GraphError(f"op name must be a non-empty string, got {name!r}")
    if name in REGISTRY or name in ("variable", "constant"):
        raise GraphError(f"an op named {name!r} is already registered")
    if shape is None:
        raise GraphError(f"define_op {name!r}: a shape rule is required")
    kind = kind or ("elementwise" if elementwise else "other")
    if kind not in KINDS:
        raise GraphError(f"define_op {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    unknown = set(properties) - PROPERTIES
    if unknown:
        raise GraphError(f"define_op {name!r}: unknown properties {sorted(unknown)}; known: {sorted(PROPERTIES)}")
    fn, generic = _forward_of(name, forward, numpy)
    derived = {"forward"} if forward is None else set()
    if sparsity is None:
        sparsity = {"elementwise": "elementwise", "structural": "selection", "reduction": "reduction"}.get(
            kind, "dense"
        )
        derived.add("sparsity")
    if sparsity not in SPARSITY and not (sparsity.startswith("adjoint:") and len(sparsity) > 8):
        raise GraphError(
            f"define_op {name!r}: sparsity {sparsity!r} is not one of {', '.join(SPARSITY)} or adjoint:<op>"
        )
    if scalar is not None:
        if isinstance(scalar, str):
            raise GraphError(
                f"define_op {name!r}: scalar is a scalar expression tree or a function building one "
                f"(scalar=lambda x: sx.sin(x), import symdiff.scalar as sx), not the string {scalar!r}"
            )
        declared, scalar = scalar, from_function(scalar, arity)
        if (
            kind == "elementwise"
            and vjp is None
            and transpose is None
            and partials is None
            and jvp is None
            and differentiable
            and "vjp" not in (unsupported or {})
            and differentiable_expression(scalar)
        ):
            from symdiff.ops.scalar_nodes import tree_partials  # it builds nodes with this module's apply

            if arity is None:
                arity = expression_arity(scalar) if isinstance(declared, Expr) else parameters(declared)
            partials = tree_partials(scalar, arity)
    if partials is not None:
        if kind != "elementwise" or vjp is not None or transpose is not None:
            raise GraphError(f"define_op {name!r}: partials are for elementwise ops that give no vjp or transpose")
        vjp = tuple(None if d is None else _partial_rule(d) for d in partials)
        derived.add("vjp")
    transposes = None
    if transpose is not None:
        if outputs is not None or joint_vjp is not None:
            raise GraphError(f"define_op {name!r}: transpose rules are for ops of one output without joint rules")
        transposes = _transpose_table(name, transpose)
        if arity is None and isinstance(transposes, tuple) and not isinstance(vjp, (tuple, list)):
            arity = len(transposes)
        vjp = _merged_vjp(name, transposes, vjp, arity)
        properties = tuple(sorted(set(properties) | {"linear"}))
        derived |= {"vjp", "transpose"}
        if jvp is None and kind != "elementwise" and differentiable:
            if (
                isinstance(transposes, tuple)
                and sum(callable(t) and t is not not_differentiable for t in transposes) > 1
            ):
                raise GraphError(
                    f"define_op {name!r}: the op is linear in several inputs together; write its jvp "
                    "(input i's: the op with the other linear inputs zero)"
                )
            jvp = _derived_jvp(name, transposes, vjp)
            derived.add("jvp")
    if jvp is None and vjp is not None and differentiable:
        if kind == "elementwise":
            jvp = vjp
            derived.add("jvp")
        elif "linear" in properties and isinstance(vjp, (tuple, list)):
            # The op applied to the tangent is the tangent only when the op is linear in its one
            # differentiable input (the others: shapes, indices). With two (concatenate), input
            # i's contribution is the op with the *others zero*: write that out.
            if sum(r is not None for r in vjp) != 1:
                raise GraphError(
                    f"define_op {name!r}: a linear op's jvp is derived only for one differentiable input; "
                    "write jvp for this one"
                )
            jvp = tuple(None if r is None else _linear_jvp(name, i) for i, r in enumerate(vjp))
            derived.add("jvp")
    if sympy == "body":  # a node that runs a body converts as its body (symdiff.export.sympy)
        sympy = None
        derived.add("sympy")
    elif sympy == "forward" or (sympy is None and kind == "structural" and generic):
        # moving elements is the same on arrays of sympy expressions: the forward itself
        sympy = functools.partial(fn, np)
        derived.add("sympy")
    if dtype is None:
        dtype = float_dtype
    if arity is None and isinstance(vjp, (tuple, list)):
        arity = len(vjp)
    op = Op(
        name=name,
        kind=kind,
        forward=fn,
        shape=shape,
        dtype=dtype,
        vjp=vjp,
        jvp=jvp,
        differentiable=differentiable and (vjp is not None or joint_vjp is not None),
        numpy=numpy,
        generic=generic,
        properties=frozenset(properties),
        notation=Notation(
            symbol, precedence, latex, sympy, sympy_name, text, label, transparent, strict_right, function, output_names
        ),
        unsupported=dict(unsupported or {}),
        scalar=scalar,
        doc=doc,
        fold=fold,
        arity=arity,
        derived=frozenset(derived),
        sparsity=sparsity,
        outputs=tuple(outputs) if outputs is not None else None,
        joint_vjp=joint_vjp,
        joint_jvp=joint_jvp,
        runs=runs,
        edges=edges,
        lower=lower,
        transpose=transposes,
    )
    REGISTRY[name] = op
    return op


# How an op maps the dependency patterns of its inputs to its own (symdiff.sparse):
SPARSITY = {
    "elementwise": "the same element of each input, through broadcasting",
    "reduction": "the union over the elements reduced together (along the op's axis)",
    "lane": "the union over the element's lane along the op's axis",
    "selection": "the element selected: the forward run on element positions",
    "adjoint:<op>": "adds into places: the transpose of <op>'s selection",
    "matmul": "rows times columns; a constant operand's zeros are structural",
    "none": "no dependence on its input's values (a shape, a count, a stopped gradient)",
    "dense": "every output element on everything the inputs depend on (conservative)",
    "body": "runs its body once on its inputs: the body's own pattern, its parameters bound to the inputs'",
    "loop": "runs its body over steps (scan, while_loop): the body's pattern carried step by step to a fixed point",
}

# What every op must have, each written, derived by its kind, or marked unsupported with a
# reason: derivatives in both modes, each way of writing it, and each way of computing it.
ASPECTS = ("vjp", "jvp", "text", "latex", "dot", "sympy", "forward", "array_module")


def aspects(op: Op) -> dict[str, str]:
    """How ``op`` has each of ``ASPECTS``: ``"written"``, ``"derived"`` (from its kind or its
    numpy name; a linear op's vjp ``"derived from transpose"``), ``"none: <reason>"`` (marked
    unsupported, or not differentiable by definition)
    or ``"missing"`` (a gap: tests/test_op_aspects.py fails on it)."""
    notation = op.notation
    out: dict[str, str] = {}
    for rule in ("vjp", "jvp"):
        if rule in op.unsupported:
            out[rule] = f"none: {op.unsupported[rule]}"
        elif not op.differentiable and getattr(op, rule) is None:
            out[rule] = "none: not differentiable (a comparison or an index has no derivative)"
        elif getattr(op, rule) is None and getattr(op, f"joint_{rule}") is None:
            out[rule] = "missing"
        else:
            out[rule] = "derived" if rule in op.derived else "written"
    if "transpose" in op.derived:
        out["vjp"] = "derived from transpose"
    written = {
        "text": notation.text is not None or notation.symbol is not None or notation.transparent,
        "latex": notation.latex is not None or notation.transparent,
        "dot": notation.label is not None or notation.symbol is not None,
    }
    for aspect, own in written.items():  # the usual form, name(args), serves every other op
        out[aspect] = "written" if own else "derived"
    if "sympy" in op.unsupported:
        out["sympy"] = f"none: {op.unsupported['sympy']}"
    else:
        out["sympy"] = "derived" if "sympy" in op.derived else "missing" if op.sympy is None else "written"
    out["forward"] = "derived" if "forward" in op.derived else "written"
    if op.generic:
        out["array_module"] = out["forward"]
    else:
        out["array_module"] = "none: " + op.unsupported.get("array_module", "a forward for numpy arrays only")
    return out


def _partial_rule(partial: Callable[..., Node]) -> DerivativeRule:
    """``g * partial(out, *inputs)``: an elementwise op's reverse rule from its partial derivative."""

    def rule(g: Node, out: Node, *inputs: Node, **attrs: Any) -> Node:
        from symdiff.ops.arithmetic import multiply

        return multiply(g, partial(out, *inputs, **attrs))

    return rule


# -- dtype rules ------------------------------------------------------------------
def float_dtype(*dtypes: np.dtype, **_: Any) -> np.dtype:
    """The inputs' common dtype, promoted to at least float (int + int -> float64)."""
    dt = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    return dt if dt.kind == "f" else np.dtype(np.float64)


def common_dtype(*dtypes: np.dtype, **_: Any) -> np.dtype:
    """numpy's result type of the inputs (int + int stays int)."""
    return np.result_type(*dtypes)


def first_dtype(dtype: np.dtype, *_: np.dtype, **__: Any) -> np.dtype:
    return dtype


def bool_dtype(*_: np.dtype, **__: Any) -> np.dtype:
    return np.dtype(bool)


def representable(value: Fraction, dtype: np.dtype) -> float | None:
    """An exactly computed constant as a float of ``dtype``, or None where that would not be
    the same number up to rounding: it overflows, or a non-zero value falls below the normal
    range. Merging constants (``2*(3*x)``) goes through here, so a merge never turns a finite
    result into inf or 0 (``x*1e308*10/10`` stays finite where x is small)."""
    if value == 0:
        return 0.0
    info = np.finfo(dtype)
    if not Fraction(float(info.tiny)) <= abs(value) <= Fraction(float(info.max)):
        return None
    return float(np.asarray(float(value), dtype=dtype))


def is_float(node: Node) -> bool:
    return node.dtype.kind == "f"


# -- building nodes ------------------------------------------------------------------
def graph_of(op_name: str, args: Sequence[Any]):
    """The one graph that the Node arguments belong to."""
    graph = None
    for i, a in enumerate(args):
        if isinstance(a, Node):
            if graph is None:
                graph, first = a.graph, i
            elif a.graph is not graph and (encloses(graph, a.graph) or adopts(a.graph, graph)):
                graph, first = a.graph, i  # a node of a body traced inside: the body captures the others
            elif a.graph is not graph and not (encloses(a.graph, graph) or adopts(graph, a.graph)):
                raise GraphError(
                    f"{op_name}: input {first} and input {i} belong to different graphs; "
                    "every input of an op must come from the same Graph"
                )
    if graph is None:
        raise GraphError(
            f"{op_name}: no input is a symdiff node; wrap a value with g.constant(...) to build it in a graph"
        )
    return graph


def as_nodes(op_name: str, *args: Any) -> tuple[Node, ...]:
    """The arguments as nodes of one graph; numbers are wrapped as constants.

    As in numpy 2 (NEP 50), a Python ``int`` or ``float`` is "weak": it takes the dtype of
    the nodes it meets (``x32 * 2.0`` stays float32, ``i32 + 1`` stays int32), while a
    numpy scalar keeps its own (``x32 * np.float64(1e300)`` is float64).
    """
    if all(type(a) is Node for a in args) and args and all(a.graph is args[0].graph for a in args):
        return tuple(args)  # already nodes of one graph (every call from a derivative rule)
    graph = graph_of(op_name, args)
    dtypes = [a.dtype for a in args if isinstance(a, Node)]
    floats = [d for d in dtypes if d.kind == "f"]
    ints = [d for d in dtypes if d.kind in "iu"]
    out = []
    for a in args:
        if isinstance(a, Node):
            out.append(a if a.graph is graph else graph.capture(a))
        elif type(a) is float and floats:
            with np.errstate(over="ignore"):  # 1e300 in a float32 graph is inf, as in numpy
                out.append(graph.constant(np.asarray(a, dtype=np.result_type(*floats))))
        elif type(a) is int and (floats or ints):
            dt = np.result_type(*floats) if floats else np.result_type(*ints)
            fits = dt.kind == "f" or np.iinfo(dt).min <= a <= np.iinfo(dt).max
            out.append(graph.constant(np.asarray(a, dtype=dt) if fits else a))
        else:
            out.append(graph.constant(a))
    return tuple(out)


def atomic(fn: Callable[..., Node]) -> Callable[..., Node]:
    """The public form of an op function: if it fails, the graph is left as it was.

    A call can wrap numbers as constants before a shape check fails; this removes
    them again, so no failed call leaves a stray node behind.
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Node:
        graph = next((a.graph for a in args if isinstance(a, Node)), None)
        if graph is None:
            return fn(*args, **kwargs)
        mark = (len(graph._nodes), len(graph._aliases))
        try:
            return fn(*args, **kwargs)
        except BaseException:
            graph._rollback(mark)
            raise

    return call


def to_float(x: Node) -> Node:
    """``x`` itself if it is a float node, else ``x`` cast to float64 (what a float function of
    an integer computes on)."""
    if x.dtype.kind == "f":
        return x
    return apply(REGISTRY["astype"], x, dtype_to=np.dtype(np.float64).str)


def derive_function(
    op: Op, summary: str, example: str, *, floats: bool = False, name: str | None = None
) -> Callable[..., Node]:
    """The public function of a value-only op (``sd.sin``, ``sd.greater``), derived from its entry:
    its inputs as nodes (cast to float first for a float function, ``floats``), then ``apply``.

    ``name`` is the public name where it differs from the op's (``subtract`` for ``sub``).
    The docstring is the summary, the op's one-line math and the runnable example; the defining
    module lists the function in its ``__test__`` so the example runs as a doctest.
    """
    params = ("x",) if op.arity == 1 else ("x", "y") if op.arity == 2 else tuple(f"x{i}" for i in range(op.arity))
    label, name = op.name, name or op.name

    def function(*args: Any) -> Node:
        if len(args) != len(params):
            raise TypeError(f"{name}() takes {len(params)} argument(s) ({', '.join(params)}), got {len(args)}")
        inputs = as_nodes(label, *args)
        if floats:
            inputs = tuple(to_float(x) for x in inputs)
        return apply(op, *inputs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"{summary} ``{op.doc}``.\n\n{example}\n"
    function.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_ONLY, annotation="ArrayLike") for p in params],
        return_annotation="Node",
    )
    return function


def attrs_key(attrs: dict[str, Any]) -> tuple:
    return tuple(sorted(attrs.items()))


class Candidate:
    """A node about to be built (``op(inputs, attrs)`` with its shape and dtype): what the
    build-time rewrite rules match, before anything is appended to the graph."""

    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "graph")

    def __init__(self, op: str, inputs: tuple[Node, ...], attrs: dict[str, Any], shape: Shape, dtype: np.dtype, graph):
        self.op, self.inputs, self.attrs, self.shape, self.dtype, self.graph = op, inputs, attrs, shape, dtype, graph

    @property
    def ndim(self) -> int:
        return len(self.shape)


# Filled by symdiff.ops.rules: op name or kind -> ``rewrite(candidate) -> Node | None``, the
# build-time subset of the one rule table (``x + 0 -> x``), applied to every node built.
BUILD_REWRITES: dict[str, Callable[[Candidate], Node | None]] = {}


def apply(op: Op, *args: Any, **attrs: Any) -> Node:
    """Build (or find, if it exists) the node ``op(*args, **attrs)``.

    Arguments that are not nodes are wrapped as constants. Shapes are checked by
    the op's shape rule; the build-time rewrite rules may return an equal, simpler
    node (``x + 0`` is ``x``); the last of them, constant folding, returns the result
    as a constant when every input is a small constant (``symdiff.rules``).

    >>> g = sd.Graph(); x = g.variable("x")
    >>> from symdiff.ops.core import REGISTRY, apply
    >>> apply(REGISTRY["sin"], x) is sd.sin(x)
    True
    """
    if op.outputs is not None:
        return apply_multi(op, *args, **attrs)
    inputs, graph, key, found = _prepared(op, args, attrs)
    if found is not None:
        return found
    shape, dtype = _output_type(op, inputs, attrs)
    rewrite = BUILD_REWRITES.get(op.name) or BUILD_REWRITES.get(op.kind)
    if rewrite is not None:
        found = rewrite(Candidate(op.name, inputs, attrs, shape, dtype, graph))
        if found is not None:
            return found
    return graph._make(op.name, inputs, key, shape, dtype)


def _prepared(op: Op, args: Sequence[Any], attrs: dict[str, Any]) -> tuple[tuple[Node, ...], Any, tuple, Node | None]:
    """``op(args)``'s inputs as nodes, their graph, the attributes' key, and the node if it exists."""
    if op.arity is not None and len(args) != op.arity:
        raise GraphError(f"{op.name} takes {op.arity} input(s), got {len(args)}")
    inputs = as_nodes(op.name, *args)
    graph = inputs[0].graph
    key = attrs_key(attrs)
    return inputs, graph, key, graph._lookup(op.name, inputs, key)


def apply_multi(op: Op, *args: Any, **attrs: Any) -> tuple[Node, ...]:
    """:func:`apply` for an op with several outputs: the output nodes, one per name in
    ``op.outputs``, reading one node of the op (computed once however many are used).

    >>> g = sd.Graph(); A = g.variable("A", shape=(3, 3))
    >>> w, v = sd.eigh(A)
    >>> w.op, w.inputs[0] is v.inputs[0], w.inputs[0].is_multi
    ('output', True, True)
    """
    inputs, graph, key, node = _prepared(op, args, attrs)
    if node is None:
        shapes, dtypes = _output_types(op, inputs, attrs)
        if op.fold and all(i.op == "constant" for i in inputs) and all(foldable_shape(s) for s in shapes):
            with np.errstate(all="ignore"):
                values = op.forward(np, *(i.value for i in inputs), **attrs)
            return tuple(graph.constant(np.asarray(v, dtype=d)) for v, d in zip(values, dtypes))
        node = graph._make(op.name, inputs, key, None, None, results=tuple(zip(shapes, dtypes)))
    return outputs_of(node)


def outputs_of(node: Node) -> tuple[Node, ...]:
    """The output nodes of a node with several outputs (see :func:`output`)."""
    return tuple(output(node, k) for k in range(len(node.results)))


def output(node: Node, k: int) -> Node:
    """Output ``k`` of ``node``, an op's node with several outputs: a node of op ``"output"``
    (attribute ``index``) whose shape and dtype are that output's."""
    if not node.is_multi:
        raise GraphError(f"output: {node.op} (node #{node.index}) has one output; it is its own value")
    if not 0 <= k < len(node.results):
        raise GraphError(f"output: {node.op} (node #{node.index}) has {len(node.results)} outputs, no output {k}")
    shape, dtype = node.results[k]
    return node.graph._make("output", (node,), (("index", k),), shape, dtype)


def output_name(node: Node) -> str:
    """The name of the output an ``"output"`` node reads (``"eigenvalues"``, a loop's ``"carry"``), or
    ``"k"`` for a body's."""
    source, k = node.inputs[0], node._attrs[0][1]
    op = REGISTRY[source.op]
    names = op.outputs or (op.notation.outputs(source) if op.notation.outputs else None)
    return names[k] if names else str(k)


def rebuild(node: Node, inputs: Sequence[Any]) -> Any:
    """``node``'s op with the same attributes (and bodies) on other ``inputs``, through the
    build-time rules as any new node: what a rewrite that replaces inputs builds. A node with
    several outputs may give the tuple of its outputs instead (constants it folded to); an
    ``"output"`` node's input may be such a tuple."""
    if node.op == "output":
        source, k = inputs[0], node._attrs[0][1]
        return source[k] if isinstance(source, tuple) else output(source, k)
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    if node.regions:  # the same bodies run on other inputs of the same types
        graph = graph_of(node.op, inputs)
        return graph._make(node.op, tuple(inputs), node._attrs, node.shape, node.dtype, node.results, node.regions)
    op, attrs = REGISTRY[node.op], dict(node._attrs)
    if node.is_multi:  # the new node, or its outputs if they folded to constants
        outs = apply_multi(op, *inputs, **attrs)
        return outs[0].inputs[0] if outs[0].op == "output" else outs
    return apply(op, *inputs, **attrs)


def _output_types(op: Op, inputs: Sequence[Node], attrs: dict[str, Any]) -> tuple[tuple, tuple]:
    """An op's shape and dtype rules, for an op with several outputs: a tuple of each."""
    try:
        shapes = tuple(tuple(s) for s in op.shape(*(i.shape for i in inputs), **attrs))
    except ShapeError as exc:
        listed = ", ".join(format_shape(i.shape) for i in inputs)
        raise ShapeError(f"{op.name}: {exc} (input shapes: {listed})") from None
    dtypes = tuple(np.dtype(d) for d in op.dtype(*(i.dtype for i in inputs), **attrs))
    return shapes, dtypes


def _output_type(op: Op, inputs: Sequence[Node], attrs: dict[str, Any]) -> tuple[Shape, np.dtype]:
    """The op's shape and dtype rules on its inputs; a ShapeError names the op and the shapes."""
    try:
        shape = tuple(op.shape(*(i.shape for i in inputs), **attrs))
    except ShapeError as exc:
        shapes = ", ".join(format_shape(i.shape) for i in inputs)
        raise ShapeError(f"{op.name}: {exc} (input shapes: {shapes})") from None
    return shape, np.dtype(op.dtype(*(i.dtype for i in inputs), **attrs))


def restore(op: Op, inputs: Sequence[Node], attrs: dict[str, Any], regions: tuple[Region, ...] = ()) -> Node:
    """Append ``op(inputs, attrs)`` (running ``regions``) exactly as given: checked by the op's
    arity, shape and dtype rules (a body's node: by its body's parameters and outputs; an output
    node: by the node it reads), but neither folded nor merged with an equal node (loading a
    saved graph)."""
    if op.arity is not None and len(inputs) != op.arity:
        raise GraphError(f"{op.name} takes {op.arity} input(s), got {len(inputs)}")
    if not inputs:
        raise GraphError(f"{op.name} has no inputs")
    graph = graph_of(op.name, inputs)
    results = None
    if regions:
        region = regions[0]
        # a body is seen from its parent graph and the bodies inside it (a checkpointed reverse
        # runs the loop's body from bodies of its own)
        if any(r.graph.parent is None or not encloses(r.graph.parent, graph) for r in regions):
            raise GraphError(f"{op.name}: a body it runs is not a body of its graph or of a graph around it")
        if len(inputs) != len(region.params) or not all(
            shape_matches(p.shape, x.shape) for x, p in zip(inputs, region.params)
        ):
            raise GraphError(f"{op.name}: its inputs do not fit the parameters of its body {region.name!r}")
        shape = dtype = None
        if region.several:
            results = tuple((o.shape, o.dtype) for o in region.outputs)
        else:
            shape, dtype = region.outputs[0].shape, region.outputs[0].dtype
    elif op is OUTPUT:
        source, k = inputs[0], attrs.get("index")
        if not source.is_multi or not isinstance(k, int) or not 0 <= k < len(source.results):
            raise GraphError(f"output: {describe(source)} has no output {k!r}")
        shape, dtype = source.results[k]
    elif op.outputs is not None:
        shapes, dtypes = _output_types(op, inputs, attrs)
        if len(shapes) != len(op.outputs):
            raise GraphError(f"{op.name}: {len(shapes)} results for {len(op.outputs)} outputs")
        results, shape, dtype = tuple(zip(shapes, dtypes)), None, None
    else:
        shape, dtype = _output_type(op, inputs, attrs)
    key_attrs = attrs_key(attrs)
    key = (op.name, tuple(inputs), key_attrs, regions) if regions else (op.name, tuple(inputs), key_attrs)
    node = Node(graph, op.name, tuple(inputs), key_attrs, shape, dtype, None, None, None, key, results, regions)
    return graph._append(node)


# Constant inputs are folded at build time when the result has at most this many elements.
FOLD_MAX_SIZE = 1 << 20


def foldable_shape(shape: Shape) -> bool:
    """Whether a result of ``shape`` is folded when its inputs are constants: static, and at
    most ``FOLD_MAX_SIZE`` elements."""
    return all(d is not None for d in shape) and int(np.prod(shape, dtype=np.int64)) <= FOLD_MAX_SIZE


# -- shape helpers -----------------------------------------------------------------
def broadcast_shapes(*shapes: Shape) -> Shape:
    """numpy broadcasting of static shapes.

    A ``None`` dimension is never broadcast: against a known size n it is taken to
    be n (or it broadcasts a 1), against another ``None`` it is the same size. The
    evaluator checks this at run time.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in shapes if len(s) >= -axis]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("shapes " + " and ".join(format_shape(s) for s in shapes) + " do not broadcast")
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def same_shape(shape: Shape) -> Shape:
    return shape


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int, or a tuple) as a sorted tuple of negative axes.

    Negative axes count from the end, so derivative rules that reuse them work
    unchanged on cotangents that carry extra leading batch axes.
    """
    if axis is None:
        return tuple(range(-ndim, 0))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = set()
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise ShapeError(f"axis {a!r} is not an int")
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for {ndim} dimensions")
        if a % ndim - ndim in out:
            raise ShapeError(f"axis {a} is repeated in {axis!r}")
        out.add(int(a) % ndim - ndim)
    return tuple(sorted(out))


def op_axes(op: str, x: Node, axis: Any) -> tuple[int, ...]:
    """``normalize_axes`` for op ``op`` on ``x``, its error naming the op and x's shape."""
    try:
        return normalize_axes(axis, x.ndim)
    except ShapeError as exc:
        raise ShapeError(f"{op}: {exc} (input shape {x.shape})") from None


def batch_ndim(g: Node, out: Node) -> int:
    """How many leading batch axes a cotangent or tangent carries beyond ``out``."""
    return g.ndim - out.ndim


# -- several outputs ----------------------------------------------------------------
def _output_shape(*_: Any, **__: Any) -> Shape:
    raise ShapeError("an output node takes its shape from the node it reads (build it with output(node, k))")


def _routed(*_: Any, **__: Any) -> Node:
    raise GraphError("an output node's derivative is routed by the derivative pass, not computed by a rule")


OUTPUT = define_op(
    "output",
    lambda xp, t, index: t[index],
    _output_shape,
    kind="structural",
    vjp=(_routed,),
    jvp=(_routed,),
    dtype=lambda *_, **__: np.dtype(np.float64),
    # eigh(A).eigenvalues; a body's outputs have no names: f(x)[0], as Python indexes a tuple
    text=lambda node, args, wrap: (
        f"{wrap(0, 100)}[{output_name(node)}]"
        if output_name(node).isdigit()
        else f"{wrap(0, 100)}.{output_name(node)}",
        100,
    ),
    # braced: the input may be a subscripted line name (t_{1})
    latex=lambda node, args, wrap: (f"{{{wrap(0, 100)}}}_{{\\mathrm{{{output_name(node)}}}}}", 100),
    label=lambda node: output_name(node),
    fold=False,
    doc="output k of an op with several outputs (eigh's eigenvalues); the derivative pass routes its derivatives",
)
