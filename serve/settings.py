"""The one typed settings model of the Serve app, shared by the side that deploys it
(serve.deploy, the Serve config YAML) and the replicas (serve.app).

Defaults come from the project file's ``serve:`` block (:class:`engine.config.ServeConfig`)
so they cannot drift apart (they once did: ``max_ongoing_requests`` was 16 in the
deployment decorator and 128 in the config).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.config.project import AutoscalingConfig, ServeConfig
from serve.inputs import RowFields

_D = ServeConfig()


class ConsentServing(BaseModel):
    """What a replica checks before an automated decision: consent to these purposes, from
    the project's consent source (if any) and the workspace's consent log
    (engine.governance.live), as the policy of this version decided at deploy time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purposes: list[str] = Field(min_length=1)
    policy_version: str
    consent: dict[str, Any] | None = Field(
        default=None, description="governance.consent of the project file (None: log only)."
    )
    source_name: str | None = None
    source: dict[str, Any] | None = Field(default=None, description="That source's config.")


class ServeSettings(BaseModel):
    """Everything a replica needs; ``serve run``/``serve deploy`` pass it as the app's args."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str = Field(description="MLflow tracking + registry URI.")
    model: str = Field(description="Registered model name.")
    audit_dir: str = Field(description="Folder of this app's audit segments.")
    rollout_path: str = Field(description="File the rollout state is persisted in.")
    workspace: str | None = Field(default=None, description="Workspace root (PII key).")
    app: str = "insight"
    champion_alias: str = "champion"
    challenger_alias: str | None = "challenger"
    threshold: float = Field(default=_D.threshold, gt=0, lt=1)
    max_rows: int = Field(default=_D.max_rows_per_request, ge=1)
    online_path: str | None = None
    admin_token_sha256: str | None = Field(
        default=None, description="SHA-256 of the admin token; replicas never see the token."
    )
    tokens: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="SHA-256 of each named token -> its holder and role (viewer, reviewer, operator, "
        "admin): engine.governance.roles.",
    )
    batching: bool = _D.batching
    max_batch_size: int = Field(default=_D.max_batch_size, ge=1)
    batch_wait_timeout_s: float = Field(default=_D.batch_wait_timeout_s, ge=0)
    hash_entity_ids: bool = False
    sensitive: list[str] = Field(
        default_factory=list,
        description="Sensitive attributes logged per row from the online table (for live "
        "fairness); never model inputs.",
    )
    rows: RowFields = Field(
        default_factory=RowFields,
        description="How a row as the user's table holds it maps onto the model's inputs "
        "(serve/inputs.py).",
    )
    audit_inputs: Literal["values", "hash"] = _D.audit_inputs
    audit_fsync: bool = _D.audit_fsync
    audit_format: Literal["columnar", "jsonl"] = _D.audit_format
    challenger_percent: float = Field(default=_D.challenger_percent, ge=0, le=100)
    shadow: bool = _D.shadow
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_ongoing_requests: int = Field(default=_D.max_ongoing_requests, ge=1)
    num_cpus: float = Field(default=_D.replica_cpus, gt=0)
    consent: ConsentServing | None = Field(
        default=None,
        description="Consent checked per row before a decision (engine.governance); None: "
        "the policy asks for none.",
    )
    seal: bool = Field(
        default=False,
        description="Seal each subject's part of a record under their own key "
        "(engine.governance.seal; the key store is the workspace's).",
    )

    def deployment_options(self) -> dict[str, Any]:
        """Options of the Serve deployment (sizing, not behaviour)."""
        return {
            "autoscaling_config": self.autoscaling.model_dump(),
            "num_replicas": "auto",
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus},
        }

    @classmethod
    def parse(cls, args: dict[str, Any]) -> ServeSettings:
        """Validate app args (from a Serve config YAML, say); a ValueError names each bad
        field, the value seen and what is expected."""
        try:
            return cls.model_validate(args)
        except ValidationError as exc:
            lines = [
                f"args.{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            ]
            raise ValueError(
                "the serve app's args are invalid:\n  " + "\n  ".join(lines) + "\nFix: "
                "regenerate the config with `insight serve config`."
            ) from None
