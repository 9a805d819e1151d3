# Two entry points: `make demo` (install + main job on built-in data) and `make test` (lint, then tests).
PYTHON ?= python3
VENV ?= .venv
# Pinned here because these wheels are on local disk on the development machines;
# elsewhere use e.g.  make demo TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin

.PHONY: install demo lint test
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/medvqa demo --out runs/demo

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q
