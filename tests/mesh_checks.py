"""Multi-device checks, run by tests/test_sharding_meshes.py in a subprocess started with
simulated CPU devices: `python tests/mesh_checks.py CHECK [TMPDIR]` prints one JSON object.

- hlo: Griffin 400M (the paper's row) compiled under fsdp_tp on 16 devices: collectives inside
  the RG-LRU's time loops, and elsewhere; per-device parameter bytes under fsdp on 16.
- meshes: a small Griffin trained 4 steps under fsdp on 8 devices, on 1 device and under
  fsdp_tp 2x4; saved after 2 steps under fsdp, restored on 1 device, under fsdp_tp 2x4 and in
  the scanned layout, then 2 more steps each; an asynchronous save too; the fused RG-LRU kernel
  under fsdp_tp 2x4 against the unfused model on 1 device; matmuls over the whole batch's rows in
  a Hawk whose gates do not divide the mesh. And a small hybrid with
  a Mamba-2 layer (recurrent, mamba2) trained 3 steps on 1 device and under
  fsdp_tp 2 x 4, with the collectives inside its SSD chunk loops.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.compile_probe import abstract_batch, replicated_state_bytes  # noqa: E402
from experiments.programs import programs, restore_state  # noqa: E402
from griffin_core.checkpoint import Checkpointer  # noqa: E402
from griffin_core.config import ModelConfig  # noqa: E402
from griffin_core.optim_config import OptimSpec  # noqa: E402
from griffin_core.parallelism import resolve_mesh  # noqa: E402
from griffin_core.sharding import global_batch, make_mesh  # noqa: E402
from griffin_core.sizes import model_config  # noqa: E402
from hlo_text import COLLECTIVES, collectives_in, computations, while_loops  # noqa: E402

SMALL = ModelConfig(family="griffin", vocab_size=64, width=32, depth=4, num_heads=4, lru_width=32, num_gate_blocks=4,
                    local_window=8)
OPTIM = OptimSpec(lr=3e-3, total_steps=10, warmup_steps=2)
BATCH, LENGTH = 8, 16


def build(cfg, strategy: str, sizes: dict, devices: int):
    layout = resolve_mesh(strategy, sizes, devices)
    mesh = make_mesh(layout, jax.devices()[:devices])
    return programs(cfg, OPTIM, 1, layout, mesh), mesh


def hlo() -> dict:
    cfg = model_config("griffin", "400M", 256_000, dtype="bfloat16", scan_layers=True, remat="full")
    jitted, mesh = build(cfg, "fsdp_tp", {"fsdp": 4, "tensor": 4}, 16)
    text = jitted.step.lower(jitted.abstract_state, abstract_batch(mesh, 16, 2048)).compile().as_text()
    comps = computations(text)
    loops = while_loops(text, "rg_lru")
    inside = sorted({c for body in loops for c in collectives_in(comps, body)})
    everywhere = sum(len(re.findall(rf"\b{c}(?:-start)?\(", text)) for c in COLLECTIVES)
    # Arrays with a whole 256,000-entry vocabulary dimension (logits, their gradient, the
    # embedding gathered): none, with the vocabulary split over `tensor`.
    whole_vocab = re.findall(r"\b(?:f32|bf16|s32)\[[\d,]*\b256000\b[\d,]*\]", text)
    fsdp, _ = build(cfg, "fsdp", {}, 16)

    def nbytes(tree, per_device: bool) -> int:
        leaves = jax.tree_util.tree_leaves(tree)
        shape = (lambda x: x.sharding.shard_shape(x.shape)) if per_device else (lambda x: x.shape)
        return sum(math.prod(shape(x)) * x.dtype.itemsize for x in leaves)

    state = fsdp.abstract_state
    return {"rglru_loops": len(loops), "collectives_in_rglru_loops": inside, "collectives_in_step": everywhere,
            "whole_vocab_arrays": len(whole_vocab), "param_bytes": nbytes(state.params, False),
            "fsdp_param_bytes_per_device": nbytes(state.params, True), "opt_bytes": nbytes(state.opt_state, False),
            "fsdp_opt_bytes_per_device": nbytes(state.opt_state, True)}


def _batches(n: int):
    rng = np.random.default_rng(0)
    for _ in range(n):
        tokens = rng.integers(0, 64, (BATCH, LENGTH + 1)).astype(np.int32)
        pos = np.concatenate([np.arange(10), np.arange(LENGTH - 10)])[None].repeat(BATCH, 0).astype(np.int32)
        yield {"tokens": tokens[:, :-1], "targets": tokens[:, 1:], "segment_pos": pos,
               "loss_mask": np.ones((BATCH, LENGTH), np.float32), "segment_ids": (pos == 0).cumsum(1).astype(np.int32)}


def _train(jitted, mesh, state, batches, step=None) -> tuple[object, list[float]]:
    losses = []
    for batch in batches:
        state, metrics = (step or jitted.step)(state, global_batch(mesh, batch, BATCH))
        losses.append(float(metrics["loss"]))
    return state, losses


def meshes(folder: str) -> dict:
    """Losses of 4 steps from the same init under fsdp (8 devices, saving after step 2), on 1
    device and under fsdp_tp 2 x 4; and of steps 3-4 resumed from the fsdp checkpoint on each,
    in the scanned layout and from an asynchronous save. One compile per mesh. Then `ssm()`
    (in the same process: one JAX start for both), under "ssm"."""
    batches = list(_batches(4))
    out = {}
    jitted, mesh = build(SMALL, "fsdp", {}, 8)
    state, first = _train(jitted, mesh, jitted.init(jax.random.PRNGKey(0)), batches[:2])
    with Checkpointer(os.path.join(folder, "sync")) as ckpt:
        ckpt.save(2, state)
    with Checkpointer(os.path.join(folder, "async"), async_save=True) as ckpt:
        ckpt.save(2, state)  # written in the background; closing waits for it
    _, rest = _train(jitted, mesh, state, batches[2:])
    out["fsdp"] = first + rest
    with Checkpointer(os.path.join(folder, "async")) as ckpt:
        _, out["async_resumed"] = _train(jitted, mesh, restore_state(ckpt, 2, SMALL, jitted), batches[2:])
    for name, cfg, strategy, sizes, devices in [
            ("one_device", SMALL, "dp", {}, 1), ("fsdp_tp", SMALL, "fsdp_tp", {"fsdp": 2, "tensor": 4}, 8),
            ("scanned", SMALL.replace(scan_layers=True), "fsdp", {}, 8)]:
        jitted, mesh = build(cfg, strategy, sizes, devices)
        _, out[name] = _train(jitted, mesh, jitted.init(jax.random.PRNGKey(0)), batches)
        with Checkpointer(os.path.join(folder, "sync")) as ckpt:
            restored = restore_state(ckpt, 2, cfg, jitted)
        out[name + "_devices"] = len(jax.tree_util.tree_leaves(restored.params)[0].sharding.device_set)
        _, out[name + "_resumed"] = _train(jitted, mesh, restored, batches[2:])
    out["fused"] = fused(batches)
    out["odd_gates"] = odd_gates()
    out["ssm"] = ssm()
    return out


ODD_GATES = ModelConfig(family="hawk", vocab_size=64, width=32, depth=2, num_heads=4, lru_width=36, num_gate_blocks=3,
                        local_window=8)
"""Gates of 3 blocks of 12: neither divides 8 devices, so FSDP leaves them replicated."""


def odd_gates() -> dict:
    """ODD_GATES's step under fsdp on 8 devices: the matmuls with a dimension of the whole
    batch's rows (8 x 16 = 128; each device should work on its own 16), and the train state's
    bytes left whole on every device, beside those of its gates' weights and biases."""
    jitted, mesh = build(ODD_GATES, "fsdp", {}, 8)
    text = jitted.step.lower(jitted.abstract_state, abstract_batch(mesh, BATCH, LENGTH)).compile().as_text()
    gathered = [line for line in text.splitlines() if re.search(r"= \w+\[[\d,]*\b128\b[\d,]*\]\S* dot\(", line)]
    n, k = ODD_GATES.num_gate_blocks, ODD_GATES.lru_width // ODD_GATES.num_gate_blocks
    gates = ODD_GATES.depth * 2 * (n * k * k + n * k) * 4 * 3  # fp32 parameter and two Adam moments
    state = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(jitted.abstract_state))
    return {"rows_gathered": len(gathered), "replicated": replicated_state_bytes(jitted.abstract_state, "fsdp"),
            "gate_bytes": gates, "state_bytes": state}


