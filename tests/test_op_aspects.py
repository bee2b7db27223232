"""Op x aspect: every op has each aspect written, derived from its kind, or marked unsupported
with a reason, and every aspect an op has works on the op's test cases."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import sympy

import symdiff as sd
from symdiff.backends import installed, load
from symdiff.backends import numpy as numpy_backend
from symdiff.export.dot import label
from symdiff.graph import ancestors
from symdiff.ops.core import ASPECTS, REGISTRY, aspects
from symdiff.printing import to_latex

from .op_cases import CASES

BUILT_IN = sorted(REGISTRY)  # at import: ops that tests register for a while are not part of the table
BACKENDS = {"numpy": numpy_backend} | {b: load(b) for b in ("numba", "jax") if installed(b)}
if importlib.util.find_spec("dask") is not None:  # an evaluator for dask arrays, not a compile backend
    BACKENDS["dask"] = importlib.import_module("symdiff.backends.dask")


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_aspect_is_written_derived_or_unsupported(name):
    op = REGISTRY[name]
    found = aspects(op)
    assert set(found) == set(ASPECTS)
    missing = [a for a, how in found.items() if how == "missing"]
    assert not missing, f"op {name!r} has no {missing}: write them, or mark them unsupported with a reason"
    for aspect, how in found.items():
        assert how in ("written", "derived", "derived from transpose") or (
            how.startswith("none: ") and len(how) > 12
        ), (aspect, how)


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_computes_every_op_or_says_why_not(name, backend):
    op = REGISTRY[name]
    module = BACKENDS[backend]
    reason = module.unsupported(op) if hasattr(module, "unsupported") else None
    if reason is None:
        assert callable(module.function(op)), f"backend {backend} has no function for {name}"
    else:
        assert len(reason) > 12, reason
        with pytest.raises(sd.BackendError, match=f"(backend cannot run op|but op) '{name}'"):
            module.function(op)


def test_kinds_derive_what_they_can():
    assert aspects(REGISTRY["sin"])["jvp"] == "derived"  # elementwise: the vjp with the tangent for g
    assert aspects(REGISTRY["sin"])["vjp"] == "derived"  # from its partial derivative, cos x
    assert aspects(REGISTRY["sum"])["jvp"] == "derived"  # linear: the op itself on the tangent
    assert aspects(REGISTRY["transpose"])["sympy"] == "derived"  # structural: the forward moves sympy objects
    assert aspects(REGISTRY["tanh"])["forward"] == "derived"  # numpy="tanh"
    assert aspects(REGISTRY["greater"])["vjp"].startswith("none: not differentiable")
    derived = sum(aspects(REGISTRY[n])["jvp"] == "derived" for n in BUILT_IN)
    assert derived >= 30, derived


def _small_static(case) -> bool:
    return all(np.size(a) <= 16 for a in case.inputs) and (
        case.shapes is None or all(None not in s for s in case.shapes)
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_case_prints_draws_and_converts(case):
    g = sd.Graph()
    shapes = case.shapes or [np.shape(a) for a in case.inputs]
    xs = [g.variable(f"x{k}", shape=s, dtype=np.asarray(a).dtype) for k, (a, s) in enumerate(zip(case.inputs, shapes))]
    y = case.build(*xs)
    assert str(y) and "<" not in str(y).replace("<=", "").replace(" < ", "")
    assert to_latex(y)
    assert label(y)
    if not _small_static(case) or y.dtype.kind != "f":
        return
    if any("sympy" in REGISTRY[n.op].unsupported for n in ancestors([y]) if n.inputs):
        with pytest.raises(sd.GraphError, match="no sympy translation"):
            sd.to_sympy(y)
        return
    if any(np.asarray(v).dtype.kind != "f" for v in case.inputs):  # an integer variable is a symbol
        with pytest.raises(sd.GraphError, match="to_sympy"):
            sd.to_sympy(y)
        return
    expr = sd.to_sympy(y)
    subs = {}
    for x, value in zip(xs, case.inputs):
        value = np.asarray(value)
        if value.ndim == 0:
            subs[sympy.Symbol(x.name)] = sympy.Float(float(value))
        else:
            for i in np.ndindex(value.shape):
                subs[sympy.Symbol(f"{x.name}_{'_'.join(map(str, i))}")] = sympy.Float(float(value[i]))
    if hasattr(expr, "applyfunc"):  # a Matrix or an Array
        got = np.array(expr.applyfunc(lambda e: sympy.N(e.subs(subs))).tolist(), dtype=float)
    else:
        got = np.array(float(sympy.N(expr.subs(subs))))
    want = np.asarray(case.reference(*case.inputs), dtype=float)
    rounded = any(n.dtype == np.float32 for n in ancestors([y]))  # sympy computes exactly, not in float32
    rtol = 1e-6 if rounded else 1e-8
    np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=rtol, atol=1e-10, err_msg=case.name)
