"""Performance: the benchmark, its JAX peer, the table benchmark, the core's peak."""
