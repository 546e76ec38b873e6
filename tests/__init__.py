"""The engine's test suite (a package: a regular ``tests`` package some dependencies install
into site-packages, mlforecast 1.1 among them, would otherwise shadow this one)."""
