"""The model bundle: churn + value + offer response + the feature list, scored by one function.

:meth:`ModelBundle.score` scores frames for the batch command and the MLflow pyfunc model;
:meth:`ModelBundle.score_records` gives the same numbers for the API's few records (tested
equal). A bundle is a folder:

    bundle.json            format, version, horizon, feature list, training facts
    churn/                 model.churn.ChurnModel.save
    value/                 model.value.ValueModel.save (absent: margin given by the data)
    margin_error/          model.uncertainty.MarginErrorModel.save, the per-customer
                           ``monthly_margin_se`` (absent: ``bundle.json`` holds the older
                           per-band MarginUncertainty)
    offer_response.pkl     optional: an object with ``predict(features, p_churn)``
                           ``-> pl.DataFrame`` giving ``accept_<kind>``, ``uplift_<kind>``
                           and ``complaint_saving_<kind>`` per offer kind
"""

from __future__ import annotations

import functools
import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from model.churn import ChurnModel
from model.drift import Profile
from model.uncertainty import MarginErrorModel, MarginUncertainty
from model.value import ValueModel

FORMAT, FORMAT_VERSION = "keepwise.bundle", 1
PROFILE_FILE = "feature_profile.json"
SCORE_COLUMNS = ("p_churn", "monthly_margin", "monthly_margin_se")
MARGIN_COLUMN = "monthly_margin"  # read directly when the bundle has no value model
MarginError = MarginErrorModel | MarginUncertainty
_MARGIN_ERROR_FOLDER = "margin_error"


class OfferResponse(Protocol):
    """Predicts, per offer kind, the acceptance probability and the effects if accepted
    (``accept_<kind>``, ``uplift_<kind>``, optionally ``complaint_saving_<kind>``); given the
    customers' churn risk, it can express a relative churn reduction as ``uplift_<kind>``."""

    def predict(
        self, features: pl.DataFrame, p_churn: np.ndarray | None = None
    ) -> pl.DataFrame: ...


def _offer_records(
    model: OfferResponse, records: Sequence[Mapping[str, Any]], p_churn: Sequence[float]
) -> Mapping[str, Sequence[Any]]:
    """Offer-response estimates for records; a model without a records path scores a frame."""
    if hasattr(model, "predict_records"):
        return model.predict_records(records, p_churn)
    frame = model.predict(
        pl.DataFrame(list(records), infer_schema_length=None), np.asarray(p_churn)
    )
    return {name: frame[name].to_list() for name in frame.columns if name != "customer_id"}


class BundleError(ValueError):
    """A bundle folder is missing, of another format, or cannot score the given frame."""


