"""keepwise models --history and --card: the audit trail as a reviewer reads it."""

from __future__ import annotations

import getpass

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from model.model_card import build_model_card
from model.registry import CHAMPION, MlflowSettings, log_and_register
from service.cli import EXIT_NOT_PROMOTED, EXIT_OK, EXIT_USAGE, app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def store(trained, tmp_path_factory) -> str:
    """Two versions with cards: version 1 promoted, then version 2 forced over it."""
    root = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    settings = MlflowSettings(tracking_uri=uri)
    card = build_model_card(
        trained, policy_version="2024.4", export_date="2026-01-01", churn_definition="contractual"
    )
    for number, empc in ((1, 2.0), (2, 1.0)):
        log_and_register(
            trained.bundle.save(root / f"bundle{number}"),
            settings=settings,
            params={"horizon_days": 365},
            metrics={"empc": empc},
            tags={},
            model_card=card,
        )
        promoted = runner.invoke(app, ["promote", "--tracking-uri", uri])
        if number == 2:
            assert promoted.exit_code == EXIT_NOT_PROMOTED, promoted.output
            forced = runner.invoke(app, ["promote", "--tracking-uri", uri, "--force"])
            assert forced.exit_code == EXIT_OK, forced.output
    return uri


def test_the_history_says_which_version_was_champion_when_who_promoted_it_and_why(store):
    shown = runner.invoke(app, ["models", "--tracking-uri", store, "--history"])
    assert shown.exit_code == EXIT_OK, shown.output
    lines = [line for line in shown.output.splitlines() if line.startswith("│")]
    first = next(line for line in lines if line.startswith("│       1 │"))
    second = next(line for line in lines if line.startswith("│       2 │"))
    assert "there was no champion yet" in first and getpass.getuser() in first
    assert "forced (--force)" in second and "now" in second
    assert [c.strip() for c in second.split("│")][4] == "1"  # it replaced version 1


def test_an_alias_moved_outside_promote_is_pointed_out(store):
    MlflowClient(tracking_uri=store).set_registered_model_alias("keepwise", CHAMPION, "1")
    try:
        shown = runner.invoke(app, ["models", "--tracking-uri", store, "--history"])
        assert shown.exit_code == EXIT_OK, shown.output
        assert "the alias was moved outside `keepwise promote`" in shown.output.replace("\n", " ")
    finally:
        MlflowClient(tracking_uri=store).set_registered_model_alias("keepwise", CHAMPION, "2")


def test_the_card_of_a_version_is_printed_as_markdown(store, trained):
    shown = runner.invoke(app, ["models", "--tracking-uri", store, "--card", "2"])
    assert shown.exit_code == EXIT_OK, shown.output
    assert shown.stdout.startswith("# Model card: keepwise version 2\n")
    segments = shown.stdout.split("## Performance by segment")[1].split("\n## ")[0]
    for segment in trained.split.test["segment"].unique():
        assert f"| {segment} | " in segments


def test_asking_for_a_card_that_does_not_exist_says_so(store, tmp_path):
    missing = runner.invoke(app, ["models", "--tracking-uri", store, "--card", "9"])
    assert missing.exit_code == EXIT_USAGE and "has no version 9" in missing.output
    both = runner.invoke(app, ["models", "--tracking-uri", store, "--card", "1", "--history"])
    assert both.exit_code == EXIT_USAGE and "not both" in both.output
    typo = runner.invoke(
        app, ["models", "--tracking-uri", f"sqlite:///{tmp_path}/x.db", "--history"]
    )
    assert typo.exit_code == EXIT_USAGE and "does not exist" in typo.output
