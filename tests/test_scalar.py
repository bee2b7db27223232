"""Scalar expressions as data (issue 21, item 2): an elementwise op's element is a tree
(``symdiff.scalar``), printed per language (Python ``math``, numba, C99, jnp) and differentiated.

Oracles: the Python-syntax templates the ops declared before (kept here, as text: the printed
Python must be the same expression, and give the same bits); numpy's own functions (the
printers' C, numba and jnp against numpy, the vocabulary's meaning); central differences of the
ops' numpy forwards and the ops' own declared derivative rules (the derived partials);
hand-derived closed forms.
"""

from __future__ import annotations

import ast
import ctypes
import math
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import scipy.special

import symdiff as sd
import symdiff.scalar as sx
from symdiff.backends import installed
from symdiff.ops.core import REGISTRY, apply
from symdiff.ops.scalar_nodes import to_nodes, tree_partials

ROOT = pathlib.Path(__file__).resolve().parents[1]

# the templates the ops declared before their trees: what to_python must still compute
OLD_TEMPLATES = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "({0} / {1})",
    "neg": "(-{0})",
    "pow": "_math.pow({0}, {1})",
    "exp": "_math.exp({0})",
    "log": "_math.log({0})",
    "sin": "_math.sin({0})",
    "cos": "_math.cos({0})",
    "tan": "_math.tan({0})",
    "tanh": "_math.tanh({0})",
    "sigmoid": "(1.0 / (1.0 + _math.exp(-{0})))",
    "sqrt": "_math.sqrt({0})",
    "log1p": "_math.log1p({0})",
    "expm1": "_math.expm1({0})",
    "softplus": "(max({0}, 0.0) + _math.log1p(_math.exp(-abs({0}))))",
    "abs": "abs({0})",
    "relu": "max({0}, 0.0)",
    "arcsin": "_math.asin({0})",
    "arccos": "_math.acos({0})",
    "arctan": "_math.atan({0})",
    "sinh": "_math.sinh({0})",
    "cosh": "_math.cosh({0})",
    "arcsinh": "_math.asinh({0})",
    "arccosh": "_math.acosh({0})",
    "arctanh": "_math.atanh({0})",
    "log_sigmoid": "(-(max(-{0}, 0.0) + _math.log1p(_math.exp(-abs({0})))))",
    "erf": "_math.erf({0})",
    "erfc": "_math.erfc({0})",
    "floor": "float(_math.floor({0}))",
    "ceil": "float(_math.ceil({0}))",
    "arctan2": "_math.atan2({0}, {1})",
    "hypot": "_math.hypot({0}, {1})",
    "greater": "({0} > {1})",
    "greater_equal": "({0} >= {1})",
    "less": "({0} < {1})",
    "less_equal": "({0} <= {1})",
    "equal": "({0} == {1})",
    "not_equal": "({0} != {1})",
    "where": "({1} if {0} else {2})",
    "stop_gradient": "{0}",
}
SCALAR_OPS = sorted(name for name, op in REGISTRY.items() if op.scalar is not None)

# numpy's meaning of each function of the vocabulary
NUMPY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "arctan2": np.arctan2,
    "hypot": np.hypot,
    "neg": np.negative,
    "abs": np.abs,
    "sign": np.sign,
    "floor": np.floor,
    "ceil": np.ceil,
    "erf": scipy.special.erf,
    "erfc": scipy.special.erfc,
    **{f: getattr(np, f) for f in ("sqrt", "exp", "expm1", "log", "log1p", "sin", "cos", "tan")},
    **{f: getattr(np, f) for f in ("arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh")},
    **{f: getattr(np, f) for f in ("arccosh", "arctanh", "greater", "greater_equal", "less", "less_equal")},
    **{f: getattr(np, f) for f in ("equal", "not_equal", "logical_and", "logical_or", "logical_not")},
    "select": np.where,
}

# where each function (and op) is defined and smooth enough to test: (low, high) per input
DOMAINS = {
    "log": [(0.1, 5.0)],
    "sqrt": [(0.1, 5.0)],
    "log1p": [(-0.9, 5.0)],
    "arcsin": [(-0.9, 0.9)],
    "arccos": [(-0.9, 0.9)],
    "arctanh": [(-0.9, 0.9)],
    "arccosh": [(1.1, 5.0)],
    "tan": [(-1.2, 1.2)],
    "div": [(-3.0, 3.0), (0.5, 3.0)],
    "pow": [(0.5, 3.0), (-2.0, 2.0)],
}


