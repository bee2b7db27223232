"""The one rule table: names, constant folding as its last build rule, the sums and products
simplify reads from it, and the rules that may turn inf or nan into a number (exactly those
flagged ``extends_domain``, exactly those docs/concepts.md lists). Oracles: numpy on the
unrewritten formula, and hand-derived values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops import REGISTRY, core
from symdiff.rewrite import Rule, RuleTable
from symdiff.rules import RULES

CONCEPTS = Path(__file__).resolve().parent.parent / "docs" / "concepts.md"


@pytest.fixture
def fired(monkeypatch):
    """The names of the rules that replace a node while the test runs (build and simplify)."""
    names: list[str] = []
    apply = Rule.apply

    def recording(self, root, ctx=None):
        new = apply(self, root, ctx)
        if new is not None and new is not root:
            names.append(self.name)
        return new

    monkeypatch.setattr(Rule, "apply", recording)
    return names


# -- names -----------------------------------------------------------------------------------
def test_derivative_rules_and_rewrite_rules_have_distinct_names():
    assert not hasattr(core, "Rule") and not hasattr(core, "RuleTable")
    assert core.Op.__dataclass_fields__["vjp"].type == "DerivativeRules | None"
    assert isinstance(RULES, RuleTable) and all(isinstance(r, Rule) for r in RULES.rules)


# -- constant folding ------------------------------------------------------------------------
def test_constant_folding_is_the_last_build_rule_of_every_op():
    for name in REGISTRY:
        rules = RULES.for_op(name, build=True)
        assert rules and rules[-1].name == "constant_folding", name
    assert [r.name for r in RULES.rules if r.name == "constant_folding"] == ["constant_folding"]


def test_folding_computes_remembers_its_origin_and_is_found_again():
    g = sd.Graph()
    two = g.constant(2.0)
    log2 = sd.log(two)
    assert log2.op == "constant" and log2.value == np.log(2.0)
    assert log2.origin == ("log", (two,))  # printed as where it came from
    assert str(log2) == "log(2)"
    assert sd.log(two) is log2


def test_folding_stops_at_the_size_limit_and_at_unknown_sizes():
    g = sd.Graph()
    at_limit = sd.exp(g.constant(np.zeros(core.FOLD_MAX_SIZE)))
    over = sd.exp(g.constant(np.zeros(core.FOLD_MAX_SIZE + 1)))
    assert at_limit.op == "constant" and over.op == "exp"
    n = g.variable("n", shape=(None,))
    assert sd.exp(sd.zeros_like(n)).op == "exp"


def test_an_op_declared_with_fold_false_is_not_folded():
    g = sd.Graph()
    names = ("test_rule_table_cube", "test_rule_table_cube_unfolded")
    try:
        folded, kept = (
            sd.define_op(name, forward=lambda x: x**3, shape=lambda s: s, kind="other", fold=name == names[0])
            for name in names
        )
        c = g.constant(2.0)
        assert core.apply(folded, c).op == "constant" and core.apply(folded, c).value == 8.0
        assert core.apply(kept, c).op == names[1]
    finally:
        for name in names:
            REGISTRY.pop(name, None)


def test_a_rule_that_fires_goes_before_folding(fired):
    g = sd.Graph()
    zero, inf = g.constant(0.0), g.constant(np.inf)
    product = zero * inf  # 0*x is 0 even for x = inf (the zero_product rule), not numpy's nan
    assert product.op == "constant" and product.value == 0.0
    assert fired == ["zero_product"]


# -- sums and products: simplify reads them from the table -------------------------------------
def test_the_ops_simplify_reads_through_are_the_tables():
    assert RULES.flattened("add") == RULES.flattened("sub") == RULES.flattened("neg") == {"add", "sub", "neg"}
    assert RULES.flattened("mul") == RULES.flattened("div") == {"mul", "div", "neg"}
    assert RULES.flattened("sin") == RULES.flattened("matmul") == frozenset()


def test_a_product_under_a_negation_is_simplified():
    # neg's rules read through no product, so the product is rewritten on its own
    g = sd.Graph()
    x, y = g.variable("x"), g.variable("y")
    assert str(sd.simplify(-(x * x))) == "-x**2"
    assert str(sd.simplify(sd.sin(-(x * y * x)))) == "sin(-x**2*y)"
    assert str(sd.simplify(2 * (x + x))) == "4*x"


# -- the rules that may turn inf or nan into a number ---------------------------------------------
def _listed_in_concepts() -> set[str]:
    text = CONCEPTS.read_text()
    start = text.index("### Rewrites that may turn inf or nan into a number")
    section = text[start : text.index("\n## ", start)]
    names: set[str] = set()
    for item in re.split(r"\n- ", section)[1:]:
        head = item.split(":", 1)[0]  # the rule names come before the colon
        names |= set(re.findall(r"`(\w+)`", head))
    return names


def test_concepts_lists_exactly_the_rules_flagged_extends_domain():
    flagged = {r.name for r in RULES.rules if r.extends_domain}
    assert flagged and _listed_in_concepts() == flagged
    assert {r.name for r in RULES.rules if not r.extends_domain}.isdisjoint(flagged)  # one name, one flag


# (rule, build(g) -> (expression, bindings), the unrewritten formula in numpy on those values)
EXTENDING = [
    ("collect_terms", lambda g, x: (x - x, {x: np.inf}), lambda x: x - x),
    ("collect_factors", lambda g, x: (sd.exp(x) / sd.exp(x), {x: 1000.0}), lambda x: np.exp(x) / np.exp(x)),
    ("pow_pow", lambda g, x: ((x**0.5) ** 2, {x: -1.0}), lambda x: (x**0.5) ** 2),
    ("log_exp", lambda g, x: (sd.log(sd.exp(x)), {x: 1000.0}), lambda x: np.log(np.exp(x))),
    ("zero_product", lambda g, x: (0.0 * x, {x: np.inf}), lambda x: 0.0 * x),
    (
        "identity_product",
        lambda g, x: (g.constant(np.eye(2)) @ sd.stack([sd.stack([x, 1.0]), g.constant([1.0, 1.0])]), {x: np.inf}),
        lambda x: np.eye(2) @ np.array([[x, 1.0], [1.0, 1.0]]),
    ),
    (
        "summed_diagonal",
        lambda g, x: (sd.sum(g.constant(np.eye(2)) * sd.stack([x, 1.0]), axis=-1), {x: np.inf}),
        lambda x: np.sum(np.eye(2) * np.array([x, 1.0]), axis=-1),
    ),
    (
        "log_det",
        lambda g, x: (sd.log(sd.det(x * g.constant(np.eye(2)))), {x: 1e200}),
        lambda x: np.log(np.linalg.det(x * np.eye(2))),
    ),
    (
        "cancelled_det",
        lambda g, x: (sd.det(a := x * g.constant(np.eye(2))) / sd.det(a) * sd.inv(a), {x: 1e200}),
        lambda x: np.linalg.det(x * np.eye(2)) / np.linalg.det(x * np.eye(2)) * np.linalg.inv(x * np.eye(2)),
    ),
    ("kink_power", lambda g, x: ((sd.abs(x) ** 3) ** (1 / 3), {x: 1e200}), lambda x: (np.abs(x) ** 3) ** (1 / 3)),
    ("root_of_square", lambda g, x: (sd.sqrt(x**2), {x: 1e200}), lambda x: np.sqrt(x**2)),
]


@pytest.mark.parametrize("rule, build, numpy_formula", EXTENDING, ids=[case[0] for case in EXTENDING])
def test_each_flagged_rule_turns_a_non_finite_value_into_a_number(fired, rule, build, numpy_formula):
    g = sd.Graph()
    x = g.variable("x")
    expr, values = build(g, x)
    with np.errstate(all="ignore"):
        original = np.asarray(numpy_formula(*map(np.float64, values.values())))
    simplified = np.asarray(sd.evaluate(sd.simplify(expr), values))
    assert np.any(~np.isfinite(original) & np.isfinite(simplified))  # inf or nan before, a number now
    assert rule in fired and next(r for r in RULES.rules if r.name == rule).extends_domain


def test_a_masked_derivative_is_a_number_where_the_unmasked_product_is_nan(fired):
    # grad(where(s >= 0, s, sqrt(-s))) at 1: sqrt'(-1)... the untaken branch's derivative is nan
    g = sd.Graph()
    s = g.variable("s")
    d = sd.grad(sd.where(s >= 0, s, sd.sqrt(-s)), s)
    with np.errstate(all="ignore"):
        unmasked = 0.0 * (0.5 / np.sqrt(-1.0))
    assert np.isnan(unmasked) and sd.evaluate(d, {s: 1.0}) == 1.0
    assert {"mask_product", "mask_quotient"} & set(fired)


SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -1.0, 2.0, 1e300, -1e300, 1e-300]

# (build(x, y), the same formula in numpy): each meets rules that are not flagged
KEEPING = [
    (lambda x, y: x + 0.0, lambda x, y: x + 0.0),
    (lambda x, y: x - 0.0, lambda x, y: x - 0.0),
    (lambda x, y: 0.0 - x, lambda x, y: 0.0 - x),
    (lambda x, y: x * 1.0, lambda x, y: x * 1.0),
    (lambda x, y: x * -1.0, lambda x, y: x * -1.0),
    (lambda x, y: x / 1.0, lambda x, y: x / 1.0),
    (lambda x, y: sd.negative(-x), lambda x, y: np.negative(-x)),
    (lambda x, y: x**1, lambda x, y: x**1),
    (lambda x, y: x + (-y), lambda x, y: x + (-y)),
    (lambda x, y: x - (-y), lambda x, y: x - (-y)),
    (lambda x, y: (-x) * y, lambda x, y: (-x) * y),
    (lambda x, y: (-x) / y, lambda x, y: (-x) / y),
    (lambda x, y: x / (-y), lambda x, y: x / (-y)),
    (lambda x, y: -(2.0 * x), lambda x, y: -(2.0 * x)),
    (lambda x, y: 2.0 * (3.0 * x), lambda x, y: 2.0 * (3.0 * x)),
    (lambda x, y: x * (1.0 / y), lambda x, y: x * (1.0 / y)),
    (lambda x, y: sd.where(True, x, y), lambda x, y: np.where(True, x, y)),
    (lambda x, y: sd.where(x > y, x, x), lambda x, y: np.where(x > y, x, x)),
    (lambda x, y: sd.exp(sd.log(sd.exp(x))), lambda x, y: np.exp(np.log(np.exp(x)))),
    (lambda x, y: sd.abs(x) ** 2, lambda x, y: np.abs(x) ** 2),
    (lambda x, y: sd.abs(x) * sd.abs(x), lambda x, y: np.abs(x) * np.abs(x)),
    (lambda x, y: y * sd.abs(x) * sd.abs(x), lambda x, y: y * np.abs(x) * np.abs(x)),
    (lambda x, y: sd.sqrt(sd.abs(x)) ** 2, lambda x, y: np.sqrt(np.abs(x)) ** 2),
    (lambda x, y: x * x * x, lambda x, y: x * x * x),
    (lambda x, y: sd.sin(x) + sd.sin(x), lambda x, y: np.sin(x) + np.sin(x)),
    (lambda x, y: sd.exp(sd.log(x)), lambda x, y: np.exp(np.log(x))),
    (lambda x, y: x / x, lambda x, y: x / x),
]


def test_no_unflagged_rule_turns_inf_or_nan_into_a_number(fired):
    """Where the unrewritten formula is inf or nan and the built and simplified graph is a
    number, a flagged rule fired (an oracle sweep over special values)."""
    for k, (build, numpy_formula) in enumerate(KEEPING):
        g = sd.Graph()
        x, y = g.variable("x"), g.variable("y")
        fired.clear()
        out = sd.simplify(build(x, y))
        flagged = {n for n in fired if any(r.extends_domain for r in RULES.rules if r.name == n)}
        for a in SPECIAL:
            for b in SPECIAL:
                with np.errstate(all="ignore"):
                    original = numpy_formula(np.float64(a), np.float64(b))
                    value = sd.evaluate(out, {x: a, y: b}) if out.op != "constant" else out.value
                if not np.isfinite(original) and np.isfinite(value):
                    assert flagged, (k, str(out), a, b, original, value)
