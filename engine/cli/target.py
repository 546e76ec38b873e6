"""``insight target``: whom to contact. ``insight target train`` learns uplift from a
randomised campaign table (learners cross-fitted and searched, segments, the policy's
held-out value) and registers it with its card; ``insight target decide`` writes a ranked
contact list for a customer table under a budget."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.console import console

target_app = typer.Typer(
    help="Targeting (uplift): train on a campaign table; decide whom to contact under a budget."
)

if TYPE_CHECKING:
    from engine.data.init import DbTable


def _open(project: Path | None, workspace: Path | None, profile: str | None) -> tuple[Any, Any]:
    from engine.errors import ConfigError
    from engine.project import open_target_project

    if project is None:
        if not Path("insight.yaml").is_file():
            raise ConfigError(
                "target: no --project and no ./insight.yaml. Fix: pass --project PATH to a "
                "project file with a 'target:' block (insight init --from TABLE --treatment "
                "COLUMN --control VALUE --outcome COLUMN writes one)."
            )
        project = Path("insight.yaml")
    proj, ws, _ = open_target_project(project.resolve(), workspace, profile)
    return proj, ws


@target_app.command("train")
def train(
    engine: Annotated[
        str, typer.Option(help="auto: Ray Tune if Ray is wanted or the table is large; ray; local.")
    ] = "auto",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Check the campaign, search the learners by out-of-fold Qini, find the segments, value
    the policy at the budget, register the targeting model with its card."""
    from engine.errors import ConfigError
    from engine.stages.target import stage_target_train
    from engine.targeting.card import card_markdown

    if engine not in ("auto", "ray", "local"):
        raise ConfigError(f"--engine is {engine!r}. Fix: auto, ray or local.")
    eng: Literal["auto", "ray", "local"] = engine  # type: ignore[assignment]
    proj, ws = _open(project, workspace, profile)
    r = stage_target_train(proj, ws, engine=eng, log=console.print)
    console.print(card_markdown(r.card))
    console.print(
        f"model {r.model_name} v{r.version} @{r.alias} (MLflow run {r.run_id}); next: "
        "insight target decide --from customers.csv -o contacts.csv"
    )


