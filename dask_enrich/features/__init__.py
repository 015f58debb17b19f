"""Feature registry and pure numpy kernels, one module per feature group."""
