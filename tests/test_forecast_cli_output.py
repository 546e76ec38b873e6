"""`insight forecast monitor`'s table fits an 80-column terminal: every estimate and its
interval whole (no ellipsis), one column per interval level the project declares."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
from rich.console import Console

from engine.monitor.result import ForecastQuality, Stat


def _q(levels: tuple[str, ...]) -> ForecastQuality:
    def s(e: float, lo: float, hi: float) -> Stat:
        return Stat(estimate=e, low=lo, high=hi)

    return ForecastQuality(
        series=1234,
        points=98765,
        issued_points=99000,
        actuals_share=s(0.998, 0.961, 1.0),
        mase=s(0.479, 0.421, 0.546),
        mase_ratio=s(0.856, 0.752, 0.975),
        bias=s(-0.014, -0.043, 0.044),
        coverage={lv: s(0.799, 0.734, 0.854) for lv in levels},
    )


def test_the_monitor_table_fits_80_columns_with_each_declared_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.cli.forecast as cf

    for levels in (("80", "95"), ("50", "90", "99")):
        con = Console(width=80, record=True, force_terminal=False, color_system=None)
        monkeypatch.setattr(cf, "console", con)
        q = _q(levels)
        res = NS(
            window=NS(from_iso="2026-01-01", to_iso="2026-03-01"),
            audit=NS(chain_ok=True, problems=[]),
            traffic=NS(requests=3, rows=96),
            no_traffic=False,
            models={"1": NS(note=None, forecast={"all": q, "store=North-West": q}, role="x")},
            rules=None,
        )
        cf.print_forecast_run(NS(result=res, delivered=None, retrains=[], path="r.json"))
        text = con.export_text()
        assert "…" not in text, text
        assert all(len(line) <= 80 for line in text.splitlines()), text
        for lv in levels:
            assert f"{lv}%" in text, text
        for want in ("0.479", "0.42..0.55", "0.856", "0.75..0.97", "-1.4%", "-4..4%", "73..85%"):
            assert want in text, (want, text)
