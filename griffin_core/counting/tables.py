"""The Markdown tables of docs/counting.md: parameters and training FLOPs per token of every
family at every size row, and the FLOPs by component at two sizes.

Printed by `python -m griffin_core.counting`; tests/test_counting_tables.py fails when the
tables in the doc are not this module's current output, so the doc cannot drift from the
counters.
"""

from __future__ import annotations

from griffin_core.counting.flops import BREAKDOWN_KEYS, flops_breakdown, training_flops_per_token
from griffin_core.counting.params import count_params
from griffin_core.sizes import CPU_SIZES, PAPER_SIZES, model_config

PAPER_VOCAB = 256_000
"""Vocabulary used for the paper rows' tables (RecurrentGemma's; the paper states none)."""
CPU_VOCAB = 256
"""Vocabulary of the CPU ladder (bytes)."""
FAMILIES = ("mqa", "hawk", "griffin", "mamba2")


def _rows(paper_vocab: int, cpu_vocab: int):
    """(size, vocab, seq_len, {family: config}) for every paper row, then every CPU row."""
    for table, vocab, seq_len in ((PAPER_SIZES, paper_vocab, 2048), (CPU_SIZES, cpu_vocab, 256)):
        for name in table:
            yield name, vocab, seq_len, {f: model_config(f, name, vocab) for f in FAMILIES}


def _human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def format_param_table(paper_vocab: int = PAPER_VOCAB, cpu_vocab: int = CPU_VOCAB) -> str:
    """Markdown table: total and non-embedding parameters of each family at each size."""
    head = "| size | vocab | " + " | ".join(f"{f} total | {f} non-emb" for f in FAMILIES) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(FAMILIES))]
    for name, vocab, _, cfgs in _rows(paper_vocab, cpu_vocab):
        cells = []
        for f in FAMILIES:
            n = count_params(cfgs[f])
            cells += [f"{n.total:,} ({_human(n.total)})", f"{n.non_embedding:,} ({_human(n.non_embedding)})"]
        lines.append(f"| {name} | {vocab:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_flops_table(paper_vocab: int = PAPER_VOCAB, cpu_vocab: int = CPU_VOCAB) -> str:
    """Markdown table: training FLOPs per token (exact) and the ratios exact / as_executed and
    exact / 6N of training FLOPs for each family; paper rows at T = 2048, CPU rows at T = 256.
    (Training, not forward: as executed, Mamba-2's forward pass alone does extra work.)"""
    head = "| size | vocab | T | " + " | ".join(
        f"{f} exact/tok | {f} exact/as_exec | {f} exact/6N" for f in FAMILIES) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(FAMILIES))]
    for name, vocab, seq_len, cfgs in _rows(paper_vocab, cpu_vocab):
        cells = []
        for f in FAMILIES:
            train = {c: training_flops_per_token(cfgs[f], seq_len, c) for c in ("exact", "as_executed", "6N")}
            cells += [_human(train["exact"]), f"{train['exact'] / train['as_executed']:.3f}",
                      f"{train['exact'] / train['6N']:.3f}"]
        lines.append(f"| {name} | {vocab:,} | {seq_len} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_breakdown_table(size: str, seq_len: int, vocab: int, convention: str = "exact") -> str:
    """Markdown table: each component's share (%) of the forward FLOPs per token, by family."""
    cfgs = {f: model_config(f, size, vocab) for f in FAMILIES}
    parts = {f: flops_breakdown(cfgs[f], seq_len, convention) for f in FAMILIES}
    totals = {f: sum(parts[f].values()) for f in FAMILIES}
    lines = ["| component | " + " | ".join(FAMILIES) + " |", "|" + "---|" * (1 + len(FAMILIES))]
    for key in BREAKDOWN_KEYS:
        if any(parts[f][key] for f in FAMILIES):
            lines.append(f"| {key} | " + " | ".join(f"{100 * parts[f][key] / totals[f]:.2f}" for f in FAMILIES) + " |")
    lines.append("| forward FLOPs / token | " + " | ".join(_human(totals[f]) for f in FAMILIES) + " |")
    return "\n".join(lines)


BREAKDOWN_EXAMPLES = (("1.3B", 2048, PAPER_VOCAB), ("cpu-190k", 256, CPU_VOCAB))


def main() -> None:
    """Print every table of docs/counting.md, with the headings the doc gives them."""
    print(f"## Parameters (paper rows: vocab {PAPER_VOCAB:,}; CPU rows: vocab {CPU_VOCAB:,})\n")
    print(format_param_table())
    print("\n## Training FLOPs per token (exact) and ratios between conventions\n")
    print(format_flops_table())
    for size, seq_len, vocab in BREAKDOWN_EXAMPLES:
        print(f"\n## Exact forward FLOPs by component (%): {size}, T = {seq_len}, vocab {vocab:,}\n")
        print(format_breakdown_table(size, seq_len, vocab))


if __name__ == "__main__":
    main()
