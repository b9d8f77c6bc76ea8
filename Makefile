# Set-up is part of every target: a fresh machine needs only Python 3.11, pip and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench validate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dcsim run scenarios/quickstart.yaml

# the suite runs on every core (pytest-xdist); JOBS=1 runs it in one process
JOBS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS)

validate: $(STAMP)
	$(BIN)/dcsim validate-model

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) results .pytest_cache
