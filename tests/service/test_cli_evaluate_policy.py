"""``keepwise evaluate-policy``: the estimates next to the policy in force, in a table and in
JSON, outcomes from a file or a later export, and every bad input named with its exit code."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from features.config import FeatureConfig
from features.labels import build_labels
from features.loader import load_tables
from features.pipeline import build_features
from model.decide import decide
from model.policy import load_policy
from model.recommend import decision_inputs
from service.cli import EXIT_INVALID_DATA, EXIT_OK, EXIT_USAGE, app
from service.jobs.output import flatten_for_csv

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "policies" / "default.toml"
AS_OF = date(2024, 6, 1)


def _run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["evaluate-policy", *map(str, args)])
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def _run_files(files: dict[str, Path], *extra: str | Path) -> tuple[int, str, str]:
    """The command on the fixture's policy, log and outcomes, with ``extra`` options."""
    return _run(
        "--policy", files["policy"], "--log", files["log"], "--outcomes", files["outcomes"], *extra
    )


def _inputs(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "segment": rng.choice(["enterprise", "mid_market", "small_business"], n).tolist(),
            "months_of_history": rng.uniform(1, 60, n),
            "p_churn": rng.uniform(0.02, 0.6, n),
            "monthly_margin": rng.normal(300, 500, n),
            "monthly_margin_se": rng.uniform(10, 200, n),
            "monthly_revenue": rng.uniform(100, 3000, n),
            "monthly_complaint_cost": rng.uniform(0, 300, n),
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ope")
    policy = load_policy(DEFAULT)
    log = decide(_inputs(800, seed=1), policy).with_columns(
        propensity=pl.lit(1.0), as_of=pl.lit(AS_OF)
    )
    rng = np.random.default_rng(2)
    outcomes = pl.DataFrame(
        {"customer_id": log["customer_id"], "realised_value": rng.normal(400, 700, log.height)}
    )
    paths = {
        "log": folder / "scored.parquet",
        "outcomes": folder / "outcomes.csv",
        "policy": DEFAULT,
    }
    log.write_parquet(paths["log"])
    outcomes.write_csv(paths["outcomes"])
    return paths


def test_the_candidate_is_shown_next_to_the_policy_in_force(files):
    code, out, err = _run_files(files)
    assert code == EXIT_OK, err
    assert "on-policy mean" in out and "doubly robust" in out and "SNIPS" in out
    assert "overlap: 800 of 800 logged decisions (100.0%)" in out


def test_json_gives_the_log_mean_for_the_policy_in_force_judged_by_itself(files):
    code, out, err = _run_files(files, "--json")
    assert code == EXIT_OK, err
    result = json.loads(out)
    mean = pl.read_csv(files["outcomes"])["realised_value"].mean()
    assert result["in_force"]["value"] == pytest.approx(mean)
    for name in ("ips", "snips", "dr"):
        assert result["candidate"][name]["value"] == pytest.approx(mean)
        assert result["difference"][name]["value"] == pytest.approx(0.0, abs=1e-9)
    assert result["level"] == 0.9
    assert result["in_force"]["low"] < mean < result["in_force"]["high"]
    assert {row["arm"] for row in result["by_arm"]} <= {
        "retain",
        "end",
        *(f"offer_{k}" for k in load_policy(DEFAULT).offer_kinds),
    }


def test_a_csv_log_and_a_bootstrap_interval_work_too(files, tmp_path):
    csv_log = tmp_path / "scored.csv"
    flatten_for_csv(pl.read_parquet(files["log"])).write_csv(csv_log)  # as score writes it
    code, out, err = _run(
        "--policy",
        files["policy"],
        "--log",
        csv_log,
        "--outcomes",
        files["outcomes"],
        "--interval",
        "bootstrap",
        "--json",
    )
    assert code == EXIT_OK, err
    assert json.loads(out)["interval"] == "bootstrap"


def test_a_log_written_before_propensities_were_recorded_is_named(files, tmp_path):
    old = tmp_path / "old.parquet"
    pl.read_parquet(files["log"]).drop("propensity").write_parquet(old)
    code, _, err = _run("--policy", files["policy"], "--log", old, "--outcomes", files["outcomes"])
    assert code == EXIT_INVALID_DATA
    assert "no column propensity: the log was written before keepwise recorded" in err
    assert "Traceback" not in err


def test_a_propensity_outside_zero_one_is_named_with_its_customer(files, tmp_path):
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(files["log"]).with_columns(
        propensity=pl.when(pl.col("customer_id") == "C00003").then(1.2).otherwise(1.0)
    ).write_parquet(bad)
    code, _, err = _run("--policy", files["policy"], "--log", bad, "--outcomes", files["outcomes"])
    assert code == EXIT_INVALID_DATA
    assert "propensity must be a probability in (0, 1]" in err and "C00003=1.2" in err


def test_outcomes_of_customers_not_in_the_log_are_refused(files, tmp_path):
    extra = tmp_path / "extra.csv"
    pl.concat(
        [
            pl.read_csv(files["outcomes"]),
            pl.DataFrame({"customer_id": ["Z9"], "realised_value": [1.0]}),
        ]
    ).write_csv(extra)
    code, _, err = _run("--policy", files["policy"], "--log", files["log"], "--outcomes", extra)
    assert code == EXIT_INVALID_DATA
    assert "1 customer(s) are not in the decision log, e.g. Z9" in err


def test_outcomes_without_the_realised_value_column_are_refused(files, tmp_path):
    wrong = tmp_path / "wrong.csv"
    pl.read_csv(files["outcomes"]).rename({"realised_value": "value"}).write_csv(wrong)
    code, _, err = _run("--policy", files["policy"], "--log", files["log"], "--outcomes", wrong)
    assert code == EXIT_INVALID_DATA
    assert "missing column(s) ['realised_value']" in err


def test_a_broken_policy_file_is_a_usage_error_naming_the_key(files, tmp_path):
    broken = tmp_path / "candidate.toml"
    broken.write_text(DEFAULT.read_text().replace("horizon_months = 12", "horizon_month = 12"))
    code, _, err = _run("--policy", broken, "--log", files["log"], "--outcomes", files["outcomes"])
    assert code == EXIT_USAGE
    assert f"--policy {broken}" in err and "horizon_month" in err


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give either --outcomes FILE or --data LATER_EXPORT"),
        (("--outcomes", "x.csv", "--data", "."), "give either --outcomes FILE or --data"),
        (("--outcomes", "missing.csv"), "--outcomes missing.csv is not a file"),
        (("--outcomes", "x.txt", "--interval", "jackknife"), "--interval must be analytic or"),
    ],
)
def test_usage_errors_say_which_option(files, args, message):
    code, _, err = _run("--policy", files["policy"], "--log", files["log"], *args)
    assert code == EXIT_USAGE
    assert message in err


