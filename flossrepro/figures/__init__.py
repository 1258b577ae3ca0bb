"""Figures: one module per paper figure, discovered (no registry).

A *figure module* is a module of this package with these attributes (helpers such as
``data``, ``plotting``, ``claims`` have none of them and are skipped):

- ``EXPERIMENTS``: tuple of the experiment names it reads (``conf/experiment/<name>.yaml``;
  the tables are ``results/<name>/metrics.parquet``);
- ``STUDY``: the report it belongs to (``"flossing"`` -> ``results/REPORT.md``; any other
  study ``s`` -> ``results/REPORT-s.md``);
- ``TITLE``: one line for the report and the figure map;
- ``PANELS``: ``{letter: what the panel shows}`` for the figure map;
- ``METRICS``: the metrics its panels and claims read (``None``: all), each a name or
  ``name[i]`` / ``name[i:j]`` for some indices only (:func:`flossrepro.store.tables.metric_specs`).
  Figure code is handed only these rows, so the summary tables committed to git hold what
  figures need;
- ``RULES``: the claims declared as data (:class:`flossrepro.figures.claims.Rule`: the paper's
  sentence and where it stands, our test, selection, comparison, threshold, the statistic from a
  ``stats_*`` module), and ``CLAIMS = claim_texts(RULES)``, ``{claim id: our test}`` (ids start
  with the figure number and panel letter; the low-rank modules still write ``CLAIMS`` and
  ``claims`` by hand);
- ``plot(metrics) -> matplotlib Figure`` and ``claims(metrics) -> list[Claim]`` (for a module
  with ``RULES``: ``evaluate_rules(RULES, metrics)``, the one engine).

Nothing here trains. ``python -m flossrepro.figures`` draws every figure whose tables exist.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import matplotlib

matplotlib.use("Agg")

REQUIRED = ("EXPERIMENTS", "STUDY", "TITLE", "PANELS", "METRICS", "CLAIMS", "plot", "claims")

#: the experiment configs (one sweep each)
EXPERIMENT_DIR = Path(__file__).resolve().parents[1] / "conf" / "experiment"


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def discover() -> dict[str, ModuleType]:
    """``{module name: module}`` for every figure module in this package, in natural order (fig1, fig3, fig10)."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "plot") and hasattr(mod, "EXPERIMENTS"):
            missing = [a for a in REQUIRED if not hasattr(mod, a)]
            if missing:
                raise AttributeError(f"figure module {mod.__name__} lacks {', '.join(missing)}")
            out[info.name] = mod
    return dict(sorted(out.items(), key=lambda kv: _natural(kv[0])))


def experiments() -> dict[str, Path]:
    """``{experiment name: yaml path}`` for every experiment config."""
    return {p.stem: p for p in sorted(EXPERIMENT_DIR.glob("*.yaml"), key=lambda p: _natural(p.stem))}


def readers(experiment: str) -> list[ModuleType]:
    """The figure modules that read ``experiment``."""
    return [m for m in discover().values() if experiment in m.EXPERIMENTS]


def metrics_needed(experiment: str) -> set[str] | None:
    """The metric names the figure modules reading ``experiment`` need (the union of their
    ``METRICS``); ``None`` when one of them needs every metric; empty when none reads it."""
    out: set[str] = set()
    for m in readers(experiment):
        if m.METRICS is None:
            return None
        out |= set(m.METRICS)
    return out


def planned(experiment: str, key: str, scale: str | None = None) -> list:
    """The values of ``key`` (e.g. ``task.delay``) that ``experiment``'s sweep runs at ``scale``,
    read from ``hydra.sweeper.params`` of its yaml (``${by_scale:...}`` and other
    interpolations resolved); ``[]`` when the sweep does not set ``key`` or cannot be read."""
    from omegaconf import OmegaConf

    from flossrepro.store import resolvers  # noqa: F401  (registers the by_scale resolver)

    path = experiments().get(experiment)
    if path is None:
        return []
    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), {"scale": {"name": scale or "small"}})
        params = cfg.hydra.sweeper.params
        if key not in params:
            return []
        text = str(params[key])
    except Exception:  # an unreadable plan only loses the "not run" notes, never a figure
        return []
    out = []
    for item in text.split(","):
        item = item.strip().strip("'\"")
        for cast in (int, float):
            try:
                item = cast(item)
                break
            except ValueError:
                pass
        out.append(item)
    return sorted(out) if all(isinstance(v, (int, float)) for v in out) else out
