"""What the Pallas kernels share: the platforms they run on, their block sizes, padding, and a
primitive lowered once per platform.

A primitive with one lowering rule per platform (rather than `lax.platform_dependent` around
pallas_calls): when one program is lowered for several platforms (`jax.export` with
platforms=[cpu, tpu, cuda]), JAX lowers each rule for its own platform only, so the TPU kernel
never meets the CUDA or CPU lowering, and the exported program carries each platform's kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.extend
import jax.numpy as jnp
from jax.interpreters import mlir

PLATFORMS = ("tpu", "cuda", "cpu")
"""Where the Pallas kernels run: Mosaic on TPU, Triton on CUDA GPUs, interpret mode on CPU."""

TPU_BLOCK_D, TPU_CHUNK = 128, 128  # one lane-width of channels; 128 steps per VMEM slab
GPU_BLOCK_D = 128


def pad_to(x: jax.Array, axis: int, multiple: int, front: bool = False) -> jax.Array:
    """Zero-padded to a multiple along `axis`, at the end (or the front)."""
    extra = -x.shape[axis] % multiple
    if not extra:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (extra, 0) if front else (0, extra)
    return jnp.pad(x, pad)


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def gpu_block_d(width: int) -> int:
    """Channels per Triton program: a power of two (Triton's blocks must be), at most 128."""
    return min(GPU_BLOCK_D, next_pow2(width))


def platform_primitive(name: str, abstract_eval: Callable, lowering_for: Callable[[str], Callable]
                       ) -> jax.extend.core.Primitive:
    """A multiple-results primitive whose lowering on each of PLATFORMS is
    `lowering_for(platform)` (a JAX function of the operands and params), and on any other
    platform `lowering_for('other')`. Called outside jit, it compiles itself."""
    prim = jax.extend.core.Primitive(name)
    prim.multiple_results = True
    prim.def_impl(lambda *args, **params: jax.jit(functools.partial(prim.bind, **params))(*args))
    prim.def_abstract_eval(abstract_eval)
    for platform in PLATFORMS:
        mlir.register_lowering(prim, mlir.lower_fun(lowering_for(platform), multiple_results=True),
                               platform=platform)
    mlir.register_lowering(prim, mlir.lower_fun(lowering_for("other"), multiple_results=True))
    return prim
