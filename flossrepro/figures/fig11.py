"""Fig 11: Fig 10 for a second network realisation (the second network, in member order, of
each condition). Claim 10A, measured on every network, covers both figures."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures import fig10

EXPERIMENTS = fig10.EXPERIMENTS
STUDY = fig10.STUDY
TITLE = "Fig 11: Fig 10 for a second network realisation"
PANELS = dict(fig10.PANELS)
METRICS = fig10.METRICS
CLAIMS: dict[str, str] = {}   # claim 10A is measured on every network (Fig 10's module)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 11A-C: the second network of each condition."""
    return fig10.realization_panels(metrics, 1, "Fig 11: singular values of dL/dW, a second realisation")


def claims(metrics: pd.DataFrame) -> list:
    return []
