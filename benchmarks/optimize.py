"""An optimal-control problem solved end to end: symdiff + Ipopt and + scipy's trust-constr,
against CasADi's nlpsol and against derivatives written by hand.

    python benchmarks/optimize.py                    # N = 1000 and 10000, 3 runs each
    python benchmarks/optimize.py --n 1000 --runs 5
    /work/peers/bin/python benchmarks/optimize.py    # where CasADi is installed

The problem is the Van der Pol oscillator of CasADi's own examples, steered to rest:

    minimise    integral_0^10 x1^2 + x2^2 + u^2 dt
    subject to  x1' = (1 - x2^2) x1 - x2 + u,   x2' = x1,   x(0) = (0, 1),
                x1 >= -0.25,   -1 <= u <= 1,

by direct transcription: N intervals of h = 10/N, the states X (N+1 x 2) at the grid points,
one control U[k] per interval, the dynamics as N + N equality constraints by the trapezoidal
rule, x(0) as two more, the objective by the trapezoidal rule. n = 3N + 2 variables,
m = 2N + 2 constraints; the second dynamics row and x(0) are linear.

Every row is the TOTAL time from nothing to a solution: building the model, its derivatives
(symdiff: the graph, the Lagrangian's sparse Hessian and the constraints' sparse Jacobian with
their colourings; CasADi: its expressions and ``nlpsol``, which makes its derivative functions),
compiling, and solving from x = 0:

- ``symdiff + Ipopt``: ``sd.Problem(...).minimize(x0, method="ipopt")`` through cyipopt.
- ``CasADi SX + Ipopt`` and ``CasADi MX + Ipopt``: the same model in CasADi, written on whole
  vectors (no Python loop over the steps), as scalar expressions (SX, the usual choice for
  nlpsol) and as matrix expressions (MX); ``nlpsol("ipopt")`` with its exact Hessian.
- ``symdiff + trust-constr``: ``prob.minimize(x0, method="trust-constr")``.
- ``hand-written + trust-constr`` (the reference): scipy's trust-constr with fun, jac and hess
  written by hand, the constraint Jacobian and the Lagrangian's Hessian as scipy.sparse matrices
  on structures made once, the linear rows as a ``LinearConstraint`` (as symdiff passes them).

Ipopt runs with the same options everywhere: ``tol`` 1e-8, ``linear_solver`` MUMPS, no output.
Ipopt builds differ, though: cyipopt links the system's Ipopt (Debian's 3.11.9 with MUMPS 5.5),
CasADi ships its own (3.14 with MUMPS 5.8). For a comparison on one Ipopt, build cyipopt against
CasADi's copy, into a directory of its own, and pass it with ``--cyipopt DIR``: the script
loads CasADi's libipopt first, so symdiff's rows run on the very library CasADi's do.

    CASADI=$(python -c "import casadi, os; print(os.path.dirname(casadi.__file__))")
    mkdir -p /tmp/pc && cat > /tmp/pc/ipopt.pc <<EOF
    Name: Ipopt
    Description: the Ipopt CasADi ships
    Version: 3.14.19
    Cflags: -I$CASADI/include/coin-or
    Libs: -L$CASADI -lipopt
    EOF
    PKG_CONFIG_PATH=/tmp/pc pip install --no-deps --no-binary cyipopt --target DIR cyipopt

(The version is the one of the ``libipopt.so.3.*`` beside casadi; the heredoc's lines without
their indentation.) Timings are wall-clock and this process's CPU seconds: on a machine shared
with other jobs, the CPU seconds are the steadier measure.

The script prints the Ipopt and MUMPS libraries loaded. The optimum is checked: every row's
objective within 1e-6 (relative) of the first's. Each N is measured ``--runs`` times, the
solvers interleaved, after a warm-up at N = 50 (imports and first calls); the table shows the
range (min-max) over the runs and the ratios the targets are about, per run.
Targets (issue 24): symdiff + Ipopt at most 1/2 of CasADi's total at N = 10^4, and
symdiff + trust-constr within 1.5x of the hand-written reference.
"""

