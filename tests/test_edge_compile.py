"""Compiled code at its edges (issue 19, H1, H2, H8, G7).

- float64 scalars (variables, constants, np.float64 exponents) meeting float32 arrays keep
  the graph's dtype under NEP 50 in evaluate, compile and to_source, bit for bit;
- constants of every shape and dtype round-trip exactly through to_source;
- (every op case on dask arrays: tests/test_dask.py, which skips without dask);
- to_source of sparse derivatives, the command line's errors, render of huge graphs.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symdiff as sd
from symdiff.graph import ancestors

from .programs import MODERATE, Program, programs

seeds = st.integers(0, 2**32 - 1)


def _module(outputs, inputs, name="f"):
    namespace: dict = {}
    exec(sd.to_source(outputs, inputs, name=name), namespace)
    return namespace[name]


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _all_agree(outputs, xs, args):
    """evaluate, compile and to_source give the graph's dtype and the same bits for every output."""
    expected = sd.evaluate(outputs, dict(zip(xs, args)))
    compiled = sd.compile(outputs, xs)(*args)
    emitted = _module(outputs, xs)(*args)
    for k, (node, e, c, s) in enumerate(zip(outputs, expected, compiled, emitted)):
        assert np.asarray(e).dtype == node.dtype, (k, node, np.asarray(e).dtype, node.dtype)
        assert _same(c, e), (k, node, c, e)
        assert _same(s, e), (k, node, s, e)


# -- H1: float64 scalars meeting float32 arrays -----------------------------------------------
@pytest.mark.parametrize(
    "build",
    [
        lambda x, s: x * s,
        lambda x, s: x * sd.sin(s),  # a scalar step: a Python float in compiled code and evaluate
        lambda x, s: (x * x + 0.5) ** np.float64(-2.5),  # a literal float64 exponent
        lambda x, s: sd.where(x > 0, x, s),
        lambda x, s: x + np.float64(0.1),
        lambda x, s: sd.maximum(x, sd.exp(s) - 2.0),
    ],
    ids=["mul-variable", "mul-scalar-step", "pow-constant", "where", "add-constant", "maximum"],
)
def test_float64_scalars_promote_float32_arrays_as_in_the_graph(build):
    g = sd.Graph()
    x, s = g.variable("x", shape=(2,), dtype=np.float32), g.variable("s")
    y = build(x, s)
    assert y.dtype == np.float64  # numpy's rule for a float64 scalar (not a Python float)
    args = [np.array([0.3, -1.7], dtype=np.float32), 0.7]
    _all_agree([y, *sd.grad(sd.sum(y * y), [x, s])], [x, s], args)


def test_the_issue_examples_have_numpys_float64_values():
    g = sd.Graph()
    x, s = g.variable("x", shape=(2,), dtype=np.float32), g.variable("s")
    xv = np.array([0.3, -1.7], dtype=np.float32)
    # numpy promotes float32 with a float64 scalar to float64; x*x + 0.5 stays float32
    wide = xv.astype(np.float64)
    base = (xv * xv + np.float32(0.5)).astype(np.float64)
    for y, want in [(x * s, wide * 0.7), ((x * x + 0.5) ** np.float64(-2.5), base**-2.5)]:
        assert _same(sd.compile(y, [x, s])(xv, 0.7), want)
        assert _same(_module(y, [x, s])(xv, 0.7), want)


def test_the_fast_python_float_path_stays_where_the_dtype_is_the_same():
    g = sd.Graph()
    x, s = g.variable("x", shape=(3,)), g.variable("s")
    source = sd.compile(x * sd.sin(s) + s * 2.0, [x, s]).source
    assert "np.float64" not in source  # float64 arrays: a Python float promotes the same way
    g = sd.Graph()
    x, s = g.variable("x", shape=(3,), dtype=np.float32), g.variable("s")
    assert "np.float64(" in sd.compile(x * sd.sin(s), [x, s]).source


@st.composite
def _mixed_programs(draw):
    """A float32 program over its variables and a float64 scalar variable (drawn first, so the
    steps use it often), whose constants are Python floats (weak) or np.float64 (strong)."""
    program = draw(programs(mode="float32"))
    strong = draw(st.lists(st.booleans(), min_size=len(MODERATE), max_size=len(MODERATE)))
    constants = tuple(np.float64(c) if b else c for c, b in zip(MODERATE, strong))
    return Program(((),) + program.shapes, program.steps, program.mode, constants)


