"""griffin_core: MQA Transformer, Hawk and Griffin in JAX/Flax.

Importing the package (or `config`, `sizes`, `counting`) does not import JAX, so light
processes (the sweep planner, analysis) can use the configs and counters.
"""

from griffin_core.config import BLOCK_TYPES, FAMILY_PATTERNS, ConfigError, ModelConfig
from griffin_core.sizes import ALL_SIZES, CPU_SIZES, PAPER_SIZES, SizeSpec, get_size, model_config

__all__ = [
    "ALL_SIZES", "BLOCK_TYPES", "CPU_SIZES", "ConfigError", "FAMILY_PATTERNS", "ModelConfig",
    "PAPER_SIZES", "SizeSpec", "get_size", "model_config",
]