def _points(name: str, arity: int, n: int, seed: int) -> list[np.ndarray]:
    """``n`` random points in the domain of ``name`` (a condition input: booleans), away from
    the kinks at 0 and the jumps at integers the finite differences would straddle."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(arity):
        if name in ("select", "where") and k == 0 or name in ("logical_and", "logical_or", "logical_not"):
            out.append(rng.random(n) < 0.5)
            continue
        low, high = DOMAINS.get(name, [(-3.0, 3.0)] * arity)[k]
        x = rng.uniform(low, high, n)
        x = np.where(np.abs(x - np.round(x)) < 0.05, x + 0.1, x)
        out.append(x)
    return out


def _central(fn, points: list[np.ndarray], i: int) -> np.ndarray:
    """Central differences of the numpy function ``fn`` by input ``i`` at ``points``."""
    h = 1e-6 * np.maximum(1.0, np.abs(points[i]))
    up, down = list(points), list(points)
    up[i], down[i] = points[i] + h, points[i] - h
    return (np.asarray(fn(*up), dtype=float) - np.asarray(fn(*down), dtype=float)) / (2 * h)


def _vocabulary_tree(name: str) -> sx.Expr:
    return sx.call(name, *(sx.arg(k) for k in range(sx.FUNCTIONS[name])))


# -- the trees and the module's place ----------------------------------------------------------
def test_no_op_declares_a_string_template():
    for name, op in REGISTRY.items():
        assert op.scalar is None or isinstance(op.scalar, sx.Expr), name
    assert set(SCALAR_OPS) == set(OLD_TEMPLATES)
    with pytest.raises(sd.GraphError, match=r"define_op 'string_scalar': scalar is a scalar expression tree"):
        sd.define_op("string_scalar", numpy="sin", shape=lambda s: s, elementwise=True, scalar="_math.sin({0})")
    assert "string_scalar" not in REGISTRY


def test_the_scalar_module_imports_nothing_of_symdiff_but_errors():
    tree = ast.parse((ROOT / "symdiff" / "scalar.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in imported if m and m.startswith("symdiff")} == {"symdiff.errors"}


def test_trees_are_immutable_hashable_and_equal_by_structure():
    x, y = sx.arg(0), sx.arg(1)
    a, b = sx.maximum(x, 0.0) + sx.log1p(sx.exp(-abs(x))), sx.maximum(x, 0) + sx.log1p(sx.exp(-sx.abs(x)))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert sx.const(1.0) != sx.const(True) and sx.const(math.nan) == sx.const(math.nan)
    assert repr(sx.select(x > y, x**2, 1.0 / y)) == "select(greater(x0, x1), pow(x0, 2.0), div(1.0, x1))"
    with pytest.raises(AttributeError):
        a.op = "sub"
    with pytest.raises(TypeError, match="no truth value"):
        bool(x > y)
    with pytest.raises(sd.GraphError, match="'sigmoid' is not a scalar function"):
        sx.call("sigmoid", x)
    with pytest.raises(sd.GraphError, match="hypot takes 2 argument"):
        sx.call("hypot", x)
    with pytest.raises(sd.GraphError, match="reads 2 argument"):
        sx.to_python(x + y, ["a"])
    assert sx.uses(x * x + y, 0) == 2 and sx.uses(x * x + y, 1) == 1 and sx.arity(y * 2.0) == 2


# -- the Python printer: the same expression, the same bits, as the templates ------------------
@pytest.mark.parametrize("name", SCALAR_OPS)
def test_the_python_text_is_the_old_template_expression_and_gives_its_bits(name):
    op = REGISTRY[name]
    n = op.arity
    names = [f"a{k}" for k in range(n)]
    new, old = sx.to_python(op.scalar, names), OLD_TEMPLATES[name].format(*names)
    assert ast.dump(ast.parse(new, mode="eval")) == ast.dump(ast.parse(old, mode="eval"))  # parentheses aside
    if not {"floor", "ceil", "maximum", "minimum"} & {e.op for e in sx.walk(op.scalar)}:  # numba: numpy's there
        assert sx.to_numba(op.scalar, names) == new  # numba's loops print what they printed
    fast = sx.python_function(op.scalar, n)
    before = eval(f"lambda {', '.join(names)}: {old}", {"_math": math})
    edges = [0.0, -0.0, 1.0, -1.0, 1e-300, 710.0, -745.0, math.inf, -math.inf, math.nan]
    columns = [np.concatenate([p, edges]) for p in _points(name, n, 40, seed=1)]
    for row in zip(*columns):
        row = [bool(v) if isinstance(v, np.bool_) else float(v) for v in row]
        try:
            expected = before(*row)
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            with pytest.raises(type(exc)):
                fast(*row)
            continue
        got = fast(*row)
        assert type(got) is type(expected) and np.array_equal(got, expected, equal_nan=True), (row, got, expected)
        assert math.copysign(1.0, got) == math.copysign(1.0, expected)


@pytest.mark.parametrize("name", sorted(sx.FUNCTIONS))
def test_the_python_printer_means_numpys_function(name):
    n = sx.FUNCTIONS[name]
    fn = sx.python_function(_vocabulary_tree(name), n)
    points = _points(name, n, 30, seed=2)
    expected = NUMPY[name](*points)
    got = [fn(*(bool(v) if isinstance(v, np.bool_) else float(v) for v in row)) for row in zip(*points)]
    np.testing.assert_allclose(np.array(got, dtype=expected.dtype), expected, rtol=1e-14, atol=0)


def test_the_sign_printers_give_numpys_sign_at_zero_and_nan():
    values = [-2.0, -0.0, 0.0, 3.0, math.nan, -math.inf]
    fn = sx.python_function(sx.sign(sx.arg(0)))
    np.testing.assert_array_equal([fn(v) for v in values], np.sign(values))
    assert sx.uses(sx.sign(sx.arg(0)), 0) == sx.to_python(sx.sign(sx.arg(0)), ["ARG"]).count("ARG") == 1


# -- numba, C and jnp --------------------------------------------------------------------------
def _cases() -> list[tuple[str, sx.Expr, int, object]]:
    """(label, tree, arity, numpy reference) for every op's tree and every vocabulary function."""
    out = [(f"op:{n}", REGISTRY[n].scalar, REGISTRY[n].arity, REGISTRY[n]) for n in SCALAR_OPS]
    out += [(f"fn:{n}", _vocabulary_tree(n), sx.FUNCTIONS[n], NUMPY[n]) for n in sorted(sx.FUNCTIONS)]
    return out


