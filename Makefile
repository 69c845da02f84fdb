# Walnut: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export WALNUT_HOME ?= $(CURDIR)/var

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.synced  ## create .venv and install the locked dependencies (idempotent)

$(VENV)/.synced: pyproject.toml uv.lock
	@# no uv yet means a new or half-made venv (e.g. an interrupted setup): start it afresh
	@test -x $(BIN)/uv || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	@# bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set, every new process (Airflow
	@# components, tasks, benchmark children) would otherwise recompile GX and Airflow from source
	$(BIN)/uv sync --frozen --quiet --compile-bytecode
	@touch $@

demo: setup  ## generate the synthetic hospitals, sync them, build the warehouse, print a summary
	WALNUT_DEMO=1 $(BIN)/walnut demo-data
	WALNUT_DEMO=1 $(BIN)/walnut sync --all
	$(BIN)/walnut build
	$(BIN)/walnut report
	$(BIN)/walnut dq --html
	$(BIN)/walnut docs
	$(BIN)/walnut status
	@echo
	@echo "Runtime data is under $(WALNUT_HOME)/ (sources, landing, staging, fhir, gov, warehouse)."
	@echo "Query it:  $(BIN)/walnut sql \"select count(*) from core.patient\""

test: setup  ## the whole suite, slow end-to-end tests included
	$(BIN)/pytest

test-fast: setup  ## skip the slow end-to-end tests
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .

clean:  ## remove runtime data (not the virtualenv)
	rm -rf var

.PHONY: airflow airflow-stop

# Without a pseudonym key in the environment the local stack uses the public demo key, like `make demo`.
airflow: setup  ## start Airflow 3 (api-server, scheduler, dag-processor, triggerer) on PostgreSQL
	$(if $(WALNUT_PSEUDONYM_KEY),,WALNUT_DEMO=$${WALNUT_DEMO:-1}) \
	AIRFLOW_HOME=$${AIRFLOW_HOME:-$(WALNUT_HOME)/airflow} $(BIN)/python -m deploy.airflow.stack start $(AIRFLOW_ARGS)

airflow-stop:  ## stop the Airflow components `make airflow` started (by pid)
	AIRFLOW_HOME=$${AIRFLOW_HOME:-$(WALNUT_HOME)/airflow} $(BIN)/python -m deploy.airflow.stack stop

.PHONY: bench
bench: setup  ## throughput and peak RSS per stage (BENCH_SCALE=large adds 1M rows); writes docs/benchmarks.md
	$(BIN)/python -m benchmarks
