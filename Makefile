# Everything runs from .venv/, which `make setup` builds from uv.lock (uv itself is pinned and
# bootstrapped into .tools/ with the system Python, so a fresh machine needs only python3.11).
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
EMULATOR_PORT ?= 4010
EMULATOR ?= on
DEV_PORT ?= 3000
DEV_WAREHOUSE ?= $(CURDIR)/data/dev.duckdb

.PHONY: setup demo test lint bench dev clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/braket-warehouse demo

lint: setup
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/ruff format --check pipelines tests bench

test: lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m bench

# The Dagster UI (and its daemon, which runs the hourly sync schedule) over the same instance
# the CLI records to. Braket is an emulator on EMULATOR_PORT with its own warehouse,
# DEV_WAREHOUSE, so emulator tasks never reach a real one; with BRAKET_ENDPOINT_URL set or
# EMULATOR=off (real AWS, standard credential chain) the environment's settings are used.
dev: setup $(DAGSTER_HOME)/dagster.yaml
	@if [ -n "$$BRAKET_ENDPOINT_URL" ] || [ "$(EMULATOR)" = off ]; then \
	  exec $(BIN)/dagster dev -w workspace.yaml -p $(DEV_PORT); \
	fi; \
	url=$$(mktemp); \
	$(BIN)/braket-warehouse emulator serve --port $(EMULATOR_PORT) > $$url & pid=$$!; \
	trap "kill $$pid 2>/dev/null; rm -f $$url" EXIT; \
	until [ -s $$url ]; do \
	  kill -0 $$pid 2>/dev/null || { echo "make dev: no emulator (set EMULATOR_PORT=N)" >&2; exit 1; }; \
	  sleep 0.2; \
	done; \
	echo "make dev: Braket is the emulator at $$(head -1 $$url); warehouse $(DEV_WAREHOUSE)"; \
	BRAKET_ENDPOINT_URL=$$(head -1 $$url) BRAKET_WAREHOUSE_DB=$(DEV_WAREHOUSE) \
	  $(BIN)/dagster dev -w workspace.yaml -p $(DEV_PORT)

clean:
	rm -rf $(VENV) .tools data/*.duckdb data/*.duckdb.wal
