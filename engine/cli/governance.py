"""``insight consent``: record a subject's consent to a purpose, or its withdrawal, in the
workspace's consent log (engine.governance.live); served replicas read it on their next
request. Each change is also an audit record naming the actor (the subject as its keyed
hash)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.cli.common import load as _load
from engine.console import console
from engine.governance.roles import cli_actor

consent_app = typer.Typer(
    help="Consent by purpose: grant, withdraw, check (the workspace's consent log).",
    no_args_is_help=True,
)

SubjectOpt = Annotated[str, typer.Option("--subject", "-s", help="The subject's key.")]
PurposeOpt = Annotated[
    str, typer.Option("--purpose", help="e.g. model_training, profiling, marketing.")
]


def _change(
    granted: bool,
    subject: str,
    purpose: str,
    reason: str,
    by: str | None,
    project: Path | None,
    workspace: Path | None,
    profile: str | None,
) -> None:
    import re

    from engine.audit import AuditWriter
    from engine.config.governance import PURPOSE
    from engine.errors import ConfigError
    from engine.governance.live import record_consent
    from engine.governance.seal import seal_subject
    from engine.pii import hmac_hex, load_key

    if not re.match(PURPOSE, purpose):
        raise ConfigError(
            f"--purpose {purpose!r} is not a purpose name (lower case letters, digits, _). "
            "Fix: e.g. --purpose marketing."
        )
    if not subject.strip():
        raise ConfigError("--subject is blank. Fix: give the subject's key.")
    _, ws = _load(project, workspace, profile)
    actor = cli_actor(ws.root, "operator", by)
    ev = record_consent(ws.root, subject.strip(), purpose, granted, actor=actor, reason=reason)
    w = AuditWriter(ws.audit / "control", writer="consent")
    try:
        w.append(
            [
                seal_subject(
                    {
                        "kind": "consent",
                        "event": ev["status"],
                        "subject_hash": hmac_hex(load_key(ws.root), ev["subject"]),
                        "purpose": purpose,
                        "reason": reason,
                        "by": actor,
                        "effective": ev["time"],
                        "time": time.time(),
                    },
                    ws.root,
                )
            ]
        )
    finally:
        w.close()
    console.print(
        f"consent of subject {subject.strip()} to '{purpose}': {ev['status']} at {ev['time']} "
        f"(by {actor}); served replicas apply it on their next request"
    )


@consent_app.command("grant")
def grant(
    subject: SubjectOpt,
    purpose: PurposeOpt,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Record that the subject consents to the purpose, from now on."""
    _change(True, subject, purpose, reason, by, project, workspace, profile)


