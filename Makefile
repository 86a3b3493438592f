# Two commands set up a new machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: run test install install-dev translations messages lint bench clean assets

# Front-end packages come from the npm registry (pinned in package-lock.json) and are served
# by the app from static/vendor/: never from a CDN. axe-core stays in node_modules for the tests.
ASSETS := static/vendor/chart.umd.min.js

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/vendor/chart.umd.min.js: node_modules/.installed
	mkdir -p static/vendor
	cp node_modules/chart.js/dist/chart.umd.min.js $@

assets: $(ASSETS)

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed translations assets
install-dev: $(VENV)/.installed-dev translations assets

translations: $(VENV)/.installed
	$(BIN)/pybabel compile --use-fuzzy -d translations --statistics 2>&1 | tail -n 2

# After changing user-facing text: refresh the catalogue, translate the new entries.
messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k _l -k N_ --ignore-dirs=".venv tests bench migrations" -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching

run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask bootstrap --demo
	$(BIN)/flask run --host 127.0.0.1 --port 5000

test: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

# Static checks: ruff (lint and format), the type checker, the import contracts (pyproject.toml).
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install-dev
	$(BIN)/python bench/admin_list.py
	$(BIN)/python bench/points.py
	$(BIN)/python bench/survey_submit.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules static/vendor
