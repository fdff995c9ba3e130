# The local workflow. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
STACK ?= .dev/stack.json
GCP_API ?=
AZURE_API ?=

.PHONY: help install demo dev soak test lint unit integration e2e live emulators bench samples clean az-cli smoke lock audit

help:
	@echo "make demo        install, start the emulators, push samples/ through both clouds, stop"
	@echo "make dev         the local stack in the foreground until Ctrl-C; writes .dev/stack.json"
	@echo "make test        lint, type-check and every test layer but live"
	@echo "make emulators   run fake-gcs-server, Azurite and the Pub/Sub emulator until Ctrl-C"
	@echo "make bench       the benchmarks: grayscale, chain latency, migration against rclone"
	@echo "make soak        the reliability tests with long fuzzing (figures in docs/reliability.md)"
	@echo "make smoke       smoke-test a deployment: the local stack of make dev, or GCP_API=... AZURE_API=..."
	@echo "make live        the tests against real GCP and Azure (needs credentials, see README)"

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-migrate.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: install
	$(PY) -m devstack.demo

dev: install
	$(PY) -m devstack.dev

test: install lint
	$(PY) -m pytest -m "not live" --durations=25 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: install
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

soak: install
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -s tests/reliability tests/unit/test_fuzz.py $(PYTEST_ARGS)

live: install
	$(PY) -m pytest -m live tests/live $(PYTEST_ARGS)
	$(if $(GCP_API),$(PY) deploy/gcp.py --check --api $(GCP_API),@echo "GCP_API unset: no smoke check of a GCP deployment")
	$(if $(AZURE_API),$(PY) deploy/azure.py --check --api $(AZURE_API),@echo "AZURE_API unset: no smoke check of an Azure deployment")

# Smoke-test a deployment: `make smoke` against the local stack of `make dev`, or
# `make smoke GCP_API=https://... AZURE_API=https://.../api` (with GCS_BUCKET, AZURE_STORAGE_CONTAINER,
# AZURE_FUNCTION_KEY and GCP_IDENTITY_TOKEN in the environment).
smoke: install
	$(PY) deploy/gcp.py --check $(if $(GCP_API),--api $(GCP_API),--stack $(STACK))
	$(PY) deploy/azure.py --check $(if $(AZURE_API),--api $(AZURE_API),--stack $(STACK))

az-cli: .venv-az/bin/az

.venv-az/bin/az:
	$(PYTHON) -m venv .venv-az
	.venv-az/bin/pip install --quiet azure-cli

emulators: install
	$(PY) -m devstack.emulators

bench: install
	$(PY) bench/grayscale.py
	$(PY) bench/chain_latency.py
	$(PY) bench/cold_start.py
	$(PY) bench/ops_per_job.py
	$(PY) bench/migrate.py

# The deployed dependencies, pinned and hashed (deploy/package.py ships them); run after changing requirements.txt.
lock: install
	$(VENV)/bin/pip install --quiet uv
	$(VENV)/bin/uv pip compile requirements.txt --universal --generate-hashes --python-version 3.11 --no-header \
	  -o requirements.lock.body
	{ sed -n 1,3p requirements.lock; cat requirements.lock.body; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm requirements.lock.body

# On a machine with a network: fails when a package has a known vulnerability, or could not be audited at all.
audit: install
	$(VENV)/bin/pip install --quiet pip-audit
	$(PY) deploy/audit.py

samples: install
	$(PY) samples/make_samples.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