def test_a_missing_log_is_a_usage_error(files, tmp_path):
    code, _, err = _run(
        "--policy",
        files["policy"],
        "--log",
        tmp_path / "none.parquet",
        "--outcomes",
        files["outcomes"],
    )
    assert code == EXIT_USAGE and "is not a file" in err


def test_a_candidate_never_supported_by_the_log_gets_a_plain_warning(tmp_path):
    policy = load_policy(DEFAULT)
    inputs = _inputs(40, seed=5).with_columns(
        segment=pl.lit("enterprise"),
        monthly_margin=pl.lit(-5000.0),
        monthly_margin_se=pl.lit(1.0),
        months_of_history=pl.lit(48.0),
    )
    log = decide(inputs, policy).with_columns(propensity=pl.lit(1.0))
    assert set(log["action"]) == {"end"}
    log.write_parquet(tmp_path / "log.parquet")
    pl.DataFrame({"customer_id": log["customer_id"], "realised_value": [-100.0] * 40}).write_csv(
        tmp_path / "out.csv"
    )
    candidate = tmp_path / "never_end.toml"
    candidate.write_text(
        re.sub(
            r'(?m)^version = ".*"$', 'version = "never-end"', DEFAULT.read_text(), count=1
        ).replace(
            'protected_segments = ["public_sector"]',
            'protected_segments = ["public_sector", "enterprise"]',
        )
    )
    code, out, err = _run(
        "--policy", candidate, "--log", tmp_path / "log.parquet", "--outcomes", tmp_path / "out.csv"
    )
    assert code == EXIT_OK, err
    assert "warning: no support: the log never took the candidate's action" in err