@given(program=_mixed_programs(), seed=seeds)
def test_float32_programs_with_float64_scalars_compile_as_they_evaluate(program, seed):
    """Contract: compile and to_source equal evaluate in dtype and bits for every output,
    and every node evaluates to its graph dtype, wherever float64 scalars meet float32."""
    g = sd.Graph()
    xs = [g.variable("s")]
    xs += [g.variable(f"x{k}", shape=shape, dtype=np.float32) for k, shape in enumerate(program.shapes[1:])]
    y = program.build(*xs)
    rng = np.random.default_rng(seed)
    args = [float(rng.uniform(-1.5, 1.5))] + [rng.uniform(-1.5, 1.5, x.shape).astype(np.float32) for x in xs[1:]]
    note(f"program: {program}\ngraph:\n{y}")
    cost = sd.sum(y * y) if y.ndim else y * y
    outputs = [y, *sd.grad(cost, xs)]
    with np.errstate(all="ignore"):
        nodes = [n for n in ancestors(outputs) if n.inputs]
        for n, v in zip(nodes, sd.evaluate(nodes, dict(zip(xs, args)))):
            assert np.asarray(v).dtype == n.dtype, (n, np.asarray(v).dtype, n.dtype)
        _all_agree(outputs, xs, args)


# -- H2: constants round-trip through to_source ------------------------------------------------
def test_a_0d_float32_constant_stays_0d():
    g = sd.Graph()
    x = g.variable("x", dtype=np.float32)
    y = sd.sin(x) + 1.0
    got = _module(y, [x])(np.float32(0.5))
    assert np.shape(got) == () and got.dtype == np.float32
    assert got == np.float32(np.sin(np.float32(0.5)) + np.float32(1.0))


def test_a_constant_with_a_zero_length_axis_keeps_its_trailing_axes():
    g = sd.Graph()
    v = g.variable("v", shape=(3, 2))
    y = sd.concatenate([v, np.zeros((0, 2))])
    got = _module([y, sd.grad(sd.sum(y * y), v)], [v])(np.ones((3, 2)))
    assert got[0].shape == (3, 2) and _same(got[1], np.full((3, 2), 2.0))


_DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.uint64, np.bool_])


@given(
    value=_DTYPES.flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
            | hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=90),
            elements=None if np.dtype(dt).kind != "f" else {"allow_nan": True, "allow_infinity": True},
        )
    ),
    fill=st.booleans(),
)
def test_every_constant_round_trips_through_to_source(value, fill):
    """Contract: a constant of any shape (0-d, zero-length axes, large) and dtype (float32,
    float16, int, uint64, bool; nan, inf, -0.0) is the same bits in the emitted module."""
    if fill and value.size:
        value = np.full(value.shape, value.flat[0], dtype=value.dtype)
    g = sd.Graph()
    c = g.constant(value)
    x = g.variable("x")  # the module's function takes an input; the constant is what it returns
    got = _module([c, x * 2.0], [x])(1.0)[0]
    assert _same(got, value), (value, got)