def _reference(ref, points):
    with np.errstate(all="ignore"):
        return np.asarray(ref.forward(np, *points) if hasattr(ref, "forward") else ref(*points))


def _case_points(label: str, arity: int, dtype) -> list[np.ndarray]:
    name = label.split(":")[1]
    points = _points(name, arity, 25, seed=3)
    return [p if p.dtype == bool else p.astype(dtype) for p in points]


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")
def test_the_numba_printer_compiles_and_means_numpys_functions():
    import numba

    cases = _cases()
    lines = ["import math as _math", "import numpy as np", "", "", "def every(a0, a1, a2, out):"]
    lines += [f"    out[{k}] = {sx.to_numba(tree, ['a0', 'a1', 'a2'][:n])}" for k, (_, tree, n, _) in enumerate(cases)]
    namespace: dict = {}
    exec("\n".join(lines), namespace)  # our own printed text
    every = numba.njit(error_model="numpy")(namespace["every"])  # as the backend compiles
    out = np.empty(len(cases))
    for k, (label, _, n, ref) in enumerate(cases):
        points = _case_points(label, n, np.float64)
        expected = _reference(ref, points)
        got = []
        for row in zip(*points):
            every(*(float(v) for v in row), *(0.0,) * (3 - n), out)
            got.append(out[k])
        np.testing.assert_allclose(np.array(got).astype(expected.dtype), expected, rtol=1e-13, err_msg=label)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_c_printer_compiles_with_cc_and_means_numpys_functions(tmp_path, dtype):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    cases = _cases()
    ctype = "float" if dtype == np.float32 else "double"
    source = [sx.C_PRELUDE]
    for k, (_, tree, n, _) in enumerate(cases):
        params = ", ".join(f"{ctype} a{j}" for j in range(3))
        source.append(f"{ctype} f{k}({params}) {{ return ({ctype})({sx.to_c(tree, ['a0', 'a1', 'a2'][:n], dtype)}); }}")
    (tmp_path / "scalar.c").write_text("\n".join(source) + "\n")
    library = tmp_path / "scalar.so"
    built = subprocess.run(
        [cc, "-std=c99", "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(library), str(tmp_path / "scalar.c")]
        + ["-lm"],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    lib = ctypes.CDLL(str(library))
    c_type = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    for k, (label, _, n, ref) in enumerate(cases):
        fn = getattr(lib, f"f{k}")
        fn.restype, fn.argtypes = c_type, [c_type] * 3
        points = _case_points(label, n, dtype)
        expected = _reference(ref, points)
        got = np.array([fn(*(float(v) for v in row), *(0.0,) * (3 - n)) for row in zip(*points)])
        rtol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got.astype(expected.dtype), expected, rtol=rtol, atol=rtol, err_msg=label)


def test_the_c_text_by_dtype():
    x, y = sx.arg(0), sx.arg(1)
    tree = sx.select(x > 0.0, sx.maximum(sx.sin(x), y), -sx.exp(-(x * 1e-3)))
    assert sx.to_c(tree, ["x", "y"]) == "((x > 0.0) ? symdiff_maximum(sin(x), y) : (-exp((-(x * 0.001)))))"
    assert sx.to_c(tree, ["x", "y"], np.float32) == (
        "((x > 0.0f) ? symdiff_maximumf(sinf(x), y) : (-expf((-(x * 0.001f)))))"
    )
    assert sx.to_c(sx.const(-math.inf) + sx.const(math.nan), []) == "((-INFINITY) + NAN)"
    assert sx.to_c(sx.logical_not(x > y) & (x < 1.0), ["x", "y"]) == "((!(x > y)) && (x < 1.0))"


def test_the_c_helpers_propagate_nan_and_keep_numpys_zero_as_fmax_does_not(tmp_path):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    (tmp_path / "h.c").write_text(sx.C_PRELUDE + "double mx(double a, double b) { return symdiff_maximum(a, b); }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "h.so"), str(tmp_path / "h.c"), "-lm"], check=True)
    mx = ctypes.CDLL(str(tmp_path / "h.so")).mx
    mx.restype, mx.argtypes = ctypes.c_double, [ctypes.c_double] * 2
    for a, b in [(1.0, math.nan), (math.nan, 1.0), (-0.0, 0.0), (0.0, -0.0), (2.0, 1.0)]:
        expected = np.maximum(a, b)
        got = mx(a, b)
        assert np.array_equal(got, expected, equal_nan=True) and math.copysign(1, got) == math.copysign(1, expected)


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed (the test extra installs it)")
def test_the_jnp_printer_means_numpys_functions():
    import jax
    import jax.numpy as jnp
    import jax.scipy.special  # noqa: F401 (the printed text reads jax.scipy.special)

    with jax.enable_x64(True):
        for label, tree, n, ref in _cases():
            points = _case_points(label, n, np.float64)
            text = sx.to_jnp(tree, [f"a{k}" for k in range(n)])
            got = eval(text, {"jnp": jnp, "jax": jax}, {f"a{k}": jnp.asarray(p) for k, p in enumerate(points)})
            expected = _reference(ref, points)
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, err_msg=label)
    assert sx.to_jnp(sx.select(sx.arg(0) > 0.0, sx.erf(sx.arg(0)), -math.inf), ["x"]) == (
        "jnp.where((x > 0.0), jax.scipy.special.erf(x), (-jnp.inf))"
    )


# -- partial derivatives ---------------------------------------------------------------------
def test_partial_by_hand():
    x, y = sx.arg(0), sx.arg(1)
    assert sx.partial(x * y + sx.sin(x), 1) == x
    assert sx.partial(x * y + sx.sin(x), 0) == y + sx.cos(x)
    assert sx.partial(sx.exp(2.0 * x), 0) == sx.exp(2.0 * x) * 2.0
    assert sx.partial(sx.floor(x) + y, 0) == sx.const(0.0)
    d = sx.python_function(sx.partial(sx.select(x > 0.0, sx.sqrt(x), 0.0), 0))
    assert d(4.0) == 0.25 and d(-1.0) == 0.0  # the untaken branch's derivative is never computed
    with pytest.raises(sd.NonDifferentiableError, match="boolean"):
        sx.partial(x > y, 0)
    assert not sx.differentiable(sx.logical_not(x > y)) and sx.differentiable(sx.select(x > y, x, y))


@pytest.mark.parametrize("name", sorted(sx.FUNCTIONS))
def test_partial_of_each_function_against_central_differences(name):
    tree = _vocabulary_tree(name)
    if not sx.differentiable(tree):
        return
    n = sx.FUNCTIONS[name]
    points = _points(name, n, 30, seed=4)
    for i in range(n):
        if points[i].dtype == bool:
            continue
        d = sx.python_function(sx.partial(tree, i), n)
        got = np.array([d(*(bool(v) if isinstance(v, np.bool_) else float(v) for v in row)) for row in zip(*points)])
        fd = _central(NUMPY[name], points, i)
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7, err_msg=f"{name} by input {i}")


