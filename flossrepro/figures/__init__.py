"""Figures: pure functions from an experiment's tidy results table to a matplotlib Figure.

One module per figure (``fig1``, ``fig3``, ``fig4``), each with ``plot(metrics) -> Figure``.
Nothing here trains. ``python -m flossrepro.figures`` draws every figure whose table exists
under ``results/<experiment>/metrics.parquet`` and saves ``<experiment>.png`` and ``.pdf`` beside it.
"""
from __future__ import annotations

import importlib
from typing import Callable

import matplotlib

matplotlib.use("Agg")

#: experiment name -> module name under flossrepro.figures
FIGURES = {"fig1": "fig1", "fig3": "fig3", "fig4": "fig4"}


def plotter(name: str) -> Callable:
    """The ``plot`` function of figure ``name`` (``fig1``, ``fig3``, ``fig4``)."""
    if name not in FIGURES:
        raise KeyError(f"no figure {name!r}; have: {', '.join(FIGURES)}")
    return importlib.import_module(f"{__name__}.{FIGURES[name]}").plot
