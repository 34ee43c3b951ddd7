# Set-up and everyday commands. `make demo` and `make test` install first when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
PORT ?= 7860

.PHONY: install demo studio lint docs test bench clean label-studio

install: $(STAMP)

# torch/torchvision first, pinned by constraints.txt, with pip: these builds install from the machine's local files.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[offline,onnx,dev,ray,tracking]'
	touch $(STAMP)

# Label Studio's server, for the labelling loop's tests (`toolkit label`): a virtual environment of its own, since
# its pins (Django, pyarrow, numpy) are not the toolkit's.
LS_VENV := .venv-label-studio
LS_STAMP := $(LS_VENV)/.installed
label-studio: $(LS_STAMP)
$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q 'label-studio>=1.20' 'sentry-sdk<3'  # 1.23's Sentry set-up fails on 3.x
	touch $(LS_STAMP)

demo: install
	$(OFFLINE) $(BIN)/toolkit train recipes/configs/sentiment_minilm.yaml overwrite=true
	$(OFFLINE) $(BIN)/toolkit serve runs/sentiment_minilm --port $(PORT)

studio: install
	$(OFFLINE) $(BIN)/toolkit studio --runs runs --port $(PORT)

# ruff: lint (pycodestyle, pyflakes, import order, bugbear) and the formatter's check, before the tests.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# docs/configuration.md's reference, regenerated from the config dataclasses (a test checks it is current).
docs: install
	$(BIN)/python -m toolkit.reference docs/configuration.md

# One worker process per CPU, each test file in one worker (module fixtures are built once).
test: lint label-studio
	$(OFFLINE) $(BIN)/python -m pytest -n auto --dist loadfile

bench: install
	$(OFFLINE) $(BIN)/python benchmarks/sentiment_vs_trainer.py
	$(OFFLINE) $(BIN)/python benchmarks/train_whole_process.py
	$(OFFLINE) $(BIN)/python benchmarks/predict_speed.py
	$(OFFLINE) $(BIN)/python benchmarks/serve_load.py
	$(OFFLINE) $(BIN)/python benchmarks/serve_load.py --sweep --requests 400
	$(OFFLINE) $(BIN)/python benchmarks/studio_measure.py
	$(OFFLINE) $(BIN)/python benchmarks/translation_multi30k.py --target de
	$(OFFLINE) $(BIN)/python benchmarks/translation_multi30k.py --target fr --no-scratch --no-speed
	$(OFFLINE) $(BIN)/python benchmarks/summarization_scitldr.py
	$(OFFLINE) $(BIN)/python benchmarks/ner_conll2003.py
	$(OFFLINE) $(BIN)/python benchmarks/qa_squad.py
	$(OFFLINE) $(BIN)/python benchmarks/hymenoptera.py
	$(OFFLINE) $(BIN)/python benchmarks/image_new_classes.py --with-previous
	$(OFFLINE) $(BIN)/python benchmarks/seed_cnn_mnist.py
	$(OFFLINE) $(BIN)/python benchmarks/gan_transfer.py
	$(OFFLINE) $(BIN)/python benchmarks/image_scale.py
	$(OFFLINE) $(BIN)/python benchmarks/sweep_vs_shipped.py
	$(OFFLINE) $(BIN)/python benchmarks/eval_precision.py

clean:
	rm -rf runs .pytest_cache
