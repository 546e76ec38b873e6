"""Request and response models of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, float | int | None]] = Field(
        min_length=1, description="Feature values by name, one mapping per row."
    )


class Prediction(BaseModel):
    score: float = Field(description="Probability of the positive class.")
    decision: bool = Field(description="score >= threshold")


class PredictResponse(BaseModel):
    model: str
    version: str
    threshold: float
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    features: list[str]
    snapshot_id: str | None
    threshold: float
