"""Every op case on every installed backend: the value, the gradient and a second-order
derivative computed by ``sd.compile(..., backend=...)`` agree with the numpy backend, and an
op a backend cannot run is refused at compile time with an error naming it.

The numpy backend's results are themselves checked against finite differences of plain
numpy (test_op_registry.py), so agreement here carries that oracle to the other backends.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import BACKENDS, installed, load
from symdiff.lower import lowered
from symdiff.ops import REGISTRY

from .op_cases import CASES, ZERO_DERIVATIVE, build_case

OTHER = [b for b in BACKENDS if b != "numpy"]
# float64 agreement with the numpy backend: numba runs the same libm; XLA has its own
# implementations of the elementary functions and of LAPACK-like routines.
RTOL = {"numba": 1e-12, "jax": 1e-9, "c": 1e-12}
# Cases an op's printer refuses for their shapes, though the op runs on the backend otherwise
# (case name -> op): none today.
REFUSED = {
    "numba": {},
    "jax": {},
    "c": {},
}


def _build(case):
    """The case's output, its gradient and a second derivative, for comparing backends."""
    g, xs, y = build_case(case)
    outputs = [y]
    if case.op not in ZERO_DERIVATIVE and y.dtype.kind == "f":
        wrt = [xs[k] for k in case.differentiable_inputs()]
        if wrt:
            # a scalar projection with fixed weights: its gradient, and the gradient of a
            # projection of that gradient (second order, through every op's vjp twice)
            w = np.linspace(0.5, 1.5, int(np.prod(case.reference(*case.inputs).shape)) or 1)
            cost = sd.sum(y * np.reshape(w, np.shape(case.reference(*case.inputs))))
            grads = sd.grad(cost, wrt)
            grads = grads if isinstance(grads, list) else [grads]
            outputs += grads
            if case.max_order >= 2:
                second = sd.sum(sd.sin(grads[0]))
                outputs.append(sd.grad(second, wrt[0]))
    return xs, outputs


def _unsupported(backend, nodes):
    """The ops of ``nodes``' program the backend refuses: by name, or (a backend that prints
    primitives) an op whose lowering it needs cannot be written for the node's shapes."""
    module = load(backend)
    lowers = getattr(module, "lowers", lambda op: False)
    missing, seen, pending = set(), set(), list(nodes)
    while pending:
        reached = sd.graph.ancestors(pending)
        for region in sd.graph.regions_in(reached):  # the ops a body runs, too
            reached += sd.graph.ancestors(region.outputs)
        pending = []
        for n in reached:
            if n in seen or n.op not in REGISTRY:
                continue
            seen.add(n)
            op = REGISTRY[n.op]
            if module.unsupported(op) is not None:
                missing.add(n.op)
            elif lowers(op):
                try:
                    pending += list(lowered(n).outputs)
                except sd.ShapeError:
                    if not getattr(module, "specializes", False):  # C lowers once the shapes are known
                        missing.add(n.op)
    return sorted(missing)


# numba builds each case's native code for seconds, jax compiles it with XLA for about one, the C
# compiler takes a fraction of a second:
# one case in EVERY[backend] runs by default, every case with --runslow (CI runs it)
EVERY = {"numba": 24, "jax": 3, "c": 12}


def _case_backend_params():
    for i, case in enumerate(CASES):
        for backend in OTHER:
            marks = [pytest.mark.slow] if i % EVERY[backend] else []
            yield pytest.param(case, backend, id=f"{case.name}-{backend}", marks=marks)


@pytest.mark.parametrize(("case", "backend"), list(_case_backend_params()))
def test_every_op_case_agrees_with_numpy(case, backend):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (the test extra installs it)")
    xs, outputs = _build(case)
    expected = sd.compile(outputs, xs)(*case.inputs)
    missing = _unsupported(backend, outputs)
    if missing or case.name in REFUSED[backend]:
        named = missing[0] if missing else REFUSED[backend][case.name]
        with pytest.raises(
            sd.BackendError, match=f"{backend} backend cannot run op '({'|'.join(missing or [named])})'"
        ):
            sd.compile(outputs, xs, backend=backend)
        return
    f = sd.compile(outputs, xs, backend=backend)
    got = f(*case.inputs)
    for k, (a, b) in enumerate(zip(got, expected)):
        a = np.asarray(a)
        assert a.shape == np.shape(b), (k, a.shape, np.shape(b))
        assert a.dtype == np.asarray(b).dtype, (k, a.dtype, np.asarray(b).dtype)
        np.testing.assert_allclose(a, b, rtol=RTOL[backend], atol=RTOL[backend], err_msg=f"output {k}")


