# Everything runs from .venv/, which `make setup` builds from uv.lock (uv itself is pinned and
# bootstrapped into .tools/ with the system Python, so a fresh machine needs only python3.11).
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
EMULATOR_PORT ?= 4010

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

# The Dagster UI over the same instance the CLI records to, with the emulator as the endpoint
# unless BRAKET_ENDPOINT_URL says otherwise.
dev: setup $(DAGSTER_HOME)/dagster.yaml
	@if [ -z "$$BRAKET_ENDPOINT_URL" ]; then \
	  $(BIN)/braket-warehouse emulator serve --port $(EMULATOR_PORT) & \
	  trap "kill $$!" EXIT; \
	  BRAKET_ENDPOINT_URL=http://127.0.0.1:$(EMULATOR_PORT) $(BIN)/dagster dev -w workspace.yaml; \
	else \
	  $(BIN)/dagster dev -w workspace.yaml; \
	fi

clean:
	rm -rf $(VENV) .tools data/*.duckdb data/*.duckdb.wal
