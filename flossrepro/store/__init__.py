"""Storage: config validation, run directories, checkpoints, tables, summaries."""
