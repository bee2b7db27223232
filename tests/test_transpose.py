"""The contract of a transpose rule, for every op that declares one (driven from the registry, so
a new linear op is covered by adding an op case).

For an op linear in input i, ``A x = op(..., x, ...)`` (its other linear inputs zero, its
constant part taken away: pad's border) and ``A^T y = transpose[i](y, *inputs)``:

- the dot-product test: ``<A x, y> == <x, A^T y>`` at random x and y, on every node of the op
  in the op cases, their gradients and their second derivatives (shapes known or not);
- batch axes: a cotangent with leading batch axes is transposed slice by slice;
- the transpose of the transpose is the op: the reverse-mode derivative of ``y -> A^T y``
  (built from the transpose rules of the ops A^T is made of) applied to x gives ``A x``.

And define_op's side: the vjp and jvp come from the transpose, an input may not have both.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import GraphError
from symdiff.graph import ancestors
from symdiff.ops.core import REGISTRY, aspects, define_op, first_dtype, not_differentiable, per_input

from .op_cases import CASES, build_case

TRANSPOSED = sorted(name for name, op in REGISTRY.items() if op.transpose is not None)  # at import
PER_OP = 4  # instances of an op checked (from different cases where there are)
_rng = np.random.default_rng(20261201)


def _derivatives(case, xs, y) -> list:
    """The case's first derivatives (of sum(y*y), by its float inputs) and one second derivative."""
    wrt = [xs[k] for k in case.differentiable_inputs() if np.asarray(case.inputs[k]).dtype.kind == "f"]
    if y.dtype.kind != "f" or not wrt:
        return []
    grads = sd.grad(sd.sum(y * y), wrt)
    grads = grads if isinstance(grads, list) else [grads]
    return [*grads, sd.grad(sd.sum(grads[0] * grads[0]), wrt[0])]


def _instances() -> dict[str, list]:
    """For each op with a transpose rule: (case, node, values of its inputs) from the op cases'
    values, first and second derivatives."""
    found: dict[str, list] = {name: [] for name in TRANSPOSED}
    for case in CASES:
        try:
            g, xs, y = build_case(case)
            outputs = [y, *_derivatives(case, xs, y)]
        except (sd.NonDifferentiableError, sd.ShapeError, GraphError):
            continue
        nodes = [n for n in ancestors(outputs) if n.op in found and not n.is_multi and n.dtype.kind == "f"]
        nodes = [n for n in nodes if len(found[n.op]) < PER_OP]
        if not nodes:
            continue
        values = sd.evaluate([u for n in nodes for u in n.inputs], dict(zip(xs, case.inputs)))
        for k, n in enumerate(nodes):
            if len(found[n.op]) < PER_OP and not any(n.op == m.op for m in nodes[:k]):  # one per case
                at = sum(len(m.inputs) for m in nodes[:k])
                found[n.op].append((case.name, n, [np.asarray(v) for v in values[at : at + len(n.inputs)]]))
    return found


INSTANCES = _instances()


def _cases():
    for name in TRANSPOSED:
        for k, (case, node, values) in enumerate(INSTANCES[name]):
            yield pytest.param(name, node, values, id=f"{name}-{k}-{case}")


def test_every_op_with_a_transpose_has_an_instance():
    missing = [name for name in TRANSPOSED if not INSTANCES[name]]
    assert not missing, f"no op case builds {missing}: add one to tests/op_cases.py"


def _linear_inputs(op, node) -> list[int]:
    return [i for i in range(len(node.inputs)) if op.transpose_rule(i) is not None]


