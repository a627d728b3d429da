# The README's two commands: `make run` and `make test`. Each sets up .venv on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint schema bench migrate demo clean graphiql-assets

# RENDERTRACK_HOST and RENDERTRACK_PORT (default 127.0.0.1:8000) pick the address.
run: $(BASE_STAMP)
	$(BIN)/rendertrack serve

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/rendertrack migrate --check
	tests/run_suite.sh $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

schema: $(TEST_STAMP)
	$(BIN)/strawberry export-schema gql.schema:schema --output schema.graphql

migrate: $(BASE_STAMP)
	$(BIN)/rendertrack migrate

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

# A server on data/demo.sqlite3 (fresh each time), three simulated workers and sample jobs;
# RENDERTRACK_PORT picks the port (default 8000). Ctrl-C stops it all.
demo: $(BASE_STAMP)
	$(BIN)/python -m worker_sim.demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .cache

$(VENV)/bin/python:
	@echo "Creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip > /dev/null 2>&1 || true

# pip's output goes to $(INSTALL_LOG), shown only when the install fails.
INSTALL_LOG := $(VENV)/install.log
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check

$(BASE_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "Installing rendertrack into $(VENV) (log: $(INSTALL_LOG))"
	@$(PIP_INSTALL) -e . > $(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }
	@touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "Installing rendertrack with its test tools into $(VENV) (log: $(INSTALL_LOG))"
	@$(PIP_INSTALL) -e '.[test]' > $(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }
	@touch $@ $(BASE_STAMP)

# GraphiQL's files under app/static/graphiql/, fetched again with npm (tools/vendor_graphiql.py):
# the versions Strawberry's own page loads from a CDN, which rendertrack serves itself.
graphiql-assets:
	$(PYTHON) tools/vendor_graphiql.py