from __future__ import annotations

import os

# One BLAS thread unless told otherwise, for every row alike: on a small shared machine, waking
# OpenBLAS's threads for each vector norm of 10^4 elements cost trust-constr 2 ms a call (2/3 of
# its time at N = 1000), which measured the machine's load rather than anyone's code.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import glob  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.optimize import Bounds, LinearConstraint, NonlinearConstraint, minimize  # noqa: E402

import symdiff as sd  # noqa: E402

T_END = 10.0
START = np.array([0.0, 1.0])  # x(0)
X1_MIN, U_MAX = -0.25, 1.0
IPOPT_OPTIONS = {"tol": 1e-8, "linear_solver": "mumps", "print_level": 0, "sb": "yes"}
# tight enough that trust-constr's optimum agrees with Ipopt's to 1e-6 (its defaults stop at ~1e-5)
TRUST_CONSTR = {"gtol": 1e-10, "xtol": 1e-12, "barrier_tol": 1e-10, "maxiter": 10_000}
AGREE = 1e-6


# -- symdiff ------------------------------------------------------------------------------
def symdiff_problem(N: int) -> sd.Problem:
    """The transcribed problem as an sd.Problem over X (N+1, 2) and U (N,)."""
    h = T_END / N
    g = sd.Graph()
    X, U = g.variable("X", shape=(N + 1, 2)), g.variable("U", shape=(N,))
    x1, x2 = X[:, 0], X[:, 1]
    f1 = (1.0 - x2**2) * x1 - x2  # x1' without the control
    cost = h * (0.5 * sd.sum(X[:-1] ** 2) + 0.5 * sd.sum(X[1:] ** 2) + sd.sum(U**2))
    dyn1 = x1[1:] - x1[:-1] - 0.5 * h * (f1[:-1] + f1[1:]) - h * U
    dyn2 = x2[1:] - x2[:-1] - 0.5 * h * (x1[:-1] + x1[1:])
    lower_X = np.tile([X1_MIN, -np.inf], (N + 1, 1))
    return sd.Problem(
        cost,
        [X, U],
        constraints=[(0.0, dyn1, 0.0), (0.0, dyn2, 0.0), (0.0, X[0] - START, 0.0)],
        bounds=([lower_X, -U_MAX], [np.inf, U_MAX]),
    )


def start(N: int) -> np.ndarray:
    return np.zeros(3 * N + 2)


def symdiff_ipopt(N: int) -> float:
    res = symdiff_problem(N).minimize(start(N), method="ipopt", options=IPOPT_OPTIONS)
    assert res.success, res.message
    return res.fun


def symdiff_trust_constr(N: int) -> float:
    res = symdiff_problem(N).minimize(start(N), method="trust-constr", options=TRUST_CONSTR)
    assert res.success, res.message
    return res.fun