@consent_app.command("withdraw")
def withdraw(
    subject: SubjectOpt,
    purpose: PurposeOpt,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Record that the subject withdraws consent to the purpose, from now on."""
    _change(False, subject, purpose, reason, by, project, workspace, profile)


@consent_app.command("check")
def check(
    subject: SubjectOpt,
    purpose: PurposeOpt,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Whether the subject consents to the purpose now (the project's consent source and
    the workspace's log together)."""
    from engine.governance.enforce import live_consent

    cfg, ws = _load(project, workspace, profile)
    chk = live_consent(cfg, ws.root).check([subject.strip()], purpose)
    why = chk.reason[0]
    console.print(
        f"subject {subject.strip()}, purpose '{purpose}': "
        + ("consents" if why is None else f"no ({why})")
    )
    if why is not None:
        raise typer.Exit(1)


subject_app = typer.Typer(help="A subject's rights: access (export).", no_args_is_help=True)


@subject_app.command("export")
def export(
    subject: SubjectOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON file (default: subject-ID.json)")
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Everything the engine holds about a subject: source and snapshot rows, every
    decision with its time, model version, score and explanation, and the consents."""
    from engine.governance.export import export_subject

    cfg, ws = _load(project, workspace, profile)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject.strip())
    out = (output or Path(f"subject-{safe}.json")).resolve()
    s = export_subject(cfg, ws, subject, out, actor=cli_actor(ws.root, "operator", by))
    console.print(
        f"subject {subject.strip()}: {s['source_rows']} source row(s), {s['snapshot_rows']} "
        f"snapshot row(s), {s['decisions']} decision(s) with explanations, {s['withheld']} "
        f"request(s) with no automated decision, {s['consents']} consent event(s) -> {out}"
    )


tokens_app = typer.Typer(
    help="Named tokens with a role (viewer, reviewer, operator, admin).",
    no_args_is_help=True,
)


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Option(help="Whose token (named in the audit log).")],
    role: Annotated[str, typer.Option(help="viewer, reviewer, operator or admin.")] = "viewer",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Create a token; it is printed once (the workspace keeps only its hash). Apps deployed
    after this accept it."""
    from engine.governance.roles import add_token, cli_actor, load_tokens

    _, ws = _load(project, workspace, profile)
    if load_tokens(ws.root):  # the first token is made by the workspace's owner
        cli_actor(ws.root, "admin")
    token = add_token(ws.root, name, role)
    console.print(f"token for {name.strip()} ({role.strip().lower()}), shown once:")
    console.print(token, soft_wrap=True, highlight=False)


@tokens_app.command("list")
def tokens_list(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """The named tokens and their roles (never the tokens)."""
    from engine.governance.roles import load_tokens

    _, ws = _load(project, workspace, profile)
    for v in sorted(load_tokens(ws.root).values(), key=lambda v: v["name"]):
        console.print(f"{v['name']}: {v['role']}")


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Option(help="Whose token.")],
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Remove a token (apps deployed after this refuse it)."""
    from engine.governance.roles import cli_actor, revoke_token

    _, ws = _load(project, workspace, profile)
    cli_actor(ws.root, "admin")
    revoke_token(ws.root, name)
    console.print(f"token of {name.strip()} revoked")


governance_app = typer.Typer(help="Governance records.", no_args_is_help=True)


@governance_app.command("report")
def governance_report(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """Write the records of processing (purposes, data categories, recipients, retention,
    security measures, requests and their times) as JSON and Markdown under reports/."""
    from engine.governance.records import write_record

    cfg, ws = _load(project, workspace, profile)
    j, m = write_record(cfg, ws)
    console.print(f"records of processing -> {m} (and {j.name}); open {m.name} first")


retention_app = typer.Typer(
    help="Retention schedules (governance.retention).", no_args_is_help=True
)


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")
    ] = False,
    include_needed: Annotated[
        bool,
        typer.Option(
            "--include-needed", help="Also delete expired snapshots registered models need."
        ),
    ] = False,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Delete what is older than its class's period, a receipt in the audit log for each."""
    from engine.governance.retention import apply, plan

    cfg, ws = _load(project, workspace, profile)
    p = plan(cfg, ws, include_needed=include_needed)
    for k in p.kept:
        console.print(f"kept {k['class']} {Path(k['path']).name}: {k['why']}")
    for d in p.delete:
        lost = d.get("models_losing_it")
        console.print(
            f"{'would delete' if dry_run else 'deleting'} {d['class']} {Path(d['path']).name}"
            + (f" (models lose their training data: {lost})" if lost else "")
        )
    if p.not_applied:
        console.print(f"not applied yet: {', '.join(p.not_applied)} (their periods are kept)")
    if dry_run:
        console.print(f"dry run: {len(p.delete)} item(s) would be deleted, {len(p.kept)} kept")
        return
    n = apply(cfg, ws, p, actor=cli_actor(ws.root, "admin", by))
    console.print(f"retention: {n} item(s) deleted, each with a receipt in the audit log")


review_app = typer.Typer(help="Human review of served decisions.", no_args_is_help=True)


@review_app.command("sample")
def review_sample(
    app_name: Annotated[str, typer.Option("--app", help="The served app's name.")] = "insight",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Queue the decisions logged since the last run, at the rates of governance.review."""
    from engine.governance.review import sample

    cfg, ws = _load(project, workspace, profile)
    s = sample(cfg, ws, app_name)
    console.print(
        f"review queue: {s['queued']} new item(s) from {s['rows_seen']} logged row(s); "
        f"{s['queue']} in the queue"
    )


@review_app.command("next")
def review_next(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """The oldest item without a verdict, with its inputs and explanation."""
    import json

    from engine.governance.review import next_item

    _, ws = _load(project, workspace, profile)
    it = next_item(ws)
    if it is None:
        console.print("the review queue is empty")
        return
    console.print(json.dumps(it, indent=2, default=str), highlight=False, soft_wrap=True)


def _verdict(item: str, verdict: str, reason: str, by: str | None, where: tuple[Any, ...]) -> None:
    from engine.governance.review import record

    _, ws = _load(*where)
    who = cli_actor(ws.root, "reviewer", by)
    record(ws, item, verdict, who, reason)
    console.print(f"{item}: {verdict}{'d' if verdict.endswith('e') else 'ed'} by {who}")


@review_app.command("confirm")
def review_confirm(
    item: Annotated[str, typer.Argument(help="The item (from `insight review next`).")],
    reason: Annotated[str, typer.Option(help="A note (optional).")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """The decision was right."""
    _verdict(item, "confirm", reason, by, (project, workspace, profile))


@review_app.command("dispute")
def review_dispute(
    item: Annotated[str, typer.Argument(help="The item (from `insight review next`).")],
    reason: Annotated[str, typer.Option(help="What is wrong with the decision.")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """The decision was wrong (a reason is required); it becomes a review label."""
    _verdict(item, "dispute", reason, by, (project, workspace, profile))


@review_app.command("stats")
def review_stats(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """Queued, reviewed and disputed items; the dispute rate with its 95% interval."""
    from engine.governance.review import stats

    _, ws = _load(project, workspace, profile)
    s = stats(ws)
    r = s["dispute_rate"]
    rate = (
        r if isinstance(r, str) else f"{r['estimate']:.3f} (95% CI {r['low']:.3f}-{r['high']:.3f})"
    )
    console.print(
        f"queued {s['queued']}, reviewed {s['reviewed']}, disputed {s['disputed']}, pending "
        f"{s['pending']}; dispute rate {rate}"
    )


def erase(
    subject: Annotated[
        str | None, typer.Option("--subject", "-s", help="The subject's key.")
    ] = None,
    reason: Annotated[
        str, typer.Option(help="What the request was (e.g. 'GDPR art. 17 request by e-mail').")
    ] = "",
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A queue of requests: CSV with columns subject, reason "
            "(and optionally request_id, requested_at as ISO time).",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish the requests a crash left pending.")
    ] = False,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Erase a subject from every copy the engine keeps (sources in the workspace,
    snapshots, online table, batch outputs, labels, review queue, consents; their audit
    records made unreadable by deleting their key) and write the erasure receipt."""
    import pandas as pd

    from engine.errors import ConfigError
    from engine.governance import erase as er

    cfg, ws = _load(project, workspace, profile)
    actor = cli_actor(ws.root, "admin", by)
    todo: list[tuple[str, str, str | None, float | None]] = []
    if from_file is not None:
        if not from_file.is_file():
            raise ConfigError(f"--from {from_file}: no such file. Fix: a CSV of requests.")
        q = pd.read_csv(from_file, dtype=str, keep_default_na=False)
        missing = [c for c in ("subject", "reason") if c not in q.columns]
        if missing:
            raise ConfigError(
                f"--from {from_file}: no column(s) {missing} (columns: {list(q.columns)}). "
                "Fix: a header line 'subject,reason[,request_id,requested_at]'."
            )
        for _, r in q.iterrows():
            at = r.get("requested_at") or None
            t = pd.Timestamp(at).timestamp() if at else None
            todo.append((r["subject"], r["reason"], r.get("request_id") or None, t))
    elif subject is not None:
        todo.append((subject, reason, None, None))
    elif not resume:
        raise ConfigError(
            "erase: say whom. Fix: --subject ID --reason TEXT, --from FILE or --resume."
        )

    def say(m: str) -> None:
        console.print(f"  {m}")

    done = []
    if resume:
        done += er.resume(cfg, ws, say)
    for s, why, rid, at in todo:
        console.print(f"erasing subject {s.strip()} ...")
        done.append(
            er.erase(cfg, ws, s, why, actor=actor, request_id=rid, requested_at=at, progress=say)
        )
    for e in done:
        rcpt = e.receipt or {}
        models = ", ".join(f"{m['model']} v{m['version']}: {m['decision']}" for m in e.models)
        console.print(
            f"request {e.request_id}: done in {rcpt.get('days', 0) * 86400:.1f} s; "
            f"{len(e.touched)} store(s) touched; models trained on the subject: "
            f"{models or 'none'}; receipt in the audit log (audit/control, kind 'erasure')"
        )
    if not done:
        console.print("nothing to erase: no request given and none pending")
