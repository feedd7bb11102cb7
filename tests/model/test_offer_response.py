"""Offer-response model: learned vs prior, agreement with the world's truth, decide() plug-in.

One 8,000-customer synthetic world is shared by the module. The offers history is read up to
the cutoff 2024-04-01 (answers before it; experiments whose 12-month outcome window ends by
it); the support classifiers learn from the quarterly snapshots 2022-07-01 .. 2024-01-01.
Acceptance is judged out of time, on the offers answered after the cutoff and on the snapshot
2024-04-01, against the truth's own acceptance probabilities (customers picked by their true
archetype, never by the model's estimate).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import World, generate_world
from features.config import FeatureConfig
from features.pipeline import build_training_set, feature_columns
from model.decide import decide
from model.decide_rows import decide_records
from model.decision_inputs import monthly_complaint_cost
from model.gbm import FeatureFrameError, categorical_columns_of
from model.offer_history import OfferHistory, build_offer_history
from model.offer_response import OfferResponseConfig, OfferResponseModel, fit_offer_response
from model.policy import load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "default.toml")
KINDS = POLICY.offer_kinds
TRAIN_DATES = [
    date(2022, 7, 1),
    date(2022, 10, 1),
    date(2023, 1, 1),
    date(2023, 4, 1),
    date(2023, 7, 1),
    date(2023, 10, 1),
    date(2024, 1, 1),
]
CUTOFF = date(2024, 4, 1)
LATER = date(2025, 1, 1)
FEATURES = feature_columns()


@dataclass(frozen=True)
class Fitted:
    world: World
    history: OfferHistory
    population: pl.DataFrame
    snapshot: pl.DataFrame  # every active customer at CUTOFF
    categorical: list[str]
    model: OfferResponseModel


def _tables(world: World) -> dict[str, pl.LazyFrame]:
    return {name: frame.lazy() for name, frame in world.tables.items()}


def _fit(
    history: OfferHistory,
    population: pl.DataFrame,
    categorical: list[str],
    policy=POLICY,
    config: OfferResponseConfig | None = None,
) -> OfferResponseModel:
    return fit_offer_response(
        history,
        population,
        policy=policy,
        feature_columns=FEATURES,
        categorical_columns=categorical,
        config=config,
    )


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    world = generate_world(WorldConfig(n_customers=8_000, seed=42))
    tables = _tables(world)
    stacked = build_training_set(tables, [*TRAIN_DATES, CUTOFF], 365, FeatureConfig()).collect()
    population = stacked.filter(pl.col("as_of").is_in(TRAIN_DATES))
    snapshot = stacked.filter(pl.col("as_of") == CUTOFF)
    history = build_offer_history(tables, CUTOFF, 365, FeatureConfig())
    categorical = categorical_columns_of(population, FEATURES)
    model = _fit(history, population, categorical)
    return Fitted(world, history, population, snapshot, categorical, model)


def _by_kind(model: OfferResponseModel) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in model.summary():
        rows.setdefault(row["kind"], []).append(row)
    return rows


def _with_truth(frame: pl.DataFrame, world: World) -> pl.DataFrame:
    truth = world.truth_customers.select(
        "customer_id", "archetype", *(f"accept_prob_{k}" for k in KINDS)
    )
    return frame.join(truth, on="customer_id", how="left", maintain_order="left")


# --- learned vs prior -----------------------------------------------------------------------------


def test_summary_reports_evidence_and_how_far_it_moved_the_prior(fitted: Fitted) -> None:
    rows = fitted.model.summary()
    assert [row["kind"] for row in rows] == sorted(
        [row["kind"] for row in rows], key=list(KINDS).index
    )
    by_kind = _by_kind(fitted.model)
    assert set(by_kind) == set(KINDS)
    for kind, strata in by_kind.items():
        offer = POLICY.offer(kind)
        for row in strata:
            # every row names its evidence: offered and held-out selections, answers
            assert row["offered"] >= 0 and row["held_out"] >= 0
            # acceptance rests on every answered offer before the cutoff, effects on the
            # experiments whose outcome window is complete: the reason names its own count
            assert re.search(r"^\d+ answered offers, \d+ accepted", row["acceptance_reason"])
            assert row["complaint_reduction_prior"] == offer.complaint_cost_reduction
            moved = row["complaint_reduction_value"] - row["complaint_reduction_prior"]
            assert row["complaint_reduction_moved"] == pytest.approx(moved)
            if row["effect_source"] == "prior":
                assert row["churn_reduction_weight"] == 0.0
            else:
                assert row["effect_reason"].startswith("randomised:")
                assert 0 < row["churn_reduction_weight"] < 1
                assert row["held_out"] >= fitted.model.config.evidence.min_rows_per_arm
    # gift and training answer hundreds of grievances; discounts are rare in this world
    assert all(r["acceptance_source"] == "learned" for r in by_kind["gift"])
    (discount,) = by_kind["discount"]
    assert discount["acceptance_source"] == "prior"
    assert "fewer than 200" in discount["acceptance_reason"]
    assert discount["effect_source"] == "prior"
    assert "fewer than 30 in an arm" in discount["effect_reason"]
    # training (fixing misuse) is never pooled with the remedies of a company-side fault
    assert "training" in fitted.model.config.unpooled_kinds
    for row in by_kind["training"]:
        assert row["complaint_reduction_pooled"] is None
        assert row["churn_reduction_pooled"] is None
    remedies = [r for k in ("refund", "replacement", "gift", "service") for r in by_kind[k]]
    assert any(r["complaint_reduction_pooled"] is not None for r in remedies)  # they are


def test_without_holdouts_the_effects_stay_on_the_prior_and_say_why(fitted: Fitted) -> None:
    tables = _tables(fitted.world)
    tables["offers"] = tables["offers"].filter(~pl.col("holdout").fill_null(False)).drop("holdout")
    history = build_offer_history(tables, CUTOFF, 365, FeatureConfig())
    assert not history.holdouts_recorded and history.experiments.height == 0
    model = _fit(history, fitted.population, fitted.categorical)
    for row in model.summary():
        assert row["effect_source"] == "prior"
        assert "confounded" in row["effect_reason"]
    predicted = model.predict(fitted.snapshot.head(300), np.full(300, 0.2))
    for kind in KINDS:
        assert predicted[f"uplift_{kind}"].null_count() == 300
        assert predicted[f"complaint_saving_{kind}"].null_count() == 300
    # acceptance is still learned from the answers
    assert predicted["accept_gift"].null_count() == 0


def test_thin_history_falls_back_to_the_prior_everywhere() -> None:
    world = generate_world(WorldConfig(n_customers=300, seed=3))
    tables = _tables(world)
    population = build_training_set(tables, TRAIN_DATES[:3], 365, FeatureConfig()).collect()
    history = build_offer_history(tables, date(2023, 4, 1), 365, FeatureConfig())
    model = _fit(history, population, categorical_columns_of(population, FEATURES))
    for row in model.summary():
        assert row["acceptance_source"] == "prior" and row["effect_source"] == "prior"
        assert "fewer than 200" in row["acceptance_reason"]
    predicted = model.predict(population, np.full(population.height, 0.1))
    assert predicted.columns == model.output_columns
    assert all(predicted[c].null_count() == population.height for c in predicted.columns[1:])


# --- agreement with the truth ---------------------------------------------------------------------


def test_acceptance_ranks_later_offers_like_the_truth(fitted: Fitted) -> None:
    """Offers answered after the cutoff, each scored with its kind's predicted acceptance."""
    later = build_offer_history(_tables(fitted.world), LATER, 365, FeatureConfig()).answers
    later = later.filter(pl.col("as_of") >= CUTOFF)
    predicted = fitted.model.predict(later)
    learned = [k for k in KINDS if fitted.model.fits[k].acceptance_source == "learned"]
    assert learned
    kind = later.get_column("kind")
    score = np.full(later.height, np.nan)
    for k in learned:
        rows = (kind == k).to_numpy()
        score[rows] = predicted[f"accept_{k}"].to_numpy()[rows]
    offers = _with_truth(later.with_columns(predicted=pl.Series(score)), fitted.world).filter(
        pl.col("predicted").is_not_nan()
    )
    truth = np.choose(
        [learned.index(k) for k in offers["kind"]],
        [offers[f"accept_prob_{k}"].to_numpy() for k in learned],
    )
    assert offers.height > 500
    auc = roc_auc_score(offers["accepted"].to_numpy(), offers["predicted"].to_numpy())
    rho = spearmanr(offers["predicted"], truth).statistic
    # measured 0.81 and 0.66 (1,365 offers); the truth's own probabilities reach 0.89
    assert auc > 0.75
    assert rho > 0.5
    # calibrated out of time: mean predicted within 0.05 of the acceptance rate
    assert abs(offers["predicted"].mean() - offers["accepted"].mean()) < 0.05


