# Operator commands. `make run` and `make test` work from a fresh clone (they create .venv first).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CDK's jsii runs on Node 20 here; keep its warnings and caches out of the way.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: run worker key test lint unit integration e2e infra synth bench docs install addon clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --editable .   # the renderctl command, in .venv/bin
	touch $(STAMP)

install: $(STAMP)

# WORKERS worker processes of CONCURRENCY pool processes each (default 1 and RENDER_WORKER_CONCURRENCY, 1).
WORKERS ?= 1
CONCURRENCY ?=
CONCURRENCY_FLAG = $(if $(CONCURRENCY),--concurrency $(CONCURRENCY))
run: $(STAMP)
	$(PY) manage.py devstack --workers $(WORKERS) $(CONCURRENCY_FLAG)

# One more worker, in this terminal, for the stack `make run` has up (read from .devstack/env; refused when none is).
worker: $(STAMP)
	@$(PY) manage.py devstack_worker $(CONCURRENCY_FLAG)

# A new API key on the stack `make run` has up (read from .devstack/env; refused when none is running);
# KEY_ARGS="--allow-high --operator" grants scopes.
OWNER ?= dev
key: $(STAMP)
	@RENDER_DEVSTACK_REQUIRED=1 $(PY) manage.py create_api_key --owner "$(OWNER)" $(KEY_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

integration: $(STAMP)
	$(PY) -m pytest tests/integration -q

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e -q

infra: $(STAMP)
	$(PY) -m pytest tests/infra -q

# `cdk synth` with the CDK CLI from npm (offline: no account, no lookups); the template lands in cdk.out/.
synth: $(STAMP)
	test -x node_modules/.bin/cdk || npm install --no-audit --no-fund --silent
	npx cdk synth --quiet

# Three xdist workers: the end-to-end tests spend most of their time waiting on real processes.
test: lint $(STAMP)
	$(PY) -m pytest -q -n 3 --dist loadgroup

bench: $(STAMP)
	$(PY) -m bench.pipeline $(BENCH_ARGS)

# The documentation site (MkDocs Material), served on 127.0.0.1 with live reload; `make test` builds it with
# --strict (tests/docs/test_docs.py), so a broken link or anchor fails the tests.
DOCS_PORT ?= 8001
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

# The Blender add-on's installable zip (Edit > Preferences > Add-ons > Install); the standard library builds it.
addon:
	$(PYTHON) clients/blender_addon/build.py dist/render_farm_addon.zip

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .devstack staticfiles cdk.out node_modules site dist
