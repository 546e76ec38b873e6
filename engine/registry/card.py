"""Model cards: data first (JSON), rendered to Markdown, stored as MLflow artifacts.

A card records what a model is and where it fails: intended use, training data and
lineage, test-split metrics with bootstrap CIs, calibration, fairness differentials per
sensitive attribute with CIs, uplift when the project has a treatment, global SHAP
importance (with a plot), and known limitations derived from the numbers.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.project import ProjectConfig
from engine.kernels.fairness import fairness
from engine.kernels.metrics import auc_bootstrap
from engine.kernels.scores import calibration, confusion, lift_top
from engine.train.dataset import TrainingSet
from engine.train.families import family

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
CARD_HTML = "model_card.html"
SHAP_PNG = "shap_importance.png"


def scores_on_test(scorer: Any, ts: TrainingSet) -> np.ndarray:
    """The model's probabilities on the test split."""
    return np.asarray(scorer.proba(ts.x("test")))


def evaluate(
    scorer: Any,
    ts: TrainingSet,
    cfg: ProjectConfig,
    *,
    n_boot: int = 300,
    seed: int = 0,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Test-split metrics of one model: the numbers a card and the gate use. ``scores``:
    the model's test-split probabilities when the caller already has them."""
    from sklearn.metrics import brier_score_loss, log_loss

    test = ts.test
    y = test[ts.label].to_numpy(dtype=np.float64)
    p = scores_on_test(scorer, ts) if scores is None else scores
    thr = cfg.serve.threshold
    a = auc_bootstrap(y, p, n_boot=n_boot, alpha=cfg.train.gate.alpha, seed=seed)
    pred = (p >= thr).astype(int)
    out: dict[str, Any] = {
        "rows": len(test),
        "positive_rate": float(y.mean()),
        "auc": {"estimate": a.estimate, "low": a.low, "high": a.high},
        "logloss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "threshold": thr,
        "accuracy_at_threshold": float((pred == y).mean()),
        "selection_rate": float(pred.mean()),
        "lift_top_decile": lift_top(y, p),
        "confusion": confusion(y, pred),
        "calibration": calibration(y, p),
        "fairness": {},
    }
    for attr in cfg.sensitive:
        if attr not in test:
            continue
        g = test[attr].astype(str).to_numpy()
        if len(set(g)) < 2:
            continue
        res: dict[str, Any] = {}
        for metric in (
            "demographic_parity_difference",
            "equal_opportunity_difference",
            "equalized_odds_difference",
        ):
            try:
                f = fairness(y.astype(int), pred, g, metric, alpha=cfg.train.gate.alpha)  # type: ignore[arg-type]
            except ValueError as exc:  # e.g. a group without positives has no TPR
                res[metric] = {"value": None, "low": None, "high": None, "undefined": str(exc)}
                continue
            res[metric] = {"value": f.value, "low": f.low, "high": f.high, "method": f.method}
            res["by_group"] = f.by_group
        out["fairness"][attr] = res
    return out


def shap_importance(scorer: Any, x: pd.DataFrame, max_rows: int = 500) -> dict[str, float]:
    """Mean |SHAP value| per feature on up to ``max_rows`` test rows, from the family's own
    explainer (the same values ``/explain`` serves)."""
    from engine.train.families import explainer_for

    sample = x.sample(min(max_rows, len(x)), random_state=0)
    imp = np.abs(explainer_for(scorer).explain(sample).values).mean(axis=0)
    return dict(sorted(zip(scorer.features, map(float, imp), strict=True), key=lambda kv: -kv[1]))


def _plot(importance: dict[str, float], path: Path, output: str = "log_odds") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(importance.items())[:15][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#3b7dd8")
    ax.set_xlabel(f"mean |SHAP value| ({output.replace('_', '-')})")
    ax.set_title("Global feature importance (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def limitations(card: dict[str, Any], cfg: ProjectConfig) -> list[str]:
    """Known limitations, stated from the card's own numbers."""
    m = card["metrics"]
    td = card["training_data"]
    out = []
    fitted = td.get("fitted_time_range")
    if fitted:
        test = (td.get("split", {}).get("ranges") or {}).get("test")
        out.append(
            f"Trained on label times {fitted[0]} to {fitted[1]}"
            + (f" and tested on {test[0]} to {test[1]}" if test else "")
            + "; behaviour after that is not measured here."
        )
    elif td["time_range"] and "fitted_time_range" not in td:  # a card written before
        out.append(
            f"Label times {td['time_range'][0]} to {td['time_range'][1]} (train, validation "
            "and test together); behaviour after that is not measured here."
        )
    else:
        out.append(
            "The labels have no time: the test rows are a random sample of the same period, "
            "so the metrics say nothing about how the model ages."
        )
    for col, why in td.get("left_out", {}).items():
        out.append(f"'{col}' is not a model input: {why}.")
    for w in td.get("warnings", []):
        out.append(f"Warning: {w}.")
    f = (card.get("baselines") or {}).get("best_single_feature") or {}
    if f and not f.get("better", True):
        d = f["difference"]
        out.append(
            f"Not shown better than '{f['feature']}' alone on the test split (AUC difference "
            f"{d['estimate']:+.4f}, CI {d['low']:+.4f}..{d['high']:+.4f}): the model may add "
            "little over that one column."
        )
    if m["rows"] < 1000:
        out.append(f"The test split is small ({m['rows']} rows): CIs are wide.")
    if m["calibration"]["ece"] > 0.05:
        out.append(
            f"Scores are not well calibrated (ECE {m['calibration']['ece']:.3f}); do not read "
            "them as probabilities without recalibration."
        )
    for attr, res in m["fairness"].items():
        dp = res["demographic_parity_difference"]
        if dp["value"] is not None and dp["value"] > cfg.train.gate.max_fairness_shift:
            out.append(
                f"Selection rates differ across '{attr}' by {dp['value']:.3f} "
                f"(CI {dp['low']:.3f}-{dp['high']:.3f}) at threshold {m['threshold']}."
            )
    if card.get("uplift") is None and cfg.treatment is not None:
        out.append("No uplift model accompanies this version.")
    return out


def build_card(
    *,
    cfg: ProjectConfig,
    ts: TrainingSet,
    scorer: Any,
    model: dict[str, Any],
    search: dict[str, Any],
    uplift: dict[str, Any] | None,
    n_boot: int = 300,
    final_fit: str = "the search's best trial (train rows only)",
) -> dict[str, Any]:
    from engine.registry.baseline import baselines

    p_test = scores_on_test(scorer, ts)
    metrics = evaluate(scorer, ts, cfg, n_boot=n_boot, seed=cfg.train.seed, scores=p_test)
    refit = cfg.train.refit and cfg.train.backend == "tune"
    floor = baselines(
        ts,
        p_test,
        refit=refit,
        n_boot=n_boot,
        alpha=cfg.train.gate.alpha,
        seed=cfg.train.seed,
        rule=cfg.train.gate.baseline_rule,
    )
    fitted = ts.fitted_range(refit)
    x_test = ts.x("test")
    card: dict[str, Any] = {
        "card_version": 1,
        "model": model,
        "intended_use": (
            f"Rank entities of project '{cfg.name}' by the chance of '{cfg.label.column}' "
            + (
                "at the label time, from point-in-time features; "
                if ts.time_col
                else "as the snapshot table describes them (its labels have no time); "
            )
            + "decisions use threshold "
            f"{cfg.serve.threshold}. Not for decisions about individuals on sensitive "
            f"attributes ({', '.join(cfg.sensitive) or 'none declared'}), which are never inputs."
        ),
        "training_data": {
            "snapshot_id": ts.snapshot_id,
            "time_range": list(ts.time_range) if ts.time_range else None,
            # the label times of the rows the registered model was fitted on, exactly
            "fitted_time_range": list(fitted) if fitted else None,
            "split": {
                "valid_from": str(ts.split_time) if ts.split_time is not None else None,
                "test_from": str(ts.test_time) if ts.test_time is not None else None,
                "rows": {p: len(ts.part(p)) for p in ("train", "valid", "test")},
                "ranges": {p: list(r) if r else None for p, r in ts.ranges().items()},
                "horizon": ts.horizon,
                "purged": ts.purged,
                "how": ts.describe_split(),
            },
            "warnings": ts.warnings,
            "features": scorer.features,
            "categorical": {
                c: len(scorer.schema.spec(c).categories) for c in scorer.schema.categorical
            },
            "left_out": ts.excluded,
            "final_fit": final_fit,
            "label": ts.label,
            # rows left out for want of consent to the training purpose (counts only: no
            # subject's key reaches the registry); None: the policy asked for no consent
            "consent": ts.consent,
        },
        "search": search,
        "metrics": metrics,
        "baselines": floor,
        "uplift": uplift,
        "shap_importance": shap_importance(scorer, x_test),
        "shap_output": family(scorer.family).OUTPUT,
        "family_notes": family(scorer.family).card_notes(scorer),
    }
    card["limitations"] = limitations(card, cfg)
    return card


def _ci(d: dict[str, Any]) -> str:
    est = d["estimate"] if "estimate" in d else d["value"]
    if est is None:
        return f"undefined ({d.get('undefined', 'not enough rows')})"
    if d.get("low") is None:
        return f"{est:.4f}"
    return f"{est:.4f} ({d['low']:.4f}-{d['high']:.4f})"


def split_ranges(td: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, label-time range) lines of a card's training data: the rows the model was
    fitted on, then each part of the split."""
    out = []
    if td.get("fitted_time_range"):
        a, b = td["fitted_time_range"]
        out.append(("fitted on label times", f"{a} to {b}"))
    for part, r in (td.get("split", {}).get("ranges") or {}).items():
        if r:
            out.append((f"{part} label times", f"{r[0]} to {r[1]}"))
    if not out and td.get("time_range"):  # a card written before ranges per split
        out.append(("label times", f"{td['time_range'][0]} to {td['time_range'][1]}"))
    return out


def _choice_md(search: dict[str, Any]) -> list[str]:
    c = search.get("choice") or {}
    if not c.get("how"):
        return []
    fams = c.get("families") or {}
    spread = "; ".join(f"{f} {v['mean_auc']:.4f} ± {v['sd_auc']:.4f}" for f, v in fams.items())
    return [
        f"- family chosen by {c['how']}" + (f" (mean ± sd fold AUC: {spread})" if spread else "")
    ]


def _ranges_md(td: dict[str, Any]) -> list[str]:
    return [f"- {what}: {r}" for what, r in split_ranges(td)]


def render_markdown(card: dict[str, Any]) -> str:
    m, td, mod = card["metrics"], card["training_data"], card["model"]
    lines = [
        f"# Model card: {mod['name']} v{mod['version']} ({mod['family']})",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Training data and lineage",
        f"- snapshot: `{td['snapshot_id']}`"
        + ("" if td["time_range"] else "; labels without time"),
        *_ranges_md(td),
        f"- split {td['split']['how']}",
        f"- final model: {td.get('final_fit', 'the best trial')}",
        *_choice_md(card.get("search") or {}),
        f"- parent run: `{mod.get('parent_run_id', '')}`; code version "
        f"`{mod.get('code_version', '')}`",
        f"- features ({len(td['features'])}): {', '.join(td['features'])}",
        *(
            [
                "- categorical (categories): "
                + ", ".join(f"{c} ({n})" for c, n in td["categorical"].items())
            ]
            if td.get("categorical")
            else []
        ),
        "",
        "## Metrics on the test split (95% BCa bootstrap CI)",
        "| metric | value |",
        "|---|---|",
        f"| ROC AUC | {_ci(m['auc'])} |",
        f"| log loss | {m['logloss']:.4f} |",
        f"| Brier | {m['brier']:.4f} |",
        f"| accuracy at {m['threshold']} | {m['accuracy_at_threshold']:.4f} |",
        f"| selection rate | {m['selection_rate']:.4f} |",
        f"| rows / positive rate | {m['rows']} / {m['positive_rate']:.3f} |",
        "",
        f"## Calibration (ECE {m['calibration']['ece']:.4f})",
        "| decile | rows | mean score | observed rate |",
        "|---|---|---|---|",
        *[
            f"| {b['bin']} | {b['rows']} | {b['mean_score']:.3f} | {b['observed_rate']:.3f} |"
            for b in m["calibration"]["bins"]
        ],
        "",
        "## Fairness (differences across groups, 95% simultaneous CI: folded Newcombe intervals of pairwise differences)",
    ]
    if not m["fairness"]:
        lines.append("No sensitive attribute with two or more groups in the test split.")
    for attr, res in m["fairness"].items():
        lines.append(f"### {attr}")
        for k in (
            "demographic_parity_difference",
            "equal_opportunity_difference",
            "equalized_odds_difference",
        ):
            lines.append(f"- {k}: {_ci(res[k])}")
        for grp, rates in res.get("by_group", {}).items():
            lines.append(f"- group `{grp}`: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    if card.get("baselines"):
        from engine.registry.baseline import describe

        lines += ["", "## Baselines on the same test rows (the first gate's floor)"]
        lines += [f"- {x}" for x in describe(card["baselines"])]
    lines += ["", "## Uplift"]
    u = card.get("uplift")
    if u:
        lines.append(f"- campaign ATE: {_ci(u['ate'])} on {u['rows']} held-out rows")
        for name, r in u["learners"].items():
            lines.append(
                f"- {name}: Qini AUC {_ci(r['qini_auc'])}, uplift AUC {r['uplift_auc']:.4f}"
            )
        lines.append(f"- best learner: {u['best']}")
    else:
        lines.append("None for this model.")
    lines += [
        "",
        f"## Global SHAP importance (mean |SHAP|, {card.get('shap_output', 'log_odds')}, test split)",
        f"![importance]({SHAP_PNG})",
        "",
        *[f"- {k}: {v:.4f}" for k, v in list(card["shap_importance"].items())[:10]],
        "",
        "## Known limitations",
        *[f"- {x}" for x in card.get("family_notes", [])],
        *[f"- {x}" for x in card["limitations"]],
        "",
    ]
    return "\n".join(lines)


def log_card(card: dict[str, Any], run_id: str) -> None:
    """Card JSON, Markdown, HTML page and SHAP plot as artifacts of the model's run
    (``card/``)."""
    from mlflow.tracking import MlflowClient

    from engine.report.page import render_card

    with tempfile.TemporaryDirectory() as d:
        Path(d, CARD_JSON).write_text(json.dumps(card, indent=2, default=str))
        Path(d, CARD_MD).write_text(render_markdown(card))
        Path(d, CARD_HTML).write_text(render_card(card, report_href=None))
        _plot(card["shap_importance"], Path(d, SHAP_PNG), card.get("shap_output", "log_odds"))
        MlflowClient().log_artifacts(run_id, d, artifact_path="card")


def load_card(run_id: str) -> dict[str, Any]:
    import mlflow

    with tempfile.TemporaryDirectory() as d:
        p = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"card/{CARD_JSON}", dst_path=d
        )
        return dict(json.loads(Path(p).read_text()))
