"""launch: expand a sweep's grid, plan it, and schedule its runs on Ray.

The driver never imports JAX (on a TPU host it would grab the chips): it plans with the
plain-Python counters and knows runs only by config and id. Workers import JAX.
"""
