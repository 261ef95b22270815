# Two entry points (see README): `make demo` runs the whole pipeline on the embedded
# DuckDB default, `make test` runs the test suite. Both build .venv/ from the lock first.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv
venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m assets.demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(VENV)/bin/python -m bench
