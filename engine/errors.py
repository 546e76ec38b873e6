"""User-facing errors.

Every error a user can cause is an :class:`InsightError` whose message says what is wrong,
the value seen, and how to fix it. The CLI prints the message and exits non-zero, with no
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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


class ServiceError(InsightError):
    """A service the engine talks to failed (a Ray cluster, an MLflow server, a database,
    a sink): not the user's input, though often the user's to restart. Exit code 4, so a
    scheduler can retry it and not a bad project file."""

    exit_code = 4
