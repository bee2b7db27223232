"""A call of a function compiled by the C backend: the fast call (a generated function per
library and thread, its checks written out) gives what the general path gives for every value,
never reuses an output array, keeps each thread's scalar cells apart, and hands every value
that is not ready as it is (and every nonzero return code) to the general path."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff.backends import c as c_backend

from .c_support import c_cache, needs_c  # noqa: F401 (c_cache: an autouse fixture)

pytestmark = needs_c


def _mixed():
    """A graph of a float64 scalar, a (2, 3) array and an int64 scalar, with a float64 scalar,
    an array and an int64 scalar output."""
    g = sd.Graph()
    s, X, k = g.variable("s"), g.variable("X", (2, 3)), g.variable("k", dtype="int64")
    outputs = [s * sd.sum(sd.sin(X)), X * s + 1.0, k * 3]
    return outputs, [s, X, k]


def _same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert type(a) is type(b), (type(a), type(b))
        assert np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)


X0 = np.arange(6.0).reshape(2, 3) / 7.0
VALUE_FORMS = [
    (0.25, X0, np.array(4)),  # ready as they are: the fast call
    (np.float64(0.25), X0, np.array(4)),  # a numpy scalar for the float
    (np.array(0.25), X0.tolist(), 4),  # a 0-d array, a nested list, a Python int
    (1, np.asfortranarray(X0), np.int64(4)),  # an int for the float; a Fortran-order array
    (0.25, X0[:, ::-1][:, ::-1], np.array(4)),  # a view with the same strides
    (0.25, np.hstack([X0, X0])[:, ::2], np.array(4)),  # a strided view
    (0.25, X0.astype(np.float32), np.array(4, np.int32)),  # other dtypes, cast as numpy casts
]


@pytest.mark.parametrize("values", VALUE_FORMS, ids=range(len(VALUE_FORMS)))
def test_every_form_of_value_gives_the_numpy_backends_results(values):
    outputs, inputs = _mixed()
    c, numpy = sd.compile(outputs, inputs, backend="c"), sd.compile(outputs, inputs)
    _same(c(*values), numpy(*values))
    _same(c(**dict(zip(["s", "X", "k"], values))), numpy(*values))  # by name: the general path


def test_values_not_ready_raise_the_numpy_backends_errors():
    outputs, inputs = _mixed()
    c, numpy = sd.compile(outputs, inputs, backend="c"), sd.compile(outputs, inputs)
    for bad in [(0.25, np.ones((3, 2)), 4), (0.25, X0, 4.5), ("a", X0, 4), (0.25, X0)]:
        with pytest.raises(Exception) as expected:
            numpy(*bad)
        with pytest.raises(type(expected.value)) as got:
            c(*bad)
        assert str(got.value) == str(expected.value)


def test_ready_values_take_the_fast_call_and_others_the_general_path(monkeypatch):
    outputs, inputs = _mixed()
    f = sd.compile(outputs, inputs, backend="c")
    calls = []
    run = c_backend._Library.run
    monkeypatch.setattr(c_backend._Library, "run", lambda self, *a: calls.append(1) or run(self, *a))
    f(0.25, X0, np.array(4))
    f(0.5, X0 + 1.0, np.array(-2))
    assert calls == []  # no general path for values ready as they are
    f(np.float64(0.25), X0, np.array(4))
    f(0.25, np.asfortranarray(X0), np.array(4))
    assert calls == [1, 1]


def test_outputs_of_one_call_are_not_overwritten_by_the_next():
    outputs, inputs = _mixed()
    f = sd.compile(outputs, inputs, backend="c")
    first = f(0.25, X0, np.array(4))
    kept = [np.copy(v) for v in first]
    second = f(-3.0, X0 * 2.0, np.array(-1))
    _same(first, [type(v)(k) if np.ndim(k) == 0 else k for v, k in zip(first, kept)])
    assert first[1] is not second[1] and not np.shares_memory(first[1], second[1])


def test_threads_keep_their_own_cells_and_buffers():
    g = sd.Graph()
    w, x = g.variable("w"), g.variable("x", (16,))
    h = w
    for _ in range(20):
        h = h * sd.sin(h) + w
    outputs = [h, sd.grad(h, w), sd.sum(sd.exp(x * w))]
    f = sd.compile(outputs, [w, x], backend="c")
    numpy = sd.compile(outputs, [w, x])
    errors: list[str] = []

    def work(seed: int) -> None:
        for k in range(150):
            v = 0.1 + 0.01 * ((seed * 37 + k) % 50)
            xs = np.linspace(-1.0, 1.0, 16) * v
            got, want = f(v, xs), numpy(v, xs)
            if not all(np.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(got, want)):
                errors.append(f"thread {seed}, call {k}: {got} != {want}")
                return

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_nonzero_return_code_raises_numpys_error_through_the_general_path():
    g = sd.Graph()
    x, i = g.variable("x", (4,)), g.variable("i", (2,), dtype="int64")
    f = sd.compile(x[i] * 2.0, [x, i], backend="c")
    np.testing.assert_array_equal(f(np.arange(4.0), np.array([3, -4])), [6.0, 0.0])
    with pytest.raises(IndexError) as expected:
        sd.evaluate(x[i] * 2.0, {x: np.arange(4.0), i: np.array([0, 4])})
    with pytest.raises(IndexError) as got:
        f(np.arange(4.0), np.array([0, 4]))
    assert str(got.value) == str(expected.value)


def test_float32_scalars_and_single_outputs():
    g = sd.Graph()
    a = g.variable("a", dtype="float32")
    f = sd.compile(a * a + 1.0, [a], backend="c")
    got = f(np.float32(1.5))
    assert type(got) is np.float32 and got == np.float32(3.25)
    assert f(0.1) == sd.compile(a * a + 1.0, [a])(0.1)  # a Python float rounded to float32 first


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=6, max_size=6),
    st.integers(-(2**40), 2**40),
)
def test_property_the_fast_call_equals_the_general_path(s, xs, k):
    """For ready values (the fast call) the results are bit for bit the general path's, which
    is the same library called through _Library.run."""
    outputs, inputs = _mixed()
    f = sd.compile(outputs, inputs, backend="c")
    X = np.array(xs).reshape(2, 3)
    fast = f(s, X, np.array(k))
    rc, general = f._static.run([s, X, np.array(k)])
    assert rc == 0
    _same(fast, general)
