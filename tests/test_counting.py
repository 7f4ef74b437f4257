"""The griffin_core.counting package: plain Python end to end (the sweep planner imports it in
a light process), and every counter reachable as `counting.NAME` from the module that owns it.
The counters themselves are checked in test_counting_{params,flops,memory,tables}.py."""

from __future__ import annotations

import subprocess
import sys

from counting_helpers import ROOT
from griffin_core import counting


def test_counting_imports_no_jax():
    """`python -m griffin_core.counting` (every module of the package) loads no JAX or NumPy."""
    code = ("import runpy, sys; runpy.run_module('griffin_core.counting', run_name='__main__'); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'numpy', 'flax')]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "## Parameters" in out.stdout and "## Training FLOPs per token" in out.stdout


def test_public_api_is_reexported_from_its_owner():
    from griffin_core.counting import flops, memory, params

    owners = {name: module for module in (params, flops, memory) for name in dir(module)}
    assert counting.__all__
    for name in counting.__all__:
        assert getattr(counting, name) is getattr(owners[name], name), name
