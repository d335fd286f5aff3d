# Two entry points that work on a fresh machine with Python 3.11 and pip:
#   make demo   set up .venv, run the ridge comparison of all estimators, draw its figure
#               (prints one progress bar, the final table and the paths of the CSV and figures)
#   make test   set up .venv, run the test suite (ruff, then pytest in two worker processes of one
#               thread each: pytest-xdist; one thread per worker, as two workers share two cores)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready

.PHONY: demo test setup illcond answers clean

setup: $(READY)

# torch==2.13.0 first: it is the CPU build; an open range would pull a multi-GB CUDA build.
# setup installs the extras the tests need too (the tests marked torchopt, higher, torchdeq, jaxopt), so CI skips none.
$(READY): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,torchopt,higher,torchdeq,jaxopt]'
	touch $(READY)

demo: $(READY)
	$(BIN)/hgbench run -m +experiment=demo

test: $(READY)
	$(BIN)/ruff check --quiet hgbench tests scripts examples
	$(BIN)/ruff format --check --quiet hgbench tests scripts examples
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

# after a change to the code or the config tree: the shipped answers of `run --help` and `list`
# (hgbench/running/answers.py; a test fails while they are not the current code's)
answers: $(READY)
	$(BIN)/python -m hgbench.running.answers

illcond: $(READY)
	bash scripts/ridge_illcond.sh

clean:
	rm -rf $(VENV) results/runs results/sweeps results/demo