_RUNNER = r"""
import pickle, sys
sys.modules["symdiff"] = None  # the emitted modules must not need it: importing it now fails
import numpy as np

failures = []
for path in sys.argv[1:]:
    with open(path + ".pkl", "rb") as fh:
        inputs, expected = pickle.load(fh)
    namespace = {"__name__": "emitted"}
    try:
        exec(compile(open(path).read(), path, "exec"), namespace)
        got = namespace["f"](*inputs)
    except Exception as exc:
        failures.append(f"{path}: {type(exc).__name__}: {exc}")
        continue
    for k, (a, b) in enumerate(zip(got, expected)):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            failures.append(f"{path}: output {k} differs: {a!r} != {b!r}")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_emitted_source_runs_without_symdiff_bit_for_bit(tmp_path):
    """Every op case's value, gradient and second derivative as a standalone module, run in a
    subprocess where importing symdiff fails, equal to the numpy backend bit for bit."""
    import pickle
    import subprocess
    import sys

    paths = []
    for case in CASES:
        xs, outputs = _build(case)
        path = tmp_path / f"case{len(paths)}.py"
        path.write_text(sd.to_source(outputs, xs, name="f"))
        expected = sd.compile(outputs, xs)(*case.inputs)
        with open(f"{path}.pkl", "wb") as fh:
            pickle.dump(([np.asarray(a) for a in case.inputs], expected), fh)
        paths.append(str(path))
    done = subprocess.run(
        [sys.executable, "-I", "-c", _RUNNER, *paths], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_emitted_source_takes_the_ieee_path_and_checks_its_inputs():
    g = sd.Graph()
    x = g.variable("x", shape=(3,))
    y = x[1] * sd.log(x[0])  # log(0) raises in math: the module falls back to numpy's -inf
    namespace: dict = {}
    exec(sd.to_source([y, sd.grad(y, x)], [x]), namespace)
    f = namespace["f"]
    for point in ([1.0, 2.0, 3.0], [0.0, 2.0, 3.0]):
        for a, b in zip(f(np.array(point)), sd.compile([y, sd.grad(y, x)], [x])(np.array(point))):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    with pytest.raises(ValueError, match="variable 'x' has shape \\(3,\\)"):
        f(np.ones(4))
    with pytest.raises(TypeError, match="variable 'x' has dtype float64"):
        f(np.array(["a", "b", "c"]))


def test_a_missing_or_unknown_backend_names_the_extra(monkeypatch):
    g = sd.Graph()
    x = g.variable("x")
    with pytest.raises(sd.BackendError, match="unknown backend 'cuda'"):
        sd.compile(x * 2, backend="cuda")
    import symdiff.backends as backends

    monkeypatch.setattr(backends, "installed", lambda name: False)
    with pytest.raises(sd.BackendError, match=r"pip install 'symdiff\[numba\]'"):
        sd.compile(x * 2, backend="numba")


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")
def test_numba_refuses_an_op_by_name_and_leaves_the_graph_alone():
    # every op of the registry runs on numba; a user's op with a numpy forward alone does not
    sort = sd.define_op("sort_for_numba_refusal", forward=np.sort, shape=lambda s: s, kind="other")
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    y = sd.sum(sd.ops.core.apply(sort, x) ** 2)
    n = len(g)
    with pytest.raises(sd.BackendError, match="numba backend cannot run op 'sort_for_numba_refusal'.*backend='numpy'"):
        sd.compile(y, [x], backend="numba")
    assert len(g) == n
    # ... unless it says how it is written with other ops: then numba runs its lowering
    clipped = sd.define_op(
        "soft_clip_for_numba_lowering",
        forward=lambda x: np.tanh(x) * 2.0,
        shape=lambda s: s,
        kind="other",
        lower=lambda x: sd.tanh(x) * 2.0,
    )
    z = sd.ops.core.apply(clipped, x)
    value = np.linspace(-2.0, 2.0, 4)
    np.testing.assert_allclose(sd.compile(z, [x], backend="numba")(value), np.tanh(value) * 2.0, rtol=1e-15)


_SECOND_PROCESS = r"""
import symdiff as sd, numpy as np
g = sd.Graph()
w = g.variable("w")
h = w
for _ in range(20):
    h = h * sd.sin(h) + w