# -- the reference: derivatives by hand ----------------------------------------------------
class HandWritten:
    """fun, jac, hess and the dynamics' Jacobian and Lagrangian Hessian written by hand for the
    flat vector z = (X flattened in C order: x1_0, x2_0, x1_1, ...; then U), each sparse matrix
    on a structure made once (its indices and indptr) with only its values computed per call."""

    def __init__(self, N: int):
        self.N, self.h = N, T_END / N
        h, n, k = self.h, 3 * N + 2, np.arange(N)
        self.n, self.nx = n, 2 * (N + 1)
        weight = np.full(N + 1, h)  # the trapezoidal weights of x1^2 + x2^2
        weight[[0, -1]] = h / 2
        self.weight = np.repeat(weight, 2)
        self.hess_f = sp.diags(np.concatenate([2 * self.weight, np.full(N, 2 * h)])).tocsr()
        # dyn1's Jacobian: row k at x1_k, x2_k, x1_{k+1}, x2_{k+1}, u_k (in this order: sorted)
        cols = np.stack([2 * k, 2 * k + 1, 2 * k + 2, 2 * k + 3, self.nx + k], axis=1).reshape(-1)
        self.jac_structure = (cols, np.arange(0, 5 * N + 1, 5), (N, n))
        # its Lagrangian Hessian: at each node j, (x1_j, x2_j), (x2_j, x1_j) and (x2_j, x2_j)
        j = np.arange(N + 1)
        hcols = np.stack([2 * j + 1, 2 * j, 2 * j + 1], axis=1).reshape(-1)
        counts = np.zeros(n, dtype=np.int64)
        counts[: self.nx] = np.tile([1, 2], N + 1)
        self.hess_structure = (hcols, np.concatenate([[0], np.cumsum(counts)]), (n, n))
        # the linear rows: dyn2 (x2_{k+1} - x2_k - h/2 (x1_k + x1_{k+1})) and x(0)
        rows = np.concatenate([np.tile(k, 4), [N, N + 1]])
        lcols = np.concatenate([2 * k + 3, 2 * k + 1, 2 * k, 2 * k + 2, [0, 1]])
        vals = np.concatenate([np.ones(N), -np.ones(N), np.full(2 * N, -h / 2), [1.0, 1.0]])
        target = np.concatenate([np.zeros(N), START])
        self.linear = LinearConstraint(sp.csr_matrix((vals, (rows, lcols)), shape=(N + 2, n)), target, target)
        lower = np.concatenate([np.tile([X1_MIN, -np.inf], N + 1), np.full(N, -U_MAX)])
        upper = np.concatenate([np.full(self.nx, np.inf), np.full(N, U_MAX)])
        self.bounds = Bounds(lower, upper)

    def split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return z[0 : self.nx : 2], z[1 : self.nx : 2], z[self.nx :]

    def fun(self, z: np.ndarray) -> float:
        X, U = z[: self.nx], z[self.nx :]
        return float(self.weight @ X**2 + self.h * (U @ U))

    def jac(self, z: np.ndarray) -> np.ndarray:
        return np.concatenate([2 * self.weight * z[: self.nx], 2 * self.h * z[self.nx :]])

    def hess(self, z: np.ndarray) -> sp.csr_matrix:
        return self.hess_f

    def dyn(self, z: np.ndarray) -> np.ndarray:
        x1, x2, u = self.split(z)
        f1 = (1.0 - x2**2) * x1 - x2
        return x1[1:] - x1[:-1] - 0.5 * self.h * (f1[:-1] + f1[1:]) - self.h * u

    def dyn_jac(self, z: np.ndarray) -> sp.csr_matrix:
        x1, x2, _ = self.split(z)
        h = self.h
        a, b = 1.0 - x2**2, -2.0 * x1 * x2 - 1.0  # d f1 / d x1, d f1 / d x2
        values = np.stack(
            [-1.0 - 0.5 * h * a[:-1], -0.5 * h * b[:-1], 1.0 - 0.5 * h * a[1:], -0.5 * h * b[1:], np.full(self.N, -h)],
            axis=1,
        ).reshape(-1)
        indices, indptr, shape = self.jac_structure
        return sp.csr_matrix((values, indices, indptr), shape=shape)

    def dyn_hess(self, z: np.ndarray, v: np.ndarray) -> sp.csr_matrix:
        x1, x2, _ = self.split(z)
        w = np.zeros(self.N + 1)  # each node's weight in sum_k v_k dyn1_k: -h/2 (v_{j-1} + v_j)
        w[:-1] -= 0.5 * self.h * v
        w[1:] -= 0.5 * self.h * v
        cross, second = -2.0 * x2 * w, -2.0 * x1 * w  # f1's d2/dx1dx2 = -2 x2, d2/dx2^2 = -2 x1
        values = np.stack([cross, cross, second], axis=1).reshape(-1)
        indices, indptr, shape = self.hess_structure
        return sp.csr_matrix((values, indices, indptr), shape=shape)


