"""The world stepped month by month with actions from outside, and the closed loop on it."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from experiments.closed_loop import ADHERENCE, LoopConfig, follow, run_loop
from experiments.plots import learning_curve_png
from experiments.synthetic.config import WorldConfig
from experiments.synthetic.oracle import policy_offer_cost
from experiments.synthetic.stepping import SteppedWorld, SteppedWorldError
from experiments.synthetic.world import default_policy, generate_world
from features.loader import load_tables

# two chunks, so that customer ids are mapped to the right chunk
CONFIG = WorldConfig(
    n_customers=1_600,
    months=20,
    chunk_size=800,
    seed=11,
    oracle_draws=4,
    oracle_dates=(date(2023, 3, 1), date(2023, 9, 1)),
)
START = date(2023, 1, 1)  # month 12


@pytest.fixture(scope="module")
def policy():
    return default_policy()


@pytest.fixture(scope="module")
def batch(policy):
    return generate_world(CONFIG, policy)


@pytest.fixture(scope="module")
def started(policy):
    return SteppedWorld(CONFIG, policy, START)


def _stepped(policy, config=CONFIG, started=None):
    """A fresh world at START (a copy of the shared one when given: building it takes time)."""
    if started is not None and config == CONFIG:
        return copy.deepcopy(started)
    return SteppedWorld(config, policy, START)


def _truth_active(world: SteppedWorld) -> pl.DataFrame:
    """Customers active at the world's month start, by the truth (the oracle prices them)."""
    return world.action_values().filter(pl.col("action") == "retain").select("customer_id")


def test_stepping_with_business_as_usual_reproduces_the_generated_world(policy, batch):
    world = SteppedWorld(CONFIG, policy, START)
    while world.month < CONFIG.months:
        if world.as_of in CONFIG.resolved_oracle_dates:
            world.action_values()
        world.advance()
    world.action_values()
    crm, truth = world.crm_tables(), world.truth_tables()
    for name in ("orders", "payments", "offers"):
        assert_frame_equal(crm[name], batch.tables[name])
    # names, complaint texts (and which phone complaints have none) and open stages come from
    # the stepping's own streams (drawn month by month so that exports agree with each other)
    assert_frame_equal(crm["customers"].drop("name"), batch.tables["customers"].drop("name"))
    assert_frame_equal(
        crm["complaints"].drop("text", "stage"), batch.tables["complaints"].drop("text", "stage")
    )
    assert_frame_equal(truth["truth_monthly"], batch.truth_monthly)
    assert_frame_equal(truth["truth_action_values"], batch.truth_action_values)


def test_an_export_holds_only_what_happened_before_it(policy, started, batch):
    world = _stepped(policy, started=started)
    tables = world.crm_tables()
    assert world.as_of == START
    assert tables["orders"]["order_date"].max() < START
    assert tables["complaints"]["opened_at"].dt.date().max() < START
    assert tables["payments"]["invoice_date"].max() < START
    assert (tables["payments"]["paid_date"].drop_nulls() < START).all()
    assert (tables["offers"]["responded_at"].drop_nulls() < START).all()
    # the same orders as the generated world has before that day
    before = batch.tables["orders"].filter(pl.col("order_date") < START)
    assert_frame_equal(tables["orders"], before)
    # an invoice paid after the export is open in it
    later = batch.tables["payments"].filter(
        (pl.col("invoice_date") < START) & (pl.col("paid_date") >= START)
    )
    assert later.height > 0
    seen = tables["payments"].join(later.select("invoice_id"), on="invoice_id")
    assert seen.height == later.height and seen["paid_date"].null_count() == later.height


