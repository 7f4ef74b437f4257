# Two entry points for a fresh machine (see README):
#   make demo   sets up .venv and runs the main job
#   make test   sets up .venv and runs the test suite
# Both install exactly the versions pinned in requirements.lock.
#   make device-check       on a machine with an NVIDIA GPU: kernel tests and griffin-bench device
#   make device-check-tpu   the same on a TPU VM

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# Byte-compiled at install: with PYTHONDONTWRITEBYTECODE set (as on some machines) every process
# would otherwise recompile jax, flax and ray from source, seconds per sweep worker.

.PHONY: venv demo test bench lock clean device-check device-check-tpu

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

# An accelerator's own virtual environment (.venv-gpu, .venv-tpu): the lock's versions plus the
# accelerator build of the same jax, pyproject's `gpu` or `tpu` extra (pinned to the lock's jax).
.venv-%/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	.venv-$*/bin/uv pip install --quiet --compile-bytecode --python .venv-$*/bin/python -r requirements.lock ".[$*]"
	touch $@

# The Pallas kernel and model-equality tests on the device, then `griffin-bench device` (about 10
# min; docs/benchmarks.md). JAX_PLATFORMS names the device: the tests' conftest.py would
# otherwise pin JAX to the CPU, and a missing device fails here instead of measuring the CPU.
# One test process (-n 0): a TPU's chips belong to one process, and on a GPU each process would
# otherwise preallocate most of its memory.
DEVICE_TESTS := tests/test_scan.py tests/test_scan_export.py tests/test_rglru_fused.py tests/test_kernels_gpu_interpret.py
define device_check
	.venv-$(1)/bin/uv pip install --quiet --compile-bytecode --python .venv-$(1)/bin/python --no-deps --reinstall-package griffin-scaling .
	JAX_PLATFORMS=$(2) XLA_PYTHON_CLIENT_PREALLOCATE=false .venv-$(1)/bin/pytest -p no:cacheprovider -n 0 $(DEVICE_TESTS)
	JAX_PLATFORMS=$(2) .venv-$(1)/bin/griffin-bench device --json device.json --markdown device.md
endef

device-check: .venv-gpu/.installed
	$(call device_check,gpu,cuda)

device-check-tpu: .venv-tpu/.installed
	$(call device_check,tpu,tpu)

lock:
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .venv-gpu .venv-tpu build *.egg-info
