# Set-up is part of every target: a fresh machine needs only Python 3.11, pip and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run lint test fuzz bench validate same-results docs docs-serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dcsim run scenarios/quickstart.yaml

# ruff over the whole repository, as configured in pyproject.toml ([tool.ruff]); test runs it first
lint: $(STAMP)
	$(BIN)/ruff check .

# the suite runs on every core (pytest-xdist); JOBS=1 runs it in one process
JOBS ?= auto
test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(JOBS)

# the fuzz test of tests/test_fuzz.py at 10,000 mutated scenarios (make test runs 40), beside the
# deterministic sweep of single number mutations over every scenario (about half an hour on 2 cores)
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	DCSIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) DCSIM_FUZZ_SWEEP=1 $(BIN)/python -m pytest -q -n $(JOBS) \
		tests/test_fuzz.py --hypothesis-show-statistics

validate: $(STAMP)
	$(BIN)/dcsim validate-model

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# results of the quickstart, bench-1m's fleet at 100k requests and every scenario, against
# those of commit BASE (default: the last commit): a change meant to keep results must pass
BASE ?= HEAD
same-results: $(STAMP)
	$(BIN)/python -m benchmarks.same_results against $(BASE)

# the documentation site, offline and strict (a broken link or an unknown generated block
# fails it), into site/; docs-serve rebuilds it on every change at http://127.0.0.1:8000
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) results .pytest_cache site