def _gradients(cfg, strategy: str, sizes: dict, devices: int, batch: dict):
    """The loss's gradient at the init under the plan (the optimiser left out: Adam would hide
    a gradient wrong by a factor)."""
    from griffin_core.sharding import with_mesh
    from griffin_core.train_step import mean_loss

    layout = resolve_mesh(strategy, sizes, devices)
    mesh = make_mesh(layout, jax.devices()[:devices])
    jitted = programs(cfg, OPTIM, 1, layout, mesh)
    grad = with_mesh(layout, mesh, jax.jit(jax.grad(lambda p, b: mean_loss(cfg, p, b))))
    return grad(jitted.init(jax.random.PRNGKey(0)).params, global_batch(mesh, batch, BATCH))


def fused(batches) -> dict:
    """SMALL with the fused RG-LRU kernel (interpret mode) under fsdp_tp 2 x 4: the largest
    difference of its loss's gradient from the unfused model's on 1 device, relative to each
    leaf's largest entry (a_param's gradient is the kernel's per-channel sum over the rows of
    each device, which must also add up over the devices that split the batch). The gradient
    at the init, not losses over steps: the step's update follows from it, and each step
    program compiled with the kernel's interpreter costs seconds."""
    cfg = SMALL.replace(scan_impl="pallas_fused")
    got = _gradients(cfg, "fsdp_tp", {"fsdp": 2, "tensor": 4}, 8, batches[0])
    want = _gradients(SMALL, "dp", {}, 1, batches[0])
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))
                                                      / max(np.max(np.abs(np.asarray(b))), 1e-30)), got, want)
    return {"grad_max_rel_diff": max(jax.tree_util.tree_leaves(diffs))}


