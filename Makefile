# Two commands: `make demo` and `make test`. Each bootstraps the environment first:
# uv (installed with pip if missing) syncs .venv from uv.lock, using this machine's Python.
#
# Bytecode is compiled ahead: where Python runs with PYTHONDONTWRITEBYTECODE=1 (this
# machine and CI do), no .pyc is ever written, so every process (each CLI call, each Ray
# worker and Tune trial actor, each Spark Python worker) would compile every module it
# imports from source: 4.4 of the 7.7 s `insight models card` took. uv compiles the
# environment once at install (~25 s on 2 cores); `bytecode` compiles the project's own
# code before each run (under a second; only what changed).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.synced
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export UV_PYTHON_DOWNLOADS := never
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: demo test bench env bytecode lint typecheck unit clean help browser axe realdata jdbc

help:
	@echo "make demo   set up .venv and run the whole loop on embedded defaults"
	@echo "make test   set up .venv and run lint, type check and the test suite"
	@echo "make bench  run every benchmark and write benchmarks/RESULTS.md"

env: $(STAMP)

$(STAMP): uv.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		{ echo "installing uv with pip"; $(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --compile-bytecode
	@touch $@

bytecode: env
	@$(VENV)/bin/python -m compileall -q engine jobs benchmarks tests >/dev/null

demo: env bytecode
	$(VENV)/bin/insight demo

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: env
	$(VENV)/bin/mypy

# The browser tests open the report in headless Chromium: Debian's chromium and
# chromium-driver, installed here when missing (apt-get as root, else sudo); no skip.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
		echo "installing chromium and chromium-driver (Debian packages) for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
			>/dev/null || { echo "could not install chromium: the browser tests need it"; exit 1; }; \
	fi

# The database tests read a real PostgreSQL (Debian's server binaries, started by the test
# fixture) with Spark's JDBC reader: PostgreSQL's JDBC driver is Debian's
# libpostgresql-jdbc-java (a jar under /usr/share/java), installed here when missing.
JDBC_JAR := /usr/share/java/postgresql.jar
jdbc:
	@if [ -f $(JDBC_JAR) ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; else \
		echo "installing postgresql and libpostgresql-jdbc-java (Debian packages) for the database tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql libpostgresql-jdbc-java \
			>/dev/null || { echo "could not install postgresql / libpostgresql-jdbc-java: the database tests need them"; exit 1; }; \
	fi

# The accessibility check of the report: axe-core from the npm registry (npm pack verifies
# its integrity), kept inside .venv so a clean clone fetches it once.
AXE := $(VENV)/axe/axe.min.js
axe: $(AXE)
$(AXE): | $(STAMP)
	@mkdir -p $(VENV)/axe
	@cd $(VENV)/axe && npm pack axe-core@4.10.3 --silent >/dev/null && \
		tar xzf axe-core-4.10.3.tgz package/axe.min.js && mv package/axe.min.js . && \
		rm -rf package axe-core-4.10.3.tgz || { echo "could not fetch axe-core with npm"; exit 1; }

# A real many-series retail panel for the forecasting tests, shipped inside a Debian
# package (nothing downloaded at run time): Dominick's orange juice, 83 stores x 11 brands,
# weekly units with prices, deals and features (R's bayesm, orangeJuice). Only the .rda
# file is kept, under .venv; the package is not installed.
OJ := $(VENV)/data/orangeJuice.rda
realdata: $(OJ)
$(OJ): | $(STAMP)
	@mkdir -p $(VENV)/data/deb
	@cd $(VENV)/data/deb && { apt-get download r-cran-bayesm >/dev/null 2>&1 || \
		{ SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
		  apt-get download r-cran-bayesm >/dev/null 2>&1; }; } && \
		dpkg-deb -x r-cran-bayesm_*.deb x && \
		cp x/usr/lib/R/site-library/bayesm/data/orangeJuice.rda ../orangeJuice.rda && \
		cd .. && rm -rf deb || { echo "could not fetch r-cran-bayesm (Debian) for the real-data tests"; exit 1; }

# Two passes, together every test but the cluster tier: the pure tier (unit, stats) on both
# cores, then the integration tiers (Spark, Ray, Serve, subprocesses, benchmarks), also on two
# workers, one test file per worker at a time (a file's module fixtures, such as a trained
# workspace or a running Serve app, are built once), the longest files first (tests/conftest.py
# orders them; --no-loadscope-reorder keeps xdist from re-sorting by test count). Each
# worker starts its own Ray cluster and Spark session on ports it picks; nothing in the tier
# assumes it is alone on the machine.
PURE := not spark and not ray and not serve and not process and not bench and not cluster
test: lint typecheck browser axe realdata jdbc bytecode
	$(VENV)/bin/pytest -n 2 -m "$(PURE)"
	$(VENV)/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder \
		-m "(spark or ray or serve or process or bench) and not cluster"

# The multi-node tier (about 5 minutes): Ray head + 2 worker nodes as separate `ray start`
# processes, PostgreSQL + MLflow server, Spark standalone; all on the loopback interface.
test-cluster: env bytecode
	$(VENV)/bin/pytest -m cluster

unit: env bytecode browser axe realdata jdbc
	$(VENV)/bin/pytest -n 2 -m "not spark and not ray and not serve and not slow and not stats and not bench and not process and not cluster"

bench: env bytecode
	$(VENV)/bin/python benchmarks/run.py

clean:
	rm -rf .insight
