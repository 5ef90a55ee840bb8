# make test            create .venv if missing, install with test extras, run the tests
# make demo [DATA=...] train model=cnn for one epoch and print its test metrics
# make default-model   retrain and re-export the bundled models/default.onnx (configs/experiment/default_model.yaml)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/datasets/faces-mini

.PHONY: test demo default-model bench lint format clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(PY) train.py model=cnn data.root=$(DATA) trainer.max_epochs=1

default-model: $(VENV)/.installed
	rm -rf runs/default_model
	$(PY) train.py experiment=default_model data.root=$(DATA) hydra.run.dir=runs/default_model
	$(PY) export.py ckpt=runs/default_model out=models/default.onnx

bench: $(VENV)/.installed
	$(PY) bench/infer_bench.py --frontier

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf runs multirun .pytest_cache
