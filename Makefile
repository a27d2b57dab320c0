# VideoPick's one task runner. `make run` and `make test` work on a fresh machine:
# they create the virtual environment and install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
PYTEST_ARGS ?=

.PHONY: help install system-deps minio run test test-unit lint format bench docs clean

help:
	@echo "make run    - start the whole platform on embedded defaults (http://localhost:8080)"
	@echo "make test   - install everything the tests need, then run the whole suite"
	@echo "make lint   - ruff and mypy (strict)"
	@echo "make bench  - benchmarks side by side with their peers"
	@echo "make docs   - write the OpenAPI and AsyncAPI documents to docs/"
	@echo "make clean  - remove the virtual environment, caches and local data"

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.8

# The lock file pins every package; --frozen refuses to run with a stale lock.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

# Front-end packages come from the npm registry, pinned by the lock file (never a CDN);
# --ignore-scripts: none of them needs an install script (swagger-ui-dist's is telemetry).
# The web client's libraries are copied, as the packages ship them, to where the
# gateway serves them (/static/vendor/, git-ignored).
WEB_VENDOR := gateway/web/static/vendor
gateway/static/node_modules/.synced: gateway/static/package.json gateway/static/package-lock.json
	npm ci --prefix gateway/static --ignore-scripts --no-audit --no-fund --silent
	mkdir -p $(WEB_VENDOR)
	cp gateway/static/node_modules/hls.js/dist/hls.min.js $(WEB_VENDOR)/hls.min.js
	cp gateway/static/node_modules/centrifuge/dist/centrifuge.js $(WEB_VENDOR)/centrifuge.js
	cp gateway/static/node_modules/tus-js-client/dist/tus.min.js $(WEB_VENDOR)/tus.min.js
	@touch $@

# Processes start from bytecode. Where PYTHONDONTWRITEBYTECODE is set (as on CI
# machines) Python never writes it, and every process start compiled the sources
# again (~1.7 s of CPU for the gateway's imports); compileall skips what is current.
PACKAGES := common events gateway ingest chat uploader transcoder

install: $(VENV)/.synced gateway/static/node_modules/.synced
	$(BIN)/python -m compileall -q -j 0 $(PACKAGES)

system-deps:
	bash scripts/install-system-deps.sh

minio:
	bash scripts/install-minio.sh >/dev/null

run: install
	$(BIN)/videopick up

test: install system-deps minio
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install system-deps minio
	bash scripts/install-go-tool.sh centrifugo github.com/centrifugal/centrifugo/v6@v6.9.1 >/dev/null
	bash scripts/install-go-tool.sh tusd github.com/tus/tusd/v2/cmd/tusd@v2.9.1 >/dev/null
	$(BIN)/pytest -m bench tests/bench $(PYTEST_ARGS)

docs: install
	mkdir -p docs
	$(BIN)/videopick events asyncapi --output docs/asyncapi.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache data
