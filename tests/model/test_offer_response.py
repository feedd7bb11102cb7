"""Offer-response model: arms, learned vs prior, agreement with the world's truth, decide() plug-in.

One 8,000-customer synthetic world is shared by the module. Snapshots are quarterly; the model
is fitted on 2022-07-01 .. 2024-01-01 and acceptance is judged on the later snapshots
2024-04-01 .. 2024-10-01 (out of time, never a random split).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import World, generate_world
from features.config import FeatureConfig
from features.contract import OFFER_KINDS
from features.pipeline import build_training_set, feature_columns
from model.decide import decide
from model.gbm import FeatureFrameError, categorical_columns_of
from model.offer_response import (
    OfferResponseConfig,
    OfferResponseModel,
    fit_offer_response,
    label_offer_arms,
)
from model.policy import load_policy
from model.uplift import HistoryRule, UpliftParams

POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
TRAIN_DATES = [
    date(2022, 7, 1),
    date(2022, 10, 1),
    date(2023, 1, 1),
    date(2023, 4, 1),
    date(2023, 7, 1),
    date(2023, 10, 1),
    date(2024, 1, 1),
]
TEST_DATES = [date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1)]
FEATURES = feature_columns()


@dataclass(frozen=True)
class Fitted:
    world: World
    train: pl.DataFrame
    test: pl.DataFrame
    categorical: list[str]
    model: OfferResponseModel


def _training_set(world: World, dates: list[date]) -> pl.DataFrame:
    tables = {name: frame.lazy() for name, frame in world.tables.items()}
    return build_training_set(tables, dates, 365, FeatureConfig()).collect()


def _fit(
    train: pl.DataFrame,
    world: World,
    categorical: list[str],
    kinds: tuple[str, ...] = OFFER_KINDS,
    **config: object,
) -> OfferResponseModel:
    return fit_offer_response(
        train,
        world.tables["offers"],
        feature_columns=FEATURES,
        categorical_columns=categorical,
        kinds=kinds,
        config=OfferResponseConfig(**config),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    world = generate_world(WorldConfig(n_customers=8_000, seed=42))
    stacked = _training_set(world, TRAIN_DATES + TEST_DATES)
    train = stacked.filter(pl.col("as_of").is_in(TRAIN_DATES))
    test = stacked.filter(pl.col("as_of").is_in(TEST_DATES))
    categorical = categorical_columns_of(train, FEATURES)
    return Fitted(world, train, test, categorical, _fit(train, world, categorical))


def _summary(model: OfferResponseModel) -> dict[str, dict]:
    return {row["kind"]: row for row in model.summary()}


# --- arms -----------------------------------------------------------------------------------------


def test_arms_follow_the_window_answers_and_targeting() -> None:
    snapshots = pl.DataFrame(
        {
            "as_of": [date(2024, 1, 1)] * 5,
            "customer_id": ["a", "b", "c", "d", "e"],
        }
    )

    def offer(customer: str, day: date, kind: str, accepted: bool | None, targeted: bool) -> dict:
        responded = None if accepted is None else date(2024, 3, 1)
        return {
            "offer_id": f"{customer}-{day}-{kind}",
            "customer_id": customer,
            "offered_at": day,
            "kind": kind,
            "cost": 10.0,
            "accepted": accepted,
            "responded_at": responded,
            "targeted": targeted,
        }

    offers = pl.DataFrame(
        [
            offer("a", date(2024, 1, 1), "gift", True, True),  # first day of the window
            offer("b", date(2024, 1, 31), "gift", True, True),  # day 30: outside a 30-day window
            offer("c", date(2024, 1, 10), "gift", None, True),  # no answer yet
            offer("c", date(2024, 1, 12), "gift", False, True),
            offer("d", date(2024, 1, 5), "gift", True, False),  # broad campaign
            offer("e", date(2023, 12, 31), "refund", True, True),  # before as_of
            offer("e", date(2024, 1, 2), "refund", False, True),
        ]
    )
    arms = label_offer_arms(snapshots, offers, kinds=("gift", "refund"), window_days=30)
    assert arms["customer_id"].to_list() == ["a", "b", "c", "d", "e"]
    assert arms["offered_gift"].to_list() == [True, False, True, False, False]
    assert arms["accepted_gift"].to_list() == [True, False, False, False, False]
    # c: one refusal, one unanswered -> acceptance unknown; d: broad offers are not "offered"
    assert arms["accept_label_gift"].to_list() == [True, None, None, None, None]
    assert arms["accept_label_refund"].to_list() == [None, None, None, None, False]
    # d accepted a broad offer: not treated, but not a control either
    assert arms["any_accepted"].to_list() == [True, False, False, True, False]

    everything = label_offer_arms(snapshots, offers, kinds=("gift",), targeted_only=False)
    assert everything["accept_label_gift"].to_list() == [True, None, None, True, None]


def test_arms_reject_repeated_snapshot_keys() -> None:
    snapshots = pl.DataFrame({"as_of": [date(2024, 1, 1)] * 2, "customer_id": ["a", "a"]})
    offers = pl.DataFrame(
        schema={
            "customer_id": pl.String,
            "offered_at": pl.Date,
            "kind": pl.String,
            "accepted": pl.Boolean,
            "responded_at": pl.Date,
        }
    )
    with pytest.raises(ValueError, match="2 rows repeat an"):
        label_offer_arms(snapshots, offers)


# --- learned vs prior -----------------------------------------------------------------------------


def test_summary_says_which_kinds_are_learned_and_why(fitted: Fitted) -> None:
    rows = fitted.model.summary()
    assert [row["kind"] for row in rows] == list(OFFER_KINDS)
    config = fitted.model.config
    for row in rows:
        learned = row["answered_rows"] >= config.min_offered_rows_for_acceptance
        assert row["acceptance_source"] == ("learned" if learned else "prior"), row
        assert f"{row['answered_rows']} answered offers" in row["acceptance_reason"]
        # the uplift reason always names both arms
        assert f"treated: {row['treated_rows']} rows" in row["uplift_reason"]
        assert f"control: {row['control_rows']} rows" in row["uplift_reason"]
    by_kind = _summary(fitted.model)
    # gift and training go to hundreds of grievances; discount offers are rare in this world
    assert by_kind["gift"]["acceptance_source"] == "learned"
    assert by_kind["discount"]["acceptance_source"] == "prior"
    assert "fewer than 200 answered offers" in by_kind["discount"]["acceptance_reason"]
    # A 30-day window holds a few dozen accepted offers per kind: too few to learn uplift from.
    for row in rows:
        assert row["uplift_source"] == "prior"
        assert f"treated arm has {row['treated_rows']} rows < 400" in row["uplift_reason"]


def test_thin_history_falls_back_to_the_prior_everywhere() -> None:
    world = generate_world(WorldConfig(n_customers=300, seed=3))
    train = _training_set(world, TRAIN_DATES[:3])
    model = _fit(train, world, categorical_columns_of(train, FEATURES))
    for row in model.summary():
        assert row["acceptance_source"] == "prior" and row["uplift_source"] == "prior"
        assert "fewer than 200 answered offers" in row["acceptance_reason"]
        assert "treated arm has" in row["uplift_reason"]
    predicted = model.predict(train)
    assert predicted.columns == model.output_columns
    assert all(predicted[c].null_count() == train.height for c in predicted.columns[1:])


# --- agreement with the truth ---------------------------------------------------------------------


def test_acceptance_ranks_held_out_offers_like_the_truth(fitted: Fitted) -> None:
    """On later snapshots, each answered offer scored with its kind's predicted acceptance."""
    model, test, truth = fitted.model, fitted.test, fitted.world.truth_customers
    arms = label_offer_arms(test, fitted.world.tables["offers"])
    predicted = model.predict(test)
    learned = [r["kind"] for r in model.summary() if r["acceptance_source"] == "learned"]
    assert learned
    parts = []
    for kind in learned:
        answered = arms[f"accept_label_{kind}"].is_not_null()
        parts.append(
            pl.DataFrame(
                {
                    "customer_id": test["customer_id"].filter(answered),
                    "accepted": arms[f"accept_label_{kind}"].filter(answered),
                    "predicted": predicted[f"accept_{kind}"].filter(answered),
                    "kind": kind,
                }
            ).join(
                truth.select("customer_id", truth_prob=pl.col(f"accept_prob_{kind}")),
                on="customer_id",
                how="left",
                maintain_order="left",
            )
        )
    offers = pl.concat(parts)
    assert offers.height > 200
    auc = roc_auc_score(offers["accepted"].to_numpy(), offers["predicted"].to_numpy())
    rho = spearmanr(offers["predicted"], offers["truth_prob"]).statistic
    # measured 0.80 and 0.41 (the truth itself reaches an AUC of about 0.85)
    assert auc > 0.65
    assert rho > 0.25
    gift = offers.filter(pl.col("kind") == "gift")
    assert roc_auc_score(gift["accepted"].to_numpy(), gift["predicted"].to_numpy()) > 0.7