def test_difficult_clients_get_low_acceptance(fitted: Fitted) -> None:
    """Customers picked by their true archetype on the snapshot at the cutoff.

    The truth's acceptance of difficult clients is 0.02-0.03 for every kind but training
    (0.09: a teachable minority). That mean is not reachable from the features: a regression of
    the truth's own ``accept_prob_gift`` on the same features, fitted on every customer of the
    training snapshots, gives difficult clients a mean of 0.11 (median 0.04), because recently
    signed, still quiet difficult clients look like anyone else. What the model must do is what
    the features allow: the typical difficult client is recognised (median low), and difficult
    clients as a group get far less than everyone else.
    """
    predicted = _with_truth(
        fitted.model.predict(fitted.snapshot).select("customer_id", pl.col("^accept_.*$")),
        fitted.world,
    )
    difficult = pl.col("archetype") == "difficult_client"
    checked = 0
    for kind in KINDS:
        if fitted.model.fits[kind].acceptance_source != "learned":
            continue
        checked += 1
        column = f"accept_{kind}"
        group = predicted.filter(difficult)[column]
        others = predicted.filter(~difficult)[column]
        truth_difficult = float(predicted.filter(difficult)[f"accept_prob_{kind}"].mean())
        assert truth_difficult < 0.1, (kind, truth_difficult)  # the premise, in the truth
        assert float(group.median()) < 0.15, (kind, group.median())
        assert float(group.mean()) < 0.5 * float(others.mean()), (kind, group.mean())
    assert checked >= 4


