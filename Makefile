# Two commands on a fresh machine (see README): `make demo` and `make test`.
# Both create ./.venv and install the package with what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= quick
FORMAT ?= pythae_avae tests examples benchmarks

.PHONY: install demo test format lint clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[demo,test]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python examples/color_mnist.py --preset $(PRESET)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

format: $(BIN)/.installed
	$(BIN)/python -m pip install -q black isort
	$(BIN)/python -m isort $(FORMAT)
	$(BIN)/python -m black $(FORMAT)

clean:
	rm -rf $(VENV) build *.egg-info outputs
