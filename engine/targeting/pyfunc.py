"""The MLflow pyfunc face of a targeting model: ``predict`` takes customers (the campaign's
feature columns) and returns their decisions (engine.targeting.targeter)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from engine.targeting.targeter import Targeter


class TargetPyfunc(PythonModel):  # type: ignore[misc]
    def __init__(self) -> None:
        self.t: Targeter | None = None

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["targeter"], "rb") as fh:
            self.t = Targeter.loads(fh.read())

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        assert self.t is not None
        return self.t.decide(model_input[self.t.model.features])