# --- complaint state ------------------------------------------------------------------------------


def _effect_rows(model: OfferResponseModel) -> dict[tuple[str, str], dict]:
    return {(r["kind"], r["stratum"]): r for r in model.summary()}


def test_where_every_selection_had_complained_the_state_split_changes_nothing(
    fitted: Fitted,
) -> None:
    """The generated world selects customers for a remedy after they complain, so every
    experiment row is complaining: the cells would be the strata themselves."""
    assert fitted.history.experiments["complaints_3m"].min() > 0  # the premise
    assert fitted.model.state_column == "complaints_3m"
    assert all("/" not in stratum for _, stratum in _effect_rows(fitted.model))
    unsplit = _fit(
        fitted.history,
        fitted.population,
        fitted.categorical,
        config=OfferResponseConfig(state_column=None),
    )
    risk = np.linspace(0.01, 0.6, fitted.snapshot.height)
    assert unsplit.predict(fitted.snapshot, risk).equals(
        fitted.model.predict(fitted.snapshot, risk)
    )


def test_calm_and_complaining_selections_get_their_own_effects(fitted: Fitted) -> None:
    """Half the selections made calm (no complaint in the 3 months before), and their outcomes
    shuffled among them, so an offer does nothing for them: each stratum's calm and complaining
    selections are estimated apart, and a customer gets the effect of their own state."""
    experiments = fitted.history.experiments
    rng = np.random.default_rng(7)
    calm = rng.random(experiments.height) < 0.5
    outcomes = ["churned", "realised_cost_to_serve", "exposure_days", "churn_days"]
    shuffled = (
        experiments.filter(pl.Series(calm))
        .select(outcomes)
        .sample(fraction=1.0, shuffle=True, seed=8)
    )
    index = np.flatnonzero(calm)
    experiments = experiments.with_columns(
        *(experiments[name].clone().scatter(index, shuffled[name]) for name in outcomes),
        complaints_3m=pl.when(pl.Series(calm)).then(0).otherwise(pl.col("complaints_3m")),
    )
    model = _fit(
        replace(fitted.history, experiments=experiments), fitted.population, fitted.categorical
    )
    rows = _effect_rows(model)
    cells = [(k, s) for k, s in rows if "/" in s]
    assert cells
    for kind, cell in cells:
        stratum = cell.split("/")[0]
        parts = [rows[(kind, f"{stratum}/{state}")] for state in ("calm", "complaining")]
        for count in ("offered", "held_out"):
            assert sum(p[count] for p in parts) == rows[(kind, stratum)][count], (kind, cell)

    snapshot = fitted.snapshot
    predicted = model.predict(snapshot, np.full(snapshot.height, 0.2))
    floor = model.config.evidence.cost_base_floor
    base = monthly_complaint_cost(
        snapshot["tenure_days"].cast(pl.Float64).to_numpy(),
        snapshot["cost_to_serve_12m"].cast(pl.Float64).to_numpy(),
    )
    state = np.where(snapshot["complaints_3m"].to_numpy() == 0, "calm", "complaining")
    checked = 0
    for kind in KINDS:
        acceptance = predicted[f"accept_{kind}"].to_numpy()
        saving = predicted[f"complaint_saving_{kind}"].to_numpy().astype(np.float64)
        for i in np.flatnonzero(~np.isnan(saving)):
            stratum = (
                "all"
                if np.isnan(acceptance[i])
                else "refusers"
                if acceptance[i] < model.config.acceptor_threshold
                else "acceptors"
            )
            cell = rows.get((kind, f"{stratum}/{state[i]}"))
            if cell is None or cell["effect_source"] != "learned":
                continue
            assert saving[i] == pytest.approx(cell["complaint_reduction_value"] * (base[i] + floor))
            checked += 1
    assert {state[i] for i in range(snapshot.height)} == {"calm", "complaining"}
    assert checked > 100


