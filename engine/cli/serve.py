"""``insight serve ...`` and ``insight audit ...``: the Serve app's lifecycle, its live
rollout (admin token), and the audit log's verifier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.cli.common import AddressOpt, ProfileOpt, ProjectOpt, WorkspaceOpt, project_path
from engine.cli.common import load as _load
from engine.console import console
from engine.workspace import Workspace

serve_app = typer.Typer(
    help="The Ray Serve app: up, status, traffic, promote, down.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The hash-chained audit log of served decisions.", no_args_is_help=True
)


@serve_app.command("up")
def serve_up_cmd(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    alias: Annotated[str, typer.Option(help="Registry alias of the champion.")] = "champion",
    address: AddressOpt = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Serve in this process until Ctrl-C.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Foreground: start, answer one health check, stop.")
    ] = False,
) -> None:
    """Deploy the model app on 127.0.0.1: champion (+ challenger), autoscaled, audited."""
    import time

    from serve.admin import admin_token
    from serve.daemon import start_daemon
    from serve.deploy import check_servable, serve_down, serve_up

    cfg, ws = _load(project, workspace, profile)
    token_src = (
        f"${cfg.serve.admin_token_env}"
        if os.environ.get(cfg.serve.admin_token_env)
        else str(ws.secrets / "admin.token")
    )
    if not (foreground or once):
        if address:
            console.print(
                "[red]--address needs --foreground (the detached server owns its own local cluster)[/]"
            )
            raise typer.Exit(2)
        check_servable(cfg, ws, alias)
        admin_token(cfg, ws, create=True)
        with console.status("starting Ray and the Serve app (about a minute)"):
            st = start_daemon(project_path(project), ws, alias=alias)
        console.print(
            f"serving {cfg.train.model_name}@{alias} at [bold]{st['url']}[/] (pid {st['pid']}; "
            f"OpenAPI: {st['url']}/docs)\nadmin token: {token_src}\n"
            "next: insight serve status | insight serve traffic --percent 10 | insight serve down"
        )
        return
    from engine.raycluster import start_ray, stop_ray

    start_ray(ws, address=address)
    try:
        ep = serve_up(cfg, ws, alias=alias)
        console.print(f"serving {cfg.train.model_name}@{alias} at {ep.url} (docs: {ep.url}/docs)")
        if not once:
            console.print("Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve_down()
        stop_ray()


def _running(ws: Workspace) -> dict[str, Any]:
    from serve.daemon import read_state

    st = read_state(ws)
    if st is None:
        console.print("[red]the app is not up.[/] Fix: `insight serve up`.")
        raise typer.Exit(1)
    return st


@serve_app.command("config")
def serve_config(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    out: Annotated[Path, typer.Option(help="Where to write the Serve config YAML.")] = Path(
        "serve-config.yaml"
    ),
    port: Annotated[int, typer.Option(help="HTTP port of the Serve proxy.")] = 8000,
) -> None:
    """Write a Serve config for this project: `serve run FILE` or `serve deploy FILE`."""
    import yaml

    from engine.workspace import atomic_write_bytes
    from serve.deploy import deploy_config

    cfg, ws = _load(project, workspace, profile)
    doc = deploy_config(cfg, ws, port=port)
    atomic_write_bytes(out, yaml.safe_dump(doc, sort_keys=False).encode())
    console.print(
        f"wrote {out}\nnext: serve run {out}   (or, on a running cluster with a dashboard: "
        f"serve deploy {out})"
    )


@serve_app.command("status")
def serve_status(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print URL, versions, split and replicas as JSON.")
    ] = False,
) -> None:
    """What is deployed: versions, traffic split, replicas."""
    import json

    import httpx

    from serve.admin import admin_call, admin_token

    cfg, ws = _load(project, workspace, profile)
    st = _running(ws)
    m = httpx.get(f"{st['url']}/models", timeout=30).json()
    token = admin_token(cfg, ws)
    replicas = admin_call(st["url"], token, "GET", "/admin/status")["replicas"] if token else None
    if as_json:
        print(
            json.dumps(
                {
                    "url": st["url"],
                    "pid": st["pid"],
                    "model": m["name"],
                    "generation": m["generation"],
                    "threshold": m["threshold"],
                    "challenger_percent": m["challenger_percent"],
                    "shadow": m["shadow"],
                    "versions": {d["role"]: d["version"] for d in m["models"]},
                    "models": m["models"],
                    "replicas": replicas,
                },
                indent=2,
            )
        )
        return
    t = Table("role", "version", "family", "snapshot")
    for d in m["models"]:
        t.add_row(d["role"], d["version"], d["family"], str(d["snapshot_id"]))
    console.print(f"{m['name']} at {st['url']} (pid {st['pid']}), generation {m['generation']}")
    console.print(t)
    console.print(
        f"challenger share {m['challenger_percent']:g}%, shadow {'on' if m['shadow'] else 'off'}, "
        f"threshold {m['threshold']}"
    )
    if replicas is not None:
        console.print(
            f"{len(replicas)} live replica(s): "
            + ", ".join(f"{r} (pid {v['pid']}, gen {v['applied']})" for r, v in replicas.items())
        )


@serve_app.command("down")
def serve_down_cmd(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """Stop the app started by `insight serve up` and its local Ray cluster."""
    from serve.daemon import stop_daemon

    _, ws = _load(project, workspace, profile)
    with console.status("stopping"):
        st = stop_daemon(ws)
    console.print("the app was not up" if st is None else f"stopped {st['url']} (pid {st['pid']})")


@serve_app.command("traffic")
def serve_traffic(
    percent: Annotated[
        float | None, typer.Option(help="Share of entities the challenger answers (0-100).")
    ] = None,
    shadow: Annotated[
        bool | None, typer.Option("--shadow/--no-shadow", help="Challenger scores every row.")
    ] = None,
    challenger: Annotated[
        str | None, typer.Option(help="Registry version or alias to deploy as challenger.")
    ] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Change the champion/challenger split live (no restart); needs the admin token."""
    body = {"challenger_percent": percent, "shadow": shadow, "challenger": challenger}
    r = _admin(
        project, workspace, "/admin/traffic", {k: v for k, v in body.items() if v is not None}
    )
    s = r["state"]
    challenger_s = f"v{s['challenger']}" if s["challenger"] else "none"
    console.print(
        f"generation {s['generation']}: champion v{s['champion']}, challenger {challenger_s} at "
        f"{s['challenger_percent']:g}%, shadow {'on' if s['shadow'] else 'off'}; applied by "
        f"{r['applied']}/{r['replicas']} replicas"
    )