DIFFERENTIABLE = [n for n in SCALAR_OPS if REGISTRY[n].elementwise and sx.differentiable(REGISTRY[n].scalar)]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_derived_partials_agree_with_each_ops_declared_rule_and_central_differences(name):
    op = REGISTRY[name]
    g = sd.Graph()
    points = _points(name, op.arity, 40, seed=5)
    inputs = [g.variable(f"x{k}", shape=(40,), dtype=p.dtype) for k, p in enumerate(points)]
    out = apply(op, *inputs)
    bound = dict(zip(inputs, points))
    derived = tree_partials(op.scalar, op.arity)
    for i, x in enumerate(inputs):
        if x.dtype == bool:
            assert derived[i] is None  # a condition carries no gradient, as where's rule says
            continue
        declared = sd.evaluate(sd.grad(sd.sum(out), x), bound)
        ours = np.zeros(40) if derived[i] is None else sd.evaluate(derived[i](out, *inputs), bound)
        np.testing.assert_allclose(np.broadcast_to(ours, (40,)), declared, rtol=1e-10, atol=1e-12, err_msg=name)
        fd = _central(lambda *a: op.forward(np, *a), points, i)
        np.testing.assert_allclose(np.broadcast_to(ours, (40,)), fd, rtol=1e-6, atol=1e-7, err_msg=name)