HYBRID = ModelConfig(family="custom", vocab_size=64, width=32, depth=2, num_heads=4, lru_width=32,
                     num_gate_blocks=4, local_window=8, block_pattern=("recurrent", "mamba2"),
                     ssm_state=4, ssm_head_dim=8, ssm_chunk=5)


def ssm() -> dict:
    """Losses of 3 steps of HYBRID on 1 device and under fsdp_tp (2 x 4, its 8 SSD heads split
    4 ways), and the collectives inside the SSD's loops over chunks in the sharded step."""
    batches = list(_batches(3))
    out = {}
    for name, strategy, sizes, devices in [("one_device", "dp", {}, 1), ("fsdp_tp", "fsdp_tp", {"fsdp": 2, "tensor": 4}, 8)]:
        jitted, mesh = build(HYBRID, strategy, sizes, devices)
        # Compiled once, explicitly: the steps run the executable whose HLO is read below.
        compiled = jitted.step.lower(jitted.abstract_state, abstract_batch(mesh, BATCH, LENGTH)).compile()
        _, out[name] = _train(jitted, mesh, jitted.init(jax.random.PRNGKey(0)), batches, compiled)
        if devices > 1:
            text = compiled.as_text()
            loops = while_loops(text, "ssd")
            out["ssd_loops"] = len(loops)
            out["collectives_in_ssd_loops"] = sorted({c for body in loops for c in collectives_in(computations(text), body)})
    return out


if __name__ == "__main__":
    check = {"hlo": lambda: hlo(), "meshes": lambda: meshes(sys.argv[2])}[sys.argv[1]]
    print(json.dumps(check()))
