# `make book`: create .venv if needed, install the CPU torch and the pinned requirements, execute every chapter and
# build the site.
# `make test`: the same set-up, then every test: code and widget tests, the stored-data tests (reported apart),
# the strict executed build, the site tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test unit site-test colab-test colab-smoke bench clean env

env: $(STAMP)

# torch first, the CPU build (scripts/cpu_torch.py): on Linux from PyTorch's CPU index if it answers within
# TORCH_INDEX_TIMEOUT seconds, else the pinned wheel of requirements.txt, and only if that is no CUDA build; the
# requirements then find it installed. Last, a check that no CUDA package (nvidia-*) came in.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_TIMEOUT ?= 5
$(STAMP): requirements.txt pyproject.toml scripts/cpu_torch.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) scripts/cpu_torch.py install --index $(TORCH_CPU_INDEX) --timeout $(TORCH_INDEX_TIMEOUT)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip check
	$(PY) scripts/cpu_torch.py check
	touch $(STAMP)

# Sphinx reads (and myst-nb executes) two chapters at a time, each kernel on one torch thread: both cores work.
# The build is jupyter-book's, strict (-W -n --keep-going): a warning or a failing cell fails it (see the script).
JOBS ?= 2
book: $(STAMP)
	$(PY) scripts/build_book.py --jobs $(JOBS)
	@echo "The site: $(CURDIR)/_build/html/index.html"

# two workers: the trainings use one thread each, and CI has two cores.
# Code tests first; then, reported apart, the tests that only read the stored sweeps (book/data).
unit: $(STAMP)
	$(PY) -m pytest -m "not site and not data and not colab" -n 2 --durations=15
	$(PY) -m pytest -m "data and not site" -n 2 -q

site-test: $(STAMP)
	$(PY) -m pytest -m site --durations=5

# the opening page's Colab notebook in a fresh venv holding only what Colab ships (about 3 minutes); every
# notebook: `make colab-test`
colab-smoke: $(STAMP)
	$(PY) -m pytest -m colab -n 0 -q -k "clean_environment and intro"

test: unit book site-test colab-smoke

# every Colab notebook (notebooks/) run top to bottom in a fresh venv holding only what Colab ships for the book, plus
# what the notebook's first cell installs (tests/test_colab_notebooks.py); about 15 minutes, so apart from `make test`
colab-test: $(STAMP)
	$(PY) -m pytest -m colab -n 0 -s

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf _build .pytest_cache
