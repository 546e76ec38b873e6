"""``insight init --from campaign.csv --treatment segment --control "No E-Mail" --outcome
visit``: a commented targeting project inferred from a randomised campaign table (no file
is written before every check passed).

What it infers: the treatment arms (every value of the treatment column but the control),
whether the outcome is binary (two values; the positive one recognised or given) or an
amount (non-negative numbers), the customer key (a unique column named like an id), and
the features: every other column, less personal data, constant or empty columns,
identifier-like text, timestamps, and columns that leak the outcome (another outcome of
the same campaign, such as 'conversion' beside 'visit'). It then reads the table as
``insight target train`` will (the same checks: arms, outcome, rows per arm) and runs the
randomisation check: arm balance on every feature, with a warning where the table does
not look randomised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.config.target import TargetConfig
from engine.errors import ConfigError, DataError

if TYPE_CHECKING:
    from engine.data.init import DbTable


@dataclass
class CampaignPlan:
    name: str
    path: Path | DbTable
    fmt: str
    dialect: Any
    rows: int
    columns: list[Any]
    treatment: str
    control: str
    arms: list[str]
    outcome: str
    outcome_kind: str
    positive: str | None
    key: str | None
    features: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    pii: list[str] = field(default_factory=list)
    balance: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


def plan_campaign(
    path: Path | DbTable,
    treatment: str,
    control: str,
    outcome: str,
    key: str | None = None,
    positive: str | None = None,
) -> CampaignPlan:
    from engine.data.columns import ID_NAMES
    from engine.data.init import _columns, _finder, read_table, snake
    from engine.targeting import balance
    from engine.targeting.campaign import arm_text, campaign_from_frame, outcome_values

    df, fmt, dialect = read_table(path)
    if df.empty:
        raise DataError(f"'{path}' has no rows. Fix: pass a table with data.")
    cols = _columns(df, fmt, dialect.decimal)
    find = _finder(cols, path)
    tc, oc = find(treatment, "--treatment"), find(outcome, "--outcome")
    if tc.name == oc.name:
        raise ConfigError("--treatment and --outcome name the same column. Fix: two columns.")
    frame = df.rename(columns={c.raw: c.name for c in cols})
    frame = _typed(frame, cols, dialect.decimal)
    arm_vals = arm_text(frame[tc.name])
    from engine.targeting.campaign import resolve_arms

    arms = resolve_arms(arm_vals, control.strip(), [], where="--control")
    kind = _outcome_kind(frame[oc.name], oc.kind, oc.name)
    probe = TargetConfig(
        source="campaign",
        treatment=tc.name,
        control=control.strip(),
        outcome=oc.name,
        outcome_kind=kind,  # type: ignore[arg-type]
        positive=positive,
        features=["x_"],
    )
    y, _ = outcome_values(frame[oc.name], probe, option="--positive")
    pos = None
    if kind == "binary":
        from engine.data.labels import normalize

        pos_norm = frame[oc.name][y == 1].map(normalize)
        pos = str(frame[oc.name][y == 1].iloc[0]) if len(pos_norm) else positive
    kc = None
    if key is not None:
        kc = find(key, "--key").name
        if frame[kc].duplicated().any():
            n = int(frame[kc].duplicated().sum())
            raise DataError(
                f"--key '{key}' repeats in {n:,} row(s); a customer key names one row. Fix: "
                "pass a unique column, or leave --key out."
            )
    else:  # a column named like an id, unique once exact duplicate rows are dropped
        unique_rows = len(df.drop_duplicates())
        kc = next(
            (
                c.name
                for c in cols
                if ID_NAMES.search(c.name)
                and c.distinct == unique_rows
                and c.name not in (tc.name, oc.name)
            ),
            None,
        )
    p = CampaignPlan(
        name=snake(path.stem).replace("_", "-")[:60] or "campaign",
        path=path,
        fmt=fmt,
        dialect=dialect,
        rows=len(df),
        columns=cols,
        treatment=tc.name,
        control=control.strip(),
        arms=arms[1:],
        outcome=oc.name,
        outcome_kind=kind,  # type: ignore[arg-type]
        positive=pos,
        key=kc,
    )
    # leaks are judged against "acted at all" (an amount above 0 for spend)
    _classify(p, cols, df, frame, (np.nan_to_num(y) > 0).astype(np.float64))
    if not p.features:
        raise DataError(
            f"'{path.name}' has no column left to be a feature besides the treatment, the "
            f"outcome and the key ({'; '.join(f'{k}: {v}' for k, v in p.left_out.items())}). "
            "Fix: pass a table with customer attributes."
        )
    t = TargetConfig(
        source="campaign",
        treatment=tc.name,
        control=p.control,
        outcome=oc.name,
        outcome_kind=kind,  # type: ignore[arg-type]
        positive=positive,
        features=p.features,
        key=kc,
    )
    camp = campaign_from_frame(frame, t)  # the checks of `insight target train`
    p.dropped = camp.dropped
    p.balance = balance.check(camp.x, camp.arm, camp.arms)
    return p


def _classify(
    p: CampaignPlan, cols: list[Any], df: pd.DataFrame, frame: pd.DataFrame, yok: np.ndarray
) -> None:
    """Each column besides the treatment, outcome and key: a feature, or left out with why."""
    from engine.data.columns import PII_NAMES
    from engine.data.init import pii_reason
    from engine.data.leaks import leak_reason

    for c in cols:
        if c.name in (p.treatment, p.outcome, p.key):
            continue
        v = frame[c.name]
        if why := pii_reason(c, df[c.raw]):
            p.pii.append(c.name)
            p.left_out[c.name] = f"personal data ({why}): never a feature"
        elif c.non_null == 0:
            p.left_out[c.name] = "always empty"
        elif c.distinct <= 1:
            p.left_out[c.name] = "one value in every row"
        elif c.kind == "timestamp":
            p.left_out[c.name] = "a timestamp (a randomised campaign is one moment)"
        elif c.kind == "string" and c.distinct > 100 and c.distinct > 0.5 * c.non_null:
            p.left_out[c.name] = f"identifier-like text ({c.distinct:,} distinct values)"
        elif PII_NAMES.search(c.name) and c.distinct > 0.5 * c.non_null:
            p.left_out[c.name] = "named like personal data, nearly unique"
        elif (why := leak_reason(v if c.kind != "string" else v.astype("string"), yok)) is not None:
            p.left_out[c.name] = f"leaks the outcome ({why}): another outcome of the campaign?"
        else:
            p.features.append(c.name)


def _typed(frame: pd.DataFrame, cols: list[Any], decimal: str) -> pd.DataFrame:
    """CSV text cells as the inferred types (numbers, booleans), as the source reader will."""
    out = frame.copy()
    for c in cols:
        v = out[c.name]
        if c.kind in ("int", "double") and not pd.api.types.is_numeric_dtype(v.dtype):
            text = v.astype("string").str.strip()
            if decimal == ",":
                text = text.str.translate(str.maketrans(",.", ".x"))
            out[c.name] = pd.to_numeric(text, errors="coerce")
        elif c.kind == "bool" and not pd.api.types.is_bool_dtype(v.dtype):
            out[c.name] = (
                v.astype("string").str.strip().str.lower().map({"true": 1.0, "false": 0.0})
            )
    return out


def _outcome_kind(v: pd.Series, kind: str, name: str) -> str:  # binary | amount
    from engine.data.labels import normalize

    vals = {normalize(x) for x in v.dropna().tolist()} - {""}
    if len(vals) <= 2:
        return "binary"
    if kind in ("int", "double"):
        return "amount"
    shown = ", ".join(sorted(vals)[:6])
    raise DataError(
        f"--outcome '{name}' holds {len(vals)} distinct text values ({shown}, ...): neither a "
        "binary outcome (two values) nor an amount (numbers). Fix: pick the column that says "
        "whether (or how much) a customer bought or visited."
    )


def _q(v: Any) -> str:
    """A YAML scalar that reads back as the same text ('yes' would read as true)."""
    import json

    import yaml

    s = str(v)
    plain = s.replace("_", "").isalnum() and yaml.safe_load(s) == s
    return s if plain else json.dumps(s)


def render(p: CampaignPlan, out: Path) -> str:
    from engine.data.init import location_lines

    types = {c.name: c.kind for c in p.columns}
    rename = {c.raw: c.name for c in p.columns if c.raw != c.name}
    b = p.balance
    lines = [
        f"# Targeting project for {p.path.name} ({p.rows:,} rows), written by `insight init`.",
        "# Uplift: who responds to which arm, compared with the control, and whom to contact",
        "# under a budget. Edit freely, then `insight target train`.",
        f"name: {p.name}",
        "",
        "sources:",
        "  campaign:",
        *location_lines(p.path, p.fmt, out.parent),
    ]
    d = p.dialect
    if p.fmt == "csv" and d.delimiter != ",":
        lines.append(f"    delimiter: {_q(d.delimiter)}")
    if p.fmt == "csv" and d.decimal != ".":
        lines.append(f"    decimal: {_q(d.decimal)}")
    if p.fmt == "csv" and d.encoding != "utf-8":
        lines.append(f"    encoding: {d.encoding}")
    if rename:
        lines.append("    rename:   # names in the file -> names used here")
        lines += [f"      {_q(a)}: {b_}" for a, b_ in rename.items()]
    lines.append("    columns:")
    used = {p.treatment, p.outcome, *p.features} | ({p.key} if p.key else set())
    lines += [f"      {c.name}: {types[c.name]}" for c in p.columns if c.name in used]
    arms_shown = ", ".join(f"{a!r} ({n:,})" for a, n in b["arms"].items())
    lines += [
        "",
        "target:",
        "  source: campaign",
    ]
    if p.key:
        lines.append(f"  key: {p.key}")
    lines += [
        f"  treatment: {p.treatment}   # rows per arm: {arms_shown}",
        f"  control: {_q(p.control)}",
        f"  arms: [{', '.join(_q(a) for a in p.arms)}]",
        f"  outcome: {p.outcome}",
        f"  outcome_kind: {p.outcome_kind}",
    ]
    if p.outcome_kind == "binary" and p.positive is not None:
        lines.append(f"  positive: {_q(p.positive)}")
    lines.append("  features:")
    lines += [f"    - {f}" for f in p.features]
    if p.left_out:
        lines.append("  # left out:")
        lines += [f"  #   {k}: {v}" for k, v in p.left_out.items()]
    lines += [
        "  learners: [s_learner, t_learner, x_learner, dr_learner]",
        "  depths: [2, 4]",
        "  folds: 5          # cross-fitting: every row's uplift is scored out of fold",
        "  segments:",
        "    k: auto         # K-means clusters, chosen by silhouette (or a number)",
        "    tree_depth: 2   # effect-tree segments: readable rules",
        "    fdr: 0.05       # Benjamini-Hochberg across segments",
        "",
        f"# Randomisation check: {'arms balanced on every feature' if b['looks_randomised'] else 'WARNING, the arms differ'}",
        f"# ({b['rule']}).",
    ]
    for r in b["flagged"][:8]:
        lines.append(
            f"#   {r['feature']}: {r['arm']} vs control {r['measure']} {r['value']:+.3f} "
            f"(adjusted p {r['p_adjusted']:.2g})"
        )
    lines += [
        "",
        "# What a contact costs and a conversion is worth: the policy and its profit. No number",
        "# is assumed: without them customers are ranked by uplift alone (worth 1, cost 0).",
        "business:",
        "  value_per_conversion: 1.0",
        "  cost_per_contact: 0.0      # or one per arm: {"
        + ", ".join(f"{_q(a)}: 0.1" for a in p.arms)
        + "}",
        "  # budget: {contacts: 5000}   # or {money: 2000}",
        "",
        "# Live lift of the served policy (insight target monitor): the seeds' rule, a 5%",
        "# decline of the lift against what the model promised, per effect segment. Add",
        "# sinks (slack, pagerduty, email, webhook) and name them in the rule to be told.",
        "monitor:",
        "  rules:",
        "    - {name: lift-decline, statistic: target.lift_change, op: '<', threshold: -0.05,",
        "       min_rows: 40, severity: critical}",
    ]
    if p.pii:
        lines += ["", "pii: [" + ", ".join(f"campaign.{c}" for c in p.pii) + "]"]
    return "\n".join(lines) + "\n"


def write_campaign_project(p: CampaignPlan, out: Path, force: bool) -> Path:
    import yaml

    from engine.config.target import TargetProject
    from engine.workspace import atomic_write_text

    if out.exists() and not force:
        raise ConfigError(f"'{out}' exists. Fix: --out another path, or --force to replace it.")
    text = render(p, out)
    raw = yaml.safe_load(text)
    raw["base_dir"] = str(out.parent)
    TargetProject.from_dict(raw, out)  # what is written loads
    atomic_write_text(out, text)
    return out
