"""``governance:`` in a project file: where consents are recorded, which purpose each use of
the data serves, and the policy files (Rego) that decide what each read may do.

    governance:
      consent:
        source: consents          # a source of the project: one row per consent event
        subject: customer_id      # whose consent (the entity key the other sources carry)
        purpose: purpose          # e.g. model_training, profiling, marketing
        status: status            # granted | withdrawn (the values below)
        time: recorded_at         # when it was given or withdrawn
      purposes:                   # the purpose each use of the data serves
        training: model_training
        serving: profiling
        targeting: marketing
      policy: policy/             # .rego files added to the engine's own (engine/governance)
      retention: {snapshots: 365d, audit: 2555d, batch_outputs: 90d, monitor_history: 365d}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from engine.config.base import IDENT, Model

PURPOSE = r"^[a-z][a-z0-9_]*$"


class ConsentConfig(Model):
    """The consent table: one row per event (a subject granted or withdrew consent for a
    purpose at a time). A subject's consent for a purpose at time t is the status of their
    last event at or before t; no event means no consent."""

    source: str = Field(pattern=IDENT, description="The source holding the consent events.")
    subject: str = Field(description="Column with the subject's key.")
    purpose: str = Field(description="Column with the purpose consented to.")
    status: str = Field(description="Column with the event's status.")
    time: str = Field(description="Column with the event's time.")
    granted: list[str] = Field(
        default_factory=lambda: ["granted", "yes", "true", "1", "opt-in", "opt_in"],
        min_length=1,
        description="Status values that grant consent (compared case-insensitively).",
    )
    withdrawn: list[str] = Field(
        default_factory=lambda: ["withdrawn", "revoked", "no", "false", "0", "opt-out", "opt_out"],
        min_length=1,
        description="Status values that withdraw it. Any other value is an error naming it.",
    )

    @model_validator(mode="after")
    def _disjoint(self) -> ConsentConfig:
        both = {v.lower() for v in self.granted} & {v.lower() for v in self.withdrawn}
        if both:
            raise ValueError(
                f"status values {sorted(both)} are listed as both granted and withdrawn"
            )
        return self


class PurposesConfig(Model):
    """The purpose each use of personal data serves (what consent is checked for)."""

    training: str = Field(default="model_training", pattern=PURPOSE)
    serving: str = Field(default="profiling", pattern=PURPOSE)
    targeting: str = Field(default="marketing", pattern=PURPOSE)
    access: str = Field(
        default="subject_access",
        pattern=PURPOSE,
        description="A subject's access request (insight subject export): the policy's "
        "'export' use is decided for it.",
    )


class ReviewConfig(Model):
    """Which served decisions go to the human review queue (engine.governance.review)."""

    random_rate: float = Field(default=0.01, ge=0, le=1, description="Share of all rows.")
    low_confidence_band: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="|score - threshold| at most this is 'low confidence'.",
    )
    low_confidence_rate: float = Field(
        default=0.5, ge=0, le=1, description="Share of the low-confidence rows."
    )
    drift_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Share of the drift-flagged rows: an input outside the range its model "
        "version was trained on (its reference profile), or a category it never saw.",
    )
    high_impact_rate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Share of the rows whose automated decision acted (score at or above "
        "the threshold).",
    )


class ErasureConfig(Model):
    """How a subject is erased (engine.governance.erase) and how served records are kept
    erasable (engine.governance.seal). The policy may override ``retrain`` and
    ``legal_hold`` (its ``erasure`` rule)."""

    seal_audit: bool = Field(
        default=True,
        description="Encrypt each subject's part of a served record under their own key "
        "(deleted on erasure). Off: ids, inputs and scores are in the log in the clear, and "
        "an erasure cannot reach them.",
    )
    retrain: Literal["now", "next_training"] = Field(
        default="next_training",
        description="What to do with a model trained on an erased subject: 'now' asks the "
        "monitor loop for a retrain (run once, as a rule's retrain is); 'next_training' "
        "leaves it to the next scheduled training.",
    )
    legal_hold: list[str] = Field(
        default_factory=list,
        description="Snapshot ids kept as they are under a legal hold (the erased subject "
        "stays in them; the receipt says so). Others are rewritten without the subject.",
    )
    rewrite_sources: bool = Field(
        default=False,
        description="Also rewrite file sources outside the workspace without the subject "
        "(sources inside it, such as generated data, are always rewritten).",
    )


class GovernanceConfig(Model):
    consent: ConsentConfig | None = Field(
        default=None, description="Where consents are recorded (none: consent is not checked)."
    )
    purposes: PurposesConfig = Field(default_factory=PurposesConfig)
    policy: str | None = Field(
        default=None,
        description="A .rego file or a folder of them, added to the engine's own policy "
        "(relative to the project file).",
    )
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    erasure: ErasureConfig = Field(default_factory=ErasureConfig)
    retention: dict[str, str] = Field(
        default_factory=dict,
        description="Period per class of data (snapshots, audit, batch_outputs, "
        "monitor_history, labels, raw_events, mlflow_artifacts), e.g. '365d'; a class not "
        "named is kept (engine.governance.retention).",
    )
