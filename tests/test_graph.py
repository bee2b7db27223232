"""Graph and node semantics: interning, ordering, operators, shapes, printing."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd


@pytest.fixture
def g():
    return sd.Graph()


def test_interning_makes_equal_expressions_one_node(g):
    x, y = g.variable("x"), g.variable("y")
    a = sd.sin(x) * y
    n = len(g)
    b = sd.sin(x) * y
    assert a is b and len(g) == n
    assert g.constant(2.0) is g.constant(2.0)
    assert g.constant(np.eye(3)) is g.constant(np.eye(3))
    assert (x + 1.0) is (x + 1)  # a Python int next to a float node takes its dtype


def test_nodes_are_in_dependency_order_and_immutable(g):
    x = g.variable("x", shape=(3,))
    y = sd.sum(sd.exp(x) * 2.0)
    sd.grad(y, x)
    position = {n: i for i, n in enumerate(g.nodes)}
    assert len(g) == len(g.nodes)
    for n in g.nodes:
        assert all(position[u] < position[n] for u in n.inputs)
    with pytest.raises(AttributeError):
        y.foo = 1  # no new attributes
    assert isinstance(y.inputs, tuple)


def test_node_fields(g):
    x = g.variable("x", shape=(None, 3))
    y = sd.tanh(x)
    assert (y.op, y.inputs, y.name, y.shape, y.graph) == ("tanh", (x,), None, (None, 3), g)
    assert x.op == "variable" and x.name == "x" and x.inputs == ()
    c = g.constant([1.0, 2.0])
    assert c.op == "constant" and c.shape == (2,)
    assert (x * x).op == "mul" and (x @ g.constant(np.ones(3))).op == "matmul"


def test_operators(g):
    x = g.variable("x", shape=(2, 3))
    v = np.arange(6.0).reshape(2, 3)
    cases = {
        "add": (x + 1, v + 1),
        "radd": (1 + x, 1 + v),
        "sub": (x - 1, v - 1),
        "rsub": (1 - x, 1 - v),
        "mul": (x * 2, v * 2),
        "rmul": (np.full(3, 2.0) * x, 2 * v),
        "div": (x / 4, v / 4),
        "rdiv": (1 / (x + 1), 1 / (v + 1)),
        "pow": (x**2, v**2),
        "rpow": (2**x, 2**v),
        "neg": (-x, -v),
        "matmul": (x @ np.ones((3, 2)), v @ np.ones((3, 2))),
        "rmatmul": (np.ones((4, 2)) @ x, np.ones((4, 2)) @ v),
        "index": (x[1], v[1]),
        "slice": (x[:, 1:], v[:, 1:]),
        "T": (x.T, v.T),
        "sum": (x.sum(axis=0), v.sum(axis=0)),
        "mean": (x.mean(), v.mean()),
        "reshape": (x.reshape(3, 2), v.reshape(3, 2)),
        "gt": (x > 2, v > 2),
        "le": (x <= 2, v <= 2),
    }
    for name, (node, expected) in cases.items():
        np.testing.assert_array_equal(sd.evaluate(node, {x: v}), expected, err_msg=name)


def test_identity_equality_and_no_truth_value(g):
    x, y = g.variable("x"), g.variable("y")
    assert x == x and x != y and hash(x) != hash(y)
    assert {x: 1}[x] == 1
    with pytest.raises(TypeError, match="no truth value"):
        bool(x > y)
    assert sd.equal(x, y).op == "equal"


def test_iteration_and_unpacking(g):
    w = g.variable("w", shape=(3,))
    a, b, c = w
    assert sd.evaluate(b, {w: [1.0, 2.0, 3.0]}) == 2.0
    assert len(w) == 3
    with pytest.raises(TypeError):
        iter(g.variable("s"))


def test_broadcasting_shapes(g):
    a = g.variable("a", shape=(2, 1, 3))
    b = g.variable("b", shape=(4, 1))
    assert (a + b).shape == (2, 4, 3)
    X = g.variable("X", shape=(None, 3))
    assert (X + g.variable("r", shape=(3,))).shape == (None, 3)
    with pytest.raises(sd.ShapeError, match=r"add: shapes \(2, 1, 3\) and \(4, 2\) do not broadcast"):
        a + g.variable("c", shape=(4, 2))


def test_matmul_shape_errors_name_the_shapes(g):
    A = g.variable("A", shape=(2, 3))
    with pytest.raises(sd.ShapeError, match=r"matmul: inner dimensions 3 and 4 do not match.*\(2, 3\), \(4, 5\)"):
        A @ g.variable("B", shape=(4, 5))
    with pytest.raises(sd.ShapeError, match="scalars"):
        A @ g.variable("s")


def test_failed_build_leaves_graph_unchanged(g):
    a = g.variable("a", shape=(2,))
    n = len(g)
    with pytest.raises(sd.ShapeError):
        sd.exp(a) + g.variable("b", shape=(3,))
    # exp and b were built (valid on their own); the failing add appended nothing
    assert all(node.op != "add" for node in g.nodes[n:])


def test_python_scalars_keep_float32(g):
    x = g.variable("x", shape=(2,), dtype="float32")
    y = x * 2.0 + 1
    assert y.dtype == np.float32
    assert sd.evaluate(y, {x: np.ones(2, np.float32)}).dtype == np.float32
    gx = sd.grad(sd.sum(y), x)
    assert gx.dtype == np.float32


def test_integer_and_bool_dtypes(g):
    i = g.variable("i", dtype="int64")
    assert (i + 1).dtype == np.int64
    assert (i / 2).dtype == np.float64
    assert (i**2).dtype == np.float64  # integer powers are computed in float
    assert (i > 0).dtype == np.bool_


def test_str_is_readable_infix(g):
    x, y = g.variable("x"), g.variable("y")
    assert str((x + y) * (x - y)) == "(x + y)*(x - y)"
    assert str(x - (y - x)) == "x - (y - x)"
    assert str(x / (y * x)) == "x/(y*x)"
    assert str(-(x**2)) == "-x**2"
    assert str((-x) ** 2) == "(-x)**2"
    assert str(x * -y) == "-x*y" and (x * -y) is -(x * y)  # negations collect
    assert str(x - -y) == "x + y"
    assert str(-(x + y)) == "-(x + y)"
    w = g.variable("w", shape=(4,))
    assert str(sd.sum(w[1:3] ** 2)) == "sum(w[1:3]**2)"
    assert str(sd.sum(g.variable("M", shape=(2, 3)), axis=0)) == "sum(M, axis=-2)"


def test_large_dags_print_with_named_shared_subexpressions(g):
    x = g.variable("x")
    h = x
    for _ in range(16):
        h = h * sd.sin(h) + x
    text = str(h)
    assert text.count("\n") >= 15  # one line per shared level, not a 2**16-term tree
    assert len(text) < 5000
    assert text.splitlines()[0].startswith("t1 = ")


def test_repr_is_short(g):
    x = g.variable("x", shape=(3,))
    r = repr(sd.exp(x))
    assert r.startswith("<Node #1 exp shape=(3,)") and "exp(x)" in r


def test_graph_lookup_and_duplicate_names(g):
    x = g.variable("x")
    assert g["x"] is x and dict(g.variables) == {"x": x}
    with pytest.raises(sd.GraphError, match="already exists"):
        g.variable("x")
    with pytest.raises(sd.GraphError, match="no variable named 'y'"):
        g["y"]
    with pytest.raises(sd.GraphError, match="not a valid identifier"):
        g.variable("2x")


def test_mixing_graphs_is_an_error():
    g1, g2 = sd.Graph(), sd.Graph()
    a, b = g1.variable("a"), g2.variable("b")
    with pytest.raises(sd.GraphError, match="different graphs"):
        a + b
    with pytest.raises(sd.GraphError):
        sd.grad(a * 2, b)


def test_build_time_folding(g):
    x = g.variable("x", shape=(3,))
    assert x * 1 is x and 1 * x is x and x + 0 is x and x - 0 is x and x / 1 is x
    assert sd.negative(-x) is x
    zero = 0 * x
    assert zero.op == "constant" and zero.shape == (3,) and zero.uniform == 0
    assert (2.0 * g.constant(3.0)).op == "constant"  # constants fold
    assert sd.sum(g.constant(np.ones((1000, 1000)))).value == 1e6
    assert sd.transpose(x.reshape(3, 1).T).op == "reshape"  # transpose of transpose collapses
    s = g.variable("s")
    assert (x * 1.0).shape == (3,) and (s * g.constant(np.ones(3))).shape == (3,)  # folding keeps shapes


def test_attrs_are_read_only(g):
    x = g.variable("x", shape=(2, 3))
    s = sd.sum(x, axis=1)
    assert s.attrs["axis"] == (-1,)
    with pytest.raises(TypeError):
        s.attrs["axis"] = 0


def test_uniform_constants_become_scalars_only_when_the_shape_is_kept(g):
    ones = g.uniform_constant(1.0, (3, 3))
    twos = g.uniform_constant(2.0, (3, 3))
    assert (ones + twos).shape == (3, 3)  # both constant: one stays an array
    x = g.variable("x", shape=(3, 3))
    scaled = twos * x
    assert scaled.inputs[0].shape == () and scaled.shape == (3, 3)  # the same as 2 * x
    v = g.variable("v", shape=(3,))
    assert (twos * v).shape == (3, 3) and (twos * v).inputs[0].shape == (3, 3)  # here it sets the shape


def test_apply_checks_arity_and_attributes(g):
    from symdiff.ops import REGISTRY, apply

    x = g.variable("x", shape=(3,))
    with pytest.raises(sd.GraphError, match="mul takes 2 input"):
        apply(REGISTRY["mul"], x, x, x)  # np.multiply's third argument would be its output buffer
    with pytest.raises(TypeError):
        apply(REGISTRY["add"], x, x, out=1)
    with pytest.raises(sd.GraphError, match="greater takes 2 input"):
        apply(REGISTRY["greater"], x)
