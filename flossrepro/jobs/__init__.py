"""Jobs: the job base, the trainer, the analysis jobs, diagnostics, the low-rank measures, the cost job."""