f = sd.compile([h, sd.grad(h, w)], [w], backend="numba")
stats = f._dispatcher.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), *[repr(float(v)) for v in f(0.3)])
"""


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed (the test extra installs it)")
def test_numba_machine_code_is_reused_by_a_second_process(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SYMDIFF_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", _SECOND_PROCESS], capture_output=True, text=True, env=env, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = (run.stdout.split() for run in runs)
    assert (int(first[0]), int(first[1])) == (0, 1)  # compiled, and written to disk
    assert (int(second[0]), int(second[1])) == (1, 0)  # loaded from disk, not compiled again
    assert first[2:] == second[2:]
    g = sd.Graph()
    w = g.variable("w")
    h = w
    for _ in range(20):
        h = h * sd.sin(h) + w
    expected = sd.compile([h, sd.grad(h, w)], [w])(0.3)
    np.testing.assert_allclose([float(v) for v in second[2:]], expected, rtol=1e-12)


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed (the test extra installs it)")
def test_jax_function_composes_with_vmap_and_jit_and_keeps_the_global_config():
    import jax

    g = sd.Graph()
    w, x = g.variable("w", shape=(3,)), g.variable("x", shape=(3,))
    loss = sd.log1p(sd.exp(-(w @ x)))
    f = sd.compile([loss, sd.grad(loss, w)], [w, x], backend="jax")
    was = jax.config.jax_enable_x64
    rng = np.random.default_rng(0)
    wv, xs = rng.standard_normal(3), rng.standard_normal((5, 3))
    value, gw = f(wv, xs[0])
    assert np.asarray(gw).dtype == np.float64 and jax.config.jax_enable_x64 == was
    with jax.enable_x64(True):
        per_example = jax.jit(jax.vmap(f.jax_function, in_axes=(None, 0)))(wv, xs)
    expected = [sd.compile([loss, sd.grad(loss, w)], [w, x])(wv, row) for row in xs]
    np.testing.assert_allclose(np.asarray(per_example[0]), [e[0] for e in expected], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(per_example[1]), [e[1] for e in expected], rtol=1e-12)


_SHARDED = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np, symdiff as sd
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
g = sd.Graph()
X, y, w = g.variable("X", shape=(None, 3)), g.variable("y", shape=(None,)), g.variable("w", shape=(3,))
loss = sd.mean((X @ w - y) ** 2)
f = sd.compile([loss, sd.grad(loss, w)], [X, y, w], backend="jax")
mesh = Mesh(np.array(jax.devices()), ("batch",))
rng = np.random.default_rng(1)
Xv, yv, wv = rng.standard_normal((8, 3)), rng.standard_normal(8), rng.standard_normal(3)
with jax.enable_x64(True):
    Xs = jax.device_put(Xv, NamedSharding(mesh, P("batch")))
    ys = jax.device_put(yv, NamedSharding(mesh, P("batch")))
    value, gw = jax.jit(f.jax_function)(Xs, ys, wv)
print(len(jax.devices()), len(Xs.sharding.device_set), repr(float(value)), *map(repr, np.asarray(gw).tolist()))
"""


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed (the test extra installs it)")
def test_jax_function_runs_on_data_sharded_across_devices():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    devices, used, value, *gw = run.stdout.split()
    assert devices == "2" and used == "2"
    rng = np.random.default_rng(1)
    Xv, yv, wv = rng.standard_normal((8, 3)), rng.standard_normal(8), rng.standard_normal(3)
    r = Xv @ wv - yv
    np.testing.assert_allclose(float(value), np.mean(r**2), rtol=1e-12)
    np.testing.assert_allclose([float(v) for v in gw], 2 * Xv.T @ r / 8, rtol=1e-12)
