# supportbot — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Django 6 needs Python 3.12 or newer: take the first one found (PATH, then pyenv's builds).
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3 python3.13 \
	$$HOME/.pyenv/versions/3.13*/bin/python3 /usr/local/bin/python3 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
	>/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
# Two installs: what running needs (`make run`, `make worker`), and that plus the test, lint and
# benchmark tools (`make test`, `make lint`, `make bench`; `make install` is this one).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install run worker test bench lint format

help:
	@echo "make run    start supportbot on http://$(HOST):$(PORT) (embedded default: no servers needed)"
	@echo "make test   run the whole test suite"
	@echo "make bench  run the benchmarks under bench/"
	@echo "make lint   ruff and mypy"

# Not an editable install: the project runs from this folder (pyproject lists no packages), so
# the install brings the dependencies and the version only; an editable one would add nothing
# but setuptools' warning about folders named like the package.
$(RUN_STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "supportbot needs Python 3.12 or newer (Django 6); none found" >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.'
	@touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet '.[dev]'
	@touch $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py loadkb
	@$(PY) manage.py ensure_admin
	@echo "supportbot: http://$(HOST):$(PORT)/  API docs: http://$(HOST):$(PORT)/api/docs"
	@# All three run in the background and the shell waits: a trapped signal (Ctrl-C, or make
	@# being stopped) then reaches the shell at once, and it stops them all. Beat is a process of
	@# its own (a worker's --beat child outlives a killed worker); however many beats run, one
	@# holds the schedule (ops/scheduler.py).
	@trap 'kill $$worker $$beat $$web 2>/dev/null; wait $$worker $$beat $$web 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/celery -A supportbot worker --loglevel=WARNING --pool=threads --concurrency=4 & \
	worker=$$!; \
	$(VENV)/bin/celery -A supportbot beat --loglevel=WARNING & \
	beat=$$!; \
	$(PY) -m supportbot.server -b $(HOST) -p $(PORT) supportbot.asgi:application & \
	web=$$!; \
	wait $$web

# A worker and a beat (standing by while another beat holds the schedule), for more workers
# beside `make run` or on other machines.
worker: $(RUN_STAMP)
	@trap 'kill $$worker $$beat 2>/dev/null; wait $$worker $$beat 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/celery -A supportbot worker --loglevel=INFO --pool=threads --concurrency=4 & \
	worker=$$!; \
	$(VENV)/bin/celery -A supportbot beat --loglevel=INFO & \
	beat=$$!; \
	wait -n $$worker $$beat

test: $(DEV_STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(PY) bench/run.py

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