def test_ending_a_customer_stops_their_orders(policy, started):
    world = _stepped(policy, started=started)
    twin = _stepped(policy, started=started)
    truth = world.truth_tables()["truth_customers"]
    active = _truth_active(world)
    # the busiest buyers by the truth, so that business as usual surely orders this month
    chosen = (
        truth.join(active, on="customer_id")
        .sort("order_rate", descending=True)
        .head(20)["customer_id"]
    )
    actions = pl.DataFrame(
        {"customer_id": chosen, "action": "end", "offer_kind": None},
        schema_overrides={"offer_kind": pl.String},
    )
    world.advance(actions)
    twin.advance()
    for _ in range(2):
        world.advance()
        twin.advance()
    ended = world.crm_tables()
    usual = twin.crm_tables()
    after = lambda t: t["orders"].filter(  # noqa: E731
        pl.col("customer_id").is_in(chosen.implode()) & (pl.col("order_date") >= START)
    )
    assert after(ended).height == 0
    assert after(usual).height > 20
    end_dates = ended["customers"].filter(pl.col("customer_id").is_in(chosen.implode()))
    assert (end_dates["end_date"] == START).all()
    complaints = ended["complaints"].filter(
        pl.col("customer_id").is_in(chosen.implode()) & (pl.col("opened_at").dt.date() >= START)
    )
    assert complaints.height == 0


def test_an_offer_is_recorded_with_its_answer_and_the_catalogue_cost(policy, started):
    world = _stepped(policy, started=started)
    truth = world.truth_tables()["truth_customers"]
    active = _truth_active(world)
    keen = (
        truth.join(active, on="customer_id")
        .filter(pl.col("accept_prob_gift") > 0.7)
        .head(30)["customer_id"]
    )
    refusers = (
        truth.join(active, on="customer_id")
        .filter(pl.col("accept_prob_gift") < 0.05)
        .head(30)["customer_id"]
    )
    assert keen.len() == 30 and refusers.len() == 30
    chosen = pl.concat([keen, refusers])
    world.advance(
        pl.DataFrame({"customer_id": chosen, "action": "compensate", "offer_kind": "gift"})
    )
    world.advance()  # answers arrive within weeks
    offers = world.crm_tables()["offers"].filter(
        (pl.col("offered_at") >= START) & (pl.col("offered_at") < date(2023, 2, 1))
    )
    mine = offers.filter(pl.col("customer_id").is_in(chosen.implode()))
    assert mine.height == 60
    assert (mine["kind"] == "gift").all() and mine["targeted"].all() and not mine["holdout"].any()
    assert mine["accepted"].null_count() == 0
    accepted_keen = mine.filter(pl.col("customer_id").is_in(keen.implode()))["accepted"].sum()
    accepted_refusers = mine.filter(pl.col("customer_id").is_in(refusers.implode()))[
        "accepted"
    ].sum()
    assert accepted_keen >= 15 and accepted_refusers <= 5
    # the cost is the catalogue's price for the customer's true monthly revenue R that month,
    # cost_fixed + multiple * R with R at most order_rate * order_value (less once fading)
    gift = policy.offer("gift")
    bounds = mine.join(truth, on="customer_id").select(
        "cost",
        high=gift.cost_fixed
        + gift.cost_revenue_multiple * pl.col("order_rate") * pl.col("order_value")
        + 0.01,
    )
    assert (bounds["cost"] >= gift.cost_fixed).all() and (bounds["cost"] <= bounds["high"]).all()
    assert policy_offer_cost(policy, "gift", np.array([100.0]))[0] == pytest.approx(
        gift.cost_fixed + 100.0 * gift.cost_revenue_multiple
    )


def test_same_seed_and_actions_give_the_same_world_and_another_seed_another(policy):
    actions = pl.DataFrame(
        {"customer_id": ["C0000005", "C0000900"], "action": "compensate", "offer_kind": "refund"}
    )
    runs = []
    for seed in (11, 11, 12):
        world = _stepped(policy, dataclasses.replace(CONFIG, seed=seed))
        world.advance(actions)
        world.advance()
        runs.append(world.crm_tables())
    for name in runs[0]:
        assert_frame_equal(runs[0][name], runs[1][name])
    assert not runs[0]["orders"].equals(runs[2]["orders"])


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"customer_id": ["C0000001"], "action": ["cancel"], "offer_kind": [None]}, "cancel"),
        ({"customer_id": ["C0099999"], "action": ["end"], "offer_kind": [None]}, "C0099999"),
        ({"customer_id": ["X12"], "action": ["end"], "offer_kind": [None]}, "X12"),
        ({"customer_id": ["C0000001"], "action": ["compensate"], "offer_kind": ["yacht"]}, "yacht"),
        ({"customer_id": ["C0000001"], "action": ["compensate"], "offer_kind": [None]}, "None"),
        ({"customer_id": ["C0000001"], "action": ["end"]}, "offer_kind"),
    ],
)
def test_bad_actions_are_refused_with_the_customer_and_value_named(policy, started, frame, message):
    world = _stepped(policy, started=started)
    with pytest.raises(SteppedWorldError, match=message):
        world.advance(pl.DataFrame(frame, schema_overrides={"offer_kind": pl.String}))
    assert world.month == CONFIG.month_index(START)  # nothing was simulated


