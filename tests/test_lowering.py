"""Lowering (symdiff.lower): every op that is not a primitive, written as other ops, computes what
the op's own forward computes, for every op case of the registry and for every node of the
cases' first and second derivatives (where the adjoint ops live); and the lowering reaches
primitives."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.lower import lowered, primitive_ops, primitives
from symdiff.ops import REGISTRY

from .op_cases import CASES
from .test_backends import _build


def _lowered_nodes(outputs):
    """The nodes of the program (outside bodies: a body's nodes are checked by the backends' tests)
    whose op lowers."""
    return [n for n in sd.graph.ancestors(outputs) if n.op in REGISTRY and REGISTRY[n.op].lower is not None]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_lowering_computes_the_ops_forward(case):
    xs, outputs = _build(case)
    nodes = _lowered_nodes(outputs)
    if not nodes:
        pytest.skip("no node of this case's program lowers")
    bindings = dict(zip(xs, case.inputs))
    for node in nodes:
        try:
            region = lowered(node)
        except sd.ShapeError as exc:  # a regrouping of axes of sizes known only at evaluation
            assert any(None in u.shape for u in node.inputs), exc
            assert "cannot be written as primitives" in str(exc)
            continue
        inputs = sd.evaluate(list(node.inputs), bindings) if node.inputs else []
        expected = sd.evaluate(node if not node.is_multi else list(sd.ops.core.outputs_of(node)), bindings)
        got = sd.evaluate(list(region.outputs), dict(zip(region.params, inputs)))
        expected = expected if node.is_multi else [expected]
        for k, (a, b) in enumerate(zip(got, expected)):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape and a.dtype == b.dtype, (node.op, k, a.shape, b.shape, a.dtype, b.dtype)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=f"{node.op} output {k}")


def test_lowering_reaches_primitives_and_adds_nothing_to_the_users_graph():
    g = sd.Graph()
    x = g.variable("x", (2, 3))
    y = sd.tile(x, (2, 2))
    before = len(g)
    region = lowered(y)
    assert len(g) == before and region.graph is not g
    assert lowered(y) is region  # traced once per op, input types and attributes
    assert primitives([y]) <= set(primitive_ops())
    assert "tile" not in primitives([y]) and "tile" not in primitive_ops()


def test_a_lowering_that_needs_sizes_is_refused_by_name_with_the_shapes():
    g = sd.Graph()
    x = g.variable("x", (None, None))
    y = sd.kron(x, np.eye(2))
    with pytest.raises(sd.ShapeError, match=r"kron \(node #\d+, inputs of shapes \(\?, \?\), \(2, 2\)\) cannot be"):
        lowered(y)
    with pytest.raises(sd.BackendError, match=r"numba backend cannot run op 'kron': kron \(node #\d+, inputs of"):
        sd.compile(y, [x], backend="numba")
    np.testing.assert_array_equal(sd.compile(y, [x])(np.ones((2, 3))), np.kron(np.ones((2, 3)), np.eye(2)))
