"""The project file ``insight init`` writes: a :class:`engine.data.init.Plan` rendered as
commented YAML (every choice with its reason), validated as a project, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.data.init import DbTable, Plan, location_lines
from engine.errors import ConfigError


def render(p: Plan) -> str:
    """The commented YAML of a plan."""
    q = _quote
    src = "table"
    types = {c.name: c.kind for c in p.columns}
    rename = {c.raw: c.name for c in p.columns if c.raw != c.name}
    lines = [
        f"# Insight Engine project for {p.path.name} ({p.rows:,} rows), written by `insight init`.",
        "# Every choice below was inferred from the data; edit freely, then `insight validate`.",
        f"name: {p.name}",
        "",
        "sources:",
        f"  {src}:",
        *(
            location_lines(p.path, p.fmt, Path.cwd())
            if isinstance(p.path, DbTable)
            else [f"    path: {q(p.path.name)}", f"    format: {p.fmt}"]
        ),
    ]
    d = p.dialect
    if d.delimiter != ",":
        lines.append(f"    delimiter: {q(d.delimiter)}   # the character between cells")
    if d.decimal != ".":
        lines.append(f"    decimal: {q(d.decimal)}   # number cells are written 12,50")
    if d.encoding != "utf-8":
        lines.append(f"    encoding: {d.encoding}   # the file is not UTF-8")
    lines.append("    entity: row")
    if p.time:
        lines.append(f"    event_time: {p.time}")
    if p.row_id:
        import textwrap

        lines += [f"    # {t}" for t in textwrap.wrap(p.key_note, 86)]
        lines.append(f"    row_id: {p.key}")
    if rename:
        lines.append("    rename:   # names in the file -> names used here (and by /predict)")
        lines += [f"      {q(a)}: {b}" for a, b in rename.items()]
    formats = {c.name: c.time_format for c in p.columns if c.time_format}
    if formats:
        lines.append("    time_formats:   # time columns that are not ISO (yyyy-MM-dd)")
        lines += [f"      {k}: {q(v)}" for k, v in formats.items()]
    lines.append("    columns:")
    for c in p.columns:
        note = f"   # {c.note}" if c.note else ""
        lines.append(f"      {c.name}: {types[c.name]}{note}")
    lines += [
        "",
        "entities:",
        "  row:",
        f"    key: {p.key}" + (f"   # {p.key_note}" if p.key_note and not p.row_id else ""),
        "",
        "label:",
        f"  source: {src}",
        f"  column: {p.label}",
        f"  positive: {q(p.positive)}   # values: "
        + ", ".join(f"{k!r} ({v:,})" for k, v in p.label_values.items()),
    ]
    if p.time:
        lines.append(f"  event_time: {p.time}" + (f"   # {p.time_note}" if p.time_note else ""))
    else:
        lines.append("  # no event_time: the table is one snapshot; training splits at random")
        if p.time_candidates:
            lines.append(
                f"  # time candidates: {', '.join(p.time_candidates)} (rerun init with --time)"
            )
    lines += ["", "# Sensitive attributes are kept for fairness checks and are never model inputs."]
    if p.sensitive:
        lines.append(f"# Candidates by name (uncomment to use): {', '.join(p.sensitive)}")
        lines.append(f"# sensitive: [{', '.join(p.sensitive)}]")
    lines.append("sensitive: []")
    lines.append(
        "pii: [" + ", ".join(f"{src}.{c}" for c in p.pii) + "]   # hashed before features or logs"
    )
    lines += ["", "features:", "  views:", "    - name: attributes", f"      source: {src}"]
    lines.append("      columns:")
    lines += [f"        - {f}" for f in p.features]
    if p.derived:
        lines.append("      derived:")
        lines += [f"        {k}: {q(v)}" for k, v in p.derived.items()]
    if p.left_out:
        lines.append("      # left out:")
        lines += [f"      #   {k}: {v}" for k, v in p.left_out.items() if k not in p.features]
    pos_rate = p.label_values.get(_norm(p.positive), 0) / max(1, sum(p.label_values.values()))
    lines += [
        "",
        "train:",
        f"  model_name: {p.name}-model",
        "  split: auto        # time when the labels have >= 3 distinct times, else random",
        "  num_samples: 8",
        "  num_boost_round: 80",
        "  uplift_learners: []",
    ]
    lines += [
        "",
        "serve:",
        "  host: 127.0.0.1",
        "  port: 0",
        f"  threshold: 0.5     # the positive rate here is {pos_rate:.3f}: lower it to flag more",
        "",
        "# What a decision is worth: the ROI in `insight report`. No number is assumed:",
        "# uncomment and write your own (all three) to see an ROI.",
        "# business:",
        "#   retained_value: ...   # value of keeping a customer who would have left",
        "#   contact_cost: ...     # cost of one contact",
        "#   save_rate: ...        # share of contacted would-be leavers the contact keeps",
        "#   currency: EUR",
        "",
    ]
    return "\n".join(lines)


def _norm(v: Any) -> str:
    from engine.data.labels import normalize

    return normalize(v)


def _quote(v: Any) -> str:
    import json

    return (
        json.dumps(v, ensure_ascii=False)
        if isinstance(v, str)
        else str(v).lower()
        if isinstance(v, bool)
        else str(v)
    )


def write(p: Plan, out: Path, force: bool = False) -> Path:
    """Validate the rendered file as a project, then write it atomically."""
    import tempfile

    from engine.config.project import ProjectConfig
    from engine.workspace import atomic_write_text

    if out.exists() and not force:
        raise ConfigError(f"{out} already exists. Fix: pass --force to replace it, or --out PATH.")
    text = render(p)
    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "insight.yaml"
        probe.write_text(text)
        cfg = ProjectConfig.load(probe)  # a ConfigError here is a bug in init: say so plainly
    del cfg
    atomic_write_text(out, text)
    return out
