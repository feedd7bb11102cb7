"""Tests for experiments.cdnow_value: BG/NBD / gamma-gamma maths on tiny inputs, and the CDNOW
forward-value report against the published figures (skipped when the data are absent)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from experiments.cdnow_value import (
    PUBLISHED_BGNBD,
    PUBLISHED_BGNBD_FORECAST,
    PUBLISHED_GAMMA_GAMMA,
    PUBLISHED_HOLDOUT_REPEATS,
    BgNbdParams,
    CdnowReport,
    CdnowSplit,
    GammaGammaParams,
    bgnbd_conditional_expectation,
    bgnbd_log_likelihood,
    customer_summary,
    evaluate_cdnow,
    gamma_gamma_expected_value,
)

PUBLISHED = BgNbdParams(**PUBLISHED_BGNBD)

# --- maths on tiny inputs ------------------------------------------------------------------


def test_customer_summary_gives_weeks_from_first_purchase_and_repeat_value() -> None:
    orders = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "a"],
            "order_date": [
                date(1997, 1, 1),
                date(1997, 1, 15),
                date(1997, 1, 29),
                date(1997, 1, 8),
                date(1997, 3, 1),  # after the calibration period: ignored
            ],
            "revenue": [10.0, 20.0, 40.0, 5.0, 99.0],
        }
    )
    summary = customer_summary(orders, date(1997, 2, 1))
    assert summary.get_column("customer_id").to_list() == ["a", "b"]
    assert summary.get_column("x").to_list() == [2, 0]
    assert summary.get_column("t_x").to_list() == pytest.approx([4.0, 0.0])
    # last calibration day 1997-01-31: 30 days after 01-01, 23 days after 01-08
    assert summary.get_column("T").to_list() == pytest.approx([30 / 7, 23 / 7])
    assert summary.get_column("mean_repeat_value").to_list() == [30.0, None]
    assert summary.get_column("repeat_spend").to_list() == [60.0, 0.0]


def test_bgnbd_expectation_is_directional() -> None:
    x = np.array([0.0, 2.0, 2.0, 5.0])
    t_x = np.array([0.0, 30.0, 10.0, 30.0])
    T = np.full(4, 32.0)
    expected = bgnbd_conditional_expectation(PUBLISHED, 39.0, x, t_x, T)
    assert np.all(expected >= 0)
    assert expected[1] > expected[2]  # same frequency, more recent: more likely alive
    assert expected[3] > expected[1]  # same recency, more purchases
    longer = bgnbd_conditional_expectation(PUBLISHED, 78.0, x, t_x, T)
    assert np.all(longer > expected)


def test_bgnbd_log_likelihood_is_higher_at_the_truth_of_simulated_data() -> None:
    # BG/NBD simulation: gamma rates, beta dropout after each purchase, 39 weeks observed.
    rng = np.random.default_rng(3)
    n, horizon = 3000, 39.0
    rates = rng.gamma(PUBLISHED.r, 1 / PUBLISHED.alpha, n)
    drop = rng.beta(PUBLISHED.a, PUBLISHED.b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / rates[i])
            if t > horizon:
                break
            x[i], t_x[i] = x[i] + 1, t
            if rng.uniform() < drop[i]:
                break
    T = np.full(n, horizon)
    truth = bgnbd_log_likelihood(PUBLISHED, x, t_x, T)
    for wrong in (BgNbdParams(0.5, 4.414, 0.793, 2.426), BgNbdParams(0.243, 4.414, 3.0, 2.426)):
        assert bgnbd_log_likelihood(wrong, x, t_x, T) < truth


def test_gamma_gamma_expected_value_shrinks_towards_the_population_mean() -> None:
    params = GammaGammaParams(**PUBLISHED_GAMMA_GAMMA)
    population = params.p * params.gamma / (params.q - 1)
    values = gamma_gamma_expected_value(
        params, np.array([0.0, 1.0, 50.0]), np.array([np.nan, 100.0, 100.0])
    )
    assert values[0] == pytest.approx(population)
    assert population < values[1] < values[2] < 100.0


def test_split_rejects_training_snapshots_inside_the_holdout() -> None:
    with pytest.raises(ValueError, match=r"1997-10-01.*holdout"):
        CdnowSplit(date(1997, 10, 1), date(1998, 7, 1), (date(1997, 7, 1), date(1997, 10, 1)))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        evaluate_cdnow(tmp_path / "nowhere.txt")


# --- the CDNOW report ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(shared_data: Path) -> CdnowReport:
    path = shared_data / "cdnow" / "CDNOW_sample.txt"
    if not path.is_file():
        pytest.skip(f"CDNOW sample not found at {path}; set KEEPWISE_SHARED_DATA")
    return evaluate_cdnow(path, seed=0)


@pytest.mark.slow
def test_report_reproduces_the_published_holdout(report: CdnowReport) -> None:
    assert report.n_customers == 2357
    assert report.holdout_repeat_transactions == PUBLISHED_HOLDOUT_REPEATS == 1882
    assert report.holdout_spend == pytest.approx(70_976.39, abs=0.01)
    assert report.seconds < 60


@pytest.mark.slow
def test_bgnbd_and_gamma_gamma_reproduce_the_published_fits(report: CdnowReport) -> None:
    fitted = report.bgnbd
    for name, published in PUBLISHED_BGNBD.items():
        assert round(getattr(fitted, name), 3) == published, name
    assert report.bgnbd_log_likelihood == pytest.approx(-9582.4, abs=0.05)
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert round(getattr(report.gamma_gamma, name), 2) == published, name
    assert round(report.forecasts["bg_nbd"].transactions) == PUBLISHED_BGNBD_FORECAST


@pytest.mark.slow
def test_keepwise_aggregate_is_closer_than_bgnbd(report: CdnowReport) -> None:
    # Measured on seeds 0-9: -9.3% ± 1.3 (worst -11.5%) against BG/NBD's -12.1%; seed 0: -9.9%.
    # The margin is thin and design-dependent (module docstring, "Sensitivity").
    keepwise = report.forecasts["keepwise"]
    bgnbd = report.forecasts["bg_nbd"]
    assert keepwise.transactions_error == pytest.approx(
        keepwise.transactions / PUBLISHED_HOLDOUT_REPEATS - 1
    )
    assert bgnbd.transactions_error == pytest.approx(-0.121, abs=0.001)
    assert abs(keepwise.transactions_error) < abs(bgnbd.transactions_error)
    assert abs(keepwise.spend_error) < abs(report.forecasts["naive"].spend_error)


@pytest.mark.slow
def test_keepwise_beats_the_naive_rate_per_customer(report: CdnowReport) -> None:
    # Measured MAE: keepwise 0.840 ± 0.008 (seeds 0-9), naive 1.024. BG/NBD is better per
    # customer (MAE 0.785, RMSE 1.608): not asserted, documented in the module docstring.
    keepwise = report.forecasts["keepwise"]
    naive = report.forecasts["naive"]
    for errors in report.forecasts.values():
        values = (errors.transactions_mae, errors.transactions_rmse, errors.spend_mae)
        assert all(np.isfinite(v) and v > 0 for v in values)
    assert keepwise.transactions_mae < naive.transactions_mae
    assert keepwise.transactions_rmse < naive.transactions_rmse
    assert keepwise.spend_mae < naive.spend_mae


@pytest.mark.slow
def test_the_master_layout_with_zero_dollar_repeats_is_evaluated(
    tmp_path: Path, shared_data: Path
) -> None:
    """The full master file has a header, four columns and $0 repeat purchases."""
    from features.orders_import import read_cdnow

    path = shared_data / "cdnow" / "CDNOW_sample.txt"
    if not path.is_file():
        pytest.skip(f"CDNOW sample not found at {path}; set KEEPWISE_SHARED_DATA")
    sample = read_cdnow(path)
    repeaters = sample.group_by("master_id").len().filter(pl.col("len") > 1)
    zeroed = repeaters.get_column("master_id").sort()[0]
    rows = sample.with_columns(
        pl.when(pl.col("master_id") == zeroed).then(0.0).otherwise(pl.col("amount")).alias("amount")
    )
    master = tmp_path / "CDNOW_master.txt"
    master.write_text(
        "customer_id date number_of_cds dollar_value\n"
        + "\n".join(
            f"{m} {d.strftime('%Y%m%d')} {q} {a:.2f}"
            for m, d, q, a in rows.select("master_id", "date", "quantity", "amount").iter_rows()
        )
        + "\n"
    )
    report = evaluate_cdnow(master, seed=0)
    assert report.n_customers == 2_357
    assert report.holdout_repeat_transactions == PUBLISHED_HOLDOUT_REPEATS
    assert set(report.forecasts) == {"keepwise", "bg_nbd", "naive"}