@target_app.command("decide")
def decide(
    source: Annotated[Path, typer.Option("--from", help="Customers: CSV or Parquet.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The contact list (.csv/.parquet).")
    ],
    contacts: Annotated[
        int | None, typer.Option(help="Budget: at most this many contacts.")
    ] = None,
    money: Annotated[float | None, typer.Option(help="Budget: at most this much spend.")] = None,
    model: Annotated[str, typer.Option(help="Alias or version.")] = "champion",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Rank customers by net value of contact; write who to contact, with which arm."""
    from engine.stages.target import stage_target_decide

    budget = _budget(contacts, money)
    proj, ws = _open(project, workspace, profile)
    s = stage_target_decide(
        proj, ws, source.resolve(), output.resolve(), budget=budget, which=model
    )
    cur = proj.business.currency
    console.print(
        f"wrote {output}: {s['contacts']:,} of {s['customers']:,} customers to contact ("
        + ", ".join(f"{a} {n:,}" for a, n in s["by_arm"].items())
        + f"); spend {s['spend']:,.2f} {cur}; expected {s['expected_incremental']:,.1f} extra "
        f"conversions, profit {s['expected_profit']:,.2f} {cur} (model estimate; the card "
        f"has the held-out CI). Model {s['model']} v{s['version']}."
    )


@target_app.command("serve")
def serve_cmd(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")
    ] = None,
    model: Annotated[str, typer.Option(help="Alias or version to serve.")] = "champion",
    replicas: Annotated[int, typer.Option(min=1, help="Replicas sharing one budget.")] = 1,
    holdout: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share held out at random (live control).")
    ] = 0.1,
    contacts: Annotated[
        int | None, typer.Option(help="This deployment's budget in contacts (default: the file's).")
    ] = None,
    money: Annotated[
        float | None, typer.Option(help="This deployment's budget in money (default: the file's).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Start, answer one health check, stop.")
    ] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Serve POST /decide on 127.0.0.1 until Ctrl-C: per customer, contact or not, the arm,
    the expected lift with its segment's interval, and why; the budget holds across
    replicas; every answer audited."""
    import time as _time

    from ray import serve

    from engine.raycluster import start_ray, stop_ray
    from serve.target_app import target_up

    budget = _budget(contacts, money)
    proj, ws = _open(project, workspace, profile)
    start_ray(ws)
    try:
        url = target_up(
            proj,
            ws,
            port=port,
            alias=model,
            replicas=replicas,
            holdout=holdout,
            budget=budget,
            token=_token(ws, create=True),
        )
        console.print(
            f"serving {proj.model_name}@{model} at [bold]{url}[/] (POST {url}/, budget: GET "
            f"{url}/budget, docs: {url}/docs); audit: {ws.audit / 'decide'}"
        )
        if not once:
            console.print("Ctrl-C to stop")
            while True:
                _time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        stop_ray()


@target_app.command("outcomes")
def outcomes_cmd(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet: the customer key, the outcome.")],
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Record what served customers did (keyed like the campaign table), for live lift."""
    from engine.targeting.live import ingest_outcomes

    proj, ws = _open(project, workspace, profile)
    r = ingest_outcomes(proj, ws, path.resolve())
    console.print(
        f"{r['rows']:,} outcome(s) recorded ({r['dropped']:,} blank dropped): {r['path']}"
    )


@target_app.command("monitor")
def monitor_cmd(
    hours: Annotated[
        float | None, typer.Option(help="Window: the last N hours (default: all).")
    ] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Live lift per segment (contacted vs held out at random), against the card's promise;
    the 5%-decline rule per segment."""
    import time as _time

    from engine.targeting.live import live_lift

    proj, ws = _open(project, workspace, profile)
    t_from = None if hours is None else _time.time() - 3600 * hours
    r = live_lift(proj, ws, t_from=t_from)
    console.print(
        f"{proj.model_name} v{r['version']}: {r['decided']:,} decisions, {r['with_outcome']:,} "
        "chosen customers with an outcome (contacted or held out)"
    )
    for name, s in r["segments"].items():
        lift, ch = s["lift"], s["change"]
        show = "n/a" if lift[0] is None else f"{lift[0]:+.4f} ({lift[1]:+.4f}..{lift[2]:+.4f})"
        chg = "n/a" if ch[0] is None else f"{ch[0]:+.0%} ({ch[1]:+.0%}..{ch[2]:+.0%})"
        console.print(
            f"  {name}: {s['contacted']:,} contacted / {s['held_out']:,} held out; live lift "
            f"{show}; vs expected {chg}" + ("" if s["enough_rows"] else " (too few rows to judge)")
        )
    from engine.stages.monitor import stage_target_monitor

    run = stage_target_monitor(proj, ws, t_from=t_from, log=console.print)
    firing = run.result.rules.firing if run.result.rules else []
    console.print(
        "rules (monitor.rules, routed like every alert): "
        + (", ".join(firing) or "none firing")
        + f"; result: {run.path}"
    )


@target_app.command("rollout")
def rollout_cmd(
    version: Annotated[str, typer.Argument(help="The new policy's registry version.")],
    url: Annotated[str, typer.Option(help="The running /decide app's URL.")],
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Roll a new policy version out in steps (target.rollout.steps) on the running /decide
    app, judged at each step on live lift and contact-rate fairness against the champion;
    promote it, or roll back on a breach."""
    from engine.audit import AuditWriter
    from engine.errors import ConfigError
    from engine.registry.models import resolve
    from engine.targeting.rollout import rollout_policy
    from engine.tracking import use_workspace

    proj, ws = _open(project, workspace, profile)
    token = _token(ws, create=False)
    if token is None:
        raise ConfigError(
            "the roll-out calls the app's admin routes and no admin token was found. Fix: "
            "set INSIGHT_ADMIN_TOKEN (the token the app was started with)."
        )
    use_workspace(ws)
    champion = resolve(proj.model_name, "champion").version
    r = rollout_policy(
        proj,
        ws,
        version,
        champion,
        url=url.rstrip("/"),
        token=token,
        control=AuditWriter(ws.audit / "control", writer="target-rollout"),
        log=console.print,
    )
    console.print(f"v{version}: {r['result']} after {len(r['steps'])} step(s)")


@target_app.command("demo")
def demo_cmd(
    size: Annotated[
        str | None, typer.Option(help="tiny: 6,000 customers (default 30,000).")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The sample business's randomised e-mail campaign, end to end: init, train, next
    month's contact list under a budget, scored against the known true effects."""
    from engine.demo.targeting import run_targeting
    from engine.workspace import Workspace

    ws = Workspace((workspace or Path(".insight")).resolve()).ensure()
    run_targeting(ws, size)


def score_decisions(
    input_path: Path | None,
    output: Path,
    model: str | None,
    project: Path | None,
    workspace: Path | None,
    profile: str | None,
) -> None:
    """`insight score` on a targeting project: the same decisions as `target decide` (and,
    customer by customer, as /decide's policy), for a table; the budget is the file's."""
    from engine.errors import ConfigError
    from engine.stages.target import stage_target_decide

    if input_path is None:
        raise ConfigError(
            "scoring a targeting project needs --input TABLE (the customers to decide for)."
        )
    out = (
        output
        if output.suffix.lower() in (".csv", ".parquet", ".pq")
        else output / "decisions.parquet"
    )
    proj, ws = _open(project, workspace, profile)
    s = stage_target_decide(
        proj, ws, input_path.resolve(), out.resolve(), which=model or "champion"
    )
    console.print(
        f"output: {out}: {s['contacts']:,} of {s['customers']:,} customers to contact "
        f"(model {s['model']} v{s['version']})"
    )


def _token(ws: Any, *, create: bool) -> str | None:
    """The admin bearer token: $INSIGHT_ADMIN_TOKEN, else <workspace>/secrets/admin.token
    (0600, created by `insight target serve` when neither exists)."""
    import os
    import secrets

    from engine.workspace import atomic_write_bytes

    env = os.environ.get("INSIGHT_ADMIN_TOKEN")
    if env:
        return env
    path = ws.secrets / "admin.token"
    if not path.is_file():
        if not create:
            return None
        atomic_write_bytes(path, secrets.token_urlsafe(32).encode())
        path.chmod(0o600)
    return str(path.read_text().strip())


def _budget(contacts: int | None, money: float | None) -> Any:
    from pydantic import ValidationError

    from engine.config.target import Budget
    from engine.errors import ConfigError

    if contacts is None and money is None:
        return None
    try:
        return Budget(contacts=contacts, money=money)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--contacts/--money: {msg}") from None


def init_campaign(
    source: Path | DbTable,
    treatment: str,
    control: str,
    outcome: str,
    key: str | None,
    positive: str | None,
    out: Path | None,
    force: bool,
) -> None:
    """`insight init --treatment --control --outcome`: a commented targeting project."""
    from engine.targeting.balance import warning
    from engine.targeting.init import plan_campaign, write_campaign_project

    p = plan_campaign(source.resolve(), treatment, control, outcome, key, positive)
    path = write_campaign_project(
        p, (out or source.resolve().parent / "insight.yaml").resolve(), force
    )
    b = p.balance
    console.print(f"wrote {path}")
    console.print(
        f"  {p.rows:,} rows; arms: "
        + ", ".join(f"{a} {n:,}" for a, n in b["arms"].items())
        + f" (control {p.control!r})"
    )
    console.print(
        f"  outcome: {p.outcome} ({p.outcome_kind}"
        + (f", positive {p.positive!r}" if p.positive is not None else "")
        + f"); key: {p.key or 'none (rows are numbered)'}"
    )
    console.print(f"  features ({len(p.features)}): {', '.join(p.features)}")
    for k, v in p.left_out.items():
        console.print(f"  left out {k}: {v}")
    for why, n in p.dropped.items():
        console.print(f"  {n:,} row(s) will be dropped: {why}")
    w = warning(b)
    console.print(
        f"  randomisation check: {'the arms look randomised (' + b['rule'] + ')' if w is None else 'WARNING: ' + w}"
    )
    console.print(f"next: insight target train -p {path}")


def is_targeting(project: Path | None) -> bool:
    """A project file with ``target:`` and no ``label:`` (engine.config.target)."""
    from engine.cli.common import project_path
    from engine.config.base import read_yaml

    p = project_path(project)
    raw = read_yaml(p) if p.is_file() else None
    return isinstance(raw, dict) and "target" in raw and "label" not in raw
