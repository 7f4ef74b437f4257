"""Golden numerics: tiny fixed runs whose results are pinned to `NUMERICS_VERSION`.

A run id hashes `run_store.ids.NUMERICS_VERSION`, so a code change that alters training results
must bump it (or runs of the old code are mistaken for runs of the new). This test ties the two
together: for each family (and one Griffin with `embed_scale` and `logit_softcap` on) it builds a
tiny fp32 model from a fixed seed, takes the forward logits of a fixed batch (drawn from a fixed
NumPy RNG, not the corpus, so no data file matters), then 3 optimiser steps with the project's own
`train_step` and `make_optimizer`, and compares with tests/golden/numerics.json:

- the loss and gradient norm before each step and after the last: rtol 1e-5;
- a fingerprint of the initial logits (mean, std, min, max and 8 fixed random projections of
  all of them): rtol 1e-5 with an absolute floor of 1e-5 x their std.

Why tolerances rather than a hash of rounded logits: a rounded hash flips whenever one of the
~3*10^4 logits sits at a rounding boundary and its last bit moves, which another CPU (vector
width, XLA:CPU's codegen) does. On one machine these results are bit-identical from run to run,
with 1 or 8 host devices (XLA_FLAGS=--xla_force_host_platform_device_count), one core (taskset)
or single-threaded Eigen. A last-bit change in the code (exp(x) computed as sqrt(exp(2x)) in the
RG-LRU) moved the losses and grad norms by at most 5e-7: below RTOL, so it only warns (a sha256
of the exact fp32 results, `bits`, is stored for that). Rounding the embedding scale to bf16
(sqrt(24) = 4.899 -> 4.906) moved the embed_scale case's losses by 3e-5 to 1e-4 and its
grad norms and logit fingerprint by up to 1e-3, and fails.

If values move while the file's `numerics_version` equals NUMERICS_VERSION, the test fails with
"numerics changed: bump NUMERICS_VERSION". After bumping it, regenerate the file with

    GRIFFIN_WRITE_GOLDEN=1 .venv/bin/pytest -q tests/test_numerics_golden.py
    # or: PYTHONPATH=. .venv/bin/python -m tests.test_numerics_golden

Writing refuses to replace values that moved under an unchanged version (bump first);
GRIFFIN_WRITE_GOLDEN=force overrides that (e.g. for a new case or a tolerance-only change).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import warnings
from typing import Any

import numpy as np
import pytest

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "numerics.json"
RTOL = 1e-5
STEPS = 3
BATCH, LENGTH, VOCAB = 4, 32, 256
REGENERATE = ("`GRIFFIN_WRITE_GOLDEN=1 .venv/bin/pytest -q tests/test_numerics_golden.py` "
              "(or `PYTHONPATH=. .venv/bin/python -m tests.test_numerics_golden`)")

# The CPU ladder's smallest row (cpu-30k: D 24, D_RNN 32, depth 3, 2 heads, 4 gate blocks) with
# a local window of 8 < LENGTH, so Griffin's local attention takes its blocked, windowed path.
CASES: dict[str, dict[str, Any]] = {
    "mqa": {"family": "mqa"},
    "hawk": {"family": "hawk"},
    "griffin": {"family": "griffin"},
    "griffin-embed_scale-softcap": {"family": "griffin", "embed_scale": True, "logit_softcap": 5.0},
}


def _model_config(case: dict[str, Any]):
    from griffin_core.sizes import model_config

    case = dict(case)
    return model_config(case.pop("family"), "cpu-30k", VOCAB, local_window=8, dtype="float32",
                        param_dtype="float32", **case)


def _batch() -> dict[str, np.ndarray]:
    """Fixed tokens; row 0 packs two documents (the second starts at t = 13); ~1/8 of targets
    unscored."""
    rng = np.random.default_rng(20240229)
    seq = rng.integers(0, VOCAB, (BATCH, LENGTH + 1)).astype(np.int32)
    pos = np.broadcast_to(np.arange(LENGTH, dtype=np.int32), (BATCH, LENGTH)).copy()
    pos[0, 13:] = np.arange(LENGTH - 13)
    mask = (rng.random((BATCH, LENGTH)) > 0.125).astype(np.float32)
    return {"tokens": seq[:, :-1], "targets": seq[:, 1:], "segment_pos": pos, "loss_mask": mask}


def _fingerprint(logits: np.ndarray) -> list[float]:
    x = np.asarray(logits, np.float64).ravel()
    proj = np.random.default_rng(7).standard_normal((8, x.size)) / np.sqrt(x.size)
    return [float(v) for v in (x.mean(), x.std(), x.min(), x.max(), *(proj @ x))]


def _bits(*arrays: np.ndarray) -> str:
    """sha256 of the exact fp32 results: informational (see the module docstring)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a, np.float32).tobytes())
    return digest.hexdigest()[:16]