def test_difficult_clients_get_low_acceptance(fitted: Fitted) -> None:
    latest = fitted.test.filter(pl.col("as_of") == TEST_DATES[0])
    predicted = fitted.model.predict(latest).join(
        fitted.world.truth_customers.select("customer_id", "archetype"), on="customer_id"
    )
    difficult = pl.col("archetype") == "difficult_client"
    for row in fitted.model.summary():
        if row["acceptance_source"] != "learned":
            continue
        column = f"accept_{row['kind']}"
        mean_difficult = float(predicted.filter(difficult)[column].mean())  # type: ignore[arg-type]
        mean_others = float(predicted.filter(~difficult)[column].mean())  # type: ignore[arg-type]
        assert mean_difficult < 0.15, (row["kind"], mean_difficult)
        assert mean_difficult < 0.5 * mean_others, (row["kind"], mean_difficult, mean_others)


def test_forced_uplift_on_thin_world_history_is_bounded(fitted: Fitted) -> None:
    """The honest weaker property for the world's uplift.

    On this world each treated arm holds 7-49 accepted offers with 3-10 churners, and the
    true 12-month churn reduction of an accepted remedy averages under one point (the remedy's
    effect on dissatisfaction fades within months). No estimator can rank customers by that
    from so few rows; forcing the learners anyway gave Spearman correlations with the true
    reduction between 0.01 and 0.20 and means up to seven times the truth, which is why the
    default rule keeps these kinds on the prior. What must hold when a kind *is* learned:
    the summary says so, and the predictions are churn reductions in [0, 1] with no nulls.
    (The controlled test below shows the learner recovering an effect the data can reveal.)
    """
    permissive = HistoryRule(min_rows_per_arm=25, min_events_per_arm=3)
    fast = UpliftParams(n_estimators=30, learning_rate=0.1, num_leaves=4, min_child_samples=100)
    model = _fit(
        fitted.train,
        fitted.world,
        fitted.categorical,
        kinds=("gift", "discount"),
        rule=permissive,
        uplift=replace(fast, propensity="model"),
    )
    by_kind = _summary(model)
    assert by_kind["gift"]["uplift_source"] == "learned"
    assert by_kind["gift"]["uplift_reason"].startswith("both arms meet")
    assert by_kind["discount"]["uplift_source"] == "prior"  # 7 accepted discounts
    predicted = model.predict(fitted.test)
    gift = predicted["uplift_gift"]
    assert gift.null_count() == 0
    assert gift.min() >= 0.0 and gift.max() <= 1.0  # type: ignore[operator]
    assert predicted["uplift_discount"].null_count() == predicted.height
    # the online (records) path gives the same numbers, learned uplift included
    rows = fitted.test.head(200)
    assert_records_match(model, rows)


