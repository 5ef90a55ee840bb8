# make test            create .venv if missing, install with test extras, run every test (all tiers)
# make test-fast       the default tier only: no slow, network, browser or gpu tests (under 3 minutes on 2 cores)
# make demo [DATA=...]  train the reference CNN for 7 epochs (about a minute) and print its test metrics
# make default-model   retrain and re-export the bundled models/default.onnx (configs/experiment/default_model.yaml,
#                      about 20 minutes on 2 cores)
# make report [DATA=...]   the dataset report of DATA (report.py) into report/
# make cross-dataset   the model card's table: the bundled recipe trained on faces-mini, dfdc-mini (grouped by
#                      source_video), both, both + SBI pseudo-fakes, real faces + SBI; each tested on both test
#                      splits (runs/cross/) and on framed and perturbed faces-mini test faces (runs/robust/)
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

.PHONY: test test-fast demo default-model report cross-dataset bench serve bench-http bench-soak lint format clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The markers are declared in pyproject.toml; README "Tests" says what each tier holds.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not network and not browser and not gpu"

demo: $(VENV)/.installed
	$(PY) train.py experiment=demo data.root=$(DATA)

default-model: $(VENV)/.installed
	rm -rf runs/default_model
	$(PY) train.py experiment=default_model hydra.run.dir=runs/default_model
	$(PY) export.py ckpt=runs/default_model out=models/default.onnx threshold=fpr:0.05

report: $(VENV)/.installed
	$(PY) report.py $(DATA) --out report/

# The rows of the model card's cross-dataset table: the bundled recipe at 12 epochs with a plateau schedule,
# each on other training data. A row already trained (its metrics.json) is kept.
ROW := $(PY) train.py experiment=default_model model/scheduler=plateau trainer.max_epochs=12
BOTH := "data.root=[$(DATA),$(DFDC)]" data.balance=dataset
runs/faces_only/metrics.json:
	$(ROW) data.root=$(DATA) data.manifest=null data.group_by=null hydra.run.dir=runs/faces_only
runs/dfdc_only/metrics.json:
	$(ROW) data.root=$(DFDC) hydra.run.dir=runs/dfdc_only
runs/both/metrics.json:
	$(ROW) $(BOTH) hydra.run.dir=runs/both
runs/both_sbi/metrics.json:
	$(ROW) $(BOTH) data.pseudo_fakes=sbi data.pseudo_fakes_ratio=0.33 hydra.run.dir=runs/both_sbi
runs/sbi_only/metrics.json:
	$(ROW) $(BOTH) data.pseudo_fakes=sbi data.pseudo_fakes_ratio=1.0 hydra.run.dir=runs/sbi_only
TABLE_ROWS := faces_only dfdc_only both both_sbi sbi_only

# The table: every row and the bundled model on both test splits (runs/cross/), then each on the faces-mini
# test faces framed in photos and re-compressed or downscaled (runs/robust/<row>/robustness.md).
cross-dataset: $(VENV)/.installed $(foreach r,$(TABLE_ROWS),runs/$(r)/metrics.json)
	test -f models/default.onnx || $(MAKE) default-model
	$(PY) evaluate.py $(foreach r,$(TABLE_ROWS),--model runs/$(r)) --model models/default.onnx \
		--data $(DATA) --data $(DFDC) --split test --out runs/cross
	for m in $(foreach r,$(TABLE_ROWS),runs/$(r)) models/default.onnx; do \
		$(PY) evaluate.py --model $$m --data $(DATA) --split test --robustness --out runs/robust/$$(basename $$m .onnx) || exit 1; \
	done
	$(PY) evaluate.py --model models/default.onnx --data $(DFDC) --split test --robustness --out runs/robust/default_dfdc

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