@serve_app.command("promote")
def serve_promote(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """The served challenger becomes champion (registry and app), without a restart."""
    r = _admin(project, workspace, "/admin/promote")
    console.print(
        f"v{r['state']['champion']} is champion (generation {r['state']['generation']}); "
        f"applied by {r['applied']}/{r['replicas']} replicas"
    )


def _admin(
    project: Path | None, workspace: Path | None, route: str, body: dict[str, Any] | None = None
) -> Any:
    """POST to an admin route of the running app with the admin token."""
    from serve.admin import admin_call, admin_token

    cfg, ws = _load(project, workspace)
    return admin_call(_running(ws)["url"], admin_token(cfg, ws), "POST", route, body)


@audit_app.command("verify")
def audit_verify(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    path: Annotated[
        Path | None, typer.Option(help="Audit folder (default: the workspace's).")
    ] = None,
) -> None:
    """Check the hash chains of the audit log: any modified, removed or reordered record fails."""
    from engine.audit import verify
    from engine.ingest.ledger import verify_ledger

    ledger_problems: list[str] = []
    if path is None:
        _, ws = _load(project, workspace, profile)
        path = ws.audit
        ledger_problems = verify_ledger(ws)  # runs chained across segments; landed files
    if not path.is_dir():
        console.print(
            f"[red]no audit folder at {path}[/]. Fix: pass --path or serve some requests."
        )
        raise typer.Exit(2)
    res = verify(path)
    console.print(f"{len(res.segments)} segment(s), {res.records} record(s) under {path}")
    problems = res.problems + ledger_problems
    if not problems:
        console.print("[green]audit log intact[/]: every chain verifies")
        return
    for p in problems[:50]:
        console.print(f"[red]{p}[/]")
    console.print(f"[red]audit log NOT intact: {len(problems)} problem(s)[/]")
    raise typer.Exit(1)