def assert_records_match(model: OfferResponseModel, rows: pl.DataFrame) -> None:
    frame = model.predict(rows)
    records = model.predict_records(rows.to_dicts())
    assert list(records) == frame.columns[1:]
    for name, values in records.items():
        assert values == frame[name].to_list(), name


def _randomised_offers(n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """Snapshots and offers where accepting a refund cuts churn by 0.25 for x > 0, else by 0.

    Refunds are offered to half the rows at random and accepted by 60%; a handful of gifts
    are offered too. Returns the training set, the offers and the true reduction per row.
    """
    rng = np.random.default_rng(seed)
    first = np.arange(n) % 2 == 0
    as_of = pl.Series("as_of", [date(2023, 1, 1), date(2023, 4, 1)]).gather(np.where(first, 0, 1))
    x = rng.uniform(-1, 1, n)
    noise = rng.normal(0, 1, n)
    segment = rng.choice(["enterprise", "mid_market"], n)
    offered = rng.random(n) < 0.5
    accepted = offered & (rng.random(n) < 0.6)
    reduction = np.where(x > 0, 0.25, 0.0)
    churned = rng.random(n) < 0.35 + 0.1 * noise.clip(-1, 1) - accepted * reduction
    training = pl.DataFrame(
        {
            "as_of": as_of,
            "customer_id": [f"C{i // 2:05d}" for i in range(n)],
            "x": x,
            "noise": noise,
            "segment": segment,
            "churned": churned,
        }
    )
    rows = np.flatnonzero(offered)
    gifts = rows[:40]
    offers = pl.DataFrame(
        {
            "offer_id": [f"F{i}" for i in range(rows.size + gifts.size)],
            "customer_id": training["customer_id"].gather(np.r_[rows, gifts]),
            "offered_at": as_of.gather(np.r_[rows, gifts]) + timedelta(days=3),
            "kind": ["refund"] * rows.size + ["gift"] * gifts.size,
            "cost": 10.0,
            "accepted": np.r_[accepted[rows], np.zeros(gifts.size, dtype=bool)],
            "responded_at": date(2023, 6, 1),
        }
    )
    return training, offers, reduction


def test_learned_uplift_recovers_a_known_effect() -> None:
    training, offers, reduction = _randomised_offers(8_000, seed=5)
    model = fit_offer_response(
        training,
        offers,
        feature_columns=["x", "noise", "segment"],
        categorical_columns=["segment"],
        kinds=("refund", "gift"),
    )
    by_kind = _summary(model)
    assert by_kind["refund"]["uplift_source"] == "learned"
    assert by_kind["gift"]["uplift_source"] == "prior"
    assert by_kind["gift"]["acceptance_source"] == "prior"
    uplift = model.predict(training)["uplift_refund"].to_numpy()
    assert spearmanr(uplift, reduction).statistic > 0.5
    # the sign convention: a positive number is a *reduction* of churn
    assert uplift[reduction > 0].mean() > uplift[reduction == 0].mean() + 0.1
    assert abs(uplift[reduction > 0].mean() - 0.25) < 0.1


# --- serialisation, determinism, invariance -------------------------------------------------------


def test_pickle_round_trip_gives_identical_predictions(fitted: Fitted) -> None:
    restored = pickle.loads(pickle.dumps(fitted.model))
    assert restored.predict(fitted.test).equals(fitted.model.predict(fitted.test))
    assert restored.summary() == fitted.model.summary()


def test_fitting_is_deterministic_and_ignores_row_order(fitted: Fitted) -> None:
    shuffled = fitted.train.sample(fraction=1.0, shuffle=True, seed=1)
    again = _fit(shuffled, fitted.world, fitted.categorical)
    assert again.predict(fitted.test).equals(fitted.model.predict(fitted.test))


def test_records_give_the_same_predictions_as_frames(fitted: Fitted) -> None:
    assert_records_match(fitted.model, fitted.test.head(500))
    assert fitted.model.predict_records([]) == {
        name: [] for name in fitted.model.output_columns[1:]
    }


def test_records_work_when_a_catalogue_offer_was_never_made(fitted: Fitted) -> None:
    # a new offer in the catalogue has no history: the pooled classifier has no level for it
    offers = fitted.world.tables["offers"].filter(pl.col("kind") != "gift")
    model = fit_offer_response(
        fitted.train,
        offers,
        feature_columns=FEATURES,
        categorical_columns=fitted.categorical,
        kinds=OFFER_KINDS,
    )
    assert _summary(model)["gift"]["acceptance_source"] == "prior"
    assert_records_match(model, fitted.test.head(50))


def test_predictions_follow_input_order(fitted: Fitted) -> None:
    rows = fitted.test.head(500)
    reversed_rows = rows.reverse()
    assert fitted.model.predict(reversed_rows).equals(fitted.model.predict(rows).reverse())


# --- contract with decide() -----------------------------------------------------------------------


def test_output_plugs_into_decide(fitted: Fitted) -> None:
    model = fitted.model
    latest = fitted.test.filter(pl.col("as_of") == TEST_DATES[0])
    predicted = model.predict(latest)
    assert predicted.columns == [
        "customer_id",
        *(f"{p}_{k}" for k in OFFER_KINDS for p in ("accept", "uplift")),
    ]
    assert all(predicted.schema[c] == pl.Float64 for c in predicted.columns[1:])
    assert predicted["customer_id"].equals(latest["customer_id"])

    scores = latest.select(
        "customer_id",
        "segment",
        months_of_history=pl.col("tenure_days") / 30.4,
        p_churn=pl.lit(0.3),
        monthly_margin=pl.col("net_margin_12m") / 12,
        monthly_margin_se=pl.lit(50.0),
        monthly_revenue=pl.col("revenue_12m") / 12,
        monthly_complaint_cost=pl.col("cost_to_serve_12m") / 12,
    )
    policy = load_policy(POLICY)
    decisions = decide(pl.concat([scores, predicted.drop("customer_id")], how="horizontal"), policy)
    assert decisions.height == latest.height
    # learned acceptance reaches the decision; prior kinds use the policy's number
    for row in model.summary():
        kind = row["kind"]
        chosen = decisions.filter(pl.col("offer_kind") == kind)
        if chosen.height == 0:
            continue
        if row["acceptance_source"] == "learned":
            assert chosen["offer_acceptance"].equals(chosen[f"accept_{kind}"], check_names=False)
        else:
            assert (chosen["offer_acceptance"] == policy.offer(kind).acceptance).all()


def test_prediction_names_a_missing_feature(fitted: Fitted) -> None:
    with pytest.raises(FeatureFrameError, match="complaints_12m"):
        fitted.model.predict(fitted.test.drop("complaints_12m"))


def test_unknown_offer_kind_is_an_error(fitted: Fitted) -> None:
    with pytest.raises(ValueError, match="unknown offer kind"):
        fit_offer_response(
            fitted.train,
            fitted.world.tables["offers"],
            feature_columns=FEATURES,
            categorical_columns=fitted.categorical,
            kinds=("refund", "voucher"),
        )