def test_exp_derived_reuses_the_output_node():
    g = sd.Graph()
    x = g.variable("x")
    (d,) = tree_partials(REGISTRY["exp"].scalar, 1)
    y = sd.exp(x)
    assert d(y, x) is y
    assert str(to_nodes(sx.partial(sx.hypot(sx.arg(0), sx.arg(1)), 0), [x, g.variable("y")])) == (
        "x/where(hypot(x, y) == 0, 1, hypot(x, y))"
    )


@pytest.fixture
def softsign():
    """An op declared by its scalar expression alone (and its numpy forward)."""
    name = "test_scalar_softsign"
    op = sd.define_op(
        name,
        lambda x: x / (1.0 + np.abs(x)),
        lambda s: s,
        elementwise=True,
        scalar=lambda x: x / (1.0 + sx.abs(x)),
        doc="x / (1 + |x|)",
    )
    try:
        yield op
    finally:
        del REGISTRY[name]


def test_an_op_declared_by_its_scalar_expression_gets_its_derivatives(softsign):
    from symdiff.ops.core import aspects

    assert softsign.arity == 1 and aspects(softsign)["vjp"] == aspects(softsign)["jvp"] == "derived"
    g = sd.Graph()
    x = g.variable("x")
    y = apply(softsign, x)
    dy = sd.grad(y, x)
    d2y = sd.grad(dy, x)
    for v in [-2.5, -0.3, 0.7, 4.0]:
        values = sd.evaluate([y, dy, d2y], {x: v})
        expected = [v / (1 + abs(v)), 1 / (1 + abs(v)) ** 2, -2 * np.sign(v) / (1 + abs(v)) ** 3]
        np.testing.assert_allclose(values, expected, rtol=1e-13)
    xs = g.variable("xs", shape=(3,), dtype=np.float32)  # a float32 graph's derivative stays float32
    gs = sd.grad(sd.sum(apply(softsign, xs)), xs)
    assert gs.dtype == np.float32
    got = sd.evaluate(gs, {xs: np.array([-1.0, 0.5, 2.0], np.float32)})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 1 / (1 + np.abs([-1.0, 0.5, 2.0])) ** 2, rtol=1e-6)


def test_comparisons_stay_not_differentiable():
    for name in ("greater", "equal", "less_equal"):
        assert not REGISTRY[name].differentiable and REGISTRY[name].vjp is None