def test_the_world_refuses_to_run_past_its_last_month(policy, started):
    world = _stepped(policy, started=started)
    while world.month < CONFIG.months:
        world.advance()
    with pytest.raises(ValueError, match="20 months"):
        world.advance()


def _recommendations(n: int) -> pl.DataFrame:
    """n recommendations, a quarter each: gift, end, retain, refund."""
    return pl.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "action": ["compensate", "end", "retain", "compensate"] * (n // 4),
            "offer_kind": ["gift", None, None, "refund"] * (n // 4),
        }
    )


def test_the_front_line_follows_with_the_stated_adherence():
    recs = _recommendations(20_000)
    done = follow(recs, np.random.default_rng(0))
    again = follow(recs, np.random.default_rng(0))
    assert_frame_equal(done, again)
    joined = recs.join(done, on="customer_id", suffix="_done")
    share = joined.group_by("action").agg(pl.col("followed").mean()).sort("action")
    shares = dict(share.iter_rows())
    assert shares["retain"] == 1.0
    assert abs(shares["compensate"] - ADHERENCE["compensate"]) < 0.015
    assert abs(shares["end"] - ADHERENCE["end"]) < 0.015
    not_followed = joined.filter(~pl.col("followed"))
    assert (not_followed["action_done"] == "retain").all()
    assert not_followed["offer_kind_done"].null_count() == not_followed.height
    followed = joined.filter(pl.col("followed"))
    assert (followed["action_done"] == followed["action"]).all()
    assert followed["offer_kind_done"].equals(followed["offer_kind"], null_equal=True)


def test_a_tiny_loop_runs_end_to_end_and_learns_from_its_own_offers():
    config = LoopConfig(customers=2_000, seed=3, cycles=2, oracle_draws=4)
    figures, facts = run_loop(config)
    assert [f.cycle for f in figures] == [0, 1]
    assert figures[1].as_of == date(2025, 8, 1)
    # the company never ran a remedy programme: the first model has no evidence about offers
    assert all(k["acceptance_source"] == "prior" for k in facts["offer_response_at_start"])
    assert all(k["answered"] == 0 for k in facts["offer_response_at_start"])
    first, second = figures
    assert first.customers > 1_000 and first.compensated > 0
    assert 0 < first.offers_made <= first.compensated
    assert first.offers_accepted <= first.offers_made
    # every offer made in the first cycle is evidence for the second
    assert sum(first.answers_by_kind.values()) == first.offers_made
    assert sum(second.answers_by_kind.values()) == first.offers_made + second.offers_made
    # cycle 0 is decided by the first model itself; cycle 1 by the refitted one
    assert first.start_model_offer_share == first.offer_share
    assert np.isfinite(second.start_model_offer_share)
    for f in figures:
        assert np.isfinite(f.offer_share) and np.isfinite(f.oracle_share)
        assert f.explored == 0 or f.exploration_cost != 0
        # the CRM holds out a fifth of the recommended offers; they are the refit's controls
        assert 0.1 * f.compensated < f.held_out < 0.3 * f.compensated
        assert f.holdout_cost != 0
    assert sum(first.experiments_by_kind.values()) == first.offers_made + first.held_out