# --- serialisation, determinism, invariance -------------------------------------------------------


def test_pickle_round_trip_gives_identical_predictions(fitted: Fitted) -> None:
    restored = pickle.loads(pickle.dumps(fitted.model))
    risk = np.linspace(0.01, 0.6, fitted.snapshot.height)
    assert restored.predict(fitted.snapshot, risk).equals(
        fitted.model.predict(fitted.snapshot, risk)
    )
    assert restored.summary() == fitted.model.summary()


def test_fitting_is_deterministic_and_ignores_row_order(fitted: Fitted) -> None:
    history = replace(
        fitted.history,
        answers=fitted.history.answers.sample(fraction=1.0, shuffle=True, seed=1),
        experiments=fitted.history.experiments.sample(fraction=1.0, shuffle=True, seed=2),
    )
    population = fitted.population.sample(fraction=1.0, shuffle=True, seed=3)
    again = _fit(history, population, fitted.categorical)
    risk = np.full(fitted.snapshot.height, 0.2)
    assert again.predict(fitted.snapshot, risk).equals(fitted.model.predict(fitted.snapshot, risk))


def assert_records_match(model: OfferResponseModel, rows: pl.DataFrame) -> None:
    risk = np.linspace(0.05, 0.5, rows.height)
    frame = model.predict(rows, risk)
    records = model.predict_records(rows.to_dicts(), risk.tolist())
    assert list(records) == frame.columns[1:]
    for name, values in records.items():
        assert values == frame[name].to_list(), name


def test_records_give_the_same_predictions_as_frames(fitted: Fitted) -> None:
    assert_records_match(fitted.model, fitted.snapshot.head(500))
    # one record at a time (the API's case: LightGBM's single-row path) gives the same bits
    rows = fitted.snapshot.head(60)
    risk = np.linspace(0.05, 0.5, rows.height)
    frame = fitted.model.predict(rows, risk)
    for i, record in enumerate(rows.to_dicts()):
        for name, (value,) in fitted.model.predict_records([record], [risk[i]]).items():
            assert value == frame[name][i], (name, i)
    assert fitted.model.predict_records([]) == {
        name: [] for name in fitted.model.output_columns[1:]
    }


def test_a_catalogue_offer_never_made_keeps_its_prior(fitted: Fitted) -> None:
    history = replace(
        fitted.history,
        answers=fitted.history.answers.filter(pl.col("kind") != "gift"),
        experiments=fitted.history.experiments.filter(pl.col("kind") != "gift"),
    )
    model = _fit(history, fitted.population, fitted.categorical)
    assert model.fits["gift"].acceptance_source == "prior"
    predicted = model.predict(fitted.snapshot.head(50), np.full(50, 0.2))
    assert predicted["accept_gift"].null_count() == 50
    assert predicted["uplift_gift"].null_count() == 50
    assert_records_match(model, fitted.snapshot.head(50))


