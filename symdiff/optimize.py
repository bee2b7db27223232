"""sd.Problem: an optimization problem with exact sparse derivatives for scipy.optimize and Ipopt.

A problem ``min f(x) s.t. lb_k <= c_k(x) <= ub_k, lbx <= x <= ubx`` is built once from nodes
of one graph: the objective's gradient, the constraints stacked into one vector with their
sparse Jacobian, and the Lagrangian ``sigma*f + lambda'c`` as one graph (sigma and lambda
are variables of it) with its sparse Hessian (the graph's pattern, star colouring). One
compiled function computes what the callbacks need at a point; the callbacks at the same
point share its results. Constraints whose Jacobian does not depend on x are linear: scipy
gets a ``LinearConstraint`` for them, Ipopt ``jac_c_constant`` / ``jac_d_constant``, and the
Lagrangian leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from symdiff.autodiff import grad
from symdiff.errors import DTypeError, GraphError, ShapeError, SymdiffError, UnboundVariableError
from symdiff.evaluate import compile as compile_graph
from symdiff.graph import Graph, Node, describe, format_shape
from symdiff.ops.join import concatenate
from symdiff.ops.reduce import sum as reduce_sum
from symdiff.ops.structure import reshape
from symdiff.plan import needed, unbound
from symdiff.sparse import SparseDerivative, dependencies, stacked_hessian, stacked_jacobian

WHAT = "Problem"

# scipy's methods and what each accepts (scipy.optimize.minimize warns about anything else)
_NO_JAC = {"nelder-mead", "powell", "cobyla", "cobyqa"}
_HESS = {"trust-constr": "sparse", "dogleg": "dense", "trust-exact": "dense"}
_HESSP = {"newton-cg", "trust-ncg", "trust-krylov"}
_CONSTRAINTS = {"cobyla", "cobyqa", "slsqp", "trust-constr"}
_BOUNDS = {"nelder-mead", "powell", "l-bfgs-b", "cobyla", "cobyqa", "slsqp", "tnc", "trust-constr"}


class ProblemError(SymdiffError, ValueError):
    """An optimization problem's data that do not fit together: a lower bound above its upper
    bound, a constraint that does not depend on x. The message names the constraint or bound."""


class Problem:
    """An optimization problem ``min f(x)`` subject to ``lb <= c(x) <= ub`` and bounds on x,
    with exact sparse first and second derivatives for ``scipy.optimize.minimize`` and Ipopt.

    Parameters
    ----------
    f : Node
        The objective, a float scalar.
    x : Node or list of Node
        The variables optimized over: float variables of static shape. Several are stacked
        (each flattened in C order) into the one vector of length ``n`` the optimizer sees;
        results come back in the variables' shapes.
    constraints : list of (lb, c, ub), optional
        ``c`` a float node of f's graph that depends on x, of static shape; ``lb`` and ``ub``
        numbers or arrays broadcastable to c's shape (None: unbounded; ``lb == ub``: an
        equality). Their elements are stacked in order into the ``m`` constraints.
    bounds : (lbx, ubx), optional
        Bounds on x: each a number, an array of n elements, or (several variables) a list
        with one number or array of the variable's shape per variable; None: unbounded.
    params : list of Node, optional
        Variables whose values are given at solve time (``prob.minimize(x0, theta=...)``):
        a new value re-solves without building or compiling anything again.
    backend : str
        The backend of ``sd.compile`` the callbacks run on ("numpy", "numba", "jax", "c").

    Attributes
    ----------
    n, m : int
        The numbers of variables' elements and of constraints.
    linear : numpy array of bool, shape (m,)
        Which constraints are linear (their Jacobian rows do not depend on x).
    jacobian, hessian : SparseDerivative
        The constraints' Jacobian (m x n) and the Lagrangian's Hessian (n x n), with their
        patterns from the graph; ``hessian`` covers the nonlinear constraints only.
    evaluations : int
        How many times a compiled function ran (callbacks at the same point share one).

    Raises
    ------
    ShapeError
        f not a scalar; x or c of unknown (None) size; lb or ub not broadcastable to c.
    DTypeError
        f, x or c not of a float dtype.
    GraphError
        x or a param not a variable, listed twice, or of another graph; c not a node of f's graph.
    UnboundVariableError
        f or c needs a variable that is neither in x nor in params.
    ProblemError
        A lower bound above its upper bound; a constraint that does not depend on x.

    >>> g = sd.Graph(); x = g.variable("x", shape=(2,)); a = g.variable("a")
    >>> f = (x[0] - a) ** 2 + (x[1] - 2.0) ** 2
    >>> prob = sd.Problem(f, x, constraints=[(None, x[0] + x[1], 2.0)], params=[a])
    >>> prob.n, prob.m, prob.linear
    (2, 1, array([ True]))
    >>> res = prob.minimize(np.zeros(2), method="SLSQP", a=1.0)
    >>> print(np.round(res.x, 6), round(float(res.multipliers[0]), 6))   # grad f + 1.0 * grad c = 0
    [0.5 1.5] 1.0
    >>> kwargs = prob.scipy(a=1.0)   # for scipy.optimize.minimize(x0=..., method="trust-constr", **kwargs)
    >>> sorted(kwargs)
    ['constraints', 'fun', 'hess', 'hessp', 'jac']
    """

    def __init__(
        self,
        f: Node,
        x: Node | Sequence[Node],
        constraints: Sequence[tuple[Any, Node, Any]] = (),
        bounds: tuple[Any, Any] | None = None,
        params: Sequence[Node] = (),
        backend: str = "numpy",
    ):
        _check_objective(f)
        graph = f.graph
        self.variables = _variables(graph, x, "x")
        self.params = _variables(graph, params, "params", allow_empty=True, fixed_size=False)
        for p in self.params:
            if p in self.variables:
                raise GraphError(f"{WHAT}: {describe(p)} is both in x and in params")
        self._single = isinstance(x, Node)
        self.shapes = [v.shape for v in self.variables]
        self._sizes = [v.size for v in self.variables]
        self._offsets = np.cumsum([0, *self._sizes])
        self.n = int(self._offsets[-1])
        self.backend = backend
        items = _constraints(graph, constraints)
        self.lbx, self.ubx = _bounds(bounds, self.variables, self.n)
        self._check_needed(f, [c for _, c, _ in items])

        with graph._transaction():  # a failure appends nothing
            xs = self.variables
            flat = [reshape(c, (-1,)) if c.ndim != 1 else c for _, c, _ in items]
            self._c_sizes = [c.size for _, c, _ in items]
            self._c_shapes = [c.shape for _, c, _ in items]
            self.m = sum(self._c_sizes)
            self.lb = np.concatenate([lo for lo, _, _ in items]) if items else np.zeros(0)
            self.ub = np.concatenate([hi for _, _, hi in items]) if items else np.zeros(0)
            cons = None if not flat else flat[0] if len(flat) == 1 else concatenate(flat)
            gradients = grad(f, xs)
            gradients = [gradients] if isinstance(gradients, Node) else gradients
            self._gradient = gradients[0] if len(xs) == 1 and xs[0].ndim == 1 else _stack(gradients)
            self.jacobian = stacked_jacobian(cons, xs, self.n, WHAT) if cons is not None else None
            self.linear = _linear_rows(self.jacobian, xs, self.m)
            _check_reach(self.jacobian, items, self._c_sizes)
            nonlinear = np.flatnonzero(~self.linear)
            self._nonlinear = nonlinear
            self._sigma = graph.variable(_fresh(graph, "problem_sigma"), shape=(), dtype=f.dtype)
            self._lam = graph.variable(_fresh(graph, "problem_lambda"), shape=(len(nonlinear),), dtype=f.dtype)
            lagrangian = self._sigma * f
            if len(nonlinear):
                picked = cons if len(nonlinear) == self.m else cons[nonlinear]
                lagrangian = lagrangian + reduce_sum(self._lam * picked)
            self.lagrangian = lagrangian
            self.hessian = stacked_hessian(lagrangian, xs, self.n, WHAT)
        self._first = [f, self._gradient] + ([cons, self.jacobian.values] if cons is not None else [])
        self._programs: dict[str, Callable[..., Any]] = {}
        self.evaluations = 0
        # the Hessian's stored values in its lower triangle (Ipopt's), and the constraints'
        # Jacobian split into its nonlinear and linear rows (scipy's two constraint kinds)
        rows, cols = _coordinates(self.hessian.pattern)
        self._lower = np.flatnonzero(rows >= cols)
        self._hess_structure = (rows[self._lower], cols[self._lower])
        if self.jacobian is not None:
            jrows, _ = _coordinates(self.jacobian.pattern)
            self._jac_nl = _Rows(self.jacobian.pattern, nonlinear, jrows)
            self._jac_lin = _Rows(self.jacobian.pattern, np.flatnonzero(self.linear), jrows)

    def __repr__(self) -> str:
        names = ", ".join(v.name for v in self.variables)
        return (
            f"<Problem over {names}: n={self.n}, m={self.m} ({int(self.linear.sum())} linear), "
            f"Hessian {self.hessian.nnz} stored values, Jacobian {0 if self.jacobian is None else self.jacobian.nnz}>"
        )

    # -- building ---------------------------------------------------------------------
    def _check_needed(self, f: Node, cons: list[Node]) -> None:
        known = set(self.variables) | set(self.params)
        missing = unbound(needed([f, *cons], known), known)
        if missing:
            names = ", ".join(repr(v.name) for v in missing)
            raise UnboundVariableError(
                f"{WHAT}: f or the constraints need variable(s) {names}, which are neither in x nor in params",
                tuple(v.name for v in missing),
            )

    def _program(self, kind: str) -> Callable[..., Any]:
        """The compiled function, made once: "first" (f, gradient, constraints, Jacobian values),
        "full" (those and the Lagrangian Hessian's values, given sigma and lambda) or "hessian"
        (the Hessian's values alone, for a point whose first values are known: Ipopt asks for
        the Hessian at the point it has just asked for the rest, and computing the rest again
        took half of "full"'s time)."""
        found = self._programs.get(kind)
        if found is None:
            if kind == "first":
                found = compile_graph(self._first, [*self.variables, *self.params], backend=self.backend)
            else:
                outputs = [*self._first, self.hessian.values] if kind == "full" else self.hessian.values
                inputs = [*self.variables, self._sigma, self._lam, *self.params]
                found = compile_graph(outputs, inputs, backend=self.backend)
            self._programs[kind] = found
        return found

    def _param_values(self, values: Mapping[Any, Any] | None, named: Mapping[str, Any]) -> list[Any]:
        given: dict[Node, Any] = {}
        by_name = {p.name: p for p in self.params}
        for key, value in [*(values or {}).items(), *named.items()]:
            node = by_name.get(key) if isinstance(key, str) else key if key in self.params else None
            if node is None:
                known = ", ".join(repr(name) for name in by_name) or "none"
                raise GraphError(f"{WHAT}: {key!r} is not one of the problem's params (params: {known})")
            given[node] = value
        missing = [p for p in self.params if p not in given]
        if missing:
            names = ", ".join(repr(p.name) for p in missing)
            raise UnboundVariableError(
                f"{WHAT}: no value for param(s) {names}; pass them by name, "
                f"e.g. prob.minimize(x0, {missing[0].name}=...)",
                tuple(p.name for p in missing),
            )
        return [given[p] for p in self.params]

    # -- the values the optimizer sees ---------------------------------------------------
    def flatten(self, x: Any) -> np.ndarray:
        """A point as the optimizer's flat vector (n,): from a flat array of n elements, an
        array of the variable's shape, or a list of one array per variable.

        Raises ShapeError naming the variables' shapes if the sizes do not match."""
        parts = list(x) if isinstance(x, (list, tuple)) and len(self.variables) > 1 else [x]
        if len(parts) == len(self.variables) and len(parts) > 1:
            arrays = [np.asarray(p, dtype=np.float64) for p in parts]
            if all(a.size == s for a, s in zip(arrays, self._sizes)):
                return np.concatenate([a.reshape(-1) for a in arrays])
        flat = np.asarray(x if len(parts) == 1 else parts, dtype=np.float64).reshape(-1)
        if flat.size != self.n:
            shapes = ", ".join(f"{v.name}: {format_shape(v.shape)}" for v in self.variables)
            raise ShapeError(
                f"{WHAT}: x0 has {flat.size} elements, but x has {self.n} ({shapes}); pass a flat array of "
                f"{self.n} or one array per variable"
            )
        return flat

    def unflatten(self, z: np.ndarray) -> Any:
        """The optimizer's flat vector (n,) in the variables' shapes: an array for one variable
        (x given as a node), a list of arrays for several."""
        parts = [z[a:b].reshape(s) for a, b, s in zip(self._offsets[:-1], self._offsets[1:], self.shapes)]
        return parts[0] if self._single else parts

    def _evaluator(self, values: Mapping[Any, Any] | None, named: Mapping[str, Any], eager: bool) -> _Evaluator:
        return _Evaluator(self, self._param_values(values, named), eager)

    # -- scipy ------------------------------------------------------------------------
    def scipy(
        self, values: Mapping[Any, Any] | None = None, /, *, method: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Keyword arguments for ``scipy.optimize.minimize(x0=..., **prob.scipy(...))``.

        Parameters
        ----------
        values : dict, optional
            The params' values keyed by node or name (the same as keywords: ``theta=...``).
        method : str, optional
            scipy's method: only what it accepts is given (and the callbacks compute the
            Hessian only if it uses one). By default, everything, for "trust-constr".

        Returns
        -------
        dict with ``fun``, ``jac`` (n,), ``hess`` (scipy.sparse CSR n x n, the objective's
        Hessian), ``hessp``, ``constraints`` (a ``NonlinearConstraint`` with sparse ``jac``
        and the Lagrangian's ``hess(x, v)``, and a ``LinearConstraint`` for the linear ones)
        and ``bounds`` (``scipy.optimize.Bounds``); those the problem does not have are left
        out. The callbacks take the flat vector (n,); ``prob.unflatten`` shapes it back.

        Raises
        ------
        UnboundVariableError
            A param without a value.
        """
        meth = None if method is None else method.lower()
        uses_hessian = meth is None or meth in _HESS or meth in _HESSP
        ev = self._evaluator(values, params, eager=uses_hessian)
        out: dict[str, Any] = {"fun": ev.fun}
        if meth not in _NO_JAC:
            out["jac"] = ev.jac
        if meth is None or _HESS.get(meth) == "sparse":
            out["hess"] = ev.hess
        elif _HESS.get(meth) == "dense":
            out["hess"] = lambda z: ev.hess(z).toarray()
        if meth is None or meth in _HESSP:
            out["hessp"] = ev.hessp
        if self.m and meth in (None, "trust-constr"):
            out["constraints"] = self._scipy_constraints(ev)
        elif self.m and meth in _CONSTRAINTS:
            out["constraints"] = self._constraint_dicts(ev)
        elif self.m:
            raise ProblemError(
                f"{WHAT}: method {method!r} cannot handle constraints; "
                f"use one of {', '.join(sorted(_CONSTRAINTS))} or 'ipopt'"
            )
        finite = np.isfinite(self.lbx).any() or np.isfinite(self.ubx).any()
        if finite and (meth is None or meth in _BOUNDS):
            from scipy.optimize import Bounds

            out["bounds"] = Bounds(self.lbx, self.ubx)
        elif finite:
            raise ProblemError(
                f"{WHAT}: method {method!r} cannot handle bounds; use one of {', '.join(sorted(_BOUNDS))} or 'ipopt'"
            )
        return out

    def _scipy_constraints(self, ev: _Evaluator) -> list[Any]:
        """trust-constr's: one NonlinearConstraint (sparse jac, the Lagrangian's hess) for the
        nonlinear rows, one LinearConstraint for the linear ones."""
        from scipy.optimize import LinearConstraint, NonlinearConstraint

        out: list[Any] = []
        nl, lin = self._nonlinear, np.flatnonzero(self.linear)
        if len(nl):
            out.append(
                NonlinearConstraint(
                    ev.constraint_fun, self.lb[nl], self.ub[nl], jac=ev.constraint_jac, hess=ev.constraint_hess
                )
            )
        if len(lin):
            A, offset = ev.linear_part()
            out.append(LinearConstraint(A, self.lb[lin] - offset, self.ub[lin] - offset))
        return out

    def _sides(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows that are equalities, the rows bounded below (not equalities), above."""
        eq = self.lb == self.ub
        return (
            np.flatnonzero(eq),
            np.flatnonzero(~eq & np.isfinite(self.lb)),
            np.flatnonzero(~eq & np.isfinite(self.ub)),
        )

    def _constraint_dicts(self, ev: _Evaluator) -> list[dict[str, Any]]:
        """SLSQP's, COBYLA's and COBYQA's: {"type": "eq"} c - lb = 0 for the equalities and
        {"type": "ineq"} (c - lb for the rows bounded below, then ub - c for those bounded
        above) >= 0, with dense Jacobians; equalities and inequalities apart, as they ask."""
        eq, below, above = self._sides()
        jac = self.jacobian

        def dense(z: Any) -> np.ndarray:
            return jac.matrix(ev.at(z)[3]).toarray()

        out = []
        if len(eq):
            out.append({"type": "eq", "fun": lambda z: ev.at(z)[2][eq] - self.lb[eq], "jac": lambda z: dense(z)[eq]})
        if len(below) or len(above):

            def fun(z: Any) -> np.ndarray:
                c = ev.at(z)[2]
                return np.concatenate([c[below] - self.lb[below], self.ub[above] - c[above]])

            def jacobian(z: Any) -> np.ndarray:
                d = dense(z)
                return np.concatenate([d[below], -d[above]])

            out.append({"type": "ineq", "fun": fun, "jac": jacobian})
        return out

    def _slsqp_multipliers(self, mult: np.ndarray) -> np.ndarray:
        """SLSQP's multipliers (the equalities', then the inequalities' of _constraint_dicts,
        with its sign: f - mult'c) over the m constraints with Ipopt's sign."""
        eq, below, above = self._sides()
        out = np.zeros(self.m)
        out[eq] -= mult[: len(eq)]
        np.subtract.at(out, below, mult[len(eq) : len(eq) + len(below)])
        np.add.at(out, above, mult[len(eq) + len(below) :])
        return out

    # -- solving ----------------------------------------------------------------------
    def minimize(
        self,
        x0: Any,
        values: Mapping[Any, Any] | None = None,
        /,
        *,
        method: str = "trust-constr",
        options: Mapping[str, Any] | None = None,
        tol: float | None = None,
        **params: Any,
    ) -> Any:
        """Solve from ``x0`` with a scipy method or ``method="ipopt"`` (cyipopt, the extra
        ``symdiff[ipopt]``): exact sparse Lagrangian Hessian, structures from the graph.

        Parameters
        ----------
        x0 : array
            The starting point: a flat array of n elements, an array of the variable's shape,
            or one array per variable.
        values : dict, optional
            The params' values keyed by node or name; or as keywords (``theta=...``).
        method : str
            Any method of ``scipy.optimize.minimize`` (only what it accepts is passed), or "ipopt".
        options : dict, optional
            Passed through: scipy's ``options``, or Ipopt's options (``{"max_iter": 100}``;
            by default Ipopt prints nothing: ``print_level`` 0 and no banner).
        tol : float, optional
            scipy's ``tol``, or Ipopt's ``tol``.

        Returns
        -------
        scipy.optimize.OptimizeResult
            ``x`` in the variables' shapes (an array for one variable, a list for several),
            ``x_flat`` the flat vector (n,), ``fun``, ``success``, ``status``, ``message``,
            and for a problem with constraints ``multipliers``: one array per constraint,
            shaped like its c, such that ``grad f + sum_k J_k' multipliers_k`` is zero at a
            solution without active bounds (Ipopt's sign; ``lb`` active: <= 0, ``ub``: >= 0).
            Ipopt's results also hold ``info`` (cyipopt's dictionary).

        Raises
        ------
        ShapeError
            x0 of the wrong size.
        UnboundVariableError
            A param without a value.
        BackendError
            method="ipopt" without cyipopt installed.
        ProblemError
            Constraints or bounds given to a method that cannot handle them.
        """
        z0 = self.flatten(x0)
        if method.lower() == "ipopt":
            return self._ipopt(z0, values, params, options, tol)
        from scipy.optimize import minimize

        kwargs = self.scipy(values, method=method, **params)
        res = minimize(x0=z0, method=method, options=dict(options or {}), tol=tol, **kwargs)
        res.x_flat = np.asarray(res.x, dtype=np.float64)
        res.x = self.unflatten(res.x_flat)
        if self.m and method.lower() == "trust-constr":
            res.multipliers = self._split(self._trust_constr_multipliers(res.v))
        elif self.m and method.lower() == "slsqp":
            res.multipliers = self._split(self._slsqp_multipliers(np.asarray(res.multipliers)))
        elif self.m and "multipliers" in res:
            del res["multipliers"]  # another method's, in its own order and sign
        return res

    def _trust_constr_multipliers(self, v: list[np.ndarray]) -> np.ndarray:
        """trust-constr's multipliers (one array per constraint object: nonlinear, linear; the
        sign Ipopt's) in the constraints' order."""
        out, k = np.zeros(self.m), 0
        for rows in (self._nonlinear, np.flatnonzero(self.linear)):
            if len(rows):
                out[rows] = np.asarray(v[k])
                k += 1
        return out

    def _split(self, flat: np.ndarray) -> list[np.ndarray]:
        """A vector over the m constraints as one array per constraint, shaped like its c."""
        ends = np.cumsum([0, *self._c_sizes])
        return [flat[a:b].reshape(s) for a, b, s in zip(ends[:-1], ends[1:], self._c_shapes)]

    def _ipopt(self, z0: np.ndarray, values: Any, params: Mapping[str, Any], options: Any, tol: float | None) -> Any:
        try:
            import cyipopt
        except ImportError:
            from symdiff.errors import BackendError

            raise BackendError(
                f'{WHAT}: method="ipopt" needs cyipopt, the optional extra: pip install "symdiff[ipopt]" '
                "(it builds against the system's Ipopt: apt-get install coinor-libipopt-dev pkg-config)"
            ) from None
        from scipy.optimize import OptimizeResult

        ev = self._evaluator(values, params, eager=False)
        nlp = cyipopt.Problem(
            n=self.n,
            m=self.m,
            problem_obj=_IpoptCallbacks(self, ev),
            lb=self.lbx,
            ub=self.ubx,
            cl=self.lb,
            cu=self.ub,
        )
        chosen = {"print_level": 0, "sb": "yes"}
        equality = self.lb == self.ub
        if self.m and self.linear[equality].all() and equality.any():
            chosen["jac_c_constant"] = "yes"
        if self.m and self.linear[~equality].all() and (~equality).any():
            chosen["jac_d_constant"] = "yes"
        if tol is not None:
            chosen["tol"] = float(tol)
        chosen.update(options or {})
        for key, value in chosen.items():
            nlp.add_option(key, value)
        z, info = nlp.solve(z0)
        message = info["status_msg"]
        message = message.decode() if isinstance(message, bytes) else str(message)
        res = OptimizeResult(
            x=self.unflatten(np.asarray(z)),
            x_flat=np.asarray(z),
            fun=float(info["obj_val"]),
            success=info["status"] in (0, 1),
            status=info["status"],
            message=message,
            nfev=ev.calls,
            nit=ev.iterations,
            info=info,
        )
        if self.m:
            res.multipliers = self._split(np.asarray(info["mult_g"]))
        return res


class _Evaluator:
    """The callbacks of one solve (the params' values fixed): they share the compiled
    function's results at the last point. ``eager``: every new point computes the Hessian
    (with sigma 1 and no multipliers: the objective's) with the rest, since the method asks
    for it at the points it asks for the gradient; otherwise only a Hessian call does."""

    def __init__(self, problem: Problem, params: list[Any], eager: bool):
        self.problem, self.params, self.eager = problem, params, eager
        self.key: bytes | None = None
        self.first: list[Any] = []
        self.hkey: tuple | None = None
        self.hvalues: Any = None
        self.calls = 0
        self.iterations = 0
        self._zero = np.zeros(len(problem._nonlinear))
        self._hess_cache: tuple[bytes, sp.csr_matrix] | None = None

    def _inputs(self, z: np.ndarray) -> list[np.ndarray]:
        p = self.problem
        return [z[a:b].reshape(s) for a, b, s in zip(p._offsets[:-1], p._offsets[1:], p.shapes)]

    def _point(self, z: Any) -> tuple[np.ndarray, bytes]:
        z = np.ascontiguousarray(z, dtype=np.float64).reshape(-1)
        if z.size != self.problem.n:
            raise ShapeError(f"{WHAT}: a point has {z.size} elements, but x has {self.problem.n}")
        return z, z.tobytes()

    def at(self, z: Any) -> list[Any]:
        """f, gradient, constraints and Jacobian values at z (computed once per point)."""
        z, key = self._point(z)
        if key != self.key:
            if self.eager:
                self._full(z, key, 1.0, self._zero)
            else:
                self.first = self.problem._program("first")(*self._inputs(z), *self.params)
                self.key, self.calls = key, self.calls + 1
                self.problem.evaluations += 1
        return self.first

    def hessian_values(self, z: Any, sigma: float, lam: np.ndarray) -> Any:
        """The Lagrangian Hessian's stored values at z for sigma and lambda (the nonlinear rows')."""
        z, key = self._point(z)
        lam = np.ascontiguousarray(lam, dtype=np.float64)
        hkey = (key, float(sigma), lam.tobytes())
        if hkey == self.hkey:
            return self.hvalues
        if key == self.key:  # the first values at z are known: the Hessian's alone
            program = self.problem._program("hessian")
            self.hvalues = program(*self._inputs(z), float(sigma), lam, *self.params)
            self.hkey = hkey
            self.calls += 1
            self.problem.evaluations += 1
        else:
            self._full(z, key, float(sigma), lam)
        return self.hvalues

    def _full(self, z: np.ndarray, key: bytes, sigma: float, lam: np.ndarray) -> None:
        *first, hvalues = self.problem._program("full")(*self._inputs(z), sigma, lam, *self.params)
        self.first, self.hvalues = first, hvalues
        self.key, self.hkey = key, (key, sigma, lam.tobytes())
        self.calls += 1
        self.problem.evaluations += 1

    # scipy's callbacks
    def fun(self, z: Any) -> float:
        return float(self.at(z)[0])

    def jac(self, z: Any) -> np.ndarray:
        return np.asarray(self.at(z)[1], dtype=np.float64).reshape(-1)

    def hess(self, z: Any) -> sp.csr_matrix:
        if self.eager:
            self.at(z)
        return self.problem.hessian.matrix(self.hessian_values(z, 1.0, self._zero))

    def hessp(self, z: Any, p: Any) -> np.ndarray:
        # the Hessian at z is made once and multiplies every p asked for there
        z, key = self._point(z)
        if self._hess_cache is None or self._hess_cache[0] != key:
            self._hess_cache = (key, self.hess(z))
        return self._hess_cache[1] @ np.asarray(p, dtype=np.float64)

    def constraint_fun(self, z: Any) -> np.ndarray:
        return self.at(z)[2][self.problem._nonlinear]

    def constraint_jac(self, z: Any) -> sp.csr_matrix:
        return self.problem._jac_nl.matrix(self.at(z)[3])

    def constraint_hess(self, z: Any, v: Any) -> sp.csr_matrix:
        # scipy's constraint Hessian is sum_i v_i c_i''; the objective's is hess
        if self.eager:
            self.at(z)
        return self.problem.hessian.matrix(self.hessian_values(z, 0.0, v))

    def linear_part(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The linear constraints as ``A x + offset``: their Jacobian rows (which do not depend
        on x) and their values at x = 0."""
        p = self.problem
        _, _, values, jacobian = self.at(np.zeros(p.n))[:4]
        return p._jac_lin.matrix(jacobian), np.asarray(values)[np.flatnonzero(p.linear)]


class _IpoptCallbacks:
    """cyipopt's problem object: the callbacks on one _Evaluator, the structures from the
    graph's patterns (the Hessian's lower triangle)."""

    def __init__(self, problem: Problem, ev: _Evaluator):
        self.p, self.ev = problem, ev
        self._jstructure = (
            _coordinates(problem.jacobian.pattern) if problem.jacobian is not None else (np.zeros(0), np.zeros(0))
        )

    def objective(self, z: np.ndarray) -> float:
        return self.ev.fun(z)

    def gradient(self, z: np.ndarray) -> np.ndarray:
        return self.ev.jac(z)

    def constraints(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.ev.at(z)[2], dtype=np.float64) if self.p.m else np.zeros(0)

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.ev.at(z)[3], dtype=np.float64) if self.p.m else np.zeros(0)

    def jacobianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        return self._jstructure

    def hessian(self, z: np.ndarray, lagrange: np.ndarray, obj_factor: float) -> np.ndarray:
        values = self.ev.hessian_values(z, obj_factor, np.asarray(lagrange)[self.p._nonlinear])
        return np.asarray(values, dtype=np.float64)[self.p._lower]

    def hessianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        return self.p._hess_structure

    def intermediate(self, *args: Any) -> bool:
        self.ev.iterations += 1
        return True


class _Rows:
    """Some rows of a sparse matrix's pattern as a SparseDerivative-like maker of CSR matrices
    from the whole matrix's stored values."""

    def __init__(self, pattern: sp.csr_matrix, rows: np.ndarray, value_rows: np.ndarray):
        self.picked = np.flatnonzero(np.isin(value_rows, rows))
        self.shape = (len(rows), pattern.shape[1])
        sub = sp.csr_matrix(pattern[rows], dtype=bool)
        sub.sort_indices()
        self.indices, self.indptr = sub.indices, sub.indptr

    def matrix(self, values: Any) -> sp.csr_matrix:
        data = np.asarray(values, dtype=np.float64)[self.picked]
        return sp.csr_matrix((data, self.indices.copy(), self.indptr.copy()), shape=self.shape)


# -- checks and helpers ------------------------------------------------------------------
def _check_objective(f: Any) -> None:
    if not isinstance(f, Node):
        raise GraphError(f"{WHAT}: f must be a node, got {type(f).__name__}")
    if f.is_multi:
        raise GraphError(f"{WHAT}: f {describe(f)} has {len(f.results)} outputs; pass one of them")
    if f.shape != ():
        raise ShapeError(f"{WHAT}: f must be a scalar, but {describe(f)} has shape {format_shape(f.shape)}; sum it")
    if f.dtype.kind != "f":
        raise DTypeError(f"{WHAT}: f {describe(f)} has dtype {f.dtype}; an objective must be a float")


def _variables(graph: Graph, x: Any, role: str, allow_empty: bool = False, fixed_size: bool = True) -> list[Node]:
    items = [x] if isinstance(x, Node) else list(x) if isinstance(x, (list, tuple)) else None
    if items is None or not (items or allow_empty):
        raise GraphError(f"{WHAT}: {role} must be a variable or a list of variables, got {type(x).__name__}")
    seen: set[Node] = set()
    for k, v in enumerate(items):
        where = role if isinstance(x, Node) else f"{role}[{k}]"
        if not isinstance(v, Node):
            raise GraphError(f"{WHAT}: {where} must be a variable node, got {type(v).__name__}")
        if v.graph is not graph:
            raise GraphError(f"{WHAT}: {where} ({describe(v)}) belongs to another graph than f")
        if v.op != "variable":
            raise GraphError(
                f"{WHAT}: {where} is {describe(v)}, not a variable; optimize over the variables it is computed from"
            )
        if v in seen:
            raise GraphError(f"{WHAT}: {where} ({describe(v)}) is listed twice")
        seen.add(v)
        if fixed_size and v.dtype.kind != "f":
            raise DTypeError(
                f"{WHAT}: {where} ({describe(v)}) has dtype {v.dtype}; the optimizer's variables are floats"
            )
        if fixed_size and v.size is None:
            raise ShapeError(
                f"{WHAT}: {where} ({describe(v)}) has shape {format_shape(v.shape)} with an unknown (None) size; "
                "the optimizer's vector has a fixed length: declare the shape"
            )
    return items


def _side(value: Any, shape: tuple[int, ...], fill: float, what: str) -> np.ndarray:
    """A bound (None: ``fill``) as a float array of ``shape``, flattened; ShapeError naming ``what``."""
    if value is None:
        return np.full(int(np.prod(shape, dtype=np.int64)), fill)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DTypeError(f"{WHAT}: {what} is not a number or an array of numbers: {exc}") from None
    try:
        return np.broadcast_to(arr, shape).reshape(-1).copy()
    except ValueError:
        raise ShapeError(
            f"{WHAT}: {what} has shape {format_shape(arr.shape)}, which does not broadcast to {format_shape(shape)}"
        ) from None


def _constraints(graph: Graph, constraints: Any) -> list[tuple[np.ndarray, Node, np.ndarray]]:
    if not isinstance(constraints, (list, tuple)):
        raise GraphError(f"{WHAT}: constraints must be a list of (lb, c, ub), got {type(constraints).__name__}")
    items = []
    for k, item in enumerate(constraints):
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise GraphError(f"{WHAT}: constraints[{k}] must be a triple (lb, c, ub), got {item!r:.80}")
        lo, c, hi = item
        if not isinstance(c, Node):
            raise GraphError(f"{WHAT}: constraints[{k}]: c must be a node of f's graph, got {type(c).__name__}")
        if c.graph is not graph:
            raise GraphError(f"{WHAT}: constraints[{k}]: c ({describe(c)}) is not a node of f's graph")
        if c.is_multi:
            raise GraphError(f"{WHAT}: constraints[{k}]: c {describe(c)} has {len(c.results)} outputs; pass one")
        if c.dtype.kind != "f":
            raise DTypeError(f"{WHAT}: constraints[{k}]: c ({describe(c)}) has dtype {c.dtype}; constraints are floats")
        if c.size is None:
            raise ShapeError(
                f"{WHAT}: constraints[{k}]: c ({describe(c)}) has shape {format_shape(c.shape)} with an unknown "
                "(None) size; declare the shapes"
            )
        lo = _side(lo, c.shape, -np.inf, f"constraints[{k}]: lb")
        hi = _side(hi, c.shape, np.inf, f"constraints[{k}]: ub")
        bad = np.flatnonzero(~(lo <= hi))
        if len(bad):
            i = bad[0]
            raise ProblemError(
                f"{WHAT}: constraints[{k}]: lb > ub at element {i} ({lo[i]} > {hi[i]}) of c ({describe(c)})"
            )
        items.append((lo, c, hi))
    return items


def _bounds(bounds: Any, xs: list[Node], n: int) -> tuple[np.ndarray, np.ndarray]:
    if bounds is None:
        return np.full(n, -np.inf), np.full(n, np.inf)
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise GraphError(f"{WHAT}: bounds must be a pair (lbx, ubx), got {bounds!r:.80}")
    sides = []
    for side, fill, name in ((bounds[0], -np.inf, "lbx"), (bounds[1], np.inf, "ubx")):
        if len(xs) > 1 and isinstance(side, (list, tuple)) and len(side) == len(xs):
            sides.append(
                np.concatenate(
                    [_side(s, v.shape, fill, f"bounds: {name}[{k}]") for k, (s, v) in enumerate(zip(side, xs))]
                )
            )
        else:
            sides.append(_side(side, (n,), fill, f"bounds: {name}"))
    lo, hi = sides
    bad = np.flatnonzero(~(lo <= hi))
    if len(bad):
        raise ProblemError(f"{WHAT}: bounds: lbx > ubx at element {bad[0]} of x ({lo[bad[0]]} > {hi[bad[0]]})")
    return lo, hi


def _linear_rows(jacobian: SparseDerivative | None, xs: list[Node], m: int) -> np.ndarray:
    """Which constraints are linear: none of their Jacobian row's stored values depends on x
    (by the graph's pattern, which never misses a dependence)."""
    if jacobian is None:
        return np.zeros(0, dtype=bool)
    deps = dependencies([jacobian.values], xs[0] if len(xs) == 1 else xs, WHAT).get(jacobian.values)
    linear = np.ones(m, dtype=bool)
    if deps is not None:
        rows, _ = _coordinates(jacobian.pattern)
        linear[rows[np.diff(sp.csr_matrix(deps).indptr) > 0]] = False
    return linear


def _check_reach(jacobian: SparseDerivative | None, items: list, sizes: list[int]) -> None:
    """ProblemError for a constraint that no element of x reaches (its Jacobian rows are empty
    by the graph's pattern): the optimizer could not change it."""
    if jacobian is None:
        return
    counts = np.diff(jacobian.pattern.indptr)
    ends = np.cumsum([0, *sizes])
    for k, (a, b) in enumerate(zip(ends[:-1], ends[1:])):
        if b > a and not counts[a:b].any():
            raise ProblemError(
                f"{WHAT}: constraints[{k}]: c ({describe(items[k][1])}) does not depend on x; "
                "a constraint the optimizer cannot change is either always met or never"
            )


def _coordinates(pattern: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of a CSR pattern's stored values, in its order."""
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    return rows.astype(np.int64), pattern.indices.astype(np.int64)


def _stack(nodes: list[Node]) -> Node:
    return concatenate([reshape(u, (-1,)) for u in nodes]) if len(nodes) > 1 else reshape(nodes[0], (-1,))


def _fresh(graph: Graph, base: str) -> str:
    """A variable name not yet in the graph (sigma and lambda of each problem built on it)."""
    taken = graph.variables
    k = 0
    while f"{base}_{k}" in taken:
        k += 1
    return f"{base}_{k}"
