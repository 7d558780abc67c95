# The two set-up commands of the README: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
IDESLUSS := $(VENV)/bin/idesluss
DB ?= idesluss.duckdb
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install model demo cluster serve run test test-fast lint evaluate bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: the CPU build on local disk (an unpinned torch pulls several GB of CUDA)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

model: install
	$(IDESLUSS) model build

demo: model
	$(IDESLUSS) --db $(DB) ingest ideas demo/ideas.csv
	$(IDESLUSS) --db $(DB) ingest needs demo/needs.jsonl

cluster: install
	$(IDESLUSS) --db $(DB) cluster

serve: install
	$(IDESLUSS) --db $(DB) serve --host $(HOST) --port $(PORT) --demo-keys

run: demo cluster serve

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

evaluate: install
	$(PY) -m pip install --quiet -e '.[eval]'
	$(IDESLUSS) evaluate --out reports/latest

bench: install
	$(IDESLUSS) bench --out reports/bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache reports artifacts $(DB) $(DB).wal
