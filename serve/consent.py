"""What a replica checks before an automated decision: consent to the served purposes
(engine.governance.live), from settings the deploy side wrote (serve.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from serve.settings import ServeSettings


def live_consent(s: ServeSettings) -> Any:
    """The replica's live consent view (engine.governance.live), or None."""
    if s.consent is None:
        return None
    from engine.config.governance import ConsentConfig
    from engine.config.source import SourceConfig
    from engine.governance.live import LiveConsent

    if s.workspace is None:
        raise ValueError("consent checks need 'workspace' (where the consent log lives)")
    root = Path(s.workspace)
    c = s.consent
    if c.consent is None or c.source is None or c.source_name is None:
        return LiveConsent(None, None, None, root)
    cfg = ConsentConfig.model_validate(c.consent)
    name = c.source_name
    one = _OneSource(name, SourceConfig.model_validate(c.source))

    def read() -> pd.DataFrame:
        from engine.data.sources import read_frame

        return read_frame(one, name, root, [cfg.subject, cfg.purpose, cfg.status, cfg.time])

    from engine.data.sources import source_path

    return LiveConsent(cfg, read, source_path(one, name, root), root)


class _OneSource:
    """One source with its path already absolute (resolved at deploy): what the source
    readers need (engine.config.base.HasSources)."""

    def __init__(self, name: str, src: Any) -> None:
        self._sources = {name: src}

    @property
    def sources(self) -> dict[str, Any]:
        return self._sources

    def resolve_path(self, path: str, workspace: Path) -> Path:
        return Path(path.replace("{workspace}", str(workspace)))


def withheld_reasons(live: Any, ids: list[str], purposes: list[str]) -> list[str | None]:
    """Per row, why no automated decision may be made (None: every purpose consented)."""
    out: list[str | None] = [None] * len(ids)
    for p in purposes:
        chk = live.check(ids, p)
        for i, r in enumerate(chk.reason):
            if r is not None and out[i] is None:
                out[i] = f"{r} for '{p}'"
    return out