def hand_trust_constr(N: int) -> float:
    p = HandWritten(N)
    dynamics = NonlinearConstraint(p.dyn, 0.0, 0.0, jac=p.dyn_jac, hess=p.dyn_hess)
    res = minimize(
        p.fun,
        start(N),
        method="trust-constr",
        jac=p.jac,
        hess=p.hess,
        constraints=[dynamics, p.linear],
        bounds=p.bounds,
        options=TRUST_CONSTR,
    )
    assert res.success, res.message
    return float(res.fun)


# -- CasADi ---------------------------------------------------------------------------------
def casadi_ipopt(kind: str) -> Callable[[int], float]:
    def solve(N: int) -> float:
        import casadi as ca

        h = T_END / N
        S = ca.SX if kind == "SX" else ca.MX
        X, U = S.sym("X", 2, N + 1), S.sym("U", 1, N)  # columns are grid points
        x1, x2 = X[0, :], X[1, :]
        f1 = (1 - x2**2) * x1 - x2
        cost = h * (0.5 * ca.sumsqr(X[:, :-1]) + 0.5 * ca.sumsqr(X[:, 1:]) + ca.sumsqr(U))
        dyn1 = x1[1:] - x1[:-1] - 0.5 * h * (f1[:-1] + f1[1:]) - h * U
        dyn2 = x2[1:] - x2[:-1] - 0.5 * h * (x1[:-1] + x1[1:])
        g = ca.vertcat(dyn1.T, dyn2.T, X[:, 0] - ca.DM(START))
        options = {f"ipopt.{k}": v for k, v in IPOPT_OPTIONS.items()}
        solver = ca.nlpsol(
            "vdp", "ipopt", {"x": ca.vertcat(ca.vec(X), U.T), "f": cost, "g": g}, {**options, "print_time": False}
        )
        lower = np.concatenate([np.tile([X1_MIN, -np.inf], N + 1), np.full(N, -U_MAX)])
        upper = np.concatenate([np.full(2 * (N + 1), np.inf), np.full(N, U_MAX)])
        res = solver(x0=start(N), lbx=lower, ubx=upper, lbg=0.0, ubg=0.0)
        assert solver.stats()["success"], solver.stats()["return_status"]
        return float(res["f"])

    return solve


# -- the runner -----------------------------------------------------------------------------
def use_cyipopt(directory: str) -> None:
    """Import cyipopt from ``directory`` (built against CasADi's Ipopt) with CasADi's libipopt
    loaded first, so its extension finds that library."""
    import casadi

    found = sorted(glob.glob(os.path.join(os.path.dirname(casadi.__file__), "libipopt.so.*")), key=len)
    if not found:
        sys.exit(f"--cyipopt: no libipopt.so.* beside casadi ({casadi.__file__})")
    ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, directory)


