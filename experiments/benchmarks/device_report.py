"""The report of `griffin-bench device`: whether the targets are met, and the Markdown table.

Both read only the JSON-ready dict `device_bench.run_device_bench` returns (what `--json`
writes), so a saved result can be re-rendered and the layout changed without measuring again.

Targets on a GPU or TPU (docs/benchmarks.md, "On a GPU or TPU"): at Fig 8a's shape the Pallas
scan reaches `TARGET_PALLAS_X_COPY` of the device's copy bandwidth and is
`TARGET_PALLAS_OVER_SEQUENTIAL` times as fast as lax.scan; Griffin's training step takes at most
`TARGET_GRIFFIN_OVER_MQA` of MQA's at the shortest Fig 3 length, and the ratio falls with length.
On CPU the kernel runs in interpret mode, so the targets are reported but do not apply.
"""

from __future__ import annotations

from typing import Any

TARGET_PALLAS_X_COPY = 0.6
TARGET_PALLAS_OVER_SEQUENTIAL = 3.0
TARGET_GRIFFIN_OVER_MQA = 1.0


def _check(value: float | None, ok: bool | None) -> dict[str, Any]:
    return {"value": value, "met": None if value is None else ok}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target's value and whether it is met (None: not measured, e.g. skipped or on CPU
    where the kernel is not timed); "applies" is False on CPU."""
    scan, points = result["scan"], result["fig3"]["points"]
    first = scan["lengths"][0]
    pallas = next(r for r in scan["rows"] if r["variant"] == "pallas" and r["length"] == first)
    x_copy = pallas.get("x_copy")
    over = next(s for s in scan["speedups"] if s["length"] == first)["pallas_over_sequential"]
    ratios = [p.get("griffin_over_mqa") for p in points]
    known = None not in ratios and len(ratios) > 1
    return {
        "applies": result["device"]["platform"] != "cpu",
        "pallas_x_copy": {"target": TARGET_PALLAS_X_COPY, "length": first,
                          **_check(x_copy, x_copy is not None and x_copy >= TARGET_PALLAS_X_COPY)},
        "pallas_over_sequential": {"target": TARGET_PALLAS_OVER_SEQUENTIAL, "length": first,
                                   **_check(over, over is not None and over >= TARGET_PALLAS_OVER_SEQUENTIAL)},
        "griffin_over_mqa": {"target": TARGET_GRIFFIN_OVER_MQA, "length": points[0]["length"] if points else None,
                             **_check(ratios[0] if ratios else None,
                                      bool(ratios) and ratios[0] is not None and ratios[0] <= TARGET_GRIFFIN_OVER_MQA)},
        "griffin_over_mqa_falls": {"lengths": [p["length"] for p in points], "value": ratios,
                                   "met": all(b < a for a, b in zip(ratios, ratios[1:])) if known else None},
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def _count(n: int) -> str:
    """A parameter count: 29.6K, 101.3M, 1.2B."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _met(met: bool | None) -> str:
    return "not measured" if met is None else "**met**" if met else "not met"


