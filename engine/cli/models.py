"""``insight models ...``: the registry (versions, aliases), model cards and the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.cli.common import load as _load
from engine.config.project import ProjectConfig
from engine.console import console
from engine.workspace import Workspace

models_app = typer.Typer(help="Model registry: aliases, cards, the gate.", no_args_is_help=True)


def _registry(
    project: Path | None, workspace: Path | None, profile: str | None = None
) -> tuple[ProjectConfig, Workspace]:
    from engine.tracking import setup_mlflow

    cfg, ws = _load(project, workspace, profile)
    setup_mlflow(ws, cfg.name)
    return cfg, ws


NameArg = Annotated[
    str | None, typer.Argument(help="Registered model name (default: train.model_name).")
]


@models_app.command("list")
def models_list(
    name: NameArg = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Versions of a registered model with their aliases."""
    from engine.registry.models import list_versions

    cfg, _ = _registry(project, workspace, profile)
    t = Table("version", "aliases", "family", "test AUC", "valid AUC", "snapshot")
    for r in list_versions(name or cfg.train.model_name):
        t.add_row(
            r["version"],
            ", ".join(r["aliases"]),
            r["family"],
            r["test_auc"],
            r["valid_auc"],
            r["snapshot_id"],
        )
    console.print(t)


@models_app.command("show")
def models_show(
    name: NameArg = None,
    which: Annotated[str, typer.Option("--alias", help="Alias or version number.")] = "champion",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """One version: its tags (lineage) and URI."""
    from engine.registry.models import find

    cfg, _ = _registry(project, workspace, profile)
    ref = find(name or cfg.train.model_name, which)
    console.print_json(
        json.dumps({"uri": ref.uri, "version": ref.version, "run_id": ref.run_id, "tags": ref.tags})
    )


@models_app.command("promote")
def models_promote(
    name: NameArg = None,
    version: Annotated[
        str, typer.Option(help="Version to promote (default: @challenger).")
    ] = "challenger",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Make a version the champion without the gate (the old champion becomes @previous)."""
    from engine.governance.roles import cli_actor
    from engine.registry.models import find, promote

    cfg, ws = _registry(project, workspace, profile)
    who = cli_actor(ws.root, "operator")
    n = name or cfg.train.model_name
    r = promote(n, find(n, version).version, reason=f"manual promote by {who}")
    console.print(f"{n}: champion v{r['champion']} (previous: v{r['previous']})")


@models_app.command("rollback")
def models_rollback(
    name: NameArg = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Restore the prior champion in one step."""
    from engine.governance.roles import cli_actor
    from engine.registry.models import rollback

    cfg, ws = _registry(project, workspace, profile)
    cli_actor(ws.root, "operator")
    n = name or cfg.train.model_name
    r = rollback(n)
    console.print(f"{n}: champion v{r['champion']} restored (v{r['demoted']} demoted)")


@models_app.command("card")
def models_card(
    name: NameArg = None,
    version: Annotated[str, typer.Option(help="Alias or version number.")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print the card's JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the card as an HTML page to this file.")
    ] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Render a version's model card (MLflow artifacts under card/: JSON, Markdown, HTML)."""
    from rich.markdown import Markdown

    from engine.registry.card import load_card, render_markdown
    from engine.registry.models import find

    cfg, _ = _registry(project, workspace, profile)
    ref = find(name or cfg.train.model_name, version)
    card = load_card(ref.run_id)
    if html is not None:
        from engine.report import write_page
        from engine.report.page import render_card

        write_page(html, render_card(card, report_href=None))
        console.print(f"model card page: {html.resolve().as_uri()}")
    elif as_json:
        print(json.dumps(card, indent=2))
    else:
        console.print(Markdown(render_markdown(card)))


@models_app.command("gate")
def models_gate(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide, but do not promote.")] = False,
) -> None:
    """May @challenger replace @champion? Prints every check; promotes only on pass."""
    from engine.registry.gate import run_gate

    cfg, ws = _registry(project, workspace, profile)
    g = run_gate(cfg, ws, promote=not dry_run)
    t = Table("check", "result", "detail")
    for c in g.checks:
        t.add_row(c.name, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.detail)
    console.print(t)
    verdict = "PASS" if g.passed else "FAIL"
    tail = f": v{g.challenger} promoted to @champion" if g.promoted else ""
    console.print(f"verdict {verdict}{tail}" + (" (dry run)" if dry_run and g.passed else ""))
    if not g.passed:
        raise typer.Exit(1)
