"""Fig 14 (A-D): Fig 4 with orthogonal initialisation (W = g Q, g=1).

Drawn exactly like Fig 4 from ``conf/experiment/fig14.yaml``: baseline (``none``),
preflossing (``pre``) and flossing during training (``during``), binary temporal XOR and
spatial XOR.

- **A/B**: test accuracy vs training epochs at d=70 (or the largest delay present): median,
  25-75% band and a thin line per network; chance 0.5 dashed.
- **C/D**: final test accuracy (last evaluation; diverged -> 0.5) vs delay: a dot per network,
  the mean line and the 25-75% band (the caption: "Shaded areas are 25% and 75% percentiles,
  solid lines are means").

Claims 14C and 14D are declared below (``RULES``, statistics in ``stats_tasks``).
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures import stats_tasks as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_task import accuracy_panels

EXPERIMENTS = ("fig14",)
STUDY = "flossing"
TITLE = "Fig 14: Fig 4 with orthogonal initialisation (binary temporal XOR, spatial XOR)"
PANELS = {"A": "binary temporal XOR: test accuracy vs training epochs at d=70 (orthogonal init)",
          "B": "spatial XOR: test accuracy vs training epochs at d=70 (orthogonal init)",
          "C": "binary temporal XOR: final test accuracy vs delay (orthogonal init)",
          "D": "spatial XOR: final test accuracy vs delay (orthogonal init)"}
METRICS = ("test_accuracy",)
_ORDER = ("none", "pre", "during")

RULES = (
    Rule("14C", quote="The accuracy of orthogonal Vanilla RNNs falls to chance level for d>=40 (Fig 14C). With "
                      "gradient flossing before training, the trainability can be improved, but still falls close to "
                      "chance level for d=70. In contrast, ... with gradient flossing during training, the accuracy "
                      "is improved to >80% at d=70", where="Appendix G, Fig 14C",
         paper="none < pre < during at long delays (temporal XOR)",
         claim="binary temporal XOR, orthogonal init: mean final accuracy ordered none < pre < during (networks of "
               "d=40 and d=70 pooled, the delays the paper's text names)",
         stat=st.claim_ordering, select={"task": "binary_xor", "conditions": _ORDER}, op=">", threshold=0.0,
         params={"stat": "mean", "experiment": "fig14", "delays": (40, 70)}, panel="C"),
    Rule("14D", quote="flossing before training improves the performance compared to baseline, but starts failing for "
                      "long delays d>60. In contrast, orthogonal networks that are also flossed during training can "
                      "solve even more difficult tasks (Fig 14D). ... we trained the network only on 5000 epochs",
         where="Appendix G, Fig 14D", paper="none < pre < during at long delays (spatial XOR, 5000 epochs)",
         claim="spatial XOR, orthogonal init: mean final accuracy ordered none < pre < during (networks of "
               "d=40 and d=70 pooled, the delays the paper's text names)",
         stat=st.claim_ordering, select={"task": "spatial_xor", "conditions": _ORDER}, op=">", threshold=0.0,
         params={"stat": "mean", "experiment": "fig14", "delays": (40, 70)}, panel="D"),
)
CLAIMS = claim_texts(RULES)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 14A-D from the fig14 table: Fig 4's panels (see the module docstring)."""
    return accuracy_panels(metrics, EXPERIMENTS[0], "Fig 14: Fig 4 with orthogonal initialisation",
                           band=(0.25, 0.75))


def claims(metrics: pd.DataFrame) -> list:
    """Claims 14C and 14D on the fig14 table (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
