"""The tables `griffin-bench train` prints: the fixed shape per family, the CPU ladder, the
malloc comparison and whether the targets are met.

Kept apart from the measurement so the figures stay a JSON-ready dict (what `--json` writes)
and the terminal layout can change without touching how they are taken. The report reads
everything, the targets included, from that dict; rich is imported only when it is printed.
"""

from __future__ import annotations

from typing import Any


def _ms(v: float) -> str:
    """Milliseconds: fewer decimals the larger the value."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def _num(v: float) -> str:
    """A rate: whole numbers with thousands separators from 100 up."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _basis(result: dict[str, Any]) -> tuple[str, str, str]:
    """What the rows' "mfu" is: (column name, name in the target line, how it is computed).
    Results written before `mfu_basis` existed divided by the cached matmul peak."""
    basis, peak = result.get("mfu_basis") or {}, result["matmul_peak"]
    if basis.get("kind") == "exact_over_nominal_bf16_peak":
        return ("MFU", "MFU", f"MFU: exact FLOPs / step time / nominal dense bf16 peak of {basis['chips']} x "
                f"{basis['chip']} ({basis['flops_per_s'] / 1e12:.0f} TFLOP/s)")
    device = basis.get("device_kind") or "cpu"
    return ("of peak", "fraction of measured matmul peak",
            f"of peak: fraction of measured matmul peak ({device}: no nominal peak), exact FLOPs / step time / "
            f"cached matmul peak {peak['flops_per_s'] / 1e9:.1f} GFLOP/s (n={peak['shape'][0]}, {peak['threads']} "
            f"threads, measured {peak['measured_at']})")


def render(result: dict[str, Any]) -> None:
    """Print the tables of a `run_train_bench` result (with its `malloc` and, if run,
    `malloc_comparison` entries) to the terminal."""
    from rich.console import Console
    from rich.table import Table

    s, m = result["shape"], result["machine"]
    column, named, how = _basis(result)
    console = Console(width=max(110, Console().width))
    table = Table(title=(f"Training step  B={s['batch']} T={s['length']} D={s['width']} depth={s['depth']} "
                         f"H={s['num_heads']} D_RNN={s['lru_width']} window={s['local_window']} "
                         f"V={s['vocab_size']} fp32, median of {result['repeats']} rounds"),
                  caption=(f"{how}. x matmul: step FLOP/s over an n={result['matmul_in_run']['n']} "
                           f"matmul timed in the same round (median {result['matmul_in_run']['gflops_per_s']:.1f} "
                           f"GFLOP/s). {m['cpu_model']}, {m['usable_cores']} cores, jax {m['jax_version']}, "
                           f"malloc {result.get('malloc', {}).get('mode', 'default')}"
                           f"{', trim ' + result['malloc']['trim'] if 'trim' in result.get('malloc', {}) else ''}"))
    for col, right in (("family", False), ("params", True), ("GFLOP/step", True), ("step ms", True),
                       ("tokens/s", True), (column, True), ("range", True), ("x matmul", True),
                       ("faults/step", True), ("compile s", True)):
        table.add_column(col, justify="right" if right else "left")
    for row in result["families"]:
        ok = row["mfu"] >= result["targets"]["mfu"]
        table.add_row(row["family"], f"{row['params'] / 1e6:.2f}M", f"{row['flops_per_step_exact'] / 1e9:.1f}",
                      _ms(row["step_ms"]), _num(row["tokens_per_s"]),
                      f"[{'green' if ok else 'red'}]{100 * row['mfu']:.1f}%",
                      f"{100 * row['mfu_range'][0]:.0f}-{100 * row['mfu_range'][1]:.0f}%",
                      f"{row['x_matmul']:.2f}", f"{row['page_faults_per_step']:.0f}", f"{row['compile_s']:.1f}")
    console.print(table)
    for name, r in result["ratios"].items():
        target = f" (target <= {result['targets']['griffin/mqa']:.1f})" if name == "griffin/mqa" else ""
        console.print(f"step time {name}: {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]{target}")

    rows = result["ladder"]["rows"]
    if rows:
        fams = list(dict.fromkeys(r["family"] for r in rows))
        lt = Table(title=(f"CPU ladder  T={result['ladder']['length']} batch={result['ladder']['batch']}: "
                          f"{named} (tokens/s); small widths are dispatch-bound"))
        lt.add_column("size")
        lt.add_column("D x depth", justify="right")
        for f in fams:
            lt.add_column(f, justify="right")
        by = {(r["size"], r["family"]): r for r in rows}
        for size in dict.fromkeys(r["size"] for r in rows):
            any_row = next(r for r in rows if r["size"] == size)
            lt.add_row(size, f"{any_row['width']} x {any_row['depth']}",
                       *(f"{100 * by[(size, f)]['mfu']:.1f}% ({_num(by[(size, f)]['tokens_per_s'])})"
                         for f in fams))
        console.print(lt)

    mc = result.get("malloc_comparison")
    if mc:
        mt = Table(title=(f"glibc malloc, child processes (one family each, {mc['children_per_setting']} per "
                          f"setting, {mc['repeats']} rounds each): tokens/s, x matmul, page faults per step, "
                          f"peak RSS"),
                   caption=("default: glibc as configured; reuse: --malloc reuse (one arena, no mmap, trim "
                            "above 1 GiB); reuse-notrim: MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 "
                            "MALLOC_TRIM_THRESHOLD_=2^40. vs default: ratio of tokens/s, and of x matmul "
                            "(each child's step speed over its own in-round matmul speed)"))
        mt.add_column("family")
        mt.add_column("setting")
        for col in ("tokens/s", "x matmul", "faults/step", "peak RSS GiB", "vs default", "x matmul vs default"):
            mt.add_column(col, justify="right")
        for family, r in mc["families"].items():
            for setting in mc["settings"]:
                row = r[setting]
                mt.add_row(family, setting, _num(row["tokens_per_s"]), f"{row['x_matmul']:.2f}",
                           f"{row['page_faults_per_step'] / 1e3:.0f}K", f"{row['max_rss_mib'] / 1024:.1f}",
                           f"{row.get('over_default', float('nan')):.2f}",
                           f"{row.get('x_matmul_over_default', float('nan')):.2f}")
            mt.add_section()
        console.print(mt)

    t = result["targets"]
    met = all(t["mfu_met"].values()) and t.get("griffin/mqa_met", True)
    console.print(f"target: {named} >= {100 * t['mfu']:.0f}% for every family"
                  + (f", griffin/mqa <= {t['griffin/mqa']:.1f}" if "griffin/mqa_met" in t else "")
                  + f": {'[green]met' if met else '[red]not met'}")