def test_the_crm_holds_out_a_random_share_of_the_recommended_offers_only():
    n = 20_000
    recs = _recommendations(n)
    done = follow(recs, np.random.default_rng(0), holdout_share=0.2)
    joined = recs.join(done, on="customer_id", suffix="_done")
    held = joined.filter(pl.col("action_done") == "hold_out")
    assert (held["action"] == "compensate").all() and not held["followed"].any()
    assert held["offer_kind_done"].equals(held["offer_kind"])
    assert abs(held.height / (n / 2) - 0.2) < 0.015
    offered = joined.filter(pl.col("action") == "compensate")
    made = offered.filter(pl.col("action_done") == "compensate").height
    assert abs(made / (n / 2) - 0.8 * ADHERENCE["compensate"]) < 0.015
    # the adherence draws are those of a loop without holdouts: who is followed does not move
    without = follow(recs, np.random.default_rng(0))
    kept = done.filter(pl.col("action") != "hold_out").join(without, on="customer_id")
    assert kept["followed"].equals(kept["followed_right"], check_names=False)


def test_a_holdout_is_recorded_as_such_and_not_contacted(policy, started):
    world = _stepped(policy, started=started)
    active = _truth_active(world)["customer_id"].head(40)
    held, offered = active.head(20), active.tail(20)
    world.advance(
        pl.DataFrame(
            {
                "customer_id": pl.concat([held, offered]),
                "action": ["hold_out"] * 20 + ["compensate"] * 20,
                "offer_kind": "refund",
            }
        )
    )
    world.advance()
    offers = world.crm_tables()["offers"].filter(
        (pl.col("offered_at") >= START) & (pl.col("offered_at") < date(2023, 2, 1))
    )
    mine = offers.filter(pl.col("customer_id").is_in(held.implode()))
    assert mine.height == 20 and mine["holdout"].all() and mine["targeted"].all()
    assert (mine["kind"] == "refund").all() and (mine["cost"] == 0).all()
    assert mine["accepted"].null_count() == 20 and mine["responded_at"].null_count() == 20
    theirs = offers.filter(pl.col("customer_id").is_in(offered.implode()))
    assert theirs.height == 20 and not theirs["holdout"].any()
    assert theirs["accepted"].null_count() == 0
    with pytest.raises(SteppedWorldError, match="None"):
        world.advance(
            pl.DataFrame(
                {"customer_id": ["C0000001"], "action": ["hold_out"], "offer_kind": [None]},
                schema_overrides={"offer_kind": pl.String},
            )
        )


def test_the_learning_curve_png_is_deterministic_and_refuses_ragged_runs(tmp_path):
    shares = {
        "offers": {"seed 1": [0.1, 0.2, 0.3], "seed 2": [0.12, 0.18, 0.33]},
        "all": {"seed 1": [0.6, 0.5, 0.4], "seed 2": [0.62, 0.52, 0.41]},
    }
    first = learning_curve_png([0, 1, 2], shares, tmp_path / "a.png", reference={"ceiling": 0.4})
    second = learning_curve_png([0, 1, 2], shares, tmp_path / "b.png", reference={"ceiling": 0.4})
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"'seed 2'.* 2 value\(s\) but cycles has 3"):
        learning_curve_png(
            [0, 1, 2], {"offers": {"seed 1": [0.1] * 3, "seed 2": [0.1] * 2}}, tmp_path / "c.png"
        )
    with pytest.raises(ValueError, match="increasing"):
        learning_curve_png([0, 2, 1], shares, tmp_path / "d.png")
    with pytest.raises(ValueError, match=r"'seed 1'"):
        learning_curve_png(
            [0, 1, 2], {"offers": {"seed 1": [0.1, float("nan"), 0.2]}}, tmp_path / "e.png"
        )


def test_a_stepped_export_with_outside_actions_loads_like_a_generated_world(
    policy, started, tmp_path
):
    world = _stepped(policy, started=started)
    active = _truth_active(world)["customer_id"]
    world.advance(
        pl.DataFrame(
            {
                "customer_id": active.head(40),
                "action": ["compensate"] * 30 + ["end"] * 10,
                "offer_kind": ["training"] * 30 + [None] * 10,
            }
        )
    )
    counts = world.write(tmp_path)
    result = load_tables(tmp_path)
    assert [str(p) for p in result.problems] == []
    for name, rows in counts.items():
        assert result.tables[name].select(pl.len()).collect().item() == rows