class _Setup:
    """A fresh graph with one variable per input of ``node`` (its declared shapes), bound to the
    instance's values, and what the checks need."""

    def __init__(self, node, values):
        self.op = REGISTRY[node.op]
        self.attrs = dict(node._attrs)
        self.graph = sd.Graph()
        self.vars = [self.graph.variable(f"u{j}", shape=u.shape, dtype=u.dtype) for j, u in enumerate(node.inputs)]
        self.values = values
        self.made = 0  # cotangent variables made
        self.linear = _linear_inputs(self.op, node)
        self.out_shape = np.shape(sd.evaluate(self._apply(), self.feed()))

    def feed(self, overrides=None, extra=None):
        """The variables bound to the instance's values, input j's to ``overrides[j]`` where given."""
        overrides = overrides or {}
        return {v: overrides.get(j, self.values[j]) for j, v in enumerate(self.vars)} | (extra or {})

    def _apply(self, inputs=None):
        return sd.ops.core.apply(self.op, *(inputs or self.vars), **self.attrs)

    def zero_others(self, i):
        """The values with the other linear inputs zero."""
        return {j: np.zeros_like(self.values[j]) for j in self.linear if j != i}

    def a(self, i, x):
        """A_i x: the op with x as input i, the other linear inputs zero, its constant part away."""
        y = self._apply()
        others = self.zero_others(i)
        at_x = sd.evaluate(y, self.feed(others | {i: x}))
        at_0 = sd.evaluate(y, self.feed(others | {i: np.zeros_like(x)}))
        return np.asarray(at_x - at_0, dtype=np.float64)

    def transpose(self, i, ct_value, batch=()):
        self.made += 1
        ct = self.graph.variable(f"ct{self.made}", shape=batch + tuple(self._out_dims()), dtype=self.vars[i].dtype)
        node = self.op.transpose_rule(i)(ct, *self.vars, **self.attrs)
        got = np.asarray(sd.evaluate(node, self.feed(extra={ct: ct_value})), dtype=np.float64)
        return _unbroadcast(got, len(batch), np.shape(self.values[i]))

    def _out_dims(self):
        return self._apply().shape


def _unbroadcast(value, nb, shape):
    """A cotangent shaped like the output (a broadcast input's) summed to ``shape`` after ``nb`` batch axes."""
    lead = value.ndim - nb - len(shape)
    if lead:
        value = value.sum(axis=tuple(range(nb, nb + lead)))
    axes = tuple(nb + k for k, d in enumerate(shape) if d == 1 and value.shape[nb + k] != 1)
    return value.sum(axis=axes, keepdims=True) if axes else value


def _random(shape, dtype):
    return _rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(("name", "node", "values"), list(_cases()))
def test_dot_product(name, node, values):
    """<A x, y> == <x, A^T y> for each linear input."""
    s = _Setup(node, values)
    for i in s.linear:
        x = _random(np.shape(values[i]), values[i].dtype)
        y = _random(s.out_shape, node.dtype)
        ax, aty = s.a(i, x), s.transpose(i, y)
        assert aty.shape == np.shape(x), (name, i, aty.shape, np.shape(x))
        left, right = np.vdot(ax, y), np.vdot(x, aty)
        scale = np.linalg.norm(ax) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(aty) + 1e-300
        tol = 1e-5 if node.dtype != np.float64 else 1e-12
        assert abs(left - right) <= tol * scale, (name, i, left, right)


@pytest.mark.parametrize(("name", "node", "values"), list(_cases()))
def test_batched_cotangent(name, node, values):
    """A cotangent with a leading batch axis is transposed slice by slice (rules keep batch axes in front)."""
    s = _Setup(node, values)
    for i in s.linear:
        ys = _random((2, *s.out_shape), node.dtype)
        both = s.transpose(i, ys, batch=(2,))
        for k in range(2):
            np.testing.assert_allclose(both[k], s.transpose(i, ys[k]), rtol=1e-12, atol=1e-14, err_msg=f"{name} {i}")


@pytest.mark.parametrize(("name", "node", "values"), list(_cases()))
def test_transpose_of_the_transpose_is_the_op(name, node, values):
    """The reverse-mode derivative of y -> A^T y, applied to x: A x (transposing twice)."""
    s = _Setup(node, values)
    for i in s.linear:
        ct = s.graph.variable(f"c{i}", shape=s._out_dims(), dtype=s.vars[i].dtype)
        back = s.op.transpose_rule(i)(ct, *s.vars, **s.attrs)
        w = s.graph.variable(f"w{i}", shape=back.shape, dtype=back.dtype)
        twice = sd.grad(sd.sum(back * w), ct)
        x = _random(np.shape(values[i]), values[i].dtype)
        x_wide = np.broadcast_to(x, back.shape) if None not in back.shape else x  # a broadcast input's: ct-shaped
        y = _random(s.out_shape, node.dtype)
        got = sd.evaluate(twice, s.feed(extra={ct: y, w: x_wide}))
        np.testing.assert_allclose(got, s.a(i, x) + np.zeros(s.out_shape), rtol=1e-10, atol=1e-12, err_msg=name)


