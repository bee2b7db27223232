"""The bad-input catalogue: each case raises its exact error class with a message that names
the culprit, and leaves the graph exactly as it was before the failing call."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.parse import ParseError, parse


class Checker:
    """``fail(call)``: the graph before ``call`` is the graph after it, which must raise."""

    def __init__(self, graph: sd.Graph, error: type, message: str):
        self.graph, self.error, self.message = graph, error, message
        self.ran = False

    def __call__(self, call) -> None:
        nodes, variables = list(self.graph.nodes), dict(self.graph.variables)
        with pytest.raises(self.error, match=self.message):
            call()
        assert list(self.graph.nodes) == nodes, "the failed call left nodes behind"
        assert dict(self.graph.variables) == variables, "the failed call left variables behind"
        self.ran = True


# name: (error, message, case(g, x, A, i, y, fail)); the case builds what the failing call
# needs (successful calls), then passes the failing call to fail().
CASES = {
    # shapes at build time
    "add-broadcast": (
        sd.ShapeError,
        r"add: shapes \(3,\) and \(4,\) do not broadcast",
        lambda g, x, A, i, y, fail: fail(lambda: x + np.ones(4)),
    ),
    "matmul-inner": (
        sd.ShapeError,
        "inner dimensions 3 and 4",
        lambda g, x, A, i, y, fail: fail(lambda: A @ np.ones(4)),
    ),
    "sum-axis": (sd.ShapeError, "axis 2 is out of range", lambda g, x, A, i, y, fail: fail(lambda: sd.sum(x, axis=2))),
    "reshape": (
        sd.ShapeError,
        r"cannot reshape \(3,\)",
        lambda g, x, A, i, y, fail: fail(lambda: sd.reshape(x, (2, 2))),
    ),
    "index": (
        sd.ShapeError,
        "index 5 is out of bounds for axis 0 with size 3",
        lambda g, x, A, i, y, fail: fail(lambda: x[5]),
    ),
    "solve-square": (
        sd.ShapeError,
        "solve needs square matrices",
        lambda g, x, A, i, y, fail: (lambda M: fail(lambda: sd.solve(M, x)))(g.constant(np.ones((2, 3)))),
    ),
    # shapes and dtypes at bind time
    "bind-shape": (
        sd.ShapeError,
        r"variable 'x' has shape \(3,\) but was bound to a value of shape \(4,\)",
        lambda g, x, A, i, y, fail: fail(lambda: sd.evaluate(y, {x: np.ones(4), A: np.ones((2, 3))})),
    ),
    "bind-complex": (
        sd.DTypeError,
        "variable 'x' was bound to a value of dtype complex128",
        lambda g, x, A, i, y, fail: fail(lambda: sd.evaluate(y, {x: np.ones(3) * 1j, A: np.ones((2, 3))})),
    ),
    "bind-object": (
        sd.DTypeError,
        "dtype object",
        lambda g, x, A, i, y, fail: fail(
            lambda: sd.evaluate(y, {x: np.array([1, "a", None], dtype=object), A: np.ones((2, 3))})
        ),
    ),
    "bind-strings": (
        sd.DTypeError,
        "dtype <U1",
        lambda g, x, A, i, y, fail: fail(lambda: sd.evaluate(y, {x: ["a", "b", "c"], A: np.ones((2, 3))})),
    ),
    "bind-float-to-int": (
        sd.DTypeError,
        "'i' has dtype int64",
        lambda g, x, A, i, y, fail: (lambda n: fail(lambda: sd.evaluate(n, {i: 1.5})))(i + 1),
    ),
    "none-broadcast": (
        sd.ShapeError,
        "None dimension never broadcasts",
        lambda g, x, A, i, y, fail: (lambda n: fail(lambda: sd.evaluate(n, {A: np.ones((4, 3))})))(A * A[:1]),
    ),
    # unbound
    "unbound": (
        sd.UnboundVariableError,
        r"variables 'x' \(shape \(3,\)\), 'A' \(shape \(\?, 3\)\)",
        lambda g, x, A, i, y, fail: fail(lambda: sd.evaluate(y, {})),
    ),
    # dtypes at build time
    "constant-complex": (sd.DTypeError, "complex", lambda g, x, A, i, y, fail: fail(lambda: x * (1 + 2j))),
    "constant-string": (sd.DTypeError, "not supported", lambda g, x, A, i, y, fail: fail(lambda: x + "abc")),
    "variable-dtype": (
        sd.DTypeError,
        "variable 'z'",
        lambda g, x, A, i, y, fail: fail(lambda: g.variable("z", dtype=complex)),
    ),
    # names and graphs
    "duplicate-name": (
        sd.GraphError,
        "a variable named 'x' already exists",
        lambda g, x, A, i, y, fail: fail(lambda: g.variable("x")),
    ),
    "bad-name": (
        sd.GraphError,
        "not a valid identifier",
        lambda g, x, A, i, y, fail: fail(lambda: g.variable("not valid")),
    ),
    "mixed-graphs": (
        sd.GraphError,
        "different graphs",
        lambda g, x, A, i, y, fail: (lambda other: fail(lambda: x + other))(sd.Graph().variable("x", shape=(3,))),
    ),
    "numbers-only": (
        sd.GraphError,
        "no input is a symdiff node",
        lambda g, x, A, i, y, fail: fail(lambda: sd.sin(1.0)),
    ),
    # derivatives
    "comparison": (
        sd.NonDifferentiableError,
        "greater",
        lambda g, x, A, i, y, fail: (lambda c: fail(lambda: sd.grad(c, x)))(sd.sum(x > 0)),
    ),
    "integer-index": (
        sd.NonDifferentiableError,
        "astype",
        lambda g, x, A, i, y, fail: (lambda c: fail(lambda: sd.grad(c, x)))(
            sd.sum(sd.take(g.constant(np.arange(5.0)), sd.astype(x, "int64")))
        ),
    ),
    "integer-wrt": (
        sd.NonDifferentiableError,
        "'i' has dtype int64",
        lambda g, x, A, i, y, fail: (lambda c: fail(lambda: sd.grad(c, i)))(sd.sum(x * i)),
    ),
    "non-scalar-cost": (
        sd.ShapeError,
        r"cost has shape \(\?,\), not a scalar",
        lambda g, x, A, i, y, fail: (lambda c: fail(lambda: sd.grad(c, x)))(A @ x),
    ),
    "wrt-number": (sd.GraphError, "wrt must be a node", lambda g, x, A, i, y, fail: fail(lambda: sd.grad(y, 3.0))),
    "wrt-string": (sd.GraphError, r"wrt\[1\] is a str", lambda g, x, A, i, y, fail: fail(lambda: sd.grad(y, [x, "A"]))),
    "grad-output-shape": (
        sd.ShapeError,
        "grad_output has shape",
        lambda g, x, A, i, y, fail: (lambda t: fail(lambda: sd.grad(t, x, grad_output=np.ones(2))))(sd.tanh(x)),
    ),
    "hvp-tangent-shape": (
        sd.ShapeError,
        r"hvp: v has shape \(4,\) but variable 'x' has shape \(3,\)",
        lambda g, x, A, i, y, fail: fail(lambda: sd.hvp(y, x, np.ones(4))),
    ),
    # strings that try to run code
    "parse-code": (
        ParseError,
        "unexpected character",
        lambda g, x, A, i, y, fail: fail(lambda: parse("__import__('os').system('echo hacked')", g)),
    ),
    "parse-attribute": (
        ParseError,
        "unexpected character '.'",
        lambda g, x, A, i, y, fail: fail(lambda: parse("x.y", g)),
    ),
    "parse-new-names": (
        ParseError,
        "unknown function 'evil'",
        lambda g, x, A, i, y, fail: fail(lambda: parse("newvar + evil(x)", g)),
    ),
    # compile
    "compile-missing-input": (
        sd.UnboundVariableError,
        "'A'",
        lambda g, x, A, i, y, fail: fail(lambda: sd.compile(y, inputs=[x])),
    ),
    "compile-twice": (
        sd.GraphError,
        "listed twice",
        lambda g, x, A, i, y, fail: fail(lambda: sd.compile(y, inputs=[x, x, A])),
    ),
}


def _graph():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    A = g.variable("A", shape=(None, 3))
    i = g.variable("i", dtype="int64")
    y = sd.sum(sd.tanh(A @ x))
    return g, x, A, i, y


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_raises_clearly_and_changes_nothing(name):
    error, message, case = CASES[name]
    g, x, A, i, y = _graph()
    fail = Checker(g, error, message)
    case(g, x, A, i, y, fail)
    assert fail.ran


def test_every_error_is_a_symdiff_error():
    for cls in (sd.ShapeError, sd.DTypeError, sd.UnboundVariableError, sd.NonDifferentiableError, sd.GraphError):
        assert issubclass(cls, sd.SymdiffError)
    assert issubclass(ParseError, sd.SymdiffError)


def test_graph_still_works_after_errors():
    g, x, A, i, y = _graph()
    for error, message, case in CASES.values():
        case(g, x, A, i, y, Checker(g, error, message))
    gx = sd.grad(y, x)
    assert sd.evaluate(gx, {x: np.zeros(3), A: np.ones((2, 3))}).tolist() == [2.0, 2.0, 2.0]
