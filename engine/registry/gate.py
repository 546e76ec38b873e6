"""The promotion gate: may the challenger replace the champion? Statistics, not one number.

Both models are scored on the same rows: the test split (the latest label times up to
``train.until``, never searched on) of the challenger's snapshot. Checks, from
``train.gate`` in the project file:

1. AUC, non-inferiority: the lower bound of the paired bootstrap CI of
   AUC(challenger) - AUC(champion) on the same rows is >= ``-auc_margin``. (Pairing matters:
   two models scored on the same rows share most of their sampling noise, so comparing the
   challenger's own CI bound with the champion's point AUC would reject a retrain of equal
   quality whenever the CI is wider than the margin, e.g. always on a small test split.)
2. Fairness, per sensitive attribute: the challenger's differential (``fairness_metric``)
   exceeds the champion's by at most ``max_fairness_shift`` (5 points by default).
3. Uplift, when both versions carry a Qini AUC: the challenger's upper bound >= the
   champion's estimate (not worse beyond its CI).

No champion yet: the gate passes and says so. Only a pass promotes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.config import ProjectConfig
from engine.kernels.metrics import paired_auc_difference
from engine.registry import models
from engine.registry.card import evaluate, load_card, scores_on_test
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
        res = GateResult(
            name,
            ch.version,
            None,
            [Check("champion exists", True, "no champion yet: the challenger is the first")],
        )
    elif champ.version == ch.version:
        res = GateResult(
            name,
            ch.version,
            champ.version,
            [Check("challenger differs", False, f"v{ch.version} is already the champion")],
        )
    else:
        ts = load_training_set(cfg, snap.find(ws, cfg.name, ch.tags.get("snapshot_id")))
        sc_a, sc_b = models.load_scorer(ch), models.load_scorer(champ)
        p_a, p_b = scores_on_test(sc_a, ts), scores_on_test(sc_b, ts)
        opts: dict[str, Any] = {"n_boot": g.n_boot, "seed": cfg.train.seed}
        a = evaluate(sc_a, ts, cfg, scores=p_a, **opts)
        b = evaluate(sc_b, ts, cfg, scores=p_b, **opts)
        y = ts.test[ts.label].to_numpy(dtype=np.float64)
        d = paired_auc_difference(y, p_a, p_b, alpha=g.alpha, **opts)
        checks = [
            Check(
                "auc",
                d.low >= -g.auc_margin,
                f"challenger AUC {a['auc']['estimate']:.4f} vs champion "
                f"{b['auc']['estimate']:.4f}: difference {d.estimate:+.4f} (paired CI "
                f"{d.low:+.4f}..{d.high:+.4f}); need CI low >= -{g.auc_margin}",
                {
                    "challenger": a["auc"],
                    "champion": b["auc"],
                    "difference": d._asdict(),
                    "margin": g.auc_margin,
                    "rows": len(ts.test),
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
    if promote and res.passed:
        models.promote(name, ch.version, reason="gate passed")
        res.promoted = True
    return res


def _qini(ref: models.ModelRef) -> dict[str, Any] | None:
    try:
        card = load_card(ref.run_id)
    except Exception:
        return None
    u = card.get("uplift")
    return dict(u["best_qini"]) if u and u.get("best_qini", {}).get("high") is not None else None
