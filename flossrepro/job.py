"""Jobs: a composed config -> one job in a run directory (training, or an analysis)."""
from __future__ import annotations

from hydra.utils import get_class

from .trainer import StopRequested, Trainer  # noqa: F401


def make_job(cfg, run_dir, run_id=None, columns=None):
    """The job ``cfg.job`` names (``job=train`` by default), ready to ``.run()``."""
    target = cfg.get("job", {}).get("_target_", "flossrepro.trainer.Trainer") if "job" in cfg else "flossrepro.trainer.Trainer"
    return get_class(target)(cfg, run_dir, run_id=run_id, columns=columns)
