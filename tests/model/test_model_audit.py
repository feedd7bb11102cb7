"""The audit trail of models: every promotion recorded with who and why, a card per version."""

from __future__ import annotations

import getpass

import polars as pl
import pytest
from mlflow import MlflowClient

from model.model_card import build_model_card, render_markdown
from model.registry import (
    CHAMPION,
    MlflowSettings,
    RegistryError,
    log_and_register,
    model_card_text,
    promote,
    promotion_history,
    version_for_alias,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def card(trained):
    return build_model_card(
        trained, policy_version="2024.4", export_date="2026-01-01", churn_definition="contractual"
    )


def test_the_card_lists_holdout_performance_by_segment_and_region(card, trained):
    text = render_markdown(card, model_name="keepwise", version=4)
    test_day = trained.plan.test[0]
    assert text.startswith("# Model card: keepwise version 4\n")
    holdout = trained.split.test
    for kind in ("segment", "region"):
        section = text.split(f"## Performance by {kind} on the holdout snapshot {test_day}\n")[1]
        section = section.split("\n## ")[0]
        counts = holdout.group_by(kind).len()
        for value, n in counts.iter_rows():
            churned = holdout.filter(pl.col(kind) == value)["churned"].mean()
            assert f"| {value} | {n:,} | " in section
            assert f"| {churned:.1%} |" in section
        rows = [line for line in section.splitlines() if line.startswith("| ")]
        assert len(rows) == counts.height + 2  # header and rule, then one row per group


def test_the_card_states_data_window_horizon_policy_metrics_and_leak_flags(card, trained):
    text = render_markdown(card, model_name="keepwise", version=1)
    fingerprint = trained.fingerprint
    assert f"- orders from {fingerprint['orders_from']} to {fingerprint['orders_to']}" in text
    assert f"- test snapshots (as_of): {trained.plan.test[0]} (1)" in text
    assert "- churn horizon: 365 days (contractual churn)" in text
    assert "- decision policy evaluated with: 2024.4" in text
    assert f"| churn ROC AUC | {trained.metrics['roc_auc']:,.4f} |" in text
    excluded = ", ".join(trained.review.excluded) or "none"
    assert f"- excluded as leaks: {excluded}" in text
    assert "## Intended use" in text and "## Limitations" in text


def test_a_card_is_stored_with_its_version_and_read_back(card, trained, tmp_path):
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with_card = log_and_register(
        trained.bundle.save(tmp_path / "b1"),
        settings=settings,
        params={},
        metrics={"empc": 1.0},
        tags={},
        model_card=card,
    ).version
    without = log_and_register(
        trained.bundle.save(tmp_path / "b2"), settings=settings, params={}, metrics={}, tags={}
    ).version
    assert model_card_text(settings, with_card) == render_markdown(
        card, model_name="keepwise", version=with_card
    )
    with pytest.raises(RegistryError, match=f"version {without} of 'keepwise' has no model card"):
        model_card_text(settings, without)
    with pytest.raises(RegistryError, match="has no version 99"):
        model_card_text(settings, 99)


def test_every_promotion_is_kept_with_who_and_why(trained, tmp_path):
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")

    def register(empc: float) -> int:
        folder = tmp_path / f"b{empc}"
        return log_and_register(
            trained.bundle.save(folder),
            settings=settings,
            params={},
            metrics={"empc": empc},
            tags={},
        ).version

    first = register(2.0)
    first_outcome = promote(settings)
    second = register(1.5)
    refused = promote(settings)
    assert not refused.promoted
    forced = promote(settings, force=True)
    third = register(3.0)
    promote(settings)

    history = promotion_history(settings)
    assert [(r.version, r.previous) for r in history] == [
        (first, None),
        (second, first),
        (third, second),
    ]  # the refused attempt changed nothing and is not a promotion
    assert [r.reason for r in history] == [
        first_outcome.explanation,
        forced.explanation,
        "empc 3.0000 is not worse than the champion's 1.5000",
    ]
    assert [r.forced for r in history] == [False, True, False]
    assert {r.promoted_by for r in history} == {getpass.getuser()}
    assert [r.promoted_at for r in history] == sorted(r.promoted_at for r in history)
    assert version_for_alias(settings, CHAMPION) == third


def test_promotions_recorded_before_the_history_are_still_shown(trained, tmp_path):
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    version = log_and_register(
        trained.bundle.save(tmp_path / "b"), settings=settings, params={}, metrics={}, tags={}
    ).version
    client = MlflowClient()
    client.set_registered_model_alias("keepwise", CHAMPION, str(version))
    for key, value in {
        "keepwise.promoted_at": "2025-03-01T09:00:00+00:00",
        "keepwise.promoted_by": "ana",
        "keepwise.promotion_reason": "there was no champion yet",
    }.items():
        client.set_model_version_tag("keepwise", str(version), key, value)
    (record,) = promotion_history(settings)
    assert (record.version, record.promoted_by, record.recorded_as) == (
        version,
        "ana",
        "version tag",
    )


def test_the_history_of_a_model_that_does_not_exist_says_so(tmp_path):
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    from model.registry import configure

    configure(settings, create=True)
    MlflowClient().search_experiments()  # creates the empty store
    with pytest.raises(RegistryError, match="no registered model 'keepwise'"):
        promotion_history(settings)
