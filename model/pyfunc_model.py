"""The MLflow pyfunc face of a keepwise model bundle (logged as "models from code").

``mlflow.pyfunc.load_model("models:/keepwise@champion").predict(features)`` takes a pandas
frame of feature rows (``customer_id`` plus the feature columns, as written by
``keepwise features``) and returns ``ModelBundle.score`` as a pandas frame. Spark's
``mlflow.pyfunc.spark_udf`` scores through the same class.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
import polars as pl
from mlflow.pyfunc import PythonModel, PythonModelContext

from model.bundle import ModelBundle


class KeepwiseModel(PythonModel):
    """Loads the bundle artifact once; scores pandas frames."""

    bundle: ModelBundle

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        features = pl.from_pandas(model_input)
        return self.bundle.score(features).to_pandas()


mlflow.models.set_model(KeepwiseModel())
