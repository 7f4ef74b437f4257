"""The malloc comparison of `griffin-bench train`: the fixed shape timed in child processes,
one glibc malloc setting after another.

Child processes because the setting that matters is process-wide and glibc reads it only at
start-up or before JAX starts its threads: one process cannot time two settings. Each child
is `griffin-bench train` itself, one family, no ladder, its JSON read back; the settings take
turns in a rotating order so that drift on a shared machine hits each alike. Plain Python:
this process need not load JAX to run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from statistics import median

from experiments.benchmarks import NO_TRIM_ENV

MALLOC_REPEATS = 3
"""Timed rounds in each child, by default."""
MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
              "MALLOC_TOP_PAD_")
"""glibc's tunables read from the environment; a child gets only those of its setting."""

# The settings the children are run with: (griffin-bench --malloc mode, extra environment).
# 'reuse-notrim' is 'reuse' with glibc's trimming off, given as environment variables (read by
# glibc at start-up, before any thread), as a user would set them for `griffin-train`.
MALLOC_SETTINGS: dict[str, tuple[str, dict[str, str]]] = {
    "default": ("default", {}),
    "reuse": ("reuse", {}),
    "reuse-notrim": ("default", NO_TRIM_ENV),
}


def _package_root() -> str:
    """The folder holding the `experiments` package: children run this source tree, not
    whatever copy is installed."""
    import experiments

    return str(Path(experiments.__file__).resolve().parent.parent)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """A child's environment: this package importable, glibc's MALLOC_* variables only those
    of its setting."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def compare_malloc(children: int, shape: dict[str, int], families: Sequence[str], repeats: int, seed: int,
                   matmul_n: int | None, compile_cache: str | None = None,
                   settings: Sequence[str] = tuple(MALLOC_SETTINGS),
                   progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Time the fixed shape in child processes, one family per child (one model per process, as
    in training), `children` children per family and malloc setting, one child at a time. The
    order of the settings is rotated from one family and pass to the next, so that drift on a
    shared machine hits each setting alike."""
    settings = list(settings)
    order = _order(children, families, settings)
    runs: list[dict[str, Any]] = []
    for i, (family, setting) in enumerate(order):
        mode, extra_env = MALLOC_SETTINGS[setting]
        progress(f"malloc child {i + 1}/{len(order)}: {family}, {setting}")
        with tempfile.TemporaryDirectory(prefix="griffin-bench-train-") as tmp:
            out = Path(tmp) / "child.json"
            argv = [sys.executable, "-m", "experiments.bench", "train", "--malloc", mode, "--no-ladder",
                    "--malloc-children", "0", "--repeats", str(repeats), "--seed", str(seed),
                    "--families", family, "--json", str(out), "--quiet", "--keep-trim",
                    "--compile-cache", compile_cache or "none"]
            argv += [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]
            if matmul_n:
                argv += ["--matmul-n", str(matmul_n)]
            t0 = time.perf_counter()
            done = subprocess.run(argv, env=_child_env(extra_env), capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"malloc child ({family}, {setting}) failed with exit code "
                                   f"{done.returncode}:\n{done.stderr[-4000:]}")
            result = json.loads(out.read_text())
        (row,) = result["families"]
        runs.append({"family": family, "setting": setting, "wall_s": time.perf_counter() - t0,
                     "malloc": result.get("malloc"), "env": extra_env, "max_rss_mib": result["max_rss_mib"],
                     **{k: row[k] for k in ("tokens_per_s", "step_ms", "mfu", "x_matmul", "page_faults_per_step",
                                            "compile_s")},
                     "matmul_in_run_gflops_per_s": result["matmul_in_run"]["gflops_per_s"]})
    return {"children_per_setting": children, "repeats": repeats, "settings": settings,
            "order": [list(o) for o in order], "runs": runs, "families": _summary(runs, families, settings)}


def _order(children: int, families: Sequence[str], settings: Sequence[str]) -> list[tuple[str, str]]:
    """(family, setting) of each child in turn: for each pass and family every setting once,
    starting one setting later than the family before."""
    return [(family, settings[(i + k + j) % len(settings)]) for i in range(children)
            for k, family in enumerate(families) for j in range(len(settings))]


def _summary(runs: list[dict[str, Any]], families: Sequence[str], settings: Sequence[str]) -> dict[str, Any]:
    """Per family and setting: the children's medians (peak RSS: their maximum) and, when
    'default' was run, tokens/s and x matmul over the default's."""
    summary: dict[str, Any] = {}
    for family in families:
        per_setting: dict[str, Any] = {}
        for setting in settings:
            rows = [r for r in runs if r["family"] == family and r["setting"] == setting]
            per_setting[setting] = {"tokens_per_s": median([r["tokens_per_s"] for r in rows]),
                                    "tokens_per_s_runs": [r["tokens_per_s"] for r in rows],
                                    "step_ms": median([r["step_ms"] for r in rows]),
                                    "mfu": median([r["mfu"] for r in rows]),
                                    "x_matmul": median([r["x_matmul"] for r in rows]),
                                    "page_faults_per_step": median([r["page_faults_per_step"] for r in rows]),
                                    "max_rss_mib": max(r["max_rss_mib"] for r in rows)}
        if "default" in per_setting:
            for setting in settings:
                for key, name in (("tokens_per_s", "over_default"), ("x_matmul", "x_matmul_over_default")):
                    per_setting[setting][name] = per_setting[setting][key] / per_setting["default"][key]
        summary[family] = per_setting
    return summary
