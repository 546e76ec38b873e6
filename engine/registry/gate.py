"""The promotion gate: may the challenger replace the champion? Statistics, not one number.

Both models are scored on the same rows: the test split (the latest label times up to
``train.until``, never searched on) of the challenger's snapshot, less the rows the champion
trained on. A champion retrained with newer labels (``insight monitor``'s retrain lifts
``train.until``) has seen rows that are in an older challenger's test split: comparing on
those would favour it. With time splits the champion saw label times before its own
``test_time`` (tagged on the version), so only test rows at or after it count; when fewer
than ``min_test_rows`` remain, the gate fails and says why. Checks, from ``train.gate`` in
the project file:

1. AUC, non-inferiority: the lower bound of the paired bootstrap CI of
   AUC(challenger) - AUC(champion) on the same rows is >= ``-auc_margin``. (Pairing matters:
   two models scored on the same rows share most of their sampling noise, so comparing the
   challenger's own CI bound with the champion's point AUC would reject a retrain of equal
   quality whenever the CI is wider than the margin, e.g. always on a small test split.)
2. Fairness, per sensitive attribute: the challenger's differential (``fairness_metric``)
   exceeds the champion's by at most ``max_fairness_shift`` (5 points by default).
3. Uplift, when both versions carry a Qini AUC: the challenger's upper bound >= the
   champion's estimate (not worse beyond its CI).

No champion yet: the challenger must beat the class prior (its AUC interval above 0.5) and
the best single feature (a paired interval of the AUC difference above 0) on its test rows
(engine.registry.baseline; ``beat_baselines: false`` turns this off). Only a pass promotes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from engine.config.project import ProjectConfig
from engine.kernels.metrics import paired_auc_difference
from engine.registry import models
from engine.registry.card import evaluate, load_card, scores_on_test
from engine.train.dataset import TrainingSet
from engine.workspace import Workspace


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateResult:
    model: str
    challenger: str
    champion: str | None
    checks: list[Check]
    promoted: bool = False

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def run_gate(cfg: ProjectConfig, ws: Workspace, *, promote: bool = True) -> GateResult:
    from engine.features import snapshot as snap
    from engine.train.dataset import load_training_set

    g = cfg.train.gate
    name = cfg.train.model_name
    ch = models.resolve(name, "challenger")
    champ = models.try_resolve(name, "champion")
    if champ is None:
        res = GateResult(name, ch.version, None, _floor(cfg, ws, ch))
    elif champ.version == ch.version:
        res = GateResult(
            name,
            ch.version,
            champ.version,
            [Check("challenger differs", False, f"v{ch.version} is already the champion")],
        )
    else:
        ts = load_training_set(cfg, snap.find(ws, cfg.name, ch.tags.get("snapshot_id")), ws=ws)
        ts, overlap = unseen_by(champ, ts)
        y_all = ts.test[ts.label].to_numpy(dtype=np.float64)
        if len(ts.test) < g.min_test_rows or len(np.unique(y_all)) < 2:
            return GateResult(
                name,
                ch.version,
                champ.version,
                [
                    Check(
                        "unseen test rows",
                        False,
                        f"{overlap or 'the test split'}: {len(ts.test)} row(s) left, "
                        f"{'both classes' if len(np.unique(y_all)) == 2 else 'one class'}; "
                        f"need {g.min_test_rows} with both classes to compare fairly. Fix: "
                        "wait for newer labels (a later train.until), or compare on them "
                        "with `insight models gate` after they arrive",
                        {"rows": len(ts.test), "overlap": overlap},
                    )
                ],
            )
        sc_a, sc_b = models.load_scorer(ch), models.load_scorer(champ)
        p_a, p_b = scores_on_test(sc_a, ts), scores_on_test(sc_b, ts)
        opts: dict[str, Any] = {"n_boot": g.n_boot, "seed": cfg.train.seed}
        a = evaluate(sc_a, ts, cfg, scores=p_a, **opts)
        b = evaluate(sc_b, ts, cfg, scores=p_b, **opts)
        d = paired_auc_difference(y_all, p_a, p_b, alpha=g.alpha, **opts)
        checks = [
            Check(
                "auc",
                d.low >= -g.auc_margin,
                f"challenger AUC {a['auc']['estimate']:.4f} vs champion "
                f"{b['auc']['estimate']:.4f}: difference {d.estimate:+.4f} (paired CI "
                f"{d.low:+.4f}..{d.high:+.4f}); need CI low >= -{g.auc_margin}"
                + (f"; {overlap}" if overlap else ""),
                {
                    "challenger": a["auc"],
                    "champion": b["auc"],
                    "difference": d._asdict(),
                    "margin": g.auc_margin,
                    "rows": len(ts.test),
                    "overlap": overlap,
                },
            )
        ]
        for attr in a["fairness"]:
            va = a["fairness"][attr][g.fairness_metric]["value"]
            vb = b["fairness"].get(attr, {}).get(g.fairness_metric, {}).get("value", va)
            if va is None or vb is None:
                checks.append(
                    Check(
                        f"fairness:{attr}",
                        True,
                        f"{g.fairness_metric} on '{attr}' is undefined on the test split "
                        "(a group lacks the class it needs): not compared",
                    )
                )
                continue
            checks.append(
                Check(
                    f"fairness:{attr}",
                    va - vb <= g.max_fairness_shift,
                    f"{g.fairness_metric} on '{attr}': challenger {va:.4f} vs champion "
                    f"{vb:.4f} (moves {va - vb:+.4f}; limit +{g.max_fairness_shift})",
                    {"challenger": va, "champion": vb, "limit": g.max_fairness_shift},
                )
            )
        if g.qini_not_worse:
            qa, qb = _qini(ch), _qini(champ)
            if qa is not None and qb is not None:
                checks.append(
                    Check(
                        "qini",
                        qa["high"] >= qb["estimate"],
                        f"challenger Qini {qa['estimate']:.4f} (CI high {qa['high']:.4f}) vs "
                        f"champion {qb['estimate']:.4f}",
                        {"challenger": qa, "champion": qb},
                    )
                )
        res = GateResult(name, ch.version, champ.version, checks)
        _tag_paired(name, ch.version, champ.version, a, b, d, len(ts.test))
    if promote and res.passed:
        models.promote(name, ch.version, reason="gate passed")
        res.promoted = True
    return res


def _tag_paired(
    name: str, version: str, vs: str, a: dict[str, Any], b: dict[str, Any], d: Any, rows: int
) -> None:
    """The gate's paired comparison on the version, for the report's model timeline (test
    AUCs of versions come from different test splits; this one is on the same rows)."""
    import json

    from mlflow.tracking import MlflowClient

    MlflowClient().set_model_version_tag(
        name,
        version,
        "gate_paired_auc",
        json.dumps(
            {
                "vs": vs,
                "rows": rows,
                "challenger": a["auc"]["estimate"],
                "champion": b["auc"]["estimate"],
                "difference": d._asdict(),
            }
        ),
    )


def _floor(cfg: ProjectConfig, ws: Workspace, ch: models.ModelRef) -> list[Check]:
    """The first model's gate: no champion to compare with, so it must beat the class prior
    and the best single feature on its own test rows (engine.registry.baseline)."""
    from engine.features import snapshot as snap
    from engine.registry.baseline import baselines, describe
    from engine.train.dataset import load_training_set

    g = cfg.train.gate
    checks = [Check("champion exists", True, "no champion yet: the challenger is the first")]
    if not g.beat_baselines:
        return [*checks, Check("baselines", True, "train.gate.beat_baselines is off: not compared")]
    b = _card_baselines(ch, g.baseline_rule)
    if b is None:  # a card from before baselines: measure them on the same test rows
        ts = load_training_set(cfg, snap.find(ws, cfg.name, ch.tags.get("snapshot_id")), ws=ws)
        p = scores_on_test(models.load_scorer(ch), ts)
        refit = cfg.train.refit and cfg.train.backend == "tune"
        b = baselines(
            ts,
            p,
            refit=refit,
            n_boot=g.n_boot,
            alpha=g.alpha,
            seed=cfg.train.seed,
            rule=g.baseline_rule,
        )
    text = describe(b)
    checks.append(Check("beats class prior", b["class_prior"]["beaten"], text[0], b["class_prior"]))
    f = b["best_single_feature"]
    if f is not None:
        name = "better than" if g.baseline_rule == "better" else "not worse than"
        checks.append(Check(f"{name} best single feature", f["beaten"], text[1], f))
    return checks


def _card_baselines(ch: models.ModelRef, rule: str) -> dict[str, Any] | None:
    """The baselines the card measured on the challenger's test rows (the same rows the
    gate would score again), judged by ``rule``; None when the card has none."""
    try:
        b = load_card(ch.run_id).get("baselines")
    except Exception:
        return None
    if not b:
        return None
    f = b.get("best_single_feature")
    if f is not None:
        if "not_worse" not in f:
            return None
        f = {**f, "rule": rule, "beaten": f["better"] if rule == "better" else f["not_worse"]}
    return {**b, "best_single_feature": f}


def unseen_by(champ: models.ModelRef, ts: TrainingSet) -> tuple[TrainingSet, str | None]:
    """The challenger's training set with only the test rows the champion never trained on,
    and what was dropped (None when nothing was)."""
    seen = champ.tags.get("test_time")
    if ts.split != "time" or ts.time_col is None or champ.tags.get("split") != "time":
        if champ.tags.get("snapshot_id") == ts.snapshot_id:
            return ts, None  # same snapshot, same seeded split: the same test rows
        return ts, (
            "a random split: which of these rows the champion trained on is not known "
            "(its snapshot differs)"
        )
    if not seen or seen in ("None", "NaT"):
        return ts, None
    cut = pd.Timestamp(seen)
    t = pd.to_datetime(ts.test[ts.time_col])
    if t.dt.tz is not None and cut.tzinfo is None:
        cut = cut.tz_localize("UTC")
    elif t.dt.tz is None and cut.tzinfo is not None:
        cut = cut.tz_convert("UTC").tz_localize(None)
    keep = ts.test[(t >= cut).to_numpy()]
    if len(keep) == len(ts.test):
        return ts, None
    return replace(ts, test=keep), (
        f"{len(ts.test) - len(keep)} of {len(ts.test)} test rows have label times before "
        f"{cut} and the champion v{champ.version} trained on them: compared on the "
        f"{len(keep)} rows neither has seen"
    )


def _qini(ref: models.ModelRef) -> dict[str, Any] | None:
    try:
        card = load_card(ref.run_id)
    except Exception:
        return None
    u = card.get("uplift")
    return dict(u["best_qini"]) if u and u.get("best_qini", {}).get("high") is not None else None
