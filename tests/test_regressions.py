"""Regressions: the minimal reproducers an outside differential fuzzer and new users found.

Each test is one reported case with its expected value worked out by hand (or by numpy
itself, for shapes); tests/test_contracts.py states the class of bug each belongs to as
a property over random graphs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

import symdiff as sd


@pytest.fixture
def g():
    return sd.Graph()


# -- 1. simplify and even powers of a negation ------------------------------------------------
def test_simplify_keeps_the_sign_of_an_even_power_of_a_negation(g):
    x, y = g.variable("x"), g.variable("y")
    v = g.variable("v", shape=(3,))
    at = {x: 1.5, y: 0.25, v: np.array([1.0, -2.0, 0.5])}
    cases = [
        ((-x) ** 2 * y, 0.5625),  # 1.5**2 * 0.25
        ((-x) ** 2 + (-x) ** 2, 4.5),
        (x * (-x) ** 2, 3.375),
        (sd.sum(sd.square(-v) * v), 1.0 - 8.0 + 0.125),
        (sd.grad(((-x) ** 2) ** 2, x), 4 * 1.5**3),
        (x * (-x) ** 3, -(1.5**4)),  # an odd power keeps its sign
    ]
    for node, expected in cases:
        assert float(sd.evaluate(sd.simplify(node), at)) == pytest.approx(expected, rel=1e-14)
    assert str(sd.simplify((-x) ** 2 * y)) == "x**2*y"


def test_simplify_combines_powers_only_where_that_holds_for_every_real_base(g):
    x = g.variable("x")
    # (x**2)**0.5 is |x|, not x; (-x)**0.5 is nan for x > 0, not -(x**0.5)
    for node in ((x**2) ** 0.5 * x, x * (-x) ** 0.5, ((x**2) ** 1.5) * 2.0):
        for value in (-2.0, 3.0):
            with np.errstate(invalid="ignore"):
                np.testing.assert_equal(sd.evaluate(sd.simplify(node), {x: value}), sd.evaluate(node, {x: value}))


# -- 2. constants merged into an overflow ------------------------------------------------------
def test_simplify_keeps_a_division_by_a_zero_constant(g):
    x, y = g.variable("x"), g.variable("y")
    node = x / (y - y)  # simplify makes y - y the constant 0: the division must stay (inf, nan)
    with np.errstate(all="ignore"):
        for value in (2.0, 0.0):
            np.testing.assert_equal(sd.evaluate(sd.simplify(node), {x: value, y: 1.0}), value / np.float64(0.0))


def test_simplify_never_merges_constants_into_an_overflow(g):
    x = g.variable("x")
    a = x * 1e308 * 10 / 10
    b = (x * 1e200) * 1e200 / 1e250
    assert float(sd.evaluate(sd.simplify(a), {x: 1e-300})) == pytest.approx(1e8)
    assert float(sd.evaluate(sd.simplify(b), {x: 1e-300})) == pytest.approx(1e-150)
    assert float(sd.evaluate(1e308 * (10 * x), {x: 1e-300})) == pytest.approx(1e9)  # the build-time fold too
    merged = sd.simplify(x * 1e-200 * 1e-200 * 1e300)  # 1e-400 underflows: kept apart
    assert float(sd.evaluate(merged, {x: 1e150})) == pytest.approx(1e50)
    assert str(sd.simplify(2 * (3 * x))) == "6*x"  # representable merges still happen


def test_simplify_never_collects_coefficients_into_an_overflow(g):
    x = g.variable("x")
    node = 1e308 * x + 1e308 * x  # 2e308 is not a float64
    assert float(sd.evaluate(sd.simplify(node), {x: 0.25})) == pytest.approx(5e307)
    constant = (x + 1e308) + 1e308  # the constants alone overflow: keep the order as built
    assert float(sd.evaluate(sd.simplify(constant), {x: -1e308})) == pytest.approx(1e308)


# -- 3. Jacobians when sizes are unknown --------------------------------------------------------
def test_jacobian_of_a_batched_matmul_with_an_unknown_dimension(g):
    x = g.variable("x", shape=(4, 1))
    A = g.variable("A", shape=(4, None, 4))
    J = sd.jacobian(A @ x, x)
    assert J.shape == (4, None, 1, 4, 1)
    A_value = np.random.default_rng(0).standard_normal((4, 3, 4))
    value = sd.evaluate(J, {A: A_value, x: np.ones((4, 1))})
    expected = np.zeros((4, 3, 1, 4, 1))
    expected[:, :, 0, :, 0] = A_value  # d(A@x)[b, i, 0] / dx[k, 0] = A[b, i, k]
    np.testing.assert_array_equal(value, expected)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_jacobian_of_solve_with_an_unknown_stack(g, size):
    P = g.variable("P", shape=(None, 3, 3))
    x = g.variable("x", shape=(3,))
    J = sd.jacobian(sd.solve(P, x), x)
    assert J.shape == (None, 3, 3)
    P_value = np.random.default_rng(size).standard_normal((size, 3, 3)) + 4 * np.eye(3)
    value = sd.evaluate(J, {P: P_value, x: np.ones(3)})
    np.testing.assert_allclose(value, np.linalg.inv(P_value), rtol=1e-12, atol=1e-14)


def test_jacobian_with_a_vector_operand_and_an_unknown_stack(g):
    x = g.variable("x", shape=(4,))
    A = g.variable("A", shape=(4, None, 4))
    J = sd.jacobian(A @ x, x)
    A_value = np.random.default_rng(1).standard_normal((4, 2, 4))
    value = sd.evaluate(J, {A: A_value, x: np.ones(4)})
    assert value.shape == (4, 2, 4)
    np.testing.assert_array_equal(value, A_value)


def test_jacobian_and_hessian_when_both_sides_are_unknown(g):
    w = g.variable("w", shape=(None,))
    A = g.variable("A", shape=(None, None))
    f = sd.sum(sd.tanh(A @ w) ** 2)
    H = sd.hessian(f, w)
    J = sd.jacobian(sd.tanh(A @ w), w)
    assert H.shape == (None, None) and J.shape == (None, None)
    rng = np.random.default_rng(2)
    A_value, w_value = rng.standard_normal((3, 4)), rng.standard_normal(4)
    t = np.tanh(A_value @ w_value)
    # d tanh(Aw)/dw = diag(1 - t^2) A; d2/dw2 sum(t^2) = A^T diag(2(1 - t^2)(1 - 3t^2)) A
    expected_J = (1 - t**2)[:, None] * A_value
    expected_H = A_value.T @ ((2 * (1 - t**2) * (1 - 3 * t**2))[:, None] * A_value)
    J_value, H_value = sd.evaluate([J, H], {A: A_value, w: w_value})
    np.testing.assert_allclose(J_value, expected_J, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H_value, expected_H, rtol=1e-12, atol=1e-14)


# -- 4. save and load --------------------------------------------------------------------------
def test_a_loaded_graph_keeps_every_node_and_the_named_outputs(g, tmp_path):
    w = g.variable("w", shape=(2,))
    c = g.constant(np.eye(2))  # equal, as bytes, to the jacobian's own identity seed
    J = sd.jacobian(c @ sd.tanh(w), w)
    loss = sd.sum(sd.tanh(w) ** 2)
    gw = sd.grad(loss, w)
    g.save(tmp_path / "g.json", outputs={"loss": loss, "grad": gw, "J": J})
    h = sd.load(tmp_path / "g.json")
    assert len(h) == len(g)
    assert [(n.op, n.index) for n in h.nodes] == [(n.op, n.index) for n in g.nodes]
    assert h.nodes[J.index].op == J.op and h.outputs["J"].index == J.index
    at = {"w": np.array([0.3, -0.7])}
    np.testing.assert_array_equal(sd.evaluate(h.outputs["grad"], at), sd.evaluate(gw, at))
    assert set(h.outputs) == {"loss", "grad", "J"}
    with pytest.raises(TypeError):
        h.outputs["x"] = w  # read-only


def test_save_rejects_outputs_that_are_not_named_nodes_of_the_graph(g, tmp_path):
    x = g.variable("x")
    other = sd.Graph().variable("y")
    for outputs, message in [({"a": 1.0}, "not a node"), ({"a": other}, "another graph"), ({3: x}, "strings")]:
        with pytest.raises(sd.GraphError, match=message):
            g.save(tmp_path / "g.json", outputs=outputs)


def test_version_1_files_still_load(g, tmp_path):
    x = g.variable("x")
    y = sd.sin(x) * 2.0
    g.save(tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    data["version"] = 1
    del data["outputs"]
    (tmp_path / "v1.json").write_text(json.dumps(data))
    h = sd.load(tmp_path / "v1.json")
    assert str(h.nodes[y.index]) == "sin(x)*2" and dict(h.outputs) == {}


# -- 5. indexing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "index",
    [(2, slice(None), [2, 0, 1]), ([0], slice(None), 1), (1, None, [1, 0]), (slice(None), 1, [0, 1])],
    ids=["int-slice-array", "array-slice-int", "int-None-array", "adjacent"],
)
def test_indexing_has_numpys_shape_and_gradient(g, index):
    z = g.variable("z", shape=(3, 2, 3))
    value = np.arange(18.0).reshape(3, 2, 3)
    node = z[index]
    assert node.shape == value[index].shape
    np.testing.assert_array_equal(sd.evaluate(node, {z: value}), value[index])
    expected = np.zeros_like(value)
    np.add.at(expected, index, 2 * value[index])
    np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.sum(node * node), z), {z: value}), expected)


# -- 6. float32 and numpy scalars ---------------------------------------------------------------
def test_float32_forward_mode_through_extrema_stays_float32(g):
    a, b = g.variable("a", shape=(3,), dtype="float32"), g.variable("b", shape=(3,), dtype="float32")
    one = np.ones(3, np.float32)
    for node in (sd.jvp(sd.maximum(a, b), [a, b], [one, one]), sd.jvp(sd.minimum(a, b), [a, b], [one, one])):
        assert node.dtype == np.float32
    for node in (sd.jvp(sd.max(a), a, one), sd.jvp(sd.min(a), a, one), sd.grad(sd.max(a), a)):
        assert node.dtype == np.float32
    outputs = [sd.jvp(sd.max(sd.maximum(a, b)), [a, b], [one, one])]
    at = [np.array([1.0, 5.0, 5.0], np.float32), np.array([2.0, 1.0, 5.0], np.float32)]
    compiled = sd.compile(outputs, inputs=[a, b])(*at)[0]
    interpreted = sd.evaluate(outputs[0], dict(zip([a, b], at)))
    assert compiled.dtype == interpreted.dtype == np.float32 and compiled == interpreted


def test_python_scalars_are_weak_and_numpy_scalars_strong(g):
    x32 = g.variable("x", dtype="float32")
    i32 = g.variable("i", dtype="int32")
    assert (x32 * 2.0).dtype == np.float32
    assert (i32 + 1).dtype == np.int32
    big = x32 * np.float64(1e300)
    assert big.dtype == np.float64 and float(sd.evaluate(big, {x32: 1.0})) == 1e300
    assert (np.float32(1) * np.float64(1e300)).dtype == big.dtype  # numpy agrees


# -- 7. == on nodes ------------------------------------------------------------------------------
def test_comparing_a_node_with_a_number_by_equality_raises(g):
    x = g.variable("x")
    for compare in (lambda: x == 0, lambda: 0 == x, lambda: x != 0.0, lambda: x == np.zeros(2)):
        with pytest.raises(TypeError, match="sd.equal|sd.not_equal"):
            compare()
    assert (x == x) is True and (x != x) is False and (x == "x") is False and {x: 1}[x] == 1
    assert float(sd.evaluate(sd.where(sd.equal(x, 0), 1.0, x), {x: 0.0})) == 1.0


# -- 8. failed calls change nothing and name what the user called --------------------------------
def test_failed_hvp_and_hessian_leave_the_graph_unchanged(g):
    v = g.variable("v", shape=(3,))
    c, square = sd.sum(v**3), v**2
    before = len(g)
    with pytest.raises(sd.ShapeError, match=r"^hvp: v has shape \(4,\) but variable 'v' has shape \(3,\)"):
        sd.hvp(c, v, np.ones(4))
    with pytest.raises(sd.ShapeError, match="^hessian: cost has shape"):
        sd.hessian(square, v)
    assert len(g) == before


# -- 9. run-time sizes and numpy protocols ------------------------------------------------------------
def test_disagreeing_unknown_sizes_raise_shape_errors_naming_the_op(g):
    a, b = g.variable("a", shape=(None,)), g.variable("b", shape=(None,))
    M = g.variable("M", shape=(None, None))
    for node, values, message in [
        (a + b, {a: np.ones(3), b: np.ones(4)}, r"add \(node #\d+\).*\(3,\), \(4,\)"),
        (M @ a, {M: np.ones((3, 3)), a: np.ones(4)}, r"matmul \(node #\d+\).*\(3, 3\), \(4,\)"),
    ]:
        with pytest.raises(sd.ShapeError, match=message):
            sd.evaluate(node, values)
        with pytest.raises(sd.ShapeError, match=message):
            sd.compile(node)(*[values[n] for n in sorted(values, key=lambda n: n.index)])


def test_reshape_take_and_numpy_functions_on_nodes(g):
    X = g.variable("X", shape=(None, 3))
    with pytest.raises(sd.ShapeError, match="write -1"):
        sd.reshape(X, (None,))
    v = g.variable("v", shape=(4,))
    assert float(sd.evaluate(sd.take(v, 2), {v: [1.0, 2.0, 3.0, 4.0]})) == 3.0
    assert np.sum(v) is sd.sum(v) and np.transpose(X) is X.T
    with pytest.raises(TypeError, match="use sd.sum"):
        np.sum(v, out=np.zeros(()))
    with pytest.raises(TypeError, match="docs/ops.md"):
        np.linalg.svd(v)
    assert np.linalg.norm(v).op == "norm" and np.concatenate([v, v]).op == "concatenate"


# -- 10. the command line -----------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symdiff", *args], capture_output=True, text=True, timeout=120)


def test_cli_takes_an_expression_that_starts_with_a_minus(tmp_path):
    out = _cli("grad", "-x^2", "--wrt", "x")
    assert out.returncode == 0, out.stderr
    assert "df/dx = -2*x" in out.stdout
    assert _cli("eval", "-x*2", "--at", "x=-1.5").stdout.strip() == "3"


@pytest.mark.parametrize(
    "args, message",
    [
        (("grad", "x*y", "--wrt", "x", "--at", "z=5"), "no variable 'z'"),
        (("grad", "x*y", "--wrt", "x", "--at", "x=1", "x=2"), "gives x twice"),
        (("grad", "x*y", "--wrt", "x", "x"), "lists x twice"),
        (("eval", "x*y", "--at", "x=1", "y=2", "q=3"), "no variable 'q'"),
    ],
)
def test_cli_rejects_what_it_would_otherwise_ignore(args, message):
    out = _cli(*args)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_cli_does_not_create_folders_and_has_a_version(tmp_path):
    target = tmp_path / "missing" / "o.svg"
    out = _cli("grad", "x**2", "--wrt", "x", "--dot", str(target))
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (tmp_path / "missing").exists()
    assert _cli("--version").stdout.strip() == f"symdiff {sd.__version__}"


# -- 11. printing ----------------------------------------------------------------------------------
def test_printing_reads_as_a_person_writes(g):
    x, y = g.variable("x"), g.variable("y")
    v = g.variable("v", shape=(3,))
    assert str(sd.simplify(x * y - y * x)) == "0"
    assert str(x + (-2.0)) == "x - 2" and str(x - (-2.0)) == "x + 2" and str(sd.simplify(x - 3 + 1)) == "x - 2"
    assert str(sd.expand_dims(v, -1)) == "expand_dims(v, axis=-1)"
    assert str(sd.grad(2**-x, x)) == "-log(2)*2**(-x)"
    assert "log" in sd.latex(sd.grad(2**-x, x))
    constant = sd.latex(v * g.constant(np.arange(3.0)))
    assert "pmatrix" in constant and "C_" not in constant
    assert r"\mathrm{axis}=-1" in sd.latex(sd.softmax(v))


def test_a_folded_transpose_constant_is_stored_as_a_loaded_one_and_computes_alike(tmp_path):
    # Found by the long contract profile: the Hessian's identity seed folded through a
    # transpose kept a strided layout, the loaded copy did not, and a sum over it rounded
    # differently (1 ulp) between a graph and its loaded copy.
    g = sd.Graph()
    x0 = g.variable("x0", shape=(2, 3))
    y = sd.cos(x0.T - sd.sum(x0))
    hess = sd.hessian(sd.sum(y * y), x0)
    g.save(tmp_path / "g.json", outputs={"hess": hess})
    h = sd.load(tmp_path / "g.json")
    for a, b in zip(g.nodes, h.nodes):
        if a.op == "constant":
            assert a.value.strides == b.value.strides
    value = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_array_equal(sd.evaluate(hess, {"x0": value}), sd.evaluate(h.outputs["hess"], {"x0": value}))


def test_the_documented_edges_of_the_new_elementwise_functions():
    g = sd.Graph()
    x, y = g.variable("x", shape=(3,)), g.variable("y", shape=(3,))
    at = {x: np.array([-1.0, 1.0, 0.5]), y: np.zeros(3)}
    # clip at its bounds: the gradient goes to x, bounds included; to a bound outside them
    lo, hi = g.variable("lo"), g.variable("hi")
    c = sd.sum(sd.clip(x, lo, hi))
    gx, glo, ghi = sd.evaluate(sd.grad(c, [x, lo, hi]), {**at, lo: -1.0, hi: 0.5})
    np.testing.assert_array_equal(gx, [1.0, 0.0, 1.0])
    assert (glo, ghi) == (0.0, 1.0)
    # an empty interval (lo > hi) is hi everywhere, as numpy's clip
    assert sd.evaluate(sd.grad(c, hi), {**at, lo: 2.0, hi: 0.0}) == 3.0
    # hypot at the origin: 0, no nan
    np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.sum(sd.hypot(y, y)), y), at), [0.0, 0.0, 0.0])
    # arcsin at ±1: inf, as numpy's 1/sqrt(0)
    np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.sum(sd.arcsin(x)), x), at)[:2], [np.inf, np.inf])
    # floor, ceil, round pass no gradient, at their jumps too
    for f in (sd.floor, sd.ceil, sd.round):
        np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.sum(f(x) * 1.0), x), at), [0.0, 0.0, 0.0])
    # log_sigmoid stays finite where log(sigmoid(x)) is -inf
    z = g.variable("z")
    assert sd.evaluate(sd.log_sigmoid(z), {z: -1000.0}) == -1000.0
    assert sd.evaluate(sd.grad(sd.log_sigmoid(z), z), {z: -1000.0}) == 1.0


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)), ((), (3,))])
def test_node_dot_is_numpys_dot(shapes):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s) for s in shapes)
    g = sd.Graph()
    x, y = g.variable("x", shape=shapes[0]), g.variable("y", shape=shapes[1])
    d = x.dot(y)
    np.testing.assert_allclose(sd.evaluate(d, {x: a, y: b}), np.dot(a, b))
    cost = sd.sum(d * d)
    gx = sd.evaluate(sd.grad(cost, x), {x: a, y: b})
    h = 1e-6
    fd = np.zeros(np.shape(a))
    for i in np.ndindex(np.shape(a)):
        e = np.zeros(np.shape(a))
        e[i] = h
        fd[i] = (np.sum(np.dot(a + e, b) ** 2) - np.sum(np.dot(a - e, b) ** 2)) / (2 * h)
    np.testing.assert_allclose(gx, fd, rtol=1e-6, atol=1e-8)


def test_node_dot_refuses_what_numpy_computes_differently_and_astype_is_sd_astype():
    g = sd.Graph()
    x = g.variable("x", shape=(2, 3, 4))
    with pytest.raises(sd.ShapeError, match="sd.matmul"):
        x.dot(x)
    i = g.variable("i", shape=(3,), dtype="int64")
    assert i.astype("float32") is sd.astype(i, "float32")


def test_the_documented_edges_of_products_norms_and_matrix_functions():
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    at = {x: np.array([2.0, 0.0, 3.0, 0.0])}
    # prod with two zeros: gradient 0 (every product of three others has a zero), no nan; the
    # Hessian's (1, 3) entry is the product of the others, 6 (hand-derived)
    p = sd.prod(x)
    np.testing.assert_array_equal(sd.evaluate(sd.grad(p, x), at), [0.0, 0.0, 0.0, 0.0])
    hess = sd.evaluate(sd.hessian(p, x), at)
    assert hess[1, 3] == hess[3, 1] == 6.0 and np.count_nonzero(hess) == 2
    # one zero: the zero's entry is the product of the others
    one = {x: np.array([2.0, 0.0, 3.0, -1.0])}
    np.testing.assert_array_equal(sd.evaluate(sd.grad(p, x), one), [0.0, -6.0, 0.0, 0.0])
    # cumprod through a zero: d/dx1 of sum(cumprod) = x0 + x0 x2 + x0 x2 x3 = 2 + 6 - 6
    np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.sum(sd.cumprod(x)), x), one), [1.0, 2.0, 0.0, 0.0])
    # norm at 0: the subgradient 0, no nan, in both modes
    zero = {x: np.zeros(4)}
    np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.norm(x), x), zero), np.zeros(4))
    np.testing.assert_array_equal(sd.evaluate(sd.jacobian(sd.norm(x), x), zero), np.zeros(4))
    # eigh: eigenvalue costs differentiate at a repeated eigenvalue; eigenvector derivatives raise there
    A = g.variable("A", shape=(3, 3))
    w, v = sd.eigh(A)
    np.testing.assert_allclose(sd.evaluate(sd.grad(sd.sum(w * w), A), {A: np.eye(3)}), 2 * np.eye(3))
    with pytest.raises(sd.SymdiffError, match="repeated eigenvalue"):
        sd.evaluate(sd.grad(sd.sum(v[:, 0] ** 2 * np.arange(3.0)), A), {A: np.eye(3)})
    with pytest.raises(sd.SymdiffError, match="repeated eigenvalue"):
        sd.evaluate(sd.jvp(v, A, np.ones((3, 3))), {A: np.diag([1.0, 1.0, 2.0])})
    # expm's derivative is the Fréchet derivative (scipy's expm_frechet as the oracle), exact to rounding
    rng = np.random.default_rng(5)
    a, e = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    got = sd.evaluate(sd.jvp(sd.expm(A), A, e), {A: a})
    np.testing.assert_allclose(got, scipy.linalg.expm_frechet(a, e, compute_expm=False), rtol=1e-12, atol=1e-13)
    # slogdet's sign and logdet of a negative determinant
    neg = np.array([[0.0, 2.0], [3.0, 0.0]])
    B = g.variable("B", shape=(2, 2))
    sign, logabs = sd.slogdet(B)
    assert sd.evaluate(sign, {B: neg}) == -1.0 and np.isnan(sd.evaluate(sd.logdet(B), {B: neg}))
    np.testing.assert_allclose(sd.evaluate(sd.grad(logabs, B), {B: neg}), np.linalg.inv(neg).T)


def test_joining_the_slices_of_one_array_gives_the_array_back():
    g = sd.Graph()
    x, y = g.variable("x", shape=(5, 3)), g.variable("y", shape=(4,))
    assert sd.concatenate([x[:2], x[2:]]) is x and sd.concatenate([x[:, :1], x[:, 1:]], axis=1) is x
    assert str(sd.concatenate([x[:2], x[2:4]])) == "x[0:4]"
    assert sd.stack([y[0], y[1], y[2], y[3]]) is y and sd.stack([x[:, k] for k in range(3)], axis=1) is x
    # not a rejoining: columns stacked as rows are x.T; a gap or another order stays as built
    value = np.arange(15.0).reshape(5, 3)
    np.testing.assert_array_equal(sd.evaluate(sd.stack([x[:, k] for k in range(3)]), {x: value}), value.T)
    assert sd.concatenate([x[:2], x[3:]]).op == "concatenate" and sd.stack([y[1], y[0], y[2], y[3]]).op == "stack"
    assert str(sd.stack([y[0] * y[1], y[2], 1.0])) == "[y[0]*y[1], y[2], 1]"


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "int64", "uint16", "float16", "float32", "float64"])
def test_sum_has_numpys_accumulator_dtype_on_every_backend(dtype):
    # sum of booleans was declared bool: evaluate gave 2, numba True, jax an int32 2
    from symdiff.backends import installed

    g = sd.Graph()
    x = g.variable("x", (3, 2), dtype=dtype)
    value = np.array([[1, 0], [1, 1], [0, 1]], dtype=dtype)
    for y, expected in [(sd.sum(x), np.sum(value)), (sd.sum(x, axis=0, keepdims=True), value.sum(0, keepdims=True))]:
        assert y.dtype == expected.dtype
        got = sd.evaluate(y, {x: value})
        assert np.asarray(got).dtype == expected.dtype and np.array_equal(got, expected)
        for backend in ("numpy", "numba", "jax"):
            if backend == "numpy" or installed(backend) and not (backend == "numba" and dtype == "float16"):
                got = np.asarray(sd.compile(y, [x], backend=backend)(value))
                assert got.dtype == expected.dtype and np.array_equal(got, expected), backend


def test_the_softmax_family_keeps_float32_with_a_none_batch_on_numba():
    # numba's own log_softmax printer shifted by np.where(isfinite(m), m, 0.0): float64, which then
    # met a float32 matrix in np.dot and failed to compile; the lowerings keep float32
    from symdiff.backends import installed

    if not installed("numba"):
        pytest.skip("numba is not installed (the test extra installs it)")
    g = sd.Graph()
    X, W = g.variable("X", (None, 4), dtype="float32"), g.variable("W", (4, 3), dtype="float32")
    loss = sd.sum(sd.log_softmax(X @ W, axis=-1))
    outputs = [loss, sd.grad(loss, W), sd.logsumexp(X @ W, axis=0), sd.softmax(X @ W)]
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((6, 4)).astype("float32"), rng.standard_normal((4, 3)).astype("float32")
    z = x.astype(np.float64) @ w.astype(np.float64)
    logp = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
    p = np.exp(logp)
    expected = [logp.sum(), x.T.astype(np.float64) @ (1.0 - 3.0 * p), np.log(np.exp(z).sum(0)), p]
    for got, want in zip(sd.compile(outputs, [X, W], backend="numba")(x, w), expected):
        assert np.asarray(got).dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_folding_large_uniform_constants_keeps_broadcasts_and_signed_zeros():
    """Review findings on folding uniform constants: broadcast_to of a constant past 4096
    elements folds as before (it raised), and -0.0 stays its own constant (1/-0 is -inf)."""
    g = sd.Graph()
    b = sd.broadcast_to(g.constant(np.arange(100.0)), (64, 100))
    np.testing.assert_array_equal(sd.evaluate(b), np.broadcast_to(np.arange(100.0), (64, 100)))
    np.testing.assert_array_equal(sd.evaluate(sd.broadcast_to(g.constant(2.0), (5000,))), np.full(5000, 2.0))
    Z = g.uniform_constant(0.0, (50, 100))
    nz = -Z
    assert nz is not Z and np.signbit(nz.uniform) and not np.signbit(Z.uniform)
    assert sd.evaluate(1.0 / Z)[0, 0] == np.inf and sd.evaluate(1.0 / nz)[0, 0] == -np.inf
    big = 0.3 * g.uniform_constant(1.0, (100, 100))
    assert big.op == "constant" and big.uniform == 0.3 and sd.evaluate(big).shape == (100, 100)
