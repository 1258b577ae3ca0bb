"""Fig 11: Fig 10 for a second network realisation (the second network, in member order, of
each condition). Claim 10A, measured on every network, covers both figures."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures.common_dynamics import SV, realization_panels

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 11: Fig 10 for a second network realisation"
PANELS = {"A": "sigma_1, sigma_20, sigma_40 of dL/dW vs training epochs (log), a second network per condition",
          "B": "sigma_20/sigma_1 and sigma_40/sigma_1 vs training epochs",
          "C": "test accuracy of the same networks"}
METRICS = tuple(f"grad_W_sv[{i}]" for i in SV) + ("test_accuracy", "lyap_after_floss[1]")
CLAIMS: dict[str, str] = {}   # claim 10A is measured on every network (Fig 10's module)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 11A-C: the second network of each condition."""
    return realization_panels(metrics, 1, "Fig 11: singular values of dL/dW, a second realisation")


def claims(metrics: pd.DataFrame) -> list:
    return []