@dataclass(frozen=True)
class ModelBundle:
    """Everything needed to score customers.

    Attributes:
        churn: calibrated churn model (probability of churn within the horizon).
        value: expected monthly net margin while the relationship continues; None for data
            that carry the margin themselves (a wide table's ``monthly_margin`` column, taken
            as known: its standard error is the uncertainty's single band, 0 by default).
        margin_uncertainty: ``monthly_margin_se``: per customer (:class:`MarginErrorModel`) or,
            in older bundles and for a margin given as data, per forecast band.
        horizon_days: the horizon both models were trained for.
        offer_response: optional per-offer acceptance and uplift; None -> policy priors.
        summary: training facts (data fingerprint, dates, metrics) for the API and MLflow.
        feature_profile: the distribution of every model feature on the holdout snapshot (the
            newest population the model was judged on), the reference of the batch run's
            drift check; None for bundles trained before drift checks existed.
    """

    churn: ChurnModel
    value: ValueModel | None
    margin_uncertainty: MarginError
    horizon_days: int
    offer_response: OfferResponse | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    feature_profile: Profile | None = None

    @property
    def feature_columns(self) -> list[str]:
        """Every feature column any component reads, in first-seen order."""
        return list(self._feature_columns)

    @functools.cached_property
    def _feature_columns(self) -> tuple[str, ...]:
        # computed once: the API checks every request's records against it
        value_columns = self.value.input_columns if self.value else [MARGIN_COLUMN]
        error_columns = self.margin_uncertainty.feature_columns
        return tuple(dict.fromkeys([*self.churn.feature_columns, *value_columns, *error_columns]))

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """Score feature rows: churn probability, monthly margin and its standard error, offers.

        Args:
            features: one row per customer with ``customer_id`` and the feature columns.

        Returns:
            ``customer_id``, ``p_churn``, ``monthly_margin``, ``monthly_margin_se`` and, when an
            offer-response model is bundled, ``accept_<kind>`` / ``uplift_<kind>`` columns.

        Raises:
            BundleError: required columns are missing.
        """
        self._check_columns(features)
        return self._scores(features, self.churn.predict_proba(features))

    def score_and_churn_leaves(
        self, features: pl.DataFrame
    ) -> tuple[pl.DataFrame, np.ndarray | None]:
        """:meth:`score`, and the churn model's leaves the churn scores were summed from (for
        :meth:`model.churn.ChurnModel.contributions_of_leaves`; see
        :meth:`model.churn.ChurnModel.predict_proba_and_leaves`). The same scores.

        Returns:
            :meth:`score`'s frame, and ``(rows, trees)`` leaf indices or None.

        Raises:
            BundleError: required columns are missing.
        """
        self._check_columns(features)
        p_churn, leaves = self.churn.predict_proba_and_leaves(features)
        return self._scores(features, p_churn), leaves

    def _check_columns(self, features: pl.DataFrame) -> None:
        missing = [c for c in ["customer_id", *self.feature_columns] if c not in features.columns]
        if missing:
            raise BundleError(
                f"the feature rows lack {len(missing)} column(s) the model needs: "
                f"{', '.join(missing[:10])}"
            )

    def _scores(self, features: pl.DataFrame, p_churn: np.ndarray) -> pl.DataFrame:
        """:meth:`score`'s frame, given the churn probabilities."""
        margin = (
            self.value.predict(features)
            if self.value is not None
            else features[MARGIN_COLUMN].cast(pl.Float64).to_numpy()
        )
        scores = pl.DataFrame(
            {
                "customer_id": features["customer_id"],
                "p_churn": p_churn,
                "monthly_margin": margin,
                "monthly_margin_se": self.margin_uncertainty.standard_errors(features, margin),
            }
        )
        if self.offer_response is not None:
            offers = self.offer_response.predict(features, scores["p_churn"].to_numpy())
            scores = pl.concat([scores, offers.drop("customer_id", strict=False)], how="horizontal")
        return scores

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`score` for records (one mapping per customer): the online path, no frames.

        Returns:
            Per record, in order, the columns of :meth:`score` as a dict (the same numbers).

        Raises:
            BundleError: A record lacks a column the models need.
        """
        needed = ["customer_id", *self.feature_columns]
        for i, record in enumerate(records):
            if missing := [c for c in needed if c not in record]:
                raise BundleError(
                    f"feature record {i} lacks {len(missing)} column(s) the model needs: "
                    f"{', '.join(missing[:10])}"
                )
        if not records:
            return []
        if self.value is not None:
            margin = self.value.predict_records(records)
        else:
            margin = np.array(
                [np.nan if r[MARGIN_COLUMN] is None else float(r[MARGIN_COLUMN]) for r in records]
            )
        columns: dict[str, Sequence[Any]] = {
            "p_churn": self.churn.predict_proba_records(records).tolist(),
            "monthly_margin": margin.tolist(),
            "monthly_margin_se": self.margin_uncertainty.standard_errors_records(
                records, margin
            ).tolist(),
        }
        if self.offer_response is not None:
            columns.update(_offer_records(self.offer_response, records, columns["p_churn"]))
        return [
            {"customer_id": record["customer_id"], **{k: v[i] for k, v in columns.items()}}
            for i, record in enumerate(records)
        ]

    def save(self, folder: Path | str) -> Path:
        """Write the bundle into ``folder`` (created); returns the folder."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        self.churn.save(root / "churn")
        if self.value is not None:
            self.value.save(root / "value")
        if self.offer_response is not None:
            (root / "offer_response.pkl").write_bytes(pickle.dumps(self.offer_response))
        if isinstance(self.margin_uncertainty, MarginErrorModel):
            self.margin_uncertainty.save(root / _MARGIN_ERROR_FOLDER)
            margin_error: dict[str, Any] = {"kind": "per_customer", "folder": _MARGIN_ERROR_FOLDER}
        else:
            margin_error = {"kind": "bands", **self.margin_uncertainty.to_dict()}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "horizon_days": self.horizon_days,
            "feature_columns": self.feature_columns,
            "margin_uncertainty": margin_error,
            "summary": dict(self.summary),
        }
        (root / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        if self.feature_profile is not None:
            (root / PROFILE_FILE).write_text(json.dumps(self.feature_profile.to_dict()))
        return root

    @classmethod
    def load(cls, folder: Path | str) -> ModelBundle:
        """Read a bundle written by :meth:`save`.

        Raises:
            BundleError: the folder is not a keepwise bundle of a supported version.
        """
        root = Path(folder)
        meta_path = root / "bundle.json"
        if not meta_path.is_file():
            raise BundleError(f"{root} is not a keepwise model bundle (no bundle.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{root} holds {meta.get('format')} v{meta.get('format_version')}"
                f", this keepwise reads {FORMAT} v{FORMAT_VERSION}"
            )
        offers_path = root / "offer_response.pkl"
        offer_response = pickle.loads(offers_path.read_bytes()) if offers_path.exists() else None
        return cls(
            churn=ChurnModel.load(root / "churn"),
            value=ValueModel.load(root / "value") if (root / "value").is_dir() else None,
            margin_uncertainty=_load_margin_error(root, meta["margin_uncertainty"]),
            horizon_days=int(meta["horizon_days"]),
            offer_response=offer_response,
            summary=meta.get("summary", {}),
            feature_profile=(
                Profile.from_dict(json.loads((root / PROFILE_FILE).read_text()))
                if (root / PROFILE_FILE).is_file()
                else None
            ),
        )


def _load_margin_error(root: Path, meta: Mapping[str, Any]) -> MarginError:
    """The bundle's margin error: per customer (a folder) or per band (older bundles)."""
    if meta.get("kind") == "per_customer":
        return MarginErrorModel.load(root / str(meta["folder"]))
    return MarginUncertainty.from_dict(meta)