def _case_program(case: dict[str, Any]):
    """(key, batch) -> (initial logits, loss and grad norm before each of STEPS + 1 steps).

    The parameters are initialised under jit as the trainer does, and the project's
    `train_step` (with `make_optimizer`) runs STEPS + 1 times in a `lax.scan`: the last loss
    is the loss after STEPS updates. Peak learning rate from the first step (no warmup)."""
    import jax

    from griffin_core.model import Griffin, init_params
    from griffin_core.optim import learning_rate_schedule, make_optimizer
    from griffin_core.optim_config import OptimSpec
    from griffin_core.train_step import init_state, train_step

    cfg = _model_config(case)
    spec = OptimSpec(lr=1e-2, total_steps=2 * STEPS, warmup_steps=0)
    optimizer = make_optimizer(spec)
    step = functools.partial(train_step, cfg, optimizer, learning_rate_schedule(spec))

    def run(key, batch):
        params = init_params(cfg, key)
        logits = Griffin(cfg).apply({"params": params}, batch["tokens"], batch["segment_pos"])

        def body(state, _):
            state, metrics = step(state, batch)
            return state, (metrics["loss"], metrics["grad_norm"])

        _, (losses, grad_norms) = jax.lax.scan(body, init_state(params, optimizer), None, length=STEPS + 1)
        return logits, losses, grad_norms

    return run


@functools.lru_cache(maxsize=1)
def compute_cases() -> dict[str, dict[str, Any]]:
    """Every case's golden values, from one compiled program: compiling dominates the test's
    time, and XLA:CPU's fixed cost per program is most of it."""
    import jax

    programs = {name: _case_program(case) for name, case in CASES.items()}
    run_all = jax.jit(lambda key, batch: {name: run(key, batch) for name, run in programs.items()})
    out = jax.device_get(run_all(jax.random.PRNGKey(1234), _batch()))
    return {name: {"logits": _fingerprint(logits), "losses": [float(v) for v in losses],
                   "grad_norms": [float(v) for v in grad_norms], "bits": _bits(logits, losses, grad_norms)}
            for name, (logits, losses, grad_norms) in out.items()}


def _mismatches(name: str, got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out = []
    for key in ("losses", "grad_norms", "logits"):
        g, w = np.atleast_1d(got[key]), np.atleast_1d(want[key])
        floor = RTOL * abs(want["logits"][1]) if key == "logits" else 0.0  # 1e-5 x the logits' std
        if g.shape != w.shape or not np.allclose(g, w, rtol=RTOL, atol=floor):
            out.append(f"{name}.{key}: got {g.tolist()}, golden {w.tolist()}")
    return out


def _load() -> dict[str, Any] | None:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else None


def write_golden(mode: str = "1") -> dict[str, Any]:
    """Recompute every case and rewrite the golden file under the current NUMERICS_VERSION."""
    from run_store.ids import NUMERICS_VERSION

    results = compute_cases()
    old = _load()
    if old is not None and old.get("numerics_version") == NUMERICS_VERSION and mode != "force":
        moved = [m for name, r in results.items() if name in old["cases"]
                 for m in _mismatches(name, r, old["cases"][name])]
        if moved:
            raise SystemExit(f"numerics changed under NUMERICS_VERSION={NUMERICS_VERSION!r}: bump it in "
                             "run_store/ids.py first (GRIFFIN_WRITE_GOLDEN=force overrides):\n" + "\n".join(moved))
    data = {"numerics_version": NUMERICS_VERSION, "regenerate": REGENERATE,
            "cases": {name: {"config": CASES[name], **r} for name, r in results.items()}}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    mode = os.environ.get("GRIFFIN_WRITE_GOLDEN", "")
    if mode:
        return write_golden(mode)
    data = _load()
    assert data is not None, f"{GOLDEN} is missing: generate it with {REGENERATE}"
    return data


@pytest.fixture(scope="module")
def computed() -> dict[str, dict[str, Any]]:
    return compute_cases()


def test_golden_file_is_for_the_current_numerics_version(golden):
    from run_store.ids import NUMERICS_VERSION

    assert golden["numerics_version"] == NUMERICS_VERSION, (
        f"{GOLDEN.name} holds values for NUMERICS_VERSION={golden['numerics_version']!r} but "
        f"run_store/ids.py says {NUMERICS_VERSION!r}: regenerate with {REGENERATE}")
    assert sorted(golden["cases"]) == sorted(CASES), f"golden cases differ from CASES: regenerate with {REGENERATE}"


@pytest.mark.parametrize("name", list(CASES))
def test_numerics_match_golden(golden, computed, name):
    from run_store.ids import NUMERICS_VERSION

    want = golden["cases"].get(name)
    assert want is not None and want["config"] == CASES[name], f"no golden for {name}: regenerate with {REGENERATE}"
    moved = _mismatches(name, computed[name], want)
    if moved and golden["numerics_version"] == NUMERICS_VERSION:
        pytest.fail(f"numerics changed: bump NUMERICS_VERSION in run_store/ids.py (now {NUMERICS_VERSION!r}) "
                    f"and regenerate with {REGENERATE}\n" + "\n".join(moved), pytrace=False)
    assert not moved, f"golden values are for another NUMERICS_VERSION: regenerate with {REGENERATE}"
    if computed[name]["bits"] != want["bits"]:
        warnings.warn(f"{name}: results equal the golden values within rtol {RTOL:g} but not bit for bit "
                      "(another CPU or XLA build, or a last-bit change in the code)", stacklevel=1)


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    written = write_golden(os.environ.get("GRIFFIN_WRITE_GOLDEN", "1"))
    print(f"wrote {GOLDEN} for NUMERICS_VERSION={written['numerics_version']!r}")
