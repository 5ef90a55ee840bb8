# make test            create .venv if missing, install with test extras, run the tests
# make demo [DATA=...]  train the reference CNN for 7 epochs (about a minute) and print its test metrics
# make default-model   retrain and re-export the bundled models/default.onnx (configs/experiment/default_model.yaml)
# make report [DATA=...]   the dataset report of DATA (report.py) into report/
# make cross-dataset   the 2x2 table of the README: the bundled recipe trained on faces-mini and on dfdc-mini
#                      (grouped by source_video), each tested on both test splits, into runs/cross/
# make serve [PORT=5000 WORKERS=2 THREADS=4 MODEL=m.onnx KEEP_UPLOADS=DIR]   the web app, served by gunicorn
# make bench-http [CLIENTS=1,8,32 DURATION=10 MODE=image]   start gunicorn on a free port, run bench/http_bench.py, stop it
#                                               (MODE: image, photo, video or mix)
# make bench-soak [SOAK_CLIENTS=32 SOAK_SECONDS=60 SOAK_MODE=mix]   the same server under load for a minute: errors and
#                                               every worker's RSS after warm-up and at the end (passes within 10%)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/datasets/faces-mini
DFDC ?= ../shared/datasets/dfdc-mini
# The web app: gunicorn on HOST:PORT, WORKERS processes of THREADS threads; MODEL empty: the bundled model.
HOST ?= 0.0.0.0
PORT ?= 5000
WORKERS ?= 2
THREADS ?= 4
MODEL ?=
KEEP_UPLOADS ?=
CLIENTS ?= 1,8,32
DURATION ?= 10
MODE ?= image
SOAK_CLIENTS ?= 32
SOAK_SECONDS ?= 60
SOAK_MODE ?= mix

.PHONY: test demo default-model report cross-dataset bench serve bench-http bench-soak lint format clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(PY) train.py experiment=demo data.root=$(DATA)

default-model: $(VENV)/.installed
	rm -rf runs/default_model
	$(PY) train.py experiment=default_model data.root=$(DATA) hydra.run.dir=runs/default_model
	$(PY) export.py ckpt=runs/default_model out=models/default.onnx

report: $(VENV)/.installed
	$(PY) report.py $(DATA) --out report/

cross-dataset: $(VENV)/.installed
	test -f runs/default_model/metrics.json || $(MAKE) default-model
	test -f runs/dfdc_only/metrics.json || $(PY) train.py experiment=default_model data.root=$(DFDC) \
		data.manifest=metadata.csv data.group_by=source_video hydra.run.dir=runs/dfdc_only
	$(PY) evaluate.py --model runs/default_model --model runs/dfdc_only --data $(DATA) --data $(DFDC) \
		--split test --out runs/cross

bench: $(VENV)/.installed
	$(PY) bench/infer_bench.py --frontier

serve: $(VENV)/.installed
	exec $(VENV)/bin/deepfake-serve --host "$(HOST)" --port "$(PORT)" --workers "$(WORKERS)" --threads "$(THREADS)" \
	$(if $(MODEL),--model "$(MODEL)") $(if $(KEEP_UPLOADS),--keep-uploads "$(KEEP_UPLOADS)")

bench-http: $(VENV)/.installed
	$(PY) bench/http_bench.py --serve --workers $(WORKERS) --threads $(THREADS) --sweep $(CLIENTS) --seconds $(DURATION) \
	--mode $(MODE)

bench-soak: $(VENV)/.installed
	$(PY) bench/http_bench.py --serve --workers $(WORKERS) --threads $(THREADS) --soak --mode $(SOAK_MODE) \
	--clients $(SOAK_CLIENTS) --seconds $(SOAK_SECONDS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf runs multirun .pytest_cache