def _scan_table(scan: dict[str, Any]) -> list[str]:
    lines = [f"## Scan: h_t = a_t h_(t-1) + x_t, batch {scan['batch']}, width {scan['width']}, fp32 "
             f"({scan['bytes_per_element']} bytes per element)", "",
             "| T | variant | best ms | GB/s | x copy | max abs diff | compile s |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in scan["rows"]:
        name = r["variant"] + (f" (unroll {r['unroll']})" if r.get("unroll") else "")
        if r["status"] == "timed":
            lines.append(f"| {r['length']} | {name} | {_ms(r['best_ms'])} | {_f(r['gbps'])} | {_f(r['x_copy'])} | "
                         f"{r['max_abs_diff']:.2g} | {r['compile_s']:.1f} |")
        elif r["status"] == "correctness_only":
            c = r["check_shape"]
            lines.append(f"| {r['length']} | {name} | {r['mode']} | - | - | {r['max_abs_diff']:.2g} "
                         f"(at B={c['batch']} T={c['length']} D={c['width']}) | - |")
        else:
            lines.append(f"| {r['length']} | {name} | skipped: {r['reason']} | - | - | - | - |")
    lines += ["", "| T | Pallas / lax.scan | Pallas / associative |", "|---:|---:|---:|"]
    lines += [f"| {s['length']} | {_f(s['pallas_over_sequential'])} | {_f(s['pallas_over_associative'])} |"
              for s in scan["speedups"]]
    return lines


def _basis(basis: dict[str, Any]) -> str:
    if basis["chip"]:
        return f"MFU: exact FLOPs / step time / the nominal dense bf16 peak of one {basis['chip']} " \
               f"({basis['flops_per_s'] / 1e12:.0f} TFLOP/s)"
    return (f"{basis['label']}: exact FLOPs / step time / a {basis.get('peak_dtype')} matmul peak measured on "
            f"{basis['device_kind']} ({basis['flops_per_s'] / 1e9:,.1f} GFLOP/s; {basis['peak_source']})")


def _steps_table(steps: dict[str, Any]) -> list[str]:
    basis = steps["mfu_basis"]
    lines = [f"## Training step: {steps['dtype']}, vocabulary {steps['vocab']:,}", "", _basis(basis) + ".", "",
             f"| row | size | family | batch x T | remat | params | step ms | tokens/s | {basis['label']} |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in steps["rows"]:
        head = f"| {r['row']} | {r['size']} | {r['family']} | {r['batch']} x {r['length']}"
        if r["status"] == "timed":
            lines.append(f"{head} | {r['remat']} | {_count(r['params'])} | {_ms(r['step_ms'])} | "
                         f"{r['tokens_per_s']:,.0f} | {_f(None if r['mfu'] is None else 100 * r['mfu'], 1)}% |")
        else:
            lines.append(f"{head} | - | - | skipped: {r['reason']} | - | - |")
    return lines


def _fig3_table(fig3: dict[str, Any]) -> list[str]:
    lines = [f"## Fig 3: Griffin / MQA step time, row {fig3['row']} ({fig3['size']}), "
             f"{fig3['tokens_per_step']:,} tokens per step", "",
             "| T | batch | remat | MQA ms | Griffin ms | Griffin / MQA |", "|---:|---:|---|---:|---:|---:|"]
    for p in fig3["points"]:
        if p["status"] == "timed":
            lines.append(f"| {p['length']} | {p['batch']} | {p['remat']} | {_ms(p['mqa_step_ms'])} | "
                         f"{_ms(p['griffin_step_ms'])} | {p['griffin_over_mqa']:.3f} |")
        else:
            lines.append(f"| {p['length']} | {p['batch']} | - | - | - | skipped: {p['reason']} |")
    return lines


def _fused_table(fused: dict[str, Any] | None) -> list[str]:
    if not fused:  # a result written before the item existed
        return []
    lines = [f"## Fused RG-LRU kernel: Griffin's step, row {fused['row']} ({fused['size']})", "",
             "| batch | T | unfused (auto) ms | fused ms | fused / unfused |", "|---:|---:|---:|---:|---:|"]
    if fused["status"] == "timed":
        lines.append(f"| {fused['batch']} | {fused['length']} | {_ms(fused['auto_step_ms'])} | "
                     f"{_ms(fused['fused_step_ms'])} | {fused['fused_over_auto']:.3f} |")
    else:
        lines.append(f"| {fused['batch']} | {fused['length']} | - | - | {fused['status']}: {fused['reason']} |")
    return lines + [""]


def _targets_table(t: dict[str, Any]) -> list[str]:
    falls = t["griffin_over_mqa_falls"]
    rows = [
        (f"Pallas scan >= {t['pallas_x_copy']['target']}x the copy bandwidth (T={t['pallas_x_copy']['length']})",
         _f(t["pallas_x_copy"]["value"]), t["pallas_x_copy"]["met"]),
        (f"Pallas scan >= {t['pallas_over_sequential']['target']:.0f}x lax.scan "
         f"(T={t['pallas_over_sequential']['length']})", _f(t["pallas_over_sequential"]["value"]),
         t["pallas_over_sequential"]["met"]),
        (f"Griffin / MQA step time <= {t['griffin_over_mqa']['target']:.1f} (T={t['griffin_over_mqa']['length']})",
         _f(t["griffin_over_mqa"]["value"], 3), t["griffin_over_mqa"]["met"]),
        (f"Griffin / MQA falls with length ({', '.join(str(n) for n in falls['lengths'])})",
         ", ".join(_f(v, 3) for v in falls["value"]), falls["met"]),
    ]
    lines = ["## Targets" + ("" if t["applies"] else " (for a GPU or TPU; on CPU the Pallas kernel is "
                                                     "interpret mode and these do not apply)"), "",
             "| target | value | |", "|---|---:|---|"]
    return lines + [f"| {name} | {value} | {_met(met)} |" for name, value, met in rows]


def markdown(result: dict[str, Any]) -> str:
    """The whole report as Markdown: device and provenance, copy bandwidth, scans, training
    steps, Fig 3, targets and what was skipped."""
    d, m, bw = result["device"], result["machine"], result["bandwidth"]
    lines = [f"# griffin-bench device: {d['device_kind']} ({d['platform']})", "",
             f"{result['mode']} run, {m['date']}, jax {m['jax_version']}, host {m['cpu_model']}; "
             f"{result['budget']['used_s']:.0f} s of a {result['budget']['seconds']:.0f} s budget; device memory "
             f"{d['memory_bytes'] / 2**30:.1f} GiB ({d['memory_source']}).", "",
             f"Copy bandwidth: **{bw['gbps']:,.1f} GB/s** (a jitted copy of {bw['bytes'] / 2**20:,.0f} MiB fp32, "
             f"bytes read + written / time, best of {bw['repeats']}).", ""]
    lines += _scan_table(result["scan"]) + [""] + _steps_table(result["steps"]) + [""]
    lines += _fig3_table(result["fig3"]) + [""] + _fused_table(result.get("fused")) + _targets_table(result["targets"])
    if result["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['item']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"
