"""What the rule table and the printers both ask of a constant node: how its number is written,
the call it was folded from (``log(2)``) and whether it is an identity (a derivative's seed).

They live here, below both ``symdiff.rules`` and ``symdiff.printing``, so whether a rewrite fires
and how a constant prints read the same answers without either importing the other.
"""

from __future__ import annotations

import weakref

import numpy as np

from symdiff.graph import Node
from symdiff.ops.core import REGISTRY, Op


def format_number(v: float | int | bool) -> str:
    """A number as symdiff writes it: ``2`` for 2.0, ``0.1`` as ``repr`` gives it, ``True``.

    >>> from symdiff.ops.constants import format_number
    >>> format_number(2.0), format_number(0.1), format_number(np.bool_(True))
    ('2', '0.1', 'True')
    """
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def written_as_call(op: Op) -> bool:
    """True for an op printed as ``name(args)``: no infix symbol and no form of its own."""
    return not (op.notation.symbol or op.notation.text or op.notation.transparent)


def folded_from(node: Node) -> str | None:
    """``log(2)`` for the constant 0.6931471805599453 that folding log(2) made: a number
    whose digits say less than the function of a short number it came from; else None.

    >>> g = sd.Graph()
    >>> from symdiff.ops.constants import folded_from
    >>> folded_from(sd.log(g.constant(2.0))), folded_from(g.constant(0.5))
    ('log(2)', None)
    """
    if node.origin is None or len(format_number(node.value.item())) <= 8:
        return None
    op, inputs = node.origin
    if len(inputs) != 1 or not written_as_call(REGISTRY[op]) or inputs[0].shape != () or inputs[0].dtype.kind != "f":
        return None
    argument = format_number(inputs[0].value.item())
    return f"{op}({argument})" if len(argument) <= 8 else None


# -- identities (a Jacobian's or Hessian's seed) ------------------------------------------------
_IDENTITY_FORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ELEMENT_SCALE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_eye(v: np.ndarray) -> bool:
    n = v.shape[0]
    return v.shape == (n, n) and np.count_nonzero(v) == n and bool(np.all(np.diagonal(v) == 1))


def identity_form(node: Node) -> str | None:
    """ "eye" for an (n, n) identity constant, "rows" for (n, 1, n) (unit row vectors), "cols" for
    (n, n, 1) (unit columns), "elements" for (m, k, m, k) (the identity on m x k matrices, times
    ``element_scale(node)``); None for anything else. Checked once per constant.

    >>> g = sd.Graph()
    >>> from symdiff.ops.constants import identity_form
    >>> identity_form(g.constant(np.eye(3))), identity_form(g.constant(np.ones((3, 3))))
    ('eye', None)
    """
    if node.op != "constant":
        return None
    form = _IDENTITY_FORMS.get(node, False)
    if form is not False:
        return form
    s, v, form = node.shape, node.value, None
    if node.uniform is None and node.dtype.kind == "f" and len(s) in (2, 3):
        if len(s) == 2 and s[0] == s[1] and _is_eye(v):
            form = "eye"
        elif len(s) == 3 and s[1] == 1 and s[0] == s[2] and _is_eye(v[:, 0, :]):
            form = "rows"
        elif len(s) == 3 and s[2] == 1 and s[0] == s[1] and _is_eye(v[:, :, 0]):
            form = "cols"
    if form is None and node.uniform is None and node.dtype.kind == "f" and len(s) == 4 and s[:2] == s[2:]:
        flat = v.reshape(s[0] * s[1], s[0] * s[1])
        scale = flat[0, 0]
        if scale != 0 and _is_eye(flat / scale):
            form = "elements"  # c times the identity on a matrix's elements: a Hessian's seed by a matrix
            _ELEMENT_SCALE[node] = scale
    _IDENTITY_FORMS[node] = form
    return form


def element_scale(node: Node) -> float:
    """The factor c of a constant whose ``identity_form`` is "elements" (c times the identity)."""
    return _ELEMENT_SCALE[node]
