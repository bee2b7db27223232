"""symdiff against hand-written code, measured in the same process.

    python benchmarks/run.py            # every workload
    python benchmarks/run.py chain300   # one of them
    python benchmarks/run.py --quick    # fewer repetitions

Each figure is a ratio: symdiff's seconds per call / the same computation written
by hand (plain Python with math for the scalar chains, numpy for the MLP, scipy's
``rosen_hess`` for Rosenbrock), median of several runs. Lower is better; 1.0 is
parity. Peers are timed the same way when installed, where this file has their version
of a workload: JAX (chain12, chain300, mlp, quad, logreg, tanhjac, ewchain, rk4, rnn), PyTorch (mlp,
quad, logreg, tanhjac, rk4, rnn), CasADi and PyTensor (chain12, chain300, rosen10, rosen100,
rk4) and SymPy (chain12); symdiff's numba, jax and C backends appear as sd-numba, sd-jax and
sd-c. Two rows carry a floor written by hand: "C by hand" (chain12, chain300: the reference's
loops in C, called through cffi as sd-c is) and "numba by hand" (ewchain: the forward and
reverse pass fused into one numba loop, with the C library's sin, cos and tanh). None is
required. ``--builds`` also times numba's first and cached builds in fresh processes.
The matrix-calculus workloads (quad: Hessian of x@A@x, n = 1000; logreg: Hessian of the
logistic loss, X 2000 x 500; tanhjac: Jacobian of tanh(W@x), n = 800) compare with the
textbook formula in numpy. srosenN: the sparse Hessian of Rosenbrock (sd.sparse_hessian)
against scipy's dense rosen_hess (against the sparse closed form at n = 100,000).

The loop workloads time a gradient through ``sd.scan`` against the same forward loss
hand-written in numpy (a numpy loop over the steps). ``rk4`` (two rows, T = 100 and 1000):
64 damped, driven pendulums theta'' = -c theta' - k sin(theta) + A cos(2t/3), one per initial
angle in linspace(-1.5, 1.5), at rest, integrated by T classic RK4 steps of dt = 0.05; the loss
is the ensemble's mean final angle squared, its gradient wrt (c, k, A) at (0.5, 1.0, 0.4).
Beside it: symdiff's numba and jax backends, the loop unrolled by ``sd.unroll`` (T = 100), JAX
(``lax.scan`` + jit), PyTensor (``scan``), CasADi (``mapaccum``) and PyTorch eager (T = 100).
``rnn``: h_t = tanh(x_t@Wx + h_{t-1}@Wh + b) over 200 steps (batch 16, input 8, hidden 32); the
loss is the mean over steps and batch of (h_t@v - y_t)**2, its gradient wrt Wx, Wh, b and v;
JAX (``lax.scan`` + jit) and PyTorch eager beside it. Their notes give each build (graph + grad
+ compile for symdiff; a backend's or peer's build includes its first call, where JIT
compilers compile) and say why a backend was skipped (one that cannot run loops yet).
``ewchain``: the gradient of sum(h) after 4 levels of h = 0.5 sin(h) + 0.3 tanh(h) + 0.1 x over 10^6
float64 elements (20 elementwise ops), against its forward and reverse pass hand-written in numpy;
the numba backend runs it as one fused loop ("sd-numba (size None)": the same chain over x declared
of shape (None,)); JAX (jit, which fuses it too) beside it.
Optimization end to end (sd.Problem + Ipopt / trust-constr against CasADi): benchmarks/optimize.py.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import symdiff as sd
from symdiff.graph import ancestors


def seconds_per_call(fn: Callable[[], object], budget: float = 0.2, runs: int = 7) -> float:
    """Median over ``runs`` of the mean time per call in a loop of about ``budget`` seconds."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < budget / 5:
        fn()
        calls += 1
    per_run = max(1, int(calls * 5 / runs))
    samples = []
    for _ in range(runs):
        gc.disable()
        t = time.perf_counter()
        for _ in range(per_run):
            fn()
        samples.append((time.perf_counter() - t) / per_run)
        gc.enable()
    return statistics.median(samples)


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak memory allocated during one call (numpy reports its buffers to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@dataclass
class Result:
    name: str
    ratio: float
    symdiff_s: float
    reference_s: float
    forward_nodes: int
    gradient_nodes: int
    simplified_nodes: int
    build_s: float
    memory_ratio: float | None = None
    peers: dict[str, float] = field(default_factory=dict)
    notes: str = ""


def _backends(
    outputs, inputs, args: list, budget: float, ref: float, which=("numba", "jax", "c"), notes: list[str] | None = None
) -> dict[str, float]:
    """symdiff's other backends on the same graph, as ratios to the same reference
    (skipped where the library is not installed). JAX's results are waited for. Given
    ``notes``, each backend's build (compile and first call) is noted there, and a backend
    that cannot build or run the graph is noted with its reason instead of raising."""
    from symdiff.backends import installed

    out = {}
    expected = sd.compile(outputs, inputs)(*args)
    for backend in which:
        if not installed(backend):
            continue
        t0 = time.perf_counter()
        try:
            f = sd.compile(outputs, inputs, backend=backend)
            if backend == "jax":
                import jax

                call = lambda: jax.block_until_ready(f(*args))  # noqa: E731
            else:
                call = lambda: f(*args)  # noqa: E731
            got = call()
        except Exception as e:  # a backend that cannot run this graph (yet): the row says why
            if notes is None:
                raise
            notes.append(f"sd-{backend} skipped ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
            continue
        if notes is not None:
            notes.append(f"sd-{backend} build {time.perf_counter() - t0:.2f} s")
        _agree(f"sd-{backend}", got, expected, rtol=1e-9, atol=1e-12)
        out[f"sd-{backend}"] = seconds_per_call(call, budget) / ref
    return out


def _graph_size(outputs) -> int:
    return sum(1 for n in ancestors(outputs) if n.inputs)


def _derive_and_compile(t0: float, g: sd.Graph, f, derive: Callable[[], object], inputs: list, outputs=None):
    """The build of a workload whose forward graph ``f`` is in ``g``, started at ``t0``: the
    derivative ``derive()`` appended, then ``outputs(derivative)`` (the derivative by default)
    compiled. Returns the derivative, the compiled function, the forward graph's size, the nodes
    the derivative appended and the build's seconds."""
    forward = _graph_size([f])
    before = len(g)
    derivative = derive()
    appended = len(g) - before
    fn = sd.compile(derivative if outputs is None else outputs(derivative), inputs=inputs)
    return derivative, fn, forward, appended, time.perf_counter() - t0


# -- chain: z = f(...f(w)), f(h) = h sin h + w ------------------------------------------
def chain_reference(w: float, depth: int) -> tuple[float, float]:
    hs, h = [], w
    for _ in range(depth):
        hs.append(h)
        h = h * math.sin(h) + w
    g, gw = 1.0, 0.0
    for h_i in reversed(hs):
        gw += g  # the direct "+ w" of each level
        g *= math.sin(h_i) + h_i * math.cos(h_i)
    return h, gw + g


def chain_graph(depth: int) -> tuple[sd.Graph, sd.Node, sd.Node]:
    """z = f(...f(w)), f(h) = h sin h + w: the graph, w and z."""
    g = sd.Graph()
    w = g.variable("w")
    h = w
    for _ in range(depth):
        h = h * sd.sin(h) + w
    return g, w, h


def chain(depth: int, budget: float) -> Result:
    t0 = time.perf_counter()
    g, w, h = chain_graph(depth)
    dz, f, forward, appended, build = _derive_and_compile(t0, g, h, lambda: sd.grad(h, w), [w], lambda dz: [h, dz])
    simplified = _graph_size(sd.simplify([h, dz]))
    got, expected = f(0.3), chain_reference(0.3, depth)
    assert abs(got[1] - expected[1]) <= 1e-9 * max(1.0, abs(expected[1])), (got, expected)
    mine = seconds_per_call(lambda: f(0.3), budget)
    ref = seconds_per_call(lambda: chain_reference(0.3, depth), budget)
    peers = {}
    if depth <= 12:
        peers.update(_sympy_chain(depth, budget, ref))
    peers.update(_jax_chain(depth, budget, ref))
    peers.update(_casadi_chain(depth, budget, ref))
    peers.update(_pytensor_chain(depth, budget, ref))
    peers.update(_c_by_hand_chain(depth, budget, ref))
    peers.update(_backends([h, dz], [w], [0.3], budget, ref, which=("numba", "c")))
    notes = []
    if depth <= 12 and "sd-c" in peers:  # the batched entry point: 10,000 evaluations in one C call
        fc = sd.compile([h, dz], [w], backend="c")
        ws = np.linspace(0.0, 1.0, 10_000)
        per = seconds_per_call(lambda: fc.batch(ws), budget) / ws.size
        peers["sd-c batch"] = per / ref
        notes.append(f"sd-c batch: {per * 1e6:.3f} us per evaluation")
    note = "; ".join(notes)
    return Result(f"chain{depth}", mine / ref, mine, ref, forward, appended, simplified, build, peers=peers, notes=note)


# The chain written by hand in C (the reference's two loops, each sin kept for the reverse pass;
# the C library's sin and cos), built with the c backend's compiler and flags and called through
# cffi as sd-c's compiled function calls its library (float cells filled in place): what C with
# this machine's libm reaches, a floor for any C backend.
CHAIN_C = """
#include <math.h>
void chain_by_hand(const double *w_in, double *z, double *dz)
{
    double hs[DEPTH], ss[DEPTH], h = w_in[0], w = w_in[0], g = 1.0, gw = 0.0;
    int i;
    for (i = 0; i < DEPTH; ++i) {
        hs[i] = h;
        ss[i] = sin(h);
        h = h * ss[i] + w;
    }
    for (i = DEPTH - 1; i >= 0; --i) {
        gw += g;
        g *= ss[i] + hs[i] * cos(hs[i]);
    }
    z[0] = h;
    dz[0] = gw + g;
}
"""


def _c_by_hand_chain(depth: int, budget: float, ref: float) -> dict[str, float]:
    try:
        import cffi

        from symdiff.backends.c import build

        library = build(f"#define DEPTH {depth}\n{CHAIN_C}")
    except (ImportError, sd.BackendError):  # no cffi, no C compiler, no writable cache: no row
        return {}
    ffi = cffi.FFI()
    ffi.cdef("void chain_by_hand(const double *w_in, double *z, double *dz);")
    lib = ffi.dlopen(str(library))
    cw, cz, cdz = ffi.new("double[1]"), ffi.new("double[1]"), ffi.new("double[1]")
    run = lib.chain_by_hand

    def call(w: float) -> tuple[float, float]:
        cw[0] = w
        run(cw, cz, cdz)
        return cz[0], cdz[0]

    _agree("C by hand", call(0.3), chain_reference(0.3, depth), rtol=1e-9, atol=0.0)
    return {"C by hand": seconds_per_call(lambda: call(0.3), budget) / ref}


def _casadi_chain(depth: int, budget: float, ref: float) -> dict[str, float]:
    try:
        import casadi as ca
    except ImportError:
        return {}
    w = ca.SX.sym("w")
    h = w
    for _ in range(depth):
        h = h * ca.sin(h) + w
    fn = ca.Function("f", [w], [h, ca.jacobian(h, w)])
    return {"casadi": seconds_per_call(lambda: [float(v) for v in fn(0.3)], budget) / ref}


def _pytensor_chain(depth: int, budget: float, ref: float) -> dict[str, float]:
    try:
        import pytensor
        import pytensor.tensor as pt
    except ImportError:
        return {}
    w = pt.dscalar("w")
    h = w
    for _ in range(depth):
        h = h * pt.sin(h) + w
    fn = pytensor.function([w], [h, pytensor.grad(h, w)])
    return {"pytensor": seconds_per_call(lambda: fn(0.3), budget) / ref}


def _sympy_chain(depth: int, budget: float, ref: float) -> dict[str, float]:
    import sympy

    W = sympy.Symbol("w")
    h = W
    for _ in range(depth):
        h = h * sympy.sin(h) + W
    fn = sympy.lambdify(W, [h, sympy.diff(h, W)], modules="math", cse=True)
    return {"sympy": seconds_per_call(lambda: fn(0.3), budget) / ref}


def _jax_chain(depth: int, budget: float, ref: float) -> dict[str, float]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}

    def f(w):
        h = w
        for _ in range(depth):
            h = h * jnp.sin(h) + w
        return h

    vg = jax.jit(jax.value_and_grad(f))
    return {"jax": seconds_per_call(lambda: jax.block_until_ready(vg(0.3)), budget) / ref}


# -- mlp: softmax cross-entropy 784-256-256-10, batch 256 --------------------------------
def mlp_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = [784, 256, 256, 10]
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [rng.standard_normal((a, b)) * np.sqrt(2.0 / a), np.zeros(b)]
    X = rng.standard_normal((256, 784))
    Y = np.eye(10)[rng.integers(0, 10, 256)]
    return X, Y, params


def mlp_reference(X, Y, W1, b1, W2, b2, W3, b3):
    z1 = X @ W1 + b1
    h1 = np.maximum(z1, 0)
    z2 = h1 @ W2 + b2
    h2 = np.maximum(z2, 0)
    s = h2 @ W3 + b3
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    n = X.shape[0]
    loss = -np.sum(Y * logp) / n
    ds = (np.exp(logp) - Y) / n
    dW3, db3 = h2.T @ ds, ds.sum(axis=0)
    dz2 = (ds @ W3.T) * (z2 > 0)
    dW2, db2 = h1.T @ dz2, dz2.sum(axis=0)
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    dW1, db1 = X.T @ dz1, dz1.sum(axis=0)
    return loss, dW1, db1, dW2, db2, dW3, db3


def mlp(budget: float) -> Result:
    X_val, Y_val, params = mlp_data()
    t0 = time.perf_counter()
    g, X, Y, P, loss = _mlp_model(params, "float64")
    grads, f, forward, appended, build = _derive_and_compile(
        t0, g, loss, lambda: sd.grad(loss, P), [X, Y, *P], lambda grads: [loss, *grads]
    )
    simplified = _graph_size(sd.simplify([loss, *grads]))
    args = [X_val, Y_val, *params]
    for a, b in zip(f(*args), mlp_reference(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    mine = seconds_per_call(lambda: f(*args), budget)
    ref = seconds_per_call(lambda: mlp_reference(*args), budget)
    memory = peak_bytes(lambda: f(*args)) / peak_bytes(lambda: mlp_reference(*args))
    peers = {}
    peers.update(_torch_mlp(args, budget, ref))
    peers.update(_jax_mlp(args, budget, ref))
    peers.update(_backends([loss, *grads], [X, Y, *P], args, budget, ref))
    peers.update(_mlp_float32(args, budget))
    return Result("mlp", mine / ref, mine, ref, forward, appended, simplified, build, memory, peers)


def _mlp_model(params, dtype: str):
    """The MLP's softmax cross-entropy in ``dtype``: the graph, X, Y, the parameters and the loss."""
    g = sd.Graph()
    X, Y = g.variable("X", shape=(None, 784), dtype=dtype), g.variable("Y", shape=(None, 10), dtype=dtype)
    P = [g.variable(n, shape=p.shape, dtype=dtype) for n, p in zip(["W1", "b1", "W2", "b2", "W3", "b3"], params)]
    h = X
    for k in range(3):
        h = h @ P[2 * k] + P[2 * k + 1]
        if k < 2:
            h = sd.relu(h)
    return g, X, Y, P, -sd.mean(sd.sum(Y * sd.log_softmax(h), axis=1))


def _mlp_graph(params, dtype: str):
    g, X, Y, P, loss = _mlp_model(params, dtype)
    return [loss, *sd.grad(loss, P)], [X, Y, *P]


def _mlp_float32(args, budget: float) -> dict[str, float]:
    """The jax backend on the float32 graph (JAX's own default precision), against the
    hand-written numpy code on the same float32 arrays."""
    from symdiff.backends import installed

    if not installed("jax"):
        return {}
    import jax

    args32 = [a.astype(np.float32) for a in args]
    outputs, inputs = _mlp_graph(args[2:], "float32")
    f = sd.compile(outputs, inputs, backend="jax")
    for a, b in zip(f(*args32), mlp_reference(*args32)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=2e-3, atol=1e-5)
    ref32 = seconds_per_call(lambda: mlp_reference(*args32), budget)
    return {"sd-jax-f32 (vs numpy f32)": seconds_per_call(lambda: jax.block_until_ready(f(*args32)), budget) / ref32}


def _torch_mlp(args, budget: float, ref: float) -> dict[str, float]:
    try:
        import torch
    except ImportError:
        return {}
    tensors = [torch.tensor(a, requires_grad=k >= 2) for k, a in enumerate(args)]

    def step():
        X, Y, W1, b1, W2, b2, W3, b3 = tensors
        h = torch.relu(X @ W1 + b1)
        h = torch.relu(h @ W2 + b2)
        loss = -(Y * torch.log_softmax(h @ W3 + b3, dim=1)).sum(dim=1).mean()
        return torch.autograd.grad(loss, tensors[2:])

    return {"torch": seconds_per_call(step, budget) / ref}


def _jax_mlp(args, budget: float, ref: float) -> dict[str, float]:
    """JAX's own jit(value_and_grad) of the loss, in float64 like the reference."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}

    def loss(params, X, Y):
        W1, b1, W2, b2, W3, b3 = params
        h = jax.nn.relu(X @ W1 + b1)
        h = jax.nn.relu(h @ W2 + b2)
        return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(h @ W3 + b3, axis=1), axis=1))

    with jax.enable_x64(True):
        step = jax.jit(jax.value_and_grad(loss))
        X, Y, *params = args
        return {"jax": seconds_per_call(lambda: jax.block_until_ready(step(params, X, Y)), budget) / ref}


# -- rosenbrock: the full Hessian -------------------------------------------------------
def rosen_graph(n: int):
    """Rosenbrock's function of n variables: the graph, x and f."""
    g = sd.Graph()
    x = g.variable("x", shape=(n,))
    return g, x, sd.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen(n: int, budget: float) -> Result:
    from scipy.optimize import rosen as rosen_f
    from scipy.optimize import rosen_hess

    t0 = time.perf_counter()
    g, x, f = rosen_graph(n)
    H, fn, forward, appended, build = _derive_and_compile(t0, g, f, lambda: sd.hessian(f, x), [x])
    simplified = _graph_size(sd.simplify([H]))
    x0 = np.linspace(-1.2, 1.5, n)
    assert abs(sd.evaluate(f, {x: x0}) - rosen_f(x0)) < 1e-9 * rosen_f(x0)
    np.testing.assert_allclose(fn(x0), rosen_hess(x0), rtol=1e-12, atol=1e-9)
    mine = seconds_per_call(lambda: fn(x0), budget)
    ref = seconds_per_call(lambda: rosen_hess(x0), budget)
    peers = _backends(H, [x], [x0], budget, ref)
    peers.update(_rosen_peers(n, x0, budget, ref))
    return Result(f"rosen{n}", mine / ref, mine, ref, forward, appended, simplified, build, peers=peers)


def _rosen_peers(n: int, x0: np.ndarray, budget: float, ref: float) -> dict[str, float]:
    from scipy.optimize import rosen_hess

    out = {}
    try:
        import casadi as ca

        x = ca.SX.sym("x", n)
        f = ca.sum1(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
        fn = ca.Function("h", [x], [ca.hessian(f, x)[0]])
        np.testing.assert_allclose(fn(x0).full(), rosen_hess(x0), rtol=1e-12, atol=1e-9)
        out["casadi"] = seconds_per_call(lambda: fn(x0).full(), budget) / ref
    except ImportError:
        pass
    try:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.gradient import hessian

        x = pt.dvector("x")
        f = pt.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
        fn = pytensor.function([x], hessian(f, x))
        np.testing.assert_allclose(fn(x0), rosen_hess(x0), rtol=1e-12, atol=1e-9)
        out["pytensor"] = seconds_per_call(lambda: fn(x0), budget) / ref
    except ImportError:
        pass
    return out


def sparse_rosen(n: int, budget: float) -> Result:
    """The sparse Hessian (pattern from the graph, 3 colours) against scipy's dense rosen_hess."""
    from scipy.optimize import rosen_hess

    t0 = time.perf_counter()
    g, x, f = rosen_graph(n)
    H, fn, forward, appended, build = _derive_and_compile(t0, g, f, lambda: sd.sparse_hessian(f, x), [x])
    x0 = np.linspace(-1.2, 1.5, n)
    got = fn(x0)
    assert got.nnz == 3 * n - 2
    mine = seconds_per_call(lambda: fn(x0), budget)
    if n <= 10_000:
        np.testing.assert_allclose(got.toarray(), rosen_hess(x0), rtol=1e-12, atol=1e-9)
        ref = seconds_per_call(lambda: rosen_hess(x0), budget)
    else:  # scipy's dense Hessian would need n^2 floats: the reference is the sparse closed form
        import scipy.sparse

        def ref_fn():
            diag = np.zeros(n)
            diag[:-1] += 1200 * x0[:-1] ** 2 - 400 * x0[1:] + 2
            diag[1:] += 200
            off = -400 * x0[:-1]
            return scipy.sparse.diags([off, diag, off], [-1, 0, 1], format="csr")

        assert abs(got - ref_fn()).max() < 1e-9 * abs(ref_fn()).max()
        ref = seconds_per_call(ref_fn, budget)
    notes = f"{H.colors} colours, {got.nnz} stored values"
    return Result(f"srosen{n}", mine / ref, mine, ref, forward, appended, H.nnz, build, notes=notes)


# -- matrix calculus: Hessians and Jacobians against the textbook formula ----------------------
def _matrix(name: str, build, textbook, values: dict, budget: float, peers) -> Result:
    """``build(g)`` -> (output, inputs, cost) ; ``textbook(*arrays)`` computes the same in numpy."""
    t0 = time.perf_counter()
    g = sd.Graph()
    out, inputs, cost = build(g)
    fn = sd.compile(out, inputs=inputs)
    build_s = time.perf_counter() - t0
    forward = _graph_size([cost])
    appended = len(set(ancestors([out])) - set(ancestors([cost])))  # the derivative's own op nodes
    simplified = _graph_size(sd.simplify([out]))
    args = [values[x.name] for x in inputs]
    np.testing.assert_allclose(fn(*args), textbook(*args), rtol=1e-9, atol=1e-9)
    mine = seconds_per_call(lambda: fn(*args), budget)
    ref = seconds_per_call(lambda: textbook(*args), budget)
    found = {}
    for peer in peers:
        found.update(peer(args, budget, ref))
    return Result(name, mine / ref, mine, ref, forward, appended, simplified, build_s, None, found)


def _peer(kind: str, fn_jax, fn_torch, what: str):
    """A peer's timing of ``what`` ("hessian" or "jacobian") of a function of the first argument."""

    def run(args, budget, ref):
        if kind == "jax":
            try:
                import jax
                import jax.numpy as jnp
            except ImportError:
                return {}
            jax.config.update("jax_enable_x64", True)
            d = jax.jit(getattr(jax, "hessian" if what == "hessian" else "jacrev")(fn_jax))
            a = [jnp.asarray(v) for v in args]
            return {"jax": seconds_per_call(lambda: jax.block_until_ready(d(*a)), budget) / ref}
        try:
            import torch
            from torch.func import hessian, jacrev
        except ImportError:
            return {}
        t = [torch.tensor(v) for v in args]
        d = (hessian if what == "hessian" else jacrev)(fn_torch)
        return {"torch": seconds_per_call(lambda: d(*t), budget) / ref}

    return run


def quad(budget: float, n: int = 1000) -> Result:
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal(n), "A": rng.standard_normal((n, n))}

    def build(g):
        x, A = g.variable("x", shape=(n,)), g.variable("A", shape=(n, n))
        cost = x @ A @ x
        return sd.hessian(cost, x), [x, A], cost

    peers = [_peer(k, lambda x, A: x @ A @ x, lambda x, A: x @ A @ x, "hessian") for k in ("jax", "torch")]
    return _matrix("quad", build, lambda x, A: A + A.T, values, budget, peers)


def logreg(budget: float, rows: int = 2000, cols: int = 500) -> Result:
    rng = np.random.default_rng(0)
    values = {
        "w": rng.standard_normal(cols) * 0.05,
        "X": rng.standard_normal((rows, cols)),
        "y": rng.integers(0, 2, rows) * 1.0,
    }

    def build(g):
        w, X, y = g.variable("w", shape=(cols,)), g.variable("X", shape=(rows, cols)), g.variable("y", shape=(rows,))
        z = X @ w
        cost = sd.sum(sd.softplus(z) - y * z)
        return sd.hessian(cost, w), [w, X, y], cost

    def textbook(w, X, y):
        s = 1.0 / (1.0 + np.exp(-(X @ w)))
        return X.T @ (X * (s * (1 - s))[:, None])

    def jax_cost(w, X, y):
        import jax.numpy as jnp

        z = X @ w
        return jnp.sum(jnp.logaddexp(0.0, z) - y * z)

    def torch_cost(w, X, y):
        import torch

        z = X @ w
        return torch.sum(torch.nn.functional.softplus(z) - y * z)

    peers = [_peer(k, jax_cost, torch_cost, "hessian") for k in ("jax", "torch")]
    return _matrix("logreg", build, textbook, values, budget, peers)


def tanhjac(budget: float, n: int = 800) -> Result:
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal(n), "W": rng.standard_normal((n, n)) / np.sqrt(n)}

    def build(g):
        x, W = g.variable("x", shape=(n,)), g.variable("W", shape=(n, n))
        y = sd.tanh(W @ x)
        return sd.jacobian(y, x), [x, W], y

    def jax_f(x, W):
        import jax.numpy as jnp

        return jnp.tanh(W @ x)

    def torch_f(x, W):
        import torch

        return torch.tanh(W @ x)

    peers = [_peer(k, jax_f, torch_f, "jacobian") for k in ("jax", "torch")]
    return _matrix("tanhjac", build, lambda x, W: (1 - np.tanh(W @ x) ** 2)[:, None] * W, values, budget, peers)


# -- ewchain: a chain of elementwise ops over one large array ----------------------------------
# h = 0.5 sin(h) + 0.3 tanh(h) + 0.1 x, EW_LEVELS levels from h = x (x: 10^6 float64 normals); the
# gradient of sum(h) wrt x. The reference is the forward and its reverse pass written in numpy.
EW_SIZE, EW_LEVELS = 10**6, 4


def ewchain_level(h, x, sin, tanh):
    """One level of the chain in any library whose arrays have operators."""
    return 0.5 * sin(h) + 0.3 * tanh(h) + 0.1 * x


def ewchain_reference(x: np.ndarray) -> tuple[float, np.ndarray]:
    """sum(h) and its gradient wrt x, by hand: h' = 0.5 cos h + 0.3 (1 - tanh(h)^2) per level."""
    levels, top = [], x
    for _ in range(EW_LEVELS):
        t = np.tanh(top)
        levels.append((top, t))
        top = 0.5 * np.sin(top) + 0.3 * t + 0.1 * x
    g, direct = np.ones_like(x), np.zeros_like(x)
    for h, t in reversed(levels):
        direct += 0.1 * g  # the "+ 0.1 x" of each level
        g = g * (0.5 * np.cos(h) + 0.3 * (1.0 - t * t))
    return float(np.sum(top)), g + direct


def ewchain_graph(size: int | None):
    """The chain over x of shape (size,) (None: known when it runs): the graph, x, sum(h)."""
    g = sd.Graph()
    x = g.variable("x", shape=(size,))
    h = x
    for _ in range(EW_LEVELS):
        h = ewchain_level(h, x, sd.sin, sd.tanh)
    return g, x, sd.sum(h)


def ewchain(budget: float) -> Result:
    x_val = np.random.default_rng(0).standard_normal(EW_SIZE)
    t0 = time.perf_counter()
    g, x, loss = ewchain_graph(EW_SIZE)
    dx, fn, forward, appended, build = _derive_and_compile(
        t0, g, loss, lambda: sd.grad(loss, x), [x], lambda dx: [loss, dx]
    )
    expected = fn(x_val)
    _agree("symdiff", expected, ewchain_reference(x_val), rtol=1e-12, atol=0.0)
    mine = seconds_per_call(lambda: fn(x_val), budget)
    ref = seconds_per_call(lambda: ewchain_reference(x_val), budget)
    notes = [f"build: numpy {build:.2f} s"]
    peers = _backends([loss, dx], [x], [x_val], budget, ref, notes=notes)
    _, x_any, loss_any = ewchain_graph(None)  # the same chain, its size known only when it runs
    said: list[str] = []
    unsized = _backends([loss_any, sd.grad(loss_any, x_any)], [x_any], [x_val], budget, ref, ("numba",), said)
    peers.update({f"{name} (size None)": ratio for name, ratio in unsized.items()})
    notes += [f"{note} (size None)" for note in said]
    peers.update(_jax_ewchain(x_val, expected, budget, ref, notes))
    peers.update(_numba_by_hand_ewchain(x_val, expected, budget, ref, notes))
    simplified = _graph_size(sd.simplify([loss, dx]))
    return Result("ewchain", mine / ref, mine, ref, forward, appended, simplified, build, None, peers, "; ".join(notes))


def _jax_ewchain(x_val, expected, budget, ref, notes) -> dict[str, float]:
    """JAX: jit(value_and_grad) of the same chain, in float64 (XLA fuses it)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}

    def loss(x):
        h = x
        for _ in range(EW_LEVELS):
            h = ewchain_level(h, x, jnp.sin, jnp.tanh)
        return jnp.sum(h)

    with jax.enable_x64(True):
        step = jax.jit(jax.value_and_grad(loss))
        xj = jnp.asarray(x_val)
        call = _built(notes, "jax", lambda: lambda: jax.block_until_ready(step(xj)))
        _agree("jax", call(), expected)
        return {"jax": seconds_per_call(call, budget) / ref}


def _numba_by_hand_ewchain(x_val, expected, budget, ref, notes) -> dict[str, float]:
    """The chain's forward and reverse pass fused by hand into one numba loop over the elements
    (one thread, math's sin, cos and tanh): the floor of a fused scalar loop. Numba has had no
    vectorized transcendentals (Intel SVML) since 0.62, so each element calls the C library's."""
    try:
        import numba
    except ImportError:
        return {}

    def fused(x):
        out, total = np.empty_like(x), 0.0
        hs, ts = np.empty(EW_LEVELS), np.empty(EW_LEVELS)
        for i in range(x.size):
            h = x[i]
            for k in range(EW_LEVELS):
                hs[k], ts[k] = h, math.tanh(h)
                h = 0.5 * math.sin(h) + 0.3 * ts[k] + 0.1 * x[i]
            total += h
            g, direct = 1.0, 0.0
            for k in range(EW_LEVELS - 1, -1, -1):
                direct += 0.1 * g
                g *= 0.5 * math.cos(hs[k]) + 0.3 * (1.0 - ts[k] * ts[k])
            out[i] = g + direct
        return total, out

    step = numba.njit(fused)
    try:
        call = _built(notes, "numba by hand", lambda: lambda: step(x_val))
    except numba.core.errors.NumbaError as e:  # the row says why instead of ending the run
        notes.append(f"numba by hand skipped ({type(e).__name__})")
        return {}
    _agree("numba by hand", call(), expected)
    return {"numba by hand": seconds_per_call(call, budget) / ref}


# -- loops: gradients through sd.scan ---------------------------------------------------------
# rk4: an ensemble of 64 damped, driven pendulums, theta'' = -c theta' - k sin(theta) + A cos(w t)
# (w = 2/3), one per initial angle (linspace(-1.5, 1.5), at rest), integrated by T classic RK4
# steps of dt = 0.05. Loss: the mean over the ensemble of the final angle squared; its gradient
# wrt p = (c, k, A) = (damping, gravity/length, drive amplitude), at (0.5, 1.0, 0.4): a periodic
# regime, not a chaotic one, so every library's rounding gives the same gradient.
RK4_MEMBERS, RK4_DT, RK4_DRIVE = 64, 0.05, 2.0 / 3.0


def rk4_step(th, om, t, c, k, A, sin, cos):
    """One classic RK4 step of the pendulum from angle ``th`` and velocity ``om`` at time ``t``,
    in any library whose arrays have operators (``sin``, ``cos``: its functions)."""
    dt, h = RK4_DT, RK4_DT / 2

    def f(t, th, om):
        return om, -c * om - k * sin(th) + A * cos(RK4_DRIVE * t)

    a1, b1 = f(t, th, om)
    a2, b2 = f(t + h, th + h * a1, om + h * b1)
    a3, b3 = f(t + h, th + h * a2, om + h * b2)
    a4, b4 = f(t + dt, th + dt * a3, om + dt * b3)
    return th + dt / 6 * (a1 + 2 * a2 + 2 * a3 + a4), om + dt / 6 * (b1 + 2 * b2 + 2 * b3 + b4)


def rk4_data() -> list[np.ndarray]:
    return [np.array([0.5, 1.0, 0.4]), np.linspace(-1.5, 1.5, RK4_MEMBERS)]


def rk4_reference(p: np.ndarray, theta0: np.ndarray, steps: int) -> float:
    """The forward loss, hand-written in numpy."""
    c, k, A = p
    th, om = theta0, np.zeros_like(theta0)
    for s in range(steps):
        th, om = rk4_step(th, om, s * RK4_DT, c, k, A, np.sin, math.cos)
    return float(np.mean(th**2))


def rk4_graph(steps: int):
    """The loss as one sd.scan over the steps: the graph, p, theta0 and the loss."""
    g = sd.Graph()
    p, theta0 = g.variable("p", shape=(3,)), g.variable("theta0", shape=(RK4_MEMBERS,))
    c, k, A = p[0], p[1], p[2]

    def body(state, t):
        return rk4_step(*state, t, c, k, A, sd.sin, sd.cos), None

    times = g.constant(np.arange(steps) * RK4_DT)
    (th, _), _ = sd.scan(body, (theta0, sd.zeros_like(theta0)), times, name="rk4")
    return g, p, theta0, sd.mean(th**2)


def rk4(steps: int, budget: float) -> Result:
    args = rk4_data()
    t0 = time.perf_counter()
    g, p, theta0, loss = rk4_graph(steps)
    dp, fn, forward, appended, build = _derive_and_compile(
        t0, g, loss, lambda: sd.grad(loss, p), [p, theta0], lambda dp: [loss, dp]
    )
    expected = fn(*args)
    _check_loop_gradient(expected, lambda q: rk4_reference(q, args[1], steps), args[0])
    mine = seconds_per_call(lambda: fn(*args), budget)
    ref = seconds_per_call(lambda: rk4_reference(*args, steps), budget)
    notes = [f"body {_body_size([loss, dp])} nodes (with its reverse)", f"build: numpy {build:.2f} s"]
    peers = _backends([loss, dp], [p, theta0], args, budget, ref, notes=notes)
    if steps <= 100:  # the same loss with the loop written out, for reference
        peers.update(_unrolled(g, loss, p, [p, theta0], args, expected, budget, ref, notes))
    for peer in (_jax_rk4, _pytensor_rk4, _casadi_rk4) + ((_torch_rk4,) if steps <= 100 else ()):
        peers.update(peer(steps, args, expected, budget, ref, notes))
    simplified = _graph_size(sd.simplify([loss, dp]))
    return Result(
        f"rk4 T={steps}", mine / ref, mine, ref, forward, appended, simplified, build, None, peers, "; ".join(notes)
    )


def _check_loop_gradient(got: list, reference: Callable[[np.ndarray], float], at: np.ndarray) -> None:
    """symdiff's loss and gradient against the hand-written loss and its central differences."""
    value, gradient = got
    assert abs(value - reference(at)) <= 1e-10 * max(1.0, abs(value)), (value, reference(at))
    h = 1e-6
    differences = [(reference(at + h * e) - reference(at - h * e)) / (2 * h) for e in np.eye(at.size)]
    np.testing.assert_allclose(gradient, differences, rtol=1e-5, atol=1e-7)


def _body_size(outputs) -> int:
    """The nodes of the bodies of the loops the outputs run (a derivative body is appended to
    the graph of the body it differentiates)."""
    graphs = {id(r.graph): r.graph for n in ancestors(outputs) for r in n.regions}
    return sum(len(b) for b in graphs.values())


def _unrolled(g, loss, wrt, inputs, args, expected, budget, ref, notes) -> dict[str, float]:
    """The loss with its loops written out step by step (sd.unroll), then its gradient."""
    t0 = time.perf_counter()
    flat = sd.unroll(loss)
    before = len(g)
    d = sd.grad(flat, wrt)
    fn = sd.compile([flat, d], inputs)
    got = fn(*args)
    notes.append(f"unrolled: {_graph_size([flat])} + {len(g) - before} nodes, build {time.perf_counter() - t0:.2f} s")
    _agree("sd-unrolled", got, expected)
    return {"sd-unrolled": seconds_per_call(lambda: fn(*args), budget) / ref}


def _agree(who: str, got, expected, rtol: float = 1e-8, atol: float = 1e-10) -> None:
    """Another backend's or a peer's results against symdiff's numpy ones, item by item
    (nested lists and tuples flattened, each item raveled)."""
    flat_got = [np.asarray(v, dtype=float).ravel() for v in _leaves(got)]
    flat_expected = [np.asarray(v, dtype=float).ravel() for v in _leaves(expected)]
    assert len(flat_got) == len(flat_expected), who
    for a, b in zip(flat_got, flat_expected):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=who)


def _leaves(value) -> list:
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _built(notes: list[str], who: str, make: Callable[[], Callable[[], object]]) -> Callable[[], object]:
    """``make()`` (a peer's build) and its first call, timed into ``notes``: the call."""
    t0 = time.perf_counter()
    call = make()
    call()
    notes.append(f"{who} build {time.perf_counter() - t0:.2f} s")
    return call


def _jax_rk4(steps, args, expected, budget, ref, notes) -> dict[str, float]:
    """JAX: jit(value_and_grad) of the loss written with lax.scan, in float64."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}

    def loss(p, theta0):
        def body(state, t):
            return rk4_step(*state, t, p[0], p[1], p[2], jnp.sin, jnp.cos), None

        (th, _), _ = jax.lax.scan(body, (theta0, jnp.zeros_like(theta0)), jnp.asarray(np.arange(steps) * RK4_DT))
        return jnp.mean(th**2)

    with jax.enable_x64(True):
        step = jax.jit(jax.value_and_grad(loss))
        call = _built(notes, "jax", lambda: lambda: jax.block_until_ready(step(*args)))
        _agree("jax", call(), expected)
        return {"jax": seconds_per_call(call, budget) / ref}


def _pytensor_rk4(steps, args, expected, budget, ref, notes) -> dict[str, float]:
    """PyTensor: its scan, compiled (C) with the gradient."""
    try:
        import pytensor
        import pytensor.tensor as pt
    except ImportError:
        return {}

    def make():
        p, theta0 = pt.dvector("p"), pt.dvector("theta0")

        def body(t, th, om, p):
            return rk4_step(th, om, t, p[0], p[1], p[2], pt.sin, pt.cos)

        ths, _ = pytensor.scan(
            body,
            sequences=[pt.constant(np.arange(steps) * RK4_DT)],
            outputs_info=[theta0, pt.zeros_like(theta0)],
            non_sequences=[p],
            return_updates=False,
        )
        loss = pt.mean(ths[-1] ** 2)
        fn = pytensor.function([p, theta0], [loss, pytensor.grad(loss, p)])
        return lambda: fn(*args)

    call = _built(notes, "pytensor", make)
    _agree("pytensor", call(), expected)
    return {"pytensor": seconds_per_call(call, budget) / ref}


def _casadi_rk4(steps, args, expected, budget, ref, notes) -> dict[str, float]:
    """CasADi: the step as a Function over SX, mapaccum over the steps, the gradient over MX."""
    try:
        import casadi as ca
    except ImportError:
        return {}

    def make():
        m = RK4_MEMBERS
        x, t, p = ca.SX.sym("x", 2 * m), ca.SX.sym("t"), ca.SX.sym("p", 3)
        step = ca.Function("rk4", [x, t, p], [ca.vertcat(*rk4_step(x[:m], x[m:], t, p[0], p[1], p[2], ca.sin, ca.cos))])
        P, theta0 = ca.MX.sym("p", 3), ca.MX.sym("theta0", m)
        states = step.mapaccum("rk4_steps", steps)(
            ca.vertcat(theta0, ca.DM.zeros(m)), ca.DM(np.arange(steps) * RK4_DT).T, P
        )
        loss = ca.sumsqr(states[:m, -1]) / m
        fn = ca.Function("loss_grad", [P, theta0], [loss, ca.gradient(loss, P)])
        return lambda: [v.full() for v in fn(*args)]

    call = _built(notes, "casadi", make)
    _agree("casadi", call(), expected)
    return {"casadi": seconds_per_call(call, budget) / ref}


def _torch_rk4(steps, args, expected, budget, ref, notes) -> dict[str, float]:
    """PyTorch, eager: the loop in Python, then autograd."""
    try:
        import torch
    except ImportError:
        return {}
    p, theta0 = torch.tensor(args[0], requires_grad=True), torch.tensor(args[1])

    def call():
        th, om = theta0, torch.zeros_like(theta0)
        for s in range(steps):
            th, om = rk4_step(th, om, s * RK4_DT, p[0], p[1], p[2], torch.sin, math.cos)
        loss = torch.mean(th**2)
        return loss.detach(), torch.autograd.grad(loss, p)[0]

    _agree("torch", call(), expected)
    return {"torch": seconds_per_call(call, budget) / ref}


# rnn: h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b) over 200 steps (batch 16, input 8, hidden 32, h_0 = 0);
# loss: the mean over steps and batch of (h_t @ v - y_t)**2; gradient wrt Wx, Wh, b and v.
RNN_STEPS, RNN_BATCH, RNN_INPUT, RNN_HIDDEN = 200, 16, 8, 32


def rnn_step(h, x, y, Wx, Wh, b, v, tanh, total):
    """One step: the new hidden state and its squared error (``tanh``, ``total``: a library's
    tanh and sum)."""
    h = tanh(x @ Wx + h @ Wh + b)
    return h, total((h @ v - y) ** 2)


def rnn_data(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n, m = RNN_INPUT, RNN_HIDDEN
    weights = [rng.standard_normal((n, m)) / np.sqrt(n), rng.standard_normal((m, m)) / np.sqrt(m)]
    weights += [0.1 * rng.standard_normal(m), rng.standard_normal(m) / np.sqrt(m)]
    xs = rng.standard_normal((RNN_STEPS, RNN_BATCH, n))
    return [*weights, xs, rng.standard_normal((RNN_STEPS, RNN_BATCH))]


def rnn_reference(Wx, Wh, b, v, xs, ys) -> float:
    """The forward loss, hand-written in numpy."""
    h, total = np.zeros((RNN_BATCH, RNN_HIDDEN)), 0.0
    for x, y in zip(xs, ys):
        h, err = rnn_step(h, x, y, Wx, Wh, b, v, np.tanh, np.sum)
        total += err
    return total / ys.size


def rnn(budget: float) -> Result:
    args = rnn_data()
    shapes = [a.shape for a in args]
    t0 = time.perf_counter()
    g = sd.Graph()
    inputs = [g.variable(name, shape=s) for name, s in zip(["Wx", "Wh", "b", "v", "xs", "ys"], shapes)]
    Wx, Wh, b, v, xs, ys = inputs

    def body(h, step):
        return rnn_step(h, *step, Wx, Wh, b, v, sd.tanh, sd.sum)

    h0 = g.constant(np.zeros((RNN_BATCH, RNN_HIDDEN)))
    _, errors = sd.scan(body, h0, (xs, ys), name="rnn")
    loss = sd.sum(errors) / ys.size
    grads, fn, forward, appended, build = _derive_and_compile(
        t0, g, loss, lambda: sd.grad(loss, inputs[:4]), inputs, lambda gs: [loss, *gs]
    )
    expected = fn(*args)
    # the gradient along a random direction against the hand-written loss's central difference
    rng = np.random.default_rng(1)
    direction = [rng.standard_normal(a.shape) for a in args[:4]]

    def along(e: float) -> float:
        return rnn_reference(*[a + e * d for a, d in zip(args, direction)], *args[4:])

    assert abs(expected[0] - rnn_reference(*args)) <= 1e-10 * abs(expected[0])
    slope = sum(float(np.sum(gw * d)) for gw, d in zip(expected[1:], direction))
    np.testing.assert_allclose(slope, (along(1e-6) - along(-1e-6)) / 2e-6, rtol=1e-5)
    mine = seconds_per_call(lambda: fn(*args), budget)
    ref = seconds_per_call(lambda: rnn_reference(*args), budget)
    notes = [f"body {_body_size([loss, *grads])} nodes (with its reverse)", f"build: numpy {build:.2f} s"]
    peers = _backends([loss, *grads], inputs, args, budget, ref, notes=notes)
    for peer in (_jax_rnn, _torch_rnn):
        peers.update(peer(args, expected, budget, ref, notes))
    simplified = _graph_size(sd.simplify([loss, *grads]))
    return Result("rnn", mine / ref, mine, ref, forward, appended, simplified, build, None, peers, "; ".join(notes))


def _jax_rnn(args, expected, budget, ref, notes) -> dict[str, float]:
    """JAX: jit(value_and_grad) of the loss written with lax.scan, in float64."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}

    def loss(weights, xs, ys):
        def body(h, step):
            return rnn_step(h, *step, *weights, jnp.tanh, jnp.sum)

        _, errors = jax.lax.scan(body, jnp.zeros((RNN_BATCH, RNN_HIDDEN)), (xs, ys))
        return jnp.sum(errors) / ys.size

    with jax.enable_x64(True):
        step = jax.jit(jax.value_and_grad(loss))
        call = _built(notes, "jax", lambda: lambda: jax.block_until_ready(step(args[:4], *args[4:])))
        _agree("jax", call(), expected)
        return {"jax": seconds_per_call(call, budget) / ref}


def _torch_rnn(args, expected, budget, ref, notes) -> dict[str, float]:
    """PyTorch, eager: the loop in Python, then autograd."""
    try:
        import torch
    except ImportError:
        return {}
    weights = [torch.tensor(a, requires_grad=True) for a in args[:4]]
    xs, ys = (torch.tensor(a) for a in args[4:])

    def call():
        h, total = torch.zeros((RNN_BATCH, RNN_HIDDEN), dtype=torch.float64), 0.0
        for x, y in zip(xs, ys):
            h, err = rnn_step(h, x, y, *weights, torch.tanh, torch.sum)
            total = total + err
        loss = total / ys.numel()
        return loss.detach(), torch.autograd.grad(loss, weights)

    _agree("torch", call(), expected)
    return {"torch": seconds_per_call(call, budget) / ref}


# -- build-time scaling -------------------------------------------------------------------
def build_scaling() -> str:
    times = {}
    for depth in (300, 3000):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            _, w, h = chain_graph(depth)
            sd.compile([h, sd.grad(h, w)], inputs=[w])
            best = min(best, time.perf_counter() - t0)
        times[depth] = best
    per_node = times[3000] / (3 * 3000)
    return (
        f"build (graph + grad + compile): chain300 {times[300] * 1e3:.1f} ms, chain3000 {times[3000] * 1e3:.1f} ms "
        f"(x{times[3000] / times[300]:.1f} for 10x the depth); {per_node * 1e6:.1f} us per forward node"
    )


_BUILD_SCRIPT = r"""
import sys, time
t0 = time.perf_counter()
import numba, jax  # noqa: F401  (imported before the clock starts: their import is reported apart)
sys.path.insert(0, sys.argv[1])
import symdiff as sd
from run import chain_graph, _mlp_graph, mlp_data, rosen_graph
imported = time.perf_counter() - t0
which, backend = sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if which == "chain300":
    _, w, h = chain_graph(300)
    outputs, inputs = [h, sd.grad(h, w)], [w]
elif which == "rosen10":
    _, x, f = rosen_graph(10)
    outputs, inputs = sd.hessian(f, x), [x]
else:
    outputs, inputs = _mlp_graph(mlp_data()[2], "float64")
f = sd.compile(outputs, inputs, backend=backend)
built = time.perf_counter() - t0
print(f"{imported:.3f} {built:.3f}")
"""


def backend_builds() -> str:
    """numba's build (graph + grad + compile) in a fresh process with an empty disk cache, then
    in a second process that finds the first one's machine code there; and jax's."""
    import os
    import pathlib
    import subprocess
    import tempfile

    from symdiff.backends import installed

    if not (installed("numba") and installed("jax")):
        return "backend builds: numba and jax are not both installed"
    lines = []
    here = str(pathlib.Path(__file__).parent)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMDIFF_CACHE_DIR": cache}
        for which in ("chain300", "rosen10", "mlp"):
            runs = []
            for backend in ("numba", "numba", "jax"):
                out = subprocess.run(
                    [sys.executable, "-c", _BUILD_SCRIPT, here, which, backend],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                ).stdout.split()
                runs.append([float(v) for v in out])
            lines.append(
                f"{which}: numba first {runs[0][1]:.2f} s, cached {runs[1][1]:.2f} s (import numba+jax+symdiff "
                f"{runs[1][0]:.2f} s); jax {runs[2][1]:.3f} s + its jit at the first call"
            )
    return "backend builds (separate processes):\n  " + "\n  ".join(lines)


def simplify_vs_sympy(budget: float) -> Result:
    """sd.simplify of the derivatives of order 1-3 of benchmarks/simplify_vs_sympy.py's formulas
    against sympy.simplify of sympy.diff: ratio of the times; the notes give the op counts."""
    import simplify_vs_sympy as versus

    cases = versus.compare()
    ours, theirs = sum(c.ours for c in cases), sum(c.theirs for c in cases)
    mine, reference = versus.timed()
    notes = f"op count (sympy.count_ops) {ours} vs sympy.simplify's {theirs}: {ours / theirs:.2f}x"
    size = len(versus.EXPRESSIONS)
    return Result("simplify", mine / reference, mine, reference, size, len(cases), ours, 0.0, notes=notes)


WORKLOADS = {
    "chain12": lambda b: chain(12, b),
    "chain300": lambda b: chain(300, b),
    "mlp": mlp,
    "rosen10": lambda b: rosen(10, b),
    "rosen100": lambda b: rosen(100, b),
    "srosen100": lambda b: sparse_rosen(100, b),
    "srosen1000": lambda b: sparse_rosen(1000, b),
    "srosen100000": lambda b: sparse_rosen(100_000, b),
    "quad": quad,
    "logreg": logreg,
    "tanhjac": tanhjac,
    "ewchain": ewchain,
    "rk4": lambda b: [rk4(100, b), rk4(1000, b)],
    "rnn": rnn,
    "simplify": simplify_vs_sympy,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", choices=[*WORKLOADS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--builds", action="store_true", help="also time numba's first and cached builds")
    args = parser.parse_args(argv)
    budget = 0.05 if args.quick else 0.3
    names = args.workloads or list(WORKLOADS)
    print(f"symdiff {sd.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}")
    header = (
        f"{'workload':<10} {'ratio':>6} {'symdiff':>10} {'reference':>10} {'fwd':>6} {'grad+':>6} "
        f"{'simpl':>6} {'build':>8} {'memory':>7}  peers"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        found = WORKLOADS[name](budget)
        for r in found if isinstance(found, list) else [found]:
            memory = f"{r.memory_ratio:.2f}x" if r.memory_ratio is not None else "-"
            peers = "; ".join(filter(None, [", ".join(f"{k} {v:.2f}" for k, v in r.peers.items()), r.notes])) or "-"
            print(
                f"{r.name:<10} {r.ratio:>6.2f} {r.symdiff_s * 1e6:>8.1f}us {r.reference_s * 1e6:>8.1f}us "
                f"{r.forward_nodes:>6} {r.gradient_nodes:>6} {r.simplified_nodes:>6} {r.build_s * 1e3:>6.1f}ms "
                f"{memory:>7}  {peers}"
            )
    print()
    print(build_scaling())
    if args.builds:
        print(backend_builds())
    print("ratio: symdiff / hand-written (lower is better); fwd: forward op nodes; grad+: nodes the derivative")
    print("pass appended; simpl: op nodes of the outputs after sd.simplify; memory: peak bytes / hand-written's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
