"""Model endpoint on Ray Serve with a FastAPI ingress.

Routes: ``POST /predict``, ``GET /healthz``, ``GET /models``, OpenAPI at ``/docs``.
The model is loaded from the MLflow registry by alias; scores are probabilities from the
XGBoost Booster and the decision threshold is applied here, explicitly.
"""

# No `from __future__ import annotations` here: Serve's ingress re-binds the methods and
# FastAPI must resolve the request-model annotations at import time (else `req` becomes a
# query parameter and every /predict is a 422).
import math
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from ray import serve
from ray.serve import Application

from serve.schemas import ModelInfo, Prediction, PredictRequest, PredictResponse

api = FastAPI(title="Insight Engine", version="0.1.0")


@serve.deployment(
    name="model",
    num_replicas=1,
    max_ongoing_requests=16,
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress(api)
class ModelServer:
    def __init__(
        self, tracking_uri: str, model_name: str, alias: str, threshold: float, max_rows: int
    ) -> None:
        import mlflow

        from engine.registry.models import load_scorer, resolve

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.ref = resolve(model_name, alias)
        self.scorer = load_scorer(self.ref)  # probabilities, never class labels
        self.threshold = threshold
        self.max_rows = max_rows
        self.index = {f: i for i, f in enumerate(self.ref.features)}

    @api.get("/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok", "model": self.ref.name, "version": self.ref.version}

    @api.get("/models", response_model=list[ModelInfo])
    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name=self.ref.name,
                version=self.ref.version,
                alias=self.ref.alias or "",
                features=self.ref.features,
                snapshot_id=self.ref.tags.get("snapshot_id"),
                threshold=self.threshold,
            )
        ]

    def _matrix(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if len(rows) > self.max_rows:
            raise HTTPException(
                413,
                f"{len(rows)} rows in one request; the limit is {self.max_rows}. "
                "Fix: split the request.",
            )
        x = np.full((len(rows), len(self.index)), np.nan)
        for i, row in enumerate(rows):
            unknown = sorted(set(row) - set(self.index))
            if unknown:
                raise HTTPException(
                    422, f"rows[{i}]: unknown field(s) {unknown}; expected {self.ref.features}."
                )
            missing = [f for f in self.ref.features if f not in row]
            if missing:
                raise HTTPException(
                    422, f"rows[{i}]: missing field(s) {missing}; send null for an unknown value."
                )
            for name, v in row.items():
                if v is not None:
                    if not math.isfinite(float(v)):
                        raise HTTPException(422, f"rows[{i}].{name}: {v} is not a finite number.")
                    x[i, self.index[name]] = float(v)
        return x

    @api.post("/predict", response_model=PredictResponse)
    def predict(self, req: PredictRequest) -> PredictResponse:
        scores = self.scorer.proba(self._matrix(req.rows))
        return PredictResponse(
            model=self.ref.name,
            version=self.ref.version,
            threshold=self.threshold,
            predictions=[
                Prediction(score=float(s), decision=bool(s >= self.threshold)) for s in scores
            ],
        )


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for ``serve run serve.app:build_app tracking_uri=... model=...``."""
    return ModelServer.bind(  # type: ignore[attr-defined]
        str(args["tracking_uri"]),
        str(args["model"]),
        str(args.get("alias", "champion")),
        float(args.get("threshold", 0.5)),
        int(args.get("max_rows", 1000)),
    )
