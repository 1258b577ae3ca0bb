"""Names and numbers that more than one module needs: defined here once, imported everywhere.

- ``SCHEDULES``: the flossing schedules (``conf/flossing/*``), in the order figures show them.
- ``DONE_STATUSES``: run statuses that count as finished (skipped on rerun, kept by the
  aggregator); ``RUN_STATUSES`` lists every status a ``summary.json`` can carry.
- ``CHANCE``: the chance level of each task's test metric: MSE of predicting the target's
  mean for the continuous tasks (copy: Var U(0,1) = 1/12; temporal XOR: Var|x1-x2| = 1/18),
  accuracy 0.5 for the binary ones.
- ``METRICS_DIR``: the folder of a run directory that holds its observation tables.
"""
from __future__ import annotations

SCHEDULES = ("none", "pre", "during", "throughout")
SCHEDULE_LABEL = {"none": "baseline (no flossing)", "pre": "preflossing", "during": "flossing during training",
                  "throughout": "flossing throughout"}

DONE_STATUSES = ("complete", "complete_partial", "diverged")
RUN_STATUSES = DONE_STATUSES + ("running", "interrupted", "failed", "lost", "invalid")

CHANCE = {"copy": 1.0 / 12.0, "temporal_xor": 1.0 / 18.0, "lag_xor": 1.0 / 18.0,
          "binary_xor": 0.5, "spatial_xor": 0.5}

METRICS_DIR = "metrics"

# Run directories (flossrepro.store.rundir, flossrepro.run.cli, conf/config.yaml).
# Command-line keys left out of run directory names: they do not change a run's results, so a
# rerun with e.g. another device or progress style finds (and resumes) the same directory.
# conf/config.yaml reads this list through the ``run_name_exclude_keys`` resolver; a sweep over
# one of these keys keeps it in the names (flossrepro.run.cli), so no two jobs share a directory.
RUN_NAME_EXCLUDE_KEYS = ("experiment", "scale", "hydra/launcher", "progress", "log_every", "device",
                         "threads", "logger", "allow_other_commit")
# Top-level settings left out of a run's identity (the hash in run.json): how it runs, not what.
IDENTITY_EXCLUDE_KEYS = ("progress", "log_every", "device", "threads", "logger", "checkpoint_every",
                         "allow_other_commit")
RUN_RECORD = "run.json"      # a run directory's identity record: config hash, resolved config, command
LOCK_FILE = ".lock"          # flock()ed by the process that owns a run directory
DEFAULT_LEAF = "default"     # the leaf directory of a run without command-line overrides
