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

# Versions come from the lock files (docs/install.md): requirements/service.lock is the service's
# install; requirements/dev.lock (the service plus every extra) pins each extra installed on top.
LOCK := requirements/service.lock
DEV_LOCK := requirements/dev.lock
PLOTLY_JS := api/static/vendor/plotly.min.js
# ONNX Runtime's int8 engine (the [onnx] extra): auto = install it where the engine rule prefers it on
# this CPU (AVX2 or AVX-512 without bfloat16; docs/engines.md), yes, or no
ONNX ?= auto
# where pip finds torch's CPU build (2.13.0+cpu) when it is not on local disk, e.g.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu (PyPI's torch is the CUDA build: several GB more)
TORCH_INDEX ?=
PIP := $(PY) -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
WANTS_ONNX := from models.registry import PREFERENCE_BY_CLASS as P, cpu_class, cpu_flags; \
	print(P[cpu_class(cpu_flags())][0] == "onnx-int8")

.PHONY: install install-test lock model demo cluster serve run test test-fast lint evaluate bench clean

# the service: the locked packages, this project without dependencies (pip check then fails on a
# dependency that the lock lacks), and the int8 engine where it is the fastest
$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP) -r $(LOCK)
	$(PIP) --no-deps -e .
	$(PY) -m pip check
	@if [ "$(ONNX)" = yes ] || { [ "$(ONNX)" = auto ] && [ "$$($(PY) -c '$(WANTS_ONNX)')" = True ]; }; then \
	  echo "ONNX=$(ONNX): adding the [onnx] extra (ONNX Runtime's int8 engine, docs/engines.md)"; \
	  $(PIP) -c $(DEV_LOCK) -e '.[onnx]'; fi
	touch $@

# plotly.js for the leadership pages: from the pinned plotly wheel, sha256 checked, never committed
$(PLOTLY_JS): requirements/fetch_plotly_js.py | $(VENV)/.installed
	$(PY) requirements/fetch_plotly_js.py
	touch $@

install: $(VENV)/.installed $(PLOTLY_JS)

# what the tests need on top: the test tools and the extras whose tests run (ONNX engines and variants,
# the evaluation's Hunspell and BERTopic code); CI adds [scale] for the Ray tests
$(VENV)/.installed-test: $(VENV)/.installed $(DEV_LOCK) | $(PLOTLY_JS)
	$(PIP) -c $(DEV_LOCK) -e '.[test,bench,eval]'
	$(PY) -m pip check
	touch $@

install-test: $(VENV)/.installed-test

# Regenerate both lock files from fresh installs (needs the package registry; commit the result).
lock:
	rm -rf /tmp/idesluss-lock && python3 -m venv /tmp/idesluss-lock
	/tmp/idesluss-lock/bin/pip install --quiet --upgrade pip
	/tmp/idesluss-lock/bin/pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0
	/tmp/idesluss-lock/bin/pip install --quiet -e .
	( sed -n '1,/^$$/p' $(LOCK); /tmp/idesluss-lock/bin/pip freeze --exclude-editable ) > $(LOCK).new
	/tmp/idesluss-lock/bin/pip install --quiet -c $(LOCK).new -e '.[onnx,test,eval,bench,scale]'
	( sed -n '1,/^$$/p' $(DEV_LOCK); /tmp/idesluss-lock/bin/pip freeze --exclude-editable ) > $(DEV_LOCK).new
	mv $(LOCK).new $(LOCK) && mv $(DEV_LOCK).new $(DEV_LOCK) && rm -rf /tmp/idesluss-lock

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

# The two-node Ray tests run in a pytest process of their own: in the same process as the rest (after
# the real model and the live test server of the session) their encoder actors were cancelled before
# they started, every time; alone they pass. The cause is not found yet (docs/ray.md, "Not done").
test: install-test
	$(PY) -m pytest -q --ignore=tests/test_ray.py
	$(PY) -m pytest -q tests/test_ray.py

test-fast: install-test
	$(PY) -m pytest -q -m "not slow and not browser"

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

evaluate: install
	$(PIP) -c $(DEV_LOCK) -e '.[eval]'
	$(IDESLUSS) evaluate --out reports/latest

bench: install
	$(PIP) -c $(DEV_LOCK) -e '.[bench]'
	$(IDESLUSS) bench --out reports/bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache reports artifacts $(DB) $(DB).wal api/static/vendor