# --- outcomes from a later export -------------------------------------------------------------


@pytest.fixture(scope="module")
def world_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small world and a decision log of its customers active at AS_OF (scores made up: the
    command must not care where they came from)."""
    folder = tmp_path_factory.mktemp("world")
    write_world(WorldConfig(n_customers=300, seed=3, oracle_draws=0), folder, "parquet")
    tables = load_tables(folder).tables
    features = build_features(tables, AS_OF, FeatureConfig()).collect()
    n = features.height
    scores = pl.DataFrame(
        {
            "customer_id": features["customer_id"],
            "p_churn": np.full(n, 0.2),
            "monthly_margin": (features["net_margin_12m"] / 12).to_numpy(),
            "monthly_margin_se": np.full(n, 100.0),
        }
    )
    log = decide(decision_inputs(features, scores), load_policy(DEFAULT)).with_columns(
        propensity=pl.lit(1.0), as_of=pl.lit(AS_OF)
    )
    path = folder / "scored.parquet"
    log.write_parquet(path)
    return folder, path


def test_outcomes_from_a_later_export_are_the_realised_net_margin_of_the_horizon(world_log):
    folder, log = world_log
    code, out, err = _run("--policy", DEFAULT, "--log", log, "--data", folder, "--json")
    assert code == EXIT_OK, err
    labels = build_labels(load_tables(folder).tables, AS_OF, 365, FeatureConfig()).collect()
    assert json.loads(out)["in_force"]["value"] == pytest.approx(
        labels["realised_net_margin"].mean()
    )
    assert json.loads(out)["overlap"]["rows"] == labels.height


def test_an_export_that_ends_before_the_horizon_is_refused(world_log, tmp_path):
    folder, log = world_log
    late = tmp_path / "late.parquet"
    pl.read_parquet(log).with_columns(as_of=pl.lit(date(2025, 6, 1))).write_parquet(late)
    code, _, err = _run("--policy", DEFAULT, "--log", late, "--data", folder)
    assert code == EXIT_USAGE
    assert "ends on 2026-01-01" in err and "need data up to 2026-06-01" in err


def test_the_candidate_is_judged_on_a_real_policy_change(world_log, tmp_path):
    """A never-end candidate changes decisions: the per-arm table counts the customers moved
    away from end, and the estimate differs from the policy in force."""
    folder, log = world_log
    ended = pl.read_parquet(log).filter(pl.col("action") == "end").height
    assert ended > 0
    never_end = tmp_path / "never_end.toml"
    never_end.write_text(
        re.sub(
            r'(?m)^version = ".*"$', 'version = "never-end"', DEFAULT.read_text(), count=1
        ).replace(
            'protected_segments = ["public_sector"]',
            'protected_segments = ["public_sector", "enterprise", "mid_market", "small_business"]',
        )
    )
    code, out, err = _run("--policy", never_end, "--log", log, "--data", folder, "--json")
    assert code == EXIT_OK, err
    result = json.loads(out)
    by_arm = {row["arm"]: row for row in result["by_arm"]}
    assert by_arm["end"]["candidate_customers"] == 0
    assert by_arm["end"]["logged_customers"] == ended
    assert result["overlap"]["matched"] == result["overlap"]["rows"] - ended
    assert result["difference"]["ips"]["value"] != 0.0
    assert result["candidate_policy_version"] == "never-end"


def test_the_shipped_policy_judges_support_when_it_wrote_the_log(files):
    # this log claims propensity 1 everywhere, which the shipped policy (it explores 5%) would
    # not have logged: the command says so instead of trusting the log's support
    version = load_policy(DEFAULT).version
    code, _, err = _run_files(files)
    assert code == EXIT_OK, err
    assert f"of 800 logged propensities differ from those policy {version} gives" in err


def test_an_unreadable_in_force_policy_is_a_usage_error(files, tmp_path):
    missing = tmp_path / "old.toml"
    code, _, err = _run_files(files, "--in-force", missing)
    assert code == EXIT_USAGE
    assert f"--in-force {missing} cannot be read" in err
