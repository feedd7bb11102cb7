"""keepwise train reads the decision log of the store keepwise serve and score use."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from service.cli import EXIT_USAGE, app
from service.decision_log import DecisionLogError, read_decision_log
from service.storage import DecisionReport, ReportedOffer, Store

runner = CliRunner()
CUTOFF = date(2025, 1, 1)  # the test snapshot of a world exported on 2026-01-01


def _report(customer_id: str, offer: ReportedOffer) -> DecisionReport:
    return DecisionReport(
        customer_id=customer_id,
        requested="a remedy for the outage",
        occurred_at=datetime(2025, 6, 1, 9, 0, tzinfo=UTC),
        place="phone",
        authority_used="front_line",
        helped_by=None,
        outcome="see the offer",
        recommendation_id=None,
        followed_recommendation=None,
        recorded_by="agent",
        offer=offer,
    )


def test_a_missing_sqlite_store_is_no_log_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "keepwise.db"
    log = read_decision_log(f"sqlite:///{path}")
    assert log.reports is None and log.source == f"no store at {path}"
    assert not path.exists()


def test_an_existing_store_gives_its_reported_offers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keepwise.db'}"
    with Store(url) as store:
        store.migrate()
        store.record_decision(_report("C1", ReportedOffer("gift", date(2025, 5, 1), cost=20.0)))
    log = read_decision_log(url)
    assert log.reports is not None and log.reports["customer_id"].to_list() == ["C1"]
    assert log.source == url


def test_an_unusable_store_url_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(DecisionLogError, match="not supported"):
        read_decision_log("mysql://db/keepwise")
    result = runner.invoke(
        app,
        ["train", "--data", str(tmp_path), "--database-url", "mysql://db/keepwise"],
    )
    assert result.exit_code == EXIT_USAGE
    assert "--no-decision-log trains without it" in result.output


@pytest.mark.slow
def test_train_counts_offer_rows_by_source_and_logs_them_to_mlflow(tmp_path: Path) -> None:
    world = tmp_path / "world"
    write_world(WorldConfig(n_customers=2_500, seed=4), world, "parquet")
    offers = pl.read_parquet(world / "offers.parquet")
    customers = pl.read_parquet(world / "customers.parquet")
    known = offers.filter(
        pl.col("targeted") & ~pl.col("holdout") & (pl.col("offered_at") < date(2024, 1, 1))
    ).row(0, named=True)
    quiet = customers.join(offers, on="customer_id", how="anti")["customer_id"][0]
    url = f"sqlite:///{tmp_path / 'keepwise.db'}"
    with Store(url) as store:
        store.migrate()
        same = ReportedOffer(known["kind"], known["offered_at"], cost=known["cost"])
        new = ReportedOffer(
            "service", date(2023, 6, 15), accepted=True, cost=60.0, responded_on=date(2023, 6, 20)
        )
        late = ReportedOffer("gift", date(2025, 3, 1), cost=20.0)
        for customer, offer in (
            (known["customer_id"], same),  # the CRM holds it: dropped
            (quiet, new),  # the CRM does not: added
            ("C-NOT-IN-CRM", new),  # rejected
            (quiet, late),  # after the training cutoff
        ):
            store.record_decision(_report(customer, offer))
        store.record_decision(_report(quiet, None))  # no offer: not read

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = runner.invoke(
        app, ["train", "--data", str(world), "--tracking-uri", uri, "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    crm = offers.filter(pl.col("offered_at") < CUTOFF).height
    assert f"decision log: {url}" in result.output
    assert (
        f"offer rows before {CUTOFF}: {crm:,} from the CRM export, 1 from the decision log "
        "(4 reports with an offer)"
    ) in result.output
    assert "1 already in the CRM export (same customer and kind within 7 days)" in result.output
    assert f"1 offered on or after {CUTOFF} (not used)" in result.output
    assert "1 customer not in the CRM export's customers table" in result.output

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("keepwise").experiment_id])
    logged = run.data.metrics
    assert logged["offer_rows.crm_export"] == crm
    assert logged["offer_rows.decision_log"] == 1
    assert logged["offer_rows.duplicates_of_crm"] == 1
    assert logged["offer_rows.after_cutoff"] == 1
    assert logged["offer_rows.rejected"] == 1
    assert run.data.params["decision_log"] == url
    document = json.loads(
        Path(
            client.download_artifacts(
                run.info.run_id, "evaluation/offer_sources.json", str(tmp_path)
            )
        ).read_text()
    )
    assert document["rejected"] == [
        {
            "decision_id": document["rejected"][0]["decision_id"],
            "customer_id": "C-NOT-IN-CRM",
            "reason": "customer not in the CRM export's customers table",
        }
    ]
