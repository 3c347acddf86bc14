# The two commands of the README: `make up` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WEB_STAMP := web/dist/index.html
CACHE ?= $(HOME)/.cache/crowdseg

.PHONY: up test install web lint typecheck unit servers webtest docs clean dist

up: install
	$(VENV)/bin/crowdseg up

install: $(STAMP) $(WEB_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The web UI is optional until web/package.json exists.
$(WEB_STAMP): $(shell find web -type f -not -path 'web/node_modules/*' -not -path 'web/dist/*' 2>/dev/null)
	@if [ -f web/package.json ]; then cd web && npm ci --no-audit --no-fund && npm run build; \
	else mkdir -p web/dist && cp -n libs/static/index.html web/dist/index.html 2>/dev/null || true; fi

# Real test servers (Apache Kafka, FerretDB, MinIO, Chromium), provisioned idempotently outside the repo.
servers:
	@if [ -x scripts/provision-test-servers.sh ]; then CROWDSEG_CACHE=$(CACHE) scripts/provision-test-servers.sh; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check libs services tests bench docs
	@rm -rf .typecheck && mkdir -p .typecheck/crowdseg && \
	  for f in libs/*; do ln -s ../../$$f .typecheck/crowdseg/; done && \
	  ln -s ../../services .typecheck/crowdseg/services
	$(VENV)/bin/mypy .typecheck/crowdseg
	$(VENV)/bin/mypy docs/hooks.py

test: install servers lint webtest
	CROWDSEG_CACHE=$(CACHE) $(PY) -m pytest -p no:cacheprovider -q
	$(MAKE) --no-print-directory docs

# The docs site (mkdocs.yml, docs/), built strictly into site/: after pytest, whose browser tests take
# its screenshots (docs/screenshots/); a missing screenshot, link or setting description fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The web UI's own unit tests (vitest): geometry, raster parity with the server, the save queue.
webtest: $(WEB_STAMP)
	cd web && npm test

# An sdist and a wheel in dist/; both carry the built web UI (setup.py, MANIFEST.in).
dist: $(STAMP) $(WEB_STAMP)
	rm -rf build dist/crowdseg-*.whl dist/crowdseg-*.tar.gz
	$(PY) -m build --outdir dist .
# The container image (Containerfile), built with buildah and no Docker daemon; cached, so a second
# run with nothing changed takes seconds. Writes dist/crowdseg-<version>.oci.tar.
.PHONY: image
image: install servers
	CROWDSEG_CACHE=$(CACHE) PYTHON=$(PY) scripts/build-image.sh

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .typecheck web/dist web/node_modules dist build