# -- define_op ------------------------------------------------------------------------------
def _scale_shape(shape, *, k):
    return shape


@pytest.fixture
def cleanup():
    names = []
    yield names
    for name in names:
        REGISTRY.pop(name, None)


def test_vjp_and_jvp_come_from_the_transpose(cleanup):
    """An op declared by its transpose: its gradient is the transpose on g, its jvp the op on t."""
    cleanup.append("test_reverse_pairs")
    op = define_op(
        "test_reverse_pairs",
        lambda xp, x: xp.flip(x.reshape(-1, 2), -1).reshape(x.shape),
        lambda shape: shape,
        kind="structural",
        dtype=first_dtype,
        transpose=lambda ct, x: sd.ops.core.apply(REGISTRY["test_reverse_pairs"], ct),  # its own transpose
    )
    assert aspects(op)["vjp"] == "derived from transpose" and aspects(op)["jvp"] == "derived"
    assert "linear" in op.properties and {"vjp", "jvp", "transpose"} <= op.derived
    g = sd.Graph()
    x = g.variable("x", shape=(4,))
    t = g.variable("t", shape=(4,))
    y = sd.ops.core.apply(op, x)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    got = sd.evaluate(sd.grad(sd.sum(y * w), x), {x: np.zeros(4)})
    np.testing.assert_array_equal(got, [2.0, 1.0, 4.0, 3.0])  # hand-derived: the pairs swapped back
    tangent = sd.evaluate(sd.jvp(y, x, t), {x: np.zeros(4), t: w})
    np.testing.assert_array_equal(tangent, [2.0, 1.0, 4.0, 3.0])
    assert sd.evaluate(sd.hessian(sd.sum(y * y), x), {x: np.zeros(4)}).tolist() == (2 * np.eye(4)).tolist()


def test_an_input_has_a_vjp_or_a_transpose_not_both(cleanup):
    cleanup.append("test_both")
    with pytest.raises(GraphError, match="input 0 has both a vjp and a transpose"):
        define_op(
            "test_both",
            lambda xp, x: x,
            lambda shape: shape,
            kind="structural",
            vjp=(lambda g, out, x: g,),
            transpose=lambda ct, x: ct,
        )
    assert "test_both" not in REGISTRY


def test_linear_in_several_inputs_writes_its_jvp(cleanup):
    cleanup.append("test_join")
    with pytest.raises(GraphError, match="linear in several inputs together; write its jvp"):
        define_op(
            "test_join",
            lambda xp, x, y: xp.concatenate([x, y]),
            lambda a, b: (a[0] + b[0],),
            kind="structural",
            transpose=(lambda ct, x, y: ct[: x.shape[0]], lambda ct, x, y: ct[x.shape[0] :]),
        )


def test_transpose_table_forms(cleanup):
    """A sequence takes None and not_differentiable as vjp does; per_input serves any number of inputs."""
    cleanup.extend(["test_pick", "test_first"])
    pick = define_op(
        "test_pick",
        lambda xp, x, i: x[i],
        lambda shape, ishape: tuple(ishape),
        kind="structural",
        dtype=first_dtype,
        transpose=(lambda ct, x, i: ct, not_differentiable),
    )
    assert pick.arity == 2 and pick.vjp_rule(1) is not_differentiable and pick.transpose_rule(1) is None
    first = define_op(
        "test_first",
        lambda xp, *xs: xs[0],
        lambda *shapes: shapes[0],
        kind="structural",
        dtype=first_dtype,
        transpose=per_input(lambda i: (lambda ct, *xs: ct) if i == 0 else None),
    )
    assert first.transpose_rule(0) is not None and first.transpose_rule(3) is None and first.vjp_rule(3) is None
    with pytest.raises(GraphError, match="not a rule, None or not_differentiable"):
        define_op("test_bad", lambda xp, x: x, lambda s: s, transpose=("ct",))
    assert "test_bad" not in REGISTRY