def test_predictions_follow_input_order(fitted: Fitted) -> None:
    rows = fitted.snapshot.head(500)
    risk = np.linspace(0.01, 0.5, 500)
    forward = fitted.model.predict(rows, risk)
    assert fitted.model.predict(rows.reverse(), risk[::-1].copy()).equals(forward.reverse())


# --- contract with decide() -----------------------------------------------------------------------


def test_output_plugs_into_decide(fitted: Fitted) -> None:
    model, snapshot = fitted.model, fitted.snapshot
    p_churn = 0.3
    predicted = model.predict(snapshot, np.full(snapshot.height, p_churn))
    assert predicted.columns == [
        "customer_id",
        *(f"{p}_{k}" for k in KINDS for p in ("accept", "uplift", "complaint_saving")),
    ]
    assert all(predicted.schema[c] == pl.Float64 for c in predicted.columns[1:])
    assert predicted["customer_id"].equals(snapshot["customer_id"])
    # an effect is learned for some customers and not for others (outside a kind's evidence)
    learned = [k for k in KINDS if predicted[f"uplift_{k}"].null_count() < snapshot.height]
    assert learned
    for kind in learned:
        assert 0 < predicted[f"uplift_{kind}"].null_count() < snapshot.height

    scores = snapshot.select(
        "customer_id",
        "segment",
        months_of_history=pl.col("tenure_days") / 30.4,
        p_churn=pl.lit(p_churn),
        monthly_margin=pl.col("net_margin_12m") / 12,
        monthly_margin_se=pl.lit(50.0),
        monthly_revenue=pl.col("revenue_12m") / 12,
        monthly_complaint_cost=pl.col("cost_to_serve_12m") / 12,
    )
    inputs = pl.concat([scores, predicted.drop("customer_id")], how="horizontal")
    decisions = decide(inputs, POLICY)
    assert decisions.height == snapshot.height
    # the one-record path (the API) reads the same inputs the same way, to the bit
    rows = inputs.head(300)
    by_record = decide_records(rows.to_dicts(), POLICY)
    for column in ("action", "offer_kind", "offer_complaint_saving", "ev_best_offer"):
        assert [r[column] for r in by_record] == decisions[column].head(300).to_list(), column
    for kind in KINDS:
        chosen = decisions.filter(pl.col("offer_kind") == kind)
        if chosen.height == 0:
            continue
        offer = POLICY.offer(kind)
        if model.fits[kind].acceptance_source == "learned":
            assert chosen["offer_acceptance"].equals(chosen[f"accept_{kind}"], check_names=False)
        else:
            assert (chosen["offer_acceptance"] == offer.acceptance).all()
        # a learned complaint saving reaches the decision; elsewhere the prior rho * cc
        saving = chosen[f"complaint_saving_{kind}"]
        given = saving.is_not_null()
        assert (
            chosen["offer_complaint_saving"]
            .filter(given)
            .equals(saving.filter(given), check_names=False)
        )
        prior = offer.complaint_cost_reduction * chosen["monthly_complaint_cost"]
        assert np.allclose(
            chosen["offer_complaint_saving"].filter(~given).to_numpy(),
            prior.filter(~given).to_numpy(),
        )


def test_prediction_names_a_missing_feature(fitted: Fitted) -> None:
    with pytest.raises(FeatureFrameError, match="complaints_12m"):
        fitted.model.predict(fitted.snapshot.drop("complaints_12m"))
    with pytest.raises(FeatureFrameError, match="cost_to_serve_12m"):
        fitted.model.predict_records(
            [
                {k: v for k, v in r.items() if k != "cost_to_serve_12m"}
                for r in fitted.snapshot.head(2).to_dicts()
            ]
        )


def test_p_churn_of_the_wrong_length_is_an_error(fitted: Fitted) -> None:
    with pytest.raises(ValueError, match="one value per row"):
        fitted.model.predict(fitted.snapshot.head(10), np.full(9, 0.2))