# -- G7: to_source of sparse derivatives, the command line's errors, huge drawings ----------------
def _rosenbrock(n: int):
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    return x, sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_to_source_of_a_sparse_hessian_returns_scipy_sparse_matrices():
    import scipy.optimize
    import scipy.sparse

    x, f = _rosenbrock(6)
    H = sd.sparse_hessian(f, x)
    module = _module([f, sd.grad(f, x), H], [x])
    compiled = sd.compile([f, sd.grad(f, x), H], [x])
    for point in (np.linspace(-1.0, 1.5, 6), np.full(6, 0.3)):
        value, gradient, hess = module(point)
        assert scipy.sparse.issparse(hess) and hess.format == "csr"
        np.testing.assert_allclose(hess.toarray(), scipy.optimize.rosen_hess(point), rtol=1e-13)  # scipy's oracle
        want = compiled(point)[2]
        for part in ("data", "indices", "indptr"):
            assert _same(getattr(hess, part), getattr(want, part)), part
        assert _same(gradient, compiled(point)[1]) and _same(value, compiled(point)[0])
    first = module(np.zeros(6))[2]
    first.eliminate_zeros()  # a result changed in place changes no later result
    first.data[:] = 7.0
    np.testing.assert_allclose(module(np.ones(6))[2].toarray(), scipy.optimize.rosen_hess(np.ones(6)))
    alone = _module(H, [x])(np.ones(6))  # a single sparse output
    assert alone.shape == (6, 6) and "stored elements" in repr(alone)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symdiff", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--emit", "python", "--out", "{tmp}/missing/grad.py"], "--out {tmp}/missing/grad.py: the folder"),
        (["--emit", "python", "--out", "{tmp}"], "that is a folder"),
        (["--out", "{tmp}/grad.py"], "--out writes the module of --emit python"),
        (["--dot", "{tmp}/missing/d.svg"], "--dot {tmp}/missing/d.svg: the folder"),
        (["--dot", "{tmp}/d.txt"], "use a .svg, .png, .pdf or .dot file name"),
    ],
    ids=["out-missing-folder", "out-is-a-folder", "out-without-emit", "dot-missing-folder", "dot-suffix"],
)
def test_the_command_line_reports_a_bad_path_in_one_line(tmp_path, capsys, args, message):
    from symdiff.cli import main

    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["grad", "x**2*sin(y)", "--wrt", "x", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("symdiff: error: "), err
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "missing").exists()


def test_the_command_prints_no_traceback_for_a_missing_folder(tmp_path):
    out = _cli("grad", "x**2*sin(y)", "--wrt", "x", "--emit", "python", "--out", str(tmp_path / "no" / "g.py"))
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert (
        out.stderr
        == f"symdiff: error: --out {tmp_path / 'no' / 'g.py'}: the folder {str(tmp_path / 'no')!r} does not exist\n"
    )


def test_the_command_line_reports_an_unwritable_file_in_one_line(tmp_path, capsys):
    from symdiff.cli import main

    target = tmp_path / "grad.py"
    target.mkdir()  # exists, but as a folder: checked before any work
    assert main(["grad", "x**2", "--wrt", "x", "--emit", "python", "--out", str(target)]) == 2
    assert "that is a folder" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["grad", "x**2", "--wrt", "x", "--emit", "python", "--out", str(locked / "g.py")])
        err = capsys.readouterr().err
        if code == 0:
            pytest.skip("running as root: the folder is writable")
        assert code == 1 and err.count("\n") == 1 and "cannot write" in err and str(locked / "g.py") in err
    finally:
        locked.chmod(0o700)


def _chain(levels: int):
    g = sd.Graph()
    x = g.variable("x")
    y = x
    for _ in range(levels):
        y = sd.sin(y) * x + 0.5
    return g, y


def test_render_refuses_a_huge_graph_at_once_and_names_depth(tmp_path, monkeypatch):
    g, y = _chain(1700)
    assert len(g) > 5000

    def no_layout(*args, **kwargs):
        raise AssertionError("render wrote DOT source or ran Graphviz before refusing")

    # refused before any DOT is written or Graphviz is started (what takes minutes)
    with monkeypatch.context() as m:
        m.setattr("symdiff.export.render.to_dot", no_layout)
        m.setattr("symdiff.export.render.subprocess.run", no_layout)
        with pytest.raises(sd.GraphError, match=r"render: the drawing would have \d+ nodes.*depth=.*sub-graph"):
            sd.render(y, tmp_path / "big.svg")
    assert not list(tmp_path.iterdir())  # nothing written
    graphviz = shutil.which("dot") is not None
    with contextlib.nullcontext() if graphviz else pytest.warns(UserWarning, match="Graphviz"):
        out = sd.render(y, tmp_path / "near.svg", depth=3)  # the outputs' neighbourhood draws
    assert out.exists()
    assert sd.render(y, tmp_path / "all.dot").exists()  # DOT source only: no layout, no limit
    from symdiff.export.render import to_svg

    if graphviz:
        with pytest.warns(UserWarning, match="depth="):
            assert to_svg(y) is None
