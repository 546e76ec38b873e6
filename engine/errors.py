"""User-facing errors.

Every error a user can cause is an :class:`InsightError` whose message says what is wrong,
the value seen, and how to fix it. The CLI prints the message and exits non-zero, with no
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class InsightError(Exception):
    """A problem the user can fix: bad project file, missing data, bad argument."""

    exit_code = 2


class ConfigError(InsightError):
    """The project file (or a job config) is invalid."""


class DataError(InsightError):
    """Input data is missing or does not match what the project file declares."""


class StateError(InsightError):
    """The workspace lacks something an earlier stage should have produced."""

    exit_code = 3


class PolicyError(InsightError):
    """The governance policy does not allow what was asked (engine.governance): a decision,
    not a failure. Exit code 5."""

    exit_code = 5


class ServiceError(InsightError):
    """A service the engine talks to failed (a Ray cluster, an MLflow server, a database,
    a sink): not the user's input, though often the user's to restart. Exit code 4, so a
    scheduler can retry it and not a bad project file."""

    exit_code = 4


def format_validation_error(path: Any, exc: ValidationError, prefix: str = "") -> str:
    """Render pydantic errors as 'file: yaml.path: problem (got value). Fix: ...' lines, the
    project file and its cluster profiles alike (``prefix``: where in the file the
    validated part sits)."""
    lines = [f"{path}: {exc.error_count()} problem(s) in the project file:"]
    for err in exc.errors():
        loc = prefix + (".".join(str(x) for x in err["loc"]) or "(top level)")
        kind = err["type"]
        got = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "missing":
            fix = f"add '{loc}'"
            lines.append(f"  {loc}: required field is missing. Fix: {fix}.")
        elif kind == "extra_forbidden":
            lines.append(
                f"  {loc}: unknown field (got {got!r}). Fix: remove it or check its spelling."
            )
        elif "Fix:" in msg:
            lines.append(f"  {loc}: {msg}")
        else:
            lines.append(f"  {loc}: {msg} (got {got!r}). Fix: correct this value.")
    return "\n".join(lines)
