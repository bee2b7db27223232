"""The rule table and its engine: patterns match what they say, every rule names real ops, and
build rules keep shape and dtype (the contract tests check values over random graphs)."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops.core import KINDS, REGISTRY
from symdiff.rewrite import Pat, Rule
from symdiff.rules import RULES


def test_every_rule_names_ops_that_exist():
    for rule in RULES.rules:
        for op in rule.pattern.ops:
            assert op in REGISTRY or op.removeprefix("kind:") in KINDS, (rule, op)


def test_patterns_match_commutative_ops_both_ways_unless_ordered():
    g = sd.Graph()
    x, y = g.variable("x"), g.variable("y")
    node = sd.multiply(x, sd.sin(y))
    p = Pat.var("a") * Pat("sin", Pat.var("b"))
    found = list(p.matches(node, {}))
    assert [(e["a"], e["b"]) for e in found] == [(x, y)]
    swapped = Pat("sin", Pat.var("b")) * Pat.var("a")
    assert [(e["a"], e["b"]) for e in swapped.matches(node, {})] == [(x, y)]
    assert not list(Pat("mul", Pat("sin", Pat.var("b")), Pat.var("a"), ordered=True).matches(node, {}))
    sub = sd.subtract(x, sd.sin(y))  # not commutative: one order only
    assert not list((Pat("sin", Pat.var("b")) - Pat.var("a")).matches(sub, {}))


def test_a_name_bound_twice_must_be_the_same_node():
    g = sd.Graph()
    x, y = g.variable("x"), g.variable("y")
    same = Pat("add", Pat.var("a"), Pat.var("a"))
    assert list(same.matches(sd.add(x, x), {}))
    assert not list(same.matches(sd.add(x, y), {}))


def test_numbers_in_patterns_match_uniform_constants_through_broadcasts():
    g = sd.Graph()
    w = g.variable("w", shape=(3,))
    zeros = sd.broadcast_to(g.constant(np.zeros(())), (3,))
    assert list(Pat.const(0).matches(zeros, {}))
    assert not list(Pat.const(1).matches(zeros, {}))
    assert not list(Pat.const(0).matches(w, {}))


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda x, v: x + 0.0, "x"),
        (lambda x, v: 1.0 * x, "x"),
        (lambda x, v: x * -1.0, "-x"),
        (lambda x, v: 2.0 * (3.0 * x), "6*x"),
        (lambda x, v: x + (-v[0]), "x - v[0]"),
        (lambda x, v: sd.negative(sd.negative(x)), "x"),
        (lambda x, v: x / 1.0, "x"),
        (lambda x, v: x**1, "x"),
    ],
)
def test_build_rules_fire_while_building(build, expected):
    g = sd.Graph()
    x, v = g.variable("x"), g.variable("v", shape=(2,))
    assert str(build(x, v)) == expected


def test_a_build_rule_never_changes_the_shape_or_dtype():
    g = sd.Graph()
    x = g.variable("x")
    ones = g.constant(np.ones(3))
    y = x * ones  # x * 1 with a (3,) one is not x: it broadcasts
    assert y.shape == (3,) and y.op == "mul"
    i = g.variable("i", dtype="int64")
    assert (i * 1.0).dtype == np.float64  # int * float 1 is float, not i


def test_a_rule_whose_function_declines_lets_the_next_match_try():
    g = sd.Graph()
    x = g.variable("x")
    seen = []

    def record(root, a, b):
        seen.append(a)
        return None

    rule = Rule(Pat.var("a") * Pat.var("b"), record)
    assert rule.apply(sd.multiply(x, sd.sin(x))) is None
    assert seen == [x, sd.sin(x)]  # both orders of a commutative op were offered
