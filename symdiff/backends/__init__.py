"""Backends: each prints or runs an evaluation plan (``symdiff.plan``); numpy is the default.

A backend module has ``function(op)`` (what computes the op, or a :class:`BackendError`
naming the op), ``unsupported(op)`` (None, or why the backend cannot run it: the op
support table in docs/ops.md shows it) and ``Compiled``, the callable ``sd.compile``
makes with it. ``load(name)`` imports a backend, or says which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from symdiff.errors import BackendError

BACKENDS = ("numpy", "numba", "jax", "c")
_LIBRARIES = {"numpy": "numpy", "numba": "numba", "jax": "jax", "c": "cffi"}


def installed(name: str) -> bool:
    """True if the library a backend needs can be imported."""
    return importlib.util.find_spec(_LIBRARIES[name]) is not None


def load(name: str) -> ModuleType:
    """The backend module ``name``; a BackendError if it is unknown or not installed."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(map(repr, BACKENDS))}")
    if not installed(name):
        raise BackendError(
            f"backend {name!r} needs {_LIBRARIES[name]}, which is not installed: pip install 'symdiff[{name}]'"
        )
    return importlib.import_module(f"symdiff.backends.{name}")


def unsupported_error(backend: str, op: str, reason: str) -> BackendError:
    return BackendError(f"the {backend} backend cannot run op {op!r}: {reason}; use backend='numpy' for this graph")


def described(reason: str | None, *cases: tuple[bool, str], otherwise: str) -> str:
    """How a backend runs an op, for docs/ops.md's table: ``"none: <reason>"`` where it cannot
    (``reason`` from its ``unsupported``), else the text of the first case that holds."""
    if reason is not None:
        return f"none: {reason}"
    return next((text for holds, text in cases if holds), otherwise)
