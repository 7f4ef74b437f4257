"""Sharding proven by the compiler and by equal losses, on simulated CPU devices (each check
runs tests/mesh_checks.py in a subprocess started with that many devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hlo_text import collectives_in, computations, while_loops

HERE = os.path.dirname(os.path.abspath(__file__))


def _check(name: str, devices: int, *args: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mesh_checks.py"), name, *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_rglru_time_loop_has_no_collectives_and_fsdp_shards_parameters():
    """Griffin 400M under fsdp_tp (4 x 4) on 16 devices: the step communicates (FSDP gathers,
    tensor-parallel reductions), but no collective sits inside any RG-LRU time loop, forward
    or backward, and no array holds the whole vocabulary (logits and their gradient stay split);
    under fsdp on 16 devices each holds 1/16 of the parameters and of the optimiser state."""
    out = _check("hlo", 16)
    assert out["rglru_loops"] >= 4  # scanned group: 2 recurrent layers, forward and backward
    assert out["collectives_in_step"] > 0
    assert out["collectives_in_rglru_loops"] == []
    assert out["whole_vocab_arrays"] == 0
    assert abs(out["fsdp_param_bytes_per_device"] * 16 / out["param_bytes"] - 1) < 0.01
    assert abs(out["fsdp_opt_bytes_per_device"] * 16 / out["opt_bytes"] - 1) < 0.01


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> dict:
    return _check("meshes", 8, str(tmp_path_factory.mktemp("meshes")))


def test_meshes_and_checkpoints_give_the_same_losses(meshes):
    """A small Griffin from one init: 4 steps on 1 device and under fsdp_tp 2 x 4 equal those
    under fsdp on 8 devices; a checkpoint saved there after step 2 restores on 1 device, under
    fsdp_tp, into the scanned layout, and from an asynchronous save, and steps 3-4 equal too.
    (dp on 8 devices against 1: tests/test_resume_and_mesh.py, through griffin-train.)"""
    out = meshes
    assert out["one_device_devices"] == 1 and out["fsdp_tp_devices"] == 8 and out["scanned_devices"] == 8
    for name in ("one_device", "fsdp_tp", "scanned"):
        np.testing.assert_allclose(out[name], out["fsdp"], rtol=2e-6, err_msg=name)
    for name in ("one_device_resumed", "fsdp_tp_resumed", "scanned_resumed", "async_resumed"):
        np.testing.assert_allclose(out[name], out["fsdp"][2:], rtol=2e-6, err_msg=name)


def test_fused_kernel_under_fsdp_tp_has_the_unfused_models_gradient_on_one_device(meshes):
    """`scan_impl=pallas_fused` (interpret mode), run per device on its own channels and rows:
    the same gradient as the unfused model on 1 device (a_param's is the kernel's per-channel
    sum, which must add up over the devices splitting the batch)."""
    assert meshes["fused"]["grad_max_rel_diff"] < 1e-5


def test_gates_that_do_not_divide_the_mesh_keep_each_devices_rows(meshes):
    """Hawk with 3 gate blocks of 12 under fsdp on 8 devices (the gates stay replicated): no
    matmul works on the whole batch's rows. Before the gates ran per device, XLA gathered the
    rows flattened from [T, B] and every device computed every row's gates. The compile probe
    reports the state left whole (the gates among it) for PLAN.json."""
    out = meshes["odd_gates"]
    assert out["rows_gathered"] == 0
    assert out["gate_bytes"] <= out["replicated"] < 0.2 * out["state_bytes"]


def test_mamba2_layer_splits_by_heads_with_the_same_losses(meshes):
    """A hybrid with a Mamba-2 layer: 3 steps under fsdp_tp (2 x 4) equal those on 1 device, and
    no collective sits inside the SSD's loops over chunks (each device scans its own heads)."""
    out = meshes["ssm"]
    np.testing.assert_allclose(out["fsdp_tp"], out["one_device"], rtol=2e-6)
    assert out["ssd_loops"] >= 2  # forward and backward
    assert out["collectives_in_ssd_loops"] == []


HLO = """HloModule m
%inner (p: f32[4]) -> f32[4] {
  %p = f32[4] parameter(0)
  ROOT %r = f32[4] all-reduce(%p), to_apply=%add
}
%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %c = f32[4] call(%x), to_apply=%inner
}
%quiet (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %m = f32[4] multiply(%a, %b)
}
ENTRY %main (a: f32[4]) -> f32[4] {
  %w = (s32[], f32[4]) while(%t), condition=%cond, body=%body, metadata={op_name="x/rg_lru/while"}
  %v = (s32[], f32[4]) while(%t), condition=%cond, body=%quiet, metadata={op_name="y/rg_lru/while"}
}
"""


def test_the_hlo_reader_finds_a_collective_called_from_a_loop_body():
    comps = computations(HLO)
    assert while_loops(HLO, "rg_lru") == ["body", "quiet"]
    assert collectives_in(comps, "body") == ["all-reduce"]
    assert collectives_in(comps, "quiet") == []