def loaded(words: tuple[str, ...]) -> list[str]:
    """The shared libraries of this process whose names hold one of ``words`` (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return []
    return sorted({os.path.basename(p) for p in paths if any(w in os.path.basename(p).lower() for w in words)})


def timed(fn: Callable[[int], float], N: int) -> tuple[float, float, float]:
    """Wall-clock seconds, this process's CPU seconds (less sensitive to a shared machine's
    load) and the optimum of one solve."""
    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    value = fn(N)
    return time.perf_counter() - t, time.process_time() - c, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10_000], help="numbers of intervals")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cyipopt", help="a directory holding cyipopt built against CasADi's Ipopt")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out (their first words)")
    args = parser.parse_args()
    if args.cyipopt:
        use_cyipopt(args.cyipopt)
    solvers: dict[str, Callable[[int], float]] = {}
    notes = []
    if importlib.util.find_spec("cyipopt"):
        import cyipopt

        solvers["symdiff + Ipopt"] = symdiff_ipopt
        notes.append(
            f"symdiff + Ipopt: cyipopt {cyipopt.__version__} on Ipopt {'.'.join(map(str, cyipopt.IPOPT_VERSION))}"
        )
    else:
        notes.append('symdiff + Ipopt: skipped, cyipopt is not installed (pip install "symdiff[ipopt]")')
    if importlib.util.find_spec("casadi"):
        import casadi

        solvers["CasADi SX + Ipopt"] = casadi_ipopt("SX")
        solvers["CasADi MX + Ipopt"] = casadi_ipopt("MX")
        notes.append(f"CasADi {casadi.__version__} with the Ipopt it ships")
    else:
        notes.append("CasADi: skipped, not installed (pip install casadi)")
    solvers["symdiff + trust-constr"] = symdiff_trust_constr
    solvers["hand-written + trust-constr"] = hand_trust_constr
    solvers = {k: v for k, v in solvers.items() if not any(k.lower().startswith(s.lower()) for s in args.skip)}

    for fn in solvers.values():  # warm-up: imports, first calls, Ipopt's libraries loaded
        fn(50)
    blas = os.environ["OPENBLAS_NUM_THREADS"]
    libraries = ", ".join(loaded(("ipopt", "mumps")))
    print(f"{sys.executable}; numpy {np.__version__}, OPENBLAS_NUM_THREADS={blas}; Ipopt and MUMPS loaded: {libraries}")
    for note in notes:
        print(f"- {note}")
    for N in args.n:
        seconds: dict[str, list[float]] = {name: [] for name in solvers}
        cpu: dict[str, list[float]] = {name: [] for name in solvers}
        optimum: dict[str, float] = {}
        for _ in range(args.runs):
            for name, fn in solvers.items():
                s, c, value = timed(fn, N)
                seconds[name].append(s)
                cpu[name].append(c)
                optimum[name] = value
        print(f"\nN = {N} (n = {3 * N + 2}, m = {2 * N + 2}), {args.runs} runs: total seconds, wall (CPU), min-max")
        first = next(iter(optimum.values()))
        for name in solvers:
            worst = abs(optimum[name] - first) / abs(first)
            flag = "" if worst <= AGREE else f"  OPTIMUM DIFFERS by {worst:.1e}"
            wall = f"{min(seconds[name]):7.3f} - {max(seconds[name]):7.3f}"
            print(
                f"  {name:28s} {wall} ({min(cpu[name]):.3f} - {max(cpu[name]):.3f})   f* = {optimum[name]:.10f}{flag}"
            )
        ratios = []
        casadi_rows = [k for k in seconds if k.startswith("CasADi")]
        if "symdiff + Ipopt" in seconds and casadi_rows:
            for k in casadi_rows:
                r = [a / b for a, b in zip(seconds["symdiff + Ipopt"], seconds[k])]
                rc = [a / b for a, b in zip(cpu["symdiff + Ipopt"], cpu[k])]
                ratios.append(
                    f"symdiff + Ipopt / {k}: {min(r):.2f}-{max(r):.2f}x wall, {min(rc):.2f}-{max(rc):.2f}x CPU "
                    "(target <= 0.5x at N = 10^4)"
                )
        if "symdiff + trust-constr" in seconds and "hand-written + trust-constr" in seconds:
            r = [a / b for a, b in zip(seconds["symdiff + trust-constr"], seconds["hand-written + trust-constr"])]
            rc = [a / b for a, b in zip(cpu["symdiff + trust-constr"], cpu["hand-written + trust-constr"])]
            ratios.append(
                f"symdiff + trust-constr / hand-written: {min(r):.2f}-{max(r):.2f}x wall, "
                f"{min(rc):.2f}-{max(rc):.2f}x CPU (target <= 1.5x)"
            )
        for line in ratios:
            print(f"  {line}")


if __name__ == "__main__":
    main()
