"""Every console script of pyproject.toml also works as `python -m <its module>` (what
`ray job submit -- python -m launch.cli ...` relies on): each module's `__main__` block is its
last statement and calls the script's function (a block placed earlier runs before the
functions below it exist), and `python -m <module> --help` prints the script's usage."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def _main_blocks(tree: ast.Module) -> list[tuple[int, ast.If]]:
    return [(i, node) for i, node in enumerate(tree.body) if isinstance(node, ast.If)
            and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"']


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_scripts_module_ends_with_a_main_block_calling_it(script):
    module, function = SCRIPTS[script].split(":")
    source = pathlib.Path(importlib.util.find_spec(module).origin).read_text()
    tree = ast.parse(source)
    blocks = _main_blocks(tree)
    assert len(blocks) == 1, f"{module}: {len(blocks)} `if __name__ == '__main__'` blocks"
    index, block = blocks[0]
    assert index == len(tree.body) - 1, f"{module}: the __main__ block is not the module's last statement"
    called = {n.func.id for n in ast.walk(block) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert function in called, f"{module}: the __main__ block does not call {function}"
    assert callable(getattr(importlib.import_module(module), function))


def test_every_script_runs_as_python_dash_m_with_help(tmp_path):
    """All at once (each is a fresh interpreter): exit 0 and the script's own usage line. Run
    from an empty folder, with the packages found where this test found them (the source tree
    or the installed package)."""
    roots = {str(pathlib.Path(importlib.util.find_spec(m.split(".")[0]).origin).parents[1])
             for m, _ in (s.split(":") for s in SCRIPTS.values())}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*sorted(roots), os.environ.get("PYTHONPATH", "")]),
               JAX_PLATFORMS="cpu", WANDB_MODE="disabled")
    procs = {script: subprocess.Popen([sys.executable, "-m", SCRIPTS[script].split(":")[0], "--help"], cwd=tmp_path,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for script in sorted(SCRIPTS)}
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"python -m {SCRIPTS[script]} --help: exit {proc.returncode}\n{err[-2000:]}"
        assert out.lstrip().startswith(f"usage: {script} "), f"{script}: {out[:300]!r}"
