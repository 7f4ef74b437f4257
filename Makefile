# Two entry points for a fresh machine (see README):
#   make demo   sets up .venv and runs the main job
#   make test   sets up .venv and runs the test suite
# Both install exactly the versions pinned in requirements.lock.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# Byte-compiled at install: with PYTHONDONTWRITEBYTECODE set (as on some machines) every process
# would otherwise recompile jax, flax and ray from source, seconds per sweep worker.

.PHONY: venv demo test bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	touch $(STAMP)

venv: $(STAMP)

# The project itself is installed as a regular (non-editable) package, so the tests and the
# demo run what a user would get, configs included.
install: venv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps --reinstall-package griffin-scaling .

demo: install
	$(BIN)/griffin-demo

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/griffin-bench scan

lock:
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
