"""The policy file: the shipped default loads, and every mistake is an error that names the key."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from model.policy import (
    AuthorityTier,
    Exploration,
    GuardRails,
    Offer,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
)

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The default policy file as a dict; tests change a deep copy."""
    return tomllib.loads(DEFAULT.read_text(encoding="utf-8"))


def _with(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``document`` with ``path`` (dotted; ``authority[1]`` for list items) set.

    ``value=...`` (Ellipsis) deletes the key instead.
    """
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        if part.endswith("]"):
            name, index = part[:-1].split("[")
            node = node[name][int(index)]
        else:
            node = node[part]
    if value is Ellipsis:
        del node[last]
    else:
        node[last] = value
    return changed


def test_default_policy_loads_with_the_company_strategy() -> None:
    policy = load_policy(DEFAULT)
    assert policy.version
    assert policy.horizon_months == 12
    assert policy.cost_per_complaint_minute == 1.5
    assert policy.cost_per_escalation == 250.0
    assert set(policy.offer_kinds) == {
        "refund",
        "discount",
        "replacement",
        "training",
        "gift",
        "service",
    }
    assert policy.offer("training").complaint_cost_reduction > 0
    assert [tier.role for tier in policy.authority] == ["front_line", "manager", "director"]
    assert policy.guardrails.end_requires == "director"
    assert policy.guardrails.protected_segments == ("public_sector",)
    assert policy.guardrails.end_margin_z == pytest.approx(1.2816, abs=1e-4)
    assert policy.discount_factor == pytest.approx(1 / 1.008)
    assert policy.guardrails.offer_budget is None
    assert policy.guardrails.certain_loss_confidence == 0.95
    assert policy.guardrails.certain_loss_z == pytest.approx(1.6449, abs=1e-4)
    assert policy.guardrails.end_stake_confidence == 0.75
    assert policy.guardrails.end_stake_z == pytest.approx(0.6745, abs=1e-4)
    assert policy.guardrails.end_risk_price == 25_000.0


def test_tiers_map_amounts_to_the_lowest_role_allowed() -> None:
    policy = load_policy(DEFAULT)
    assert policy.tier_for(0) == "front_line"
    assert policy.tier_for(500) == "front_line"  # limits are inclusive
    assert policy.tier_for(500.01) == "manager"
    assert policy.tier_for(5_000) == "manager"
    assert policy.tier_for(1e9) == "director"


def test_policy_is_frozen() -> None:
    policy = load_policy(DEFAULT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.horizon_months = 24  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("horizon_month", "unknown key horizon_month (did you mean horizon_months?)"),
        ("offers.refund.acceptence", "unknown key offers.refund.acceptence"),
        ("guardrails.protected_segment", "did you mean guardrails.protected_segments?"),
        ("exit.fixd", "unknown key exit.fixd"),
        ("costs.per_minute", "unknown key costs.per_minute"),
        ("authority[0].limit", "unknown key authority[0].limit"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(
    document: dict[str, Any], path: str, named: str
) -> None:
    with pytest.raises(PolicyError, match=re.escape(named)):
        parse_policy(_with(document, path, 1))


def test_unknown_offer_kind_is_an_error_with_a_suggestion(document: dict[str, Any]) -> None:
    changed = copy.deepcopy(document)
    changed["offers"]["refnd"] = changed["offers"].pop("refund")
    with pytest.raises(PolicyError, match=r"offers\.refnd.*did you mean 'refund'"):
        parse_policy(changed)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("offers.refund.acceptance", 1.5, r"offers\.refund\.acceptance: 1\.5 is above"),
        ("offers.refund.acceptance", -0.1, r"offers\.refund\.acceptance: -0\.1 is below"),
        ("offers.refund.acceptance", "high", r"offers\.refund\.acceptance: expected a .*number"),
        ("offers.refund.acceptance", True, r"offers\.refund\.acceptance: expected a .*number"),
        ("offers.gift.cost_fixed", -5.0, r"offers\.gift\.cost_fixed: -5\.0 is below"),
        ("offers.refund.churn_reduction", 2.0, r"offers\.refund\.churn_reduction: 2\.0"),
        ("offers.refund.churn_reduction_mode", "both", r"churn_reduction_mode: 'both'"),
        ("offers.training.complaint_cost_reduction", 1.2, r"complaint_cost_reduction: 1\.2"),
        ("costs.per_complaint_minute", -1.5, r"costs\.per_complaint_minute: -1\.5 is below"),
        ("costs.per_escalation", math.nan, r"costs\.per_escalation: expected a finite"),
        ("exit.fixed", -1.0, r"exit\.fixed: -1\.0 is below"),
        ("exit.receivables_write_off_share", 1.5, r"exit\.receivables_write_off_share"),
        ("horizon_months", 0, r"horizon_months: 0 is below"),
        ("horizon_months", 12.5, r"horizon_months: expected an integer"),
        ("monthly_discount_rate", 1.0, r"monthly_discount_rate: 1\.0 is a monthly rate"),
        ("guardrails.end_margin_confidence", 0.3, r"guardrails\.end_margin_confidence"),
        ("guardrails.min_history_months_to_end", -1, r"min_history_months_to_end: -1"),
        ("guardrails.offer_budget", -10.0, r"guardrails\.offer_budget: -10\.0 is below"),
        # a certain loss needs at least the confidence that ending needs (0.90 here)
        ("guardrails.certain_loss_confidence", 0.85, r"certain_loss_confidence: 0\.85 is not in"),
        ("guardrails.certain_loss_confidence", 1.0, r"certain_loss_confidence: 1\.0 is not in"),
        ("guardrails.certain_loss_confidence", "high", r"certain_loss_confidence: expected a"),
        # the stake rule's confidence lies between 0.5 and the confidence ending needs (0.90)
        ("guardrails.end_stake_confidence", 0.95, r"end_stake_confidence: 0\.95 is not in"),
        ("guardrails.end_stake_confidence", 0.4, r"end_stake_confidence: 0\.4 is not in"),
        ("guardrails.end_risk_price", -1.0, r"guardrails\.end_risk_price: -1\.0 is below"),
        ("guardrails.end_requires", "ceo", r"guardrails\.end_requires: 'ceo' is not an"),
        ("guardrails.protected_segments", ["public_sectr"], r"unknown segment.*public_sectr"),
        ("guardrails.protected_segments", "public_sector", r"protected_segments: expected a list"),
        ("version", "", r"version: expected a non-empty string"),
        ("authority[1].max_amount", 400.0, r"authority\[1\]\.max_amount: tiers must increase"),
        ("authority[2].max_amount", 9e9, r"authority\[2\]\.max_amount: the last tier"),
        ("authority[1].role", "front_line", r"authority: a role appears more than once"),
    ],
)
def test_out_of_range_values_are_errors_naming_the_key(
    document: dict[str, Any], path: str, value: Any, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(_with(document, path, value))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("version", r"missing required key version"),
        ("offers.refund.acceptance", r"missing required key offers\.refund\.acceptance"),
        ("guardrails.end_margin_confidence", r"missing required key guardrails\.end_margin"),
        ("authority[1].max_amount", r"authority\[1\]\.max_amount: missing for 'manager'"),
        ("costs", r"missing required key costs"),
    ],
)
def test_missing_required_keys_are_errors(
    document: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(_with(document, path, ...))


def test_an_offer_needs_a_cost(document: dict[str, Any]) -> None:
    changed = _with(document, "offers.gift.cost_fixed", ...)
    with pytest.raises(PolicyError, match=r"offers\.gift\.cost_fixed / .*give at least one"):
        parse_policy(changed)


def test_optional_keys_take_their_documented_defaults(document: dict[str, Any]) -> None:
    changed = _with(document, "exit.receivables_write_off_share", ...)
    changed = _with(changed, "offers.training.complaint_cost_reduction", ...)
    changed = _with(changed, "guardrails.offer_budget", 25_000)
    changed = _with(changed, "guardrails.certain_loss_confidence", ...)
    changed = _with(changed, "guardrails.end_stake_confidence", ...)
    changed = _with(changed, "guardrails.end_risk_price", ...)
    changed = _with(changed, "guardrails.end_stake_overrides_min_history", ...)
    changed = _with(changed, "exploration.max_expected_loss", ...)
    policy = parse_policy(changed)
    assert policy.guardrails.end_stake_overrides_min_history is False
    assert policy.exploration.max_expected_loss is None  # experiments draw from every allowed
    assert policy.guardrails.certain_loss_confidence is None  # the minimum history always holds
    assert math.isnan(policy.guardrails.certain_loss_z)
    assert policy.guardrails.end_risk_price is None  # only the margin bound allows "end"
    assert math.isnan(policy.guardrails.end_stake_z)
    assert policy.exit.receivables_write_off_share == 0.0
    assert policy.offer("training").complaint_cost_reduction == 0.0
    assert policy.guardrails.offer_budget == 25_000.0


@pytest.mark.parametrize("given", ["guardrails.end_stake_confidence", "guardrails.end_risk_price"])
def test_the_stake_rule_needs_both_its_numbers(document: dict[str, Any], given: str) -> None:
    other = {
        "guardrails.end_stake_confidence": "guardrails.end_risk_price",
        "guardrails.end_risk_price": "guardrails.end_stake_confidence",
    }[given]
    with pytest.raises(PolicyError, match=r"end_stake_confidence and .*end_risk_price go together"):
        parse_policy(_with(document, other, ...))


def test_the_stake_override_of_the_minimum_history_is_checked(document: dict[str, Any]) -> None:
    assert parse_policy(document).guardrails.end_stake_overrides_min_history is True
    with pytest.raises(
        PolicyError, match=r"end_stake_overrides_min_history: expected true or false, got 'yes'"
    ):
        parse_policy(_with(document, "guardrails.end_stake_overrides_min_history", "yes"))
    without_stake = _with(document, "guardrails.end_stake_confidence", ...)
    without_stake = _with(without_stake, "guardrails.end_risk_price", ...)
    with pytest.raises(PolicyError, match=r"needs guardrails.end_stake_confidence"):
        parse_policy(without_stake)


def test_custom_segments_can_be_declared_and_protected(document: dict[str, Any]) -> None:
    changed = _with(document, "segments", ["government", "retail"])
    changed = _with(changed, "guardrails.protected_segments", ["government"])
    assert parse_policy(changed).guardrails.protected_segments == ("government",)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("version = \n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"broken\.toml: not valid TOML"):
        load_policy(broken)
    typo = tmp_path / "typo.toml"
    typo.write_text(
        DEFAULT.read_text(encoding="utf-8").replace("horizon_months", "horizon_monhts"),
        encoding="utf-8",
    )
    with pytest.raises(PolicyError, match=r"typo\.toml: unknown key horizon_monhts"):
        load_policy(typo)


def test_dataclasses_validate_when_built_in_code() -> None:
    with pytest.raises(PolicyError, match=r"offers\.gift\.acceptance"):
        Offer(
            "gift", 10.0, 0.0, acceptance=3.0, churn_reduction=0.1, churn_reduction_mode="relative"
        )
    offer = Offer("gift", 10.0, 0.0, 0.4, 0.1, "relative")
    guard = GuardRails("director", ("public_sector",), 12, 0.95)
    policy = load_policy(DEFAULT)
    with pytest.raises(PolicyError, match=r"authority: at least one"):
        dataclasses.replace(policy, authority=())
    with pytest.raises(PolicyError, match=r"offers: an offer kind appears more than once"):
        dataclasses.replace(policy, offers=(offer, offer))
    ladder = (AuthorityTier("front_line", 100.0), AuthorityTier("director"))
    with pytest.raises(PolicyError, match=r"exploration.max_tier: 'manager' is not an authority"):
        dataclasses.replace(policy, guardrails=guard, authority=ladder)
    ok = dataclasses.replace(
        policy,
        offers=(offer,),
        guardrails=guard,
        authority=ladder,
        exploration=Exploration(0.05),
    )
    assert isinstance(ok, Policy)
    assert ok.tier_for(101) == "director"
