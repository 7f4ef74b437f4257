"""Output paths are checked before the work, by one helper (run_store.cli.output_problem and its
argparse types output_file / output_folder) in every command that writes files: a folder given
for a file, a file given for a folder, or a place nothing can be created in is one line naming
the option and the path, exit code 2, nothing printed on stdout (no work done) and nothing
written. Also options validated whatever else runs (griffin-figures --starts) and griffin-bench
train's shape checked before any progress line."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.cli import figures_main, fit_main
from analysis.synthetic import chinchilla_loss, powerlaw_table, write_store
from experiments.bench import main as bench_main
from experiments.data_cli import main as data_main
from run_store.cli import output_file, output_folder, output_problem

NO_PROC = not os.path.isdir("/proc/self") or sys.platform != "linux"


def ladder() -> pd.DataFrame:
    """Two families at five sizes, 20 tokens per parameter: enough for griffin-figures."""
    N = np.geomspace(3e4, 1.5e6, 5)
    return pd.concat([pd.DataFrame({"family": fam, "size": [f"s{i}" for i in range(5)], "N": N, "D": 20 * N,
                                    "L": scale * chinchilla_loss(N, 20 * N, E=1.8, A=60.0, B=90.0, alpha=0.3,
                                                                 beta=0.3)})
                      for fam, scale in (("mqa", 1.0), ("hawk", 0.97))], ignore_index=True)


def listing(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_error_line(capsys, code: int, prog: str) -> str:
    out = capsys.readouterr()
    assert code == 2, out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), out.err
    assert out.out == "", out.out  # nothing done before the error
    return lines[0]


def call(main, argv):
    """A command's exit code, whether argparse exits or main returns."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def test_output_problem_names_what_is_wrong_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    before = listing(tmp_path)
    assert output_problem(tmp_path / "dir") == "is a folder, not a file"
    assert output_problem(tmp_path / "file", folder=True) == "is a file, not a folder"
    assert output_problem(tmp_path / "file/x.csv") == f"{tmp_path / 'file'} is a file, not a folder"
    assert output_problem(tmp_path / "file") is None  # an existing file may be replaced
    assert output_problem(tmp_path / "new/deeper/x.csv") is None  # the writers create folders
    assert output_problem(tmp_path / "dir", folder=True) is None
    assert output_problem(tmp_path / "new/out", folder=True) is None
    assert listing(tmp_path) == before and (tmp_path / "file").read_text() == "x"
    if os.path.exists("/dev/null"):
        assert output_problem("/dev/null") == "is not a regular file"
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder, not a file"):
        output_file(str(tmp_path / "dir"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
        output_folder(str(tmp_path / "file"))


@pytest.mark.skipif(NO_PROC, reason="needs Linux /proc")
def test_a_place_where_nothing_can_be_created_is_refused_even_for_root():
    why = output_problem("/proc/x.csv")
    assert why is not None and why.startswith("cannot create it in /proc"), why


def test_griffin_fit_out_checked_before_fitting(tmp_path, capsys):
    table = tmp_path / "t.csv"
    powerlaw_table({"mqa": (50.0, -0.05)}, n=6).to_csv(table, index=False)
    (tmp_path / "adir").mkdir()
    line = one_error_line(capsys, call(fit_main, [table, "--form", "powerlaw", "--out", tmp_path / "adir"]),
                          "griffin-fit")
    assert f"argument --out: {tmp_path / 'adir'}: is a folder, not a file" in line
    if not NO_PROC:
        line = one_error_line(capsys, call(fit_main, [table, "--form", "powerlaw", "--out", "/proc/x.csv"]),
                              "griffin-fit")
        assert "argument --out: /proc/x.csv: cannot create it in /proc" in line
    # A new folder on the way is made.
    out = tmp_path / "new" / "fit.csv"
    assert call(fit_main, [table, "--form", "powerlaw", "--bootstrap", "5", "--out", out]) == 0
    assert out.stat().st_size > 0


def test_griffin_figures_out_checked_before_loading(tmp_path, capsys):
    write_store(tmp_path / "store", ladder())
    (tmp_path / "file").write_text("x")
    line = one_error_line(capsys, call(figures_main, [tmp_path / "store", "--out", tmp_path / "file"]),
                          "griffin-figures")
    assert f"argument --out: {tmp_path / 'file'}: is a file, not a folder" in line
    assert (tmp_path / "file").read_text() == "x"


def test_griffin_figures_default_out_checked_before_fitting(tmp_path, capsys):
    store = tmp_path / "store"
    write_store(store, ladder())
    (store / "figures").write_text("not a folder")
    code = call(figures_main, [store, "--bootstrap", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (f"griffin-figures: error: output folder {store / 'figures'}: is a file, "
                                     "not a folder (choose another with --out)"), err


@pytest.mark.parametrize("main, argv, prog", [
    (fit_main, ["t.csv", "--form", "chinchilla", "--starts", "bogus"], "griffin-fit"),
    (figures_main, ["store", "--starts", "bogus"], "griffin-figures"),  # no Approach-3 fit needed to refuse it
    (figures_main, ["store", "--starts", "alpha=1:0:1"], "griffin-figures"),
])
def test_starts_are_checked_at_parse_time(main, argv, prog, tmp_path, capsys):
    line = one_error_line(capsys, call(main, [tmp_path / argv[0], *argv[1:]]), prog)
    assert "argument --starts: start grid" in line


def test_griffin_data_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("hello")
    (tmp_path / "out").write_text("x")
    line = one_error_line(capsys, call(data_main, ["prepare", tmp_path / "in", "--out", tmp_path / "out"]),
                          "griffin-data prepare")
    assert f"argument --out: {tmp_path / 'out'}: is a file, not a folder" in line
    assert (tmp_path / "out").read_text() == "x"


def test_griffin_data_manifest_checks_where_it_writes_before_reading(tmp_path, capsys):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes(range(10)) * 2)
    (folder / "manifest.json").mkdir()  # the manifest's place is taken by a folder
    line = one_error_line(capsys, call(data_main, ["manifest", folder, "--vocab-size", "256"]), "griffin-data")
    assert line == f"griffin-data: error: manifest {folder / 'manifest.json'}: is a folder, not a file"


@pytest.mark.parametrize("argv, option", [
    (["scan", "--json", "{dir}"], "--json"),
    (["limits", "--json", "{dir}"], "--json"),
    (["device", "--quick", "--markdown", "{dir}"], "--markdown"),
])
def test_griffin_bench_outputs_checked_before_measuring(argv, option, tmp_path, capsys):
    argv = [a.format(dir=tmp_path) for a in argv]
    line = one_error_line(capsys, call(bench_main, argv), f"griffin-bench {argv[0]}")
    assert f"argument {option}: {tmp_path}: is a folder, not a file" in line


def test_griffin_bench_train_checks_the_shape_before_any_output(capsys):
    code = call(bench_main, ["train", "--num-heads", "5", "--no-ladder", "--malloc-children", "0"])
    line = one_error_line(capsys, code, "griffin-bench train")
    assert line == "griffin-bench train: error: model.num_heads=5 is invalid: must divide width=256"
