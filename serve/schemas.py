"""Request and response models of the HTTP API.

A feature value is a JSON number, boolean or string, or null. For a numeric feature a
string must read as a number (a CSV row's "29.85"; a blank is null) and a boolean is 1/0;
a categorical feature takes text. Anything else is a 422 naming the field (serve/inputs.py);
unknown top-level fields are rejected.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

Value = StrictBool | StrictFloat | StrictInt | StrictStr | None
Key = StrictStr | StrictInt


class PredictRequest(BaseModel):
    """Either ``rows`` (feature values by name) or ``entities`` (ids looked up in the online
    feature table). ``ids`` optionally names the entity of each row: it makes the
    champion/challenger split sticky for ``rows`` requests and is what the audit log keeps."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"rows": [{"feature": 1.0}]}, {"entities": ["C000001"]}],
        },
    )
    rows: list[dict[str, Value]] | None = Field(
        default=None, min_length=1, description="Feature values by name, one mapping per row."
    )
    entities: list[Key] | None = Field(
        default=None, min_length=1, description="Entity ids to look up in the online table."
    )
    ids: list[Key] | None = Field(
        default=None, min_length=1, description="Entity id per row of `rows` (optional)."
    )

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.rows is None) == (self.entities is None):
            raise ValueError("send exactly one of 'rows' or 'entities'")
        if self.ids is not None:
            if self.rows is None:
                raise ValueError("'ids' goes with 'rows'; 'entities' are their own ids")
            if len(self.ids) != len(self.rows):
                raise ValueError(f"'ids' has {len(self.ids)} items for {len(self.rows)} rows")
        return self


class Prediction(BaseModel):
    score: float | None = Field(
        description="Probability of the positive class; null where the decision was withheld."
    )
    decision: bool | None = Field(description="score >= threshold; null where withheld.")
    version: str | None = Field(description="Model version that answered this row.")
    id: str | None = Field(
        default=None,
        description="The row's entity id: from `ids`, `entities` or the row's key field.",
    )
    withheld: str | None = Field(
        default=None,
        description='Why no automated decision was made for this row (e.g. "no consent on '
        "record for 'profiling'\"): the subject has not consented to the purpose the model "
        "serves. The row was not scored; the refusal is in the audit log.",
    )


class PredictResponse(BaseModel):
    request_id: str
    model: str
    threshold: float
    predictions: list[Prediction]


class Explained(BaseModel):
    score: float
    version: str
    base_value: float = Field(description="The model's output before any feature is known.")
    output: str = Field(
        default="log_odds",
        description="The space base_value and shap add up in: 'log_odds' (base + sum = "
        "logit(score)) or 'probability' (base + sum = score).",
    )
    shap: dict[str, float] = Field(description="Contribution per feature, in `output` space.")


class ExplainResponse(BaseModel):
    request_id: str
    model: str
    explanations: list[Explained]


class Deployed(BaseModel):
    role: str
    version: str
    features: list[str]
    categorical: dict[str, list[str]] = Field(
        default_factory=dict, description="Categorical features and the values the model knows."
    )
    snapshot_id: str | None
    family: str


class ModelsResponse(BaseModel):
    name: str
    threshold: float
    challenger_percent: float
    shadow: bool
    generation: int
    models: list[Deployed]


class TrafficChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    challenger_percent: float | None = Field(default=None, ge=0, le=100)
    shadow: bool | None = None
    challenger: StrictStr | None = Field(
        default=None, description="Registry version or alias to serve as challenger."
    )
