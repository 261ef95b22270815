# Two entry points (see README): `make demo` runs the whole pipeline on the embedded
# DuckDB default, `make test` runs the test suite. Both build .venv/ from the lock first.
# Bytecode is compiled at install: uv does not compile by default, and where PYTHONDONTWRITEBYTECODE
# is set (this machine kind sets it) every interpreter -- each Dagster run worker, forkserver and
# test subprocess -- would otherwise compile dagster, pandas and polars from source on start
# (11 CPU-s instead of 4.7 to import the code location). Stale project .pyc files are harmless:
# Python checks each one against its source's modification time.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv
venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VENV)/bin/python -c constraints.txt -e '.[dev]'
	$(VENV)/bin/python -m compileall -q clms_etl assets validations bench > /dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m assets.demo

# Two workers, each file on one of them: a module-scoped fixture (a whole night on Dagster) runs once,
# not once per worker (tests/conftest.py starts the slow files first).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(VENV)/bin/python -m bench
