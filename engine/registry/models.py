"""The model registry (MLflow): registering search winners, aliases, loading by alias.

Aliases: ``challenger`` (newest trained), ``champion`` (serving), ``previous`` (the champion
before the current one). Every promotion is appended to the registered model's
``champion_history`` tag, so ``rollback`` can restore the prior champion in one step, and
again for the one before.

How a model is logged and loaded is its family's business (``engine.train.families``).
The engine always scores through :class:`engine.train.families.Scorer` (probabilities),
and applies the decision threshold explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.errors import StateError

ALIASES = ("champion", "challenger", "previous")
SCHEMA_ARTIFACT = "model_schema/input_schema.json"


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    alias: str | None
    run_id: str
    features: list[str]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def family(self) -> str:
        return self.tags.get("family", "xgboost")


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def example_rows(x: Any, categorical: list[str]) -> Any:
    """Three rows of the inputs' shape that are nobody's: numbers at the quartiles rounded
    to two significant digits, each category column at its most common value. MLflow keeps
    the input example with the model; real rows there would be personal data an erasure
    has to find (engine.governance.erase)."""
    import numpy as np
    import pandas as pd

    out: dict[str, list[Any]] = {}
    for c in x.columns:
        col = x[c]
        if c in categorical or not pd.api.types.is_numeric_dtype(col):
            top = col.dropna().astype(str).mode()
            out[c] = [str(top.iloc[0]) if len(top) else None] * 3
            continue
        q = col.astype(float).quantile([0.25, 0.5, 0.75]).to_numpy()
        vals = [
            float(f"{v:.2g}") if np.isfinite(v) else None for v in q
        ]  # 2 significant digits: 1375.09 -> 1400.0
        out[c] = vals
    return pd.DataFrame(out, columns=list(x.columns)).astype(
        {
            c: x[c].dtype
            for c in x.columns
            if c not in categorical and pd.api.types.is_float_dtype(x[c])
        }
    )


def register_model(
    *,
    model_name: str,
    scorer: Any,
    x_example: Any,
    tags: dict[str, str],
    alias: str,
) -> ModelRef:
    """Log ``scorer`` (a family's Scorer) in the active MLflow run with its signature and an
    input example, register it and point ``alias`` at the new version."""
    from mlflow.models import infer_signature

    from engine.train.families import family as get_family

    family = str(scorer.family)
    fam = get_family(family)
    features = list(scorer.features)
    if list(x_example.columns) != features:
        raise ValueError(f"x_example columns {list(x_example.columns)} != features {features}")
    proba = scorer.proba(x_example)
    # The signature shows categorical inputs as text, as a client sends them.
    shown = scorer.schema.frame(x_example).astype({c: object for c in scorer.schema.categorical})
    info = fam.log_model(
        scorer,
        name="model",
        signature=infer_signature(shown, proba),
        input_example=example_rows(shown, scorer.schema.categorical),
        registered_model_name=model_name,
    )
    client = _client()
    client.log_text(str(info.run_id), scorer.schema.to_json(), SCHEMA_ARTIFACT)
    version = str(info.registered_model_version)
    all_tags = {
        **tags,
        "family": family,
        "features": json.dumps(features),
        "categorical": json.dumps(scorer.schema.categorical),
    }
    for k, v in all_tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    client.set_registered_model_alias(model_name, alias, version)
    return ModelRef(model_name, version, alias, info.run_id or "", features, all_tags)


def load_schema(ref: ModelRef) -> Any:
    """The model's input schema (logged beside it); all-numeric for models logged before
    schemas were."""
    import mlflow

    from engine.train.schema import InputSchema

    try:
        text = mlflow.artifacts.load_text(f"runs:/{ref.run_id}/{SCHEMA_ARTIFACT}")
    except Exception:  # an older model: numbers only
        return InputSchema.numeric(ref.features)
    return InputSchema.from_json(text)


def _ref(name: str, mv: Any, alias: str | None) -> ModelRef:
    tags = dict(mv.tags)
    if "features" not in tags:
        raise StateError(
            f"version {mv.version} of '{name}' was not registered by Insight Engine (it has "
            "no 'features' tag), so its inputs are unknown. Fix: register models with "
            "`insight train`, or point train.model_name at another name."
        )
    return ModelRef(
        name, str(mv.version), alias, mv.run_id or "", json.loads(tags["features"]), tags
    )


def resolve(name: str, alias: str) -> ModelRef:
    from mlflow.exceptions import MlflowException

    try:
        mv = _client().get_model_version_by_alias(name, alias)
    except MlflowException:
        raise StateError(
            f"no model '{name}' with alias '{alias}' in the registry. "
            "Fix: run `insight train` first (or check train.model_name)."
        ) from None
    return _ref(name, mv, alias)


def get_version(name: str, version: str) -> ModelRef:
    from mlflow.exceptions import MlflowException

    try:
        mv = _client().get_model_version(name, version)
    except MlflowException:
        try:
            known = [r["version"] for r in list_versions(name)]
        except StateError:
            known = []
        raise StateError(
            f"model '{name}' has no version '{version}' (versions: "
            f"{', '.join(known) or 'none registered'}). Fix: pass one of them "
            "(`insight models list`)."
        ) from None
    return _ref(name, mv, None)


def find(name: str, alias_or_version: str) -> ModelRef:
    """``champion``/``challenger``/``previous`` or a version number."""
    if alias_or_version.isdigit():
        return get_version(name, alias_or_version)
    return resolve(name, alias_or_version)


def try_resolve(name: str, alias: str) -> ModelRef | None:
    try:
        return resolve(name, alias)
    except StateError:
        return None


def list_versions(name: str) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise StateError(f"no registered model '{name}'. Fix: run `insight train` first.") from None
    by_version: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        by_version.setdefault(str(v), []).append(alias)
    out = []
    for mv in client.search_model_versions(f"name='{name}'"):
        t = dict(mv.tags)
        out.append(
            {
                "version": str(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "family": t.get("family", ""),
                "test_auc": t.get("test_auc", ""),
                "valid_auc": t.get("valid_auc", ""),
                "snapshot_id": t.get("snapshot_id", ""),
                "created": mv.creation_timestamp,
                "run_id": mv.run_id or "",
                "tags": t,
            }
        )
    return sorted(out, key=lambda r: int(r["version"]), reverse=True)


def _history(name: str) -> list[str]:
    rm = _client().get_registered_model(name)
    return list(json.loads((rm.tags or {}).get("champion_history", "[]")))


def promote(name: str, version: str, reason: str = "") -> dict[str, str | None]:
    """Make ``version`` the champion; the old champion becomes ``previous``."""
    client = _client()
    get_version(name, version)  # exists?
    old = try_resolve(name, "champion")
    if old is not None and old.version == version:
        raise StateError(f"version {version} of '{name}' is already the champion.")
    hist = [*_history(name), version]
    client.set_registered_model_tag(name, "champion_history", json.dumps(hist))
    client.set_registered_model_alias(name, "champion", version)
    if old is not None:
        client.set_registered_model_alias(name, "previous", old.version)
    client.set_model_version_tag(name, version, "promoted_reason", reason or "manual")
    return {"champion": version, "previous": old.version if old else None}


def rollback(name: str) -> dict[str, str | None]:
    """Restore the prior champion: one step back in ``champion_history``."""
    client = _client()
    hist = _history(name)
    if len(hist) < 2:
        raise StateError(
            f"'{name}' has no earlier champion to roll back to (history: {hist or 'empty'})."
        )
    demoted, restored = hist[-1], hist[-2]
    hist = hist[:-1]
    client.set_registered_model_tag(name, "champion_history", json.dumps(hist))
    client.set_registered_model_alias(name, "champion", restored)
    if len(hist) >= 2:
        client.set_registered_model_alias(name, "previous", hist[-2])
    else:
        client.delete_registered_model_alias(name, "previous")
    client.set_model_version_tag(name, demoted, "rolled_back", "true")
    return {
        "champion": restored,
        "demoted": demoted,
        "previous": hist[-2] if len(hist) >= 2 else None,
    }


_SCORERS: dict[tuple[str, str, str, str], Any] = {}


def load_scorer(ref: ModelRef) -> Any:
    """The model behind ``ref`` as its family's Scorer (probabilities of the positive class).
    A registered version never changes, so a process loads it once per registry (a warm
    `insight score` or a long-lived job does not re-read it from MLflow)."""
    import mlflow

    from engine.train.families import family

    key = (mlflow.get_registry_uri(), ref.name, ref.version, ref.run_id)
    hit = _SCORERS.get(key)
    if hit is None:
        hit = family(ref.family).load_logged(ref.uri, load_schema(ref))
        if len(_SCORERS) >= 8:
            _SCORERS.pop(next(iter(_SCORERS)))
        _SCORERS[key] = hit
    return hit
