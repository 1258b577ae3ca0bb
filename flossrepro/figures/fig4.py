"""Fig 4 (A-D): flossing during training solves long-delay binary tasks.

- **A/B**: test accuracy vs training epochs at d=70 (or the largest delay present) for binary
  temporal XOR and spatial XOR; baseline (``none``), preflossing (``pre``), flossing during
  training (``during``): median, 25-75% band and a thin line per realization; chance 0.5 dashed.
- **C/D**: final test accuracy (last evaluation of each run) vs delay: a dot per realization,
  the mean line and the 20-80% band (the caption's "same plotting conventions as previous
  figure": Fig 3C/D); chance 0.5 dashed.

Claims 4C and 4D are declared below (``RULES``, statistics in ``stats_tasks``); delays come
from the table and the sweep in ``conf/experiment/fig4.yaml``.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures import stats_tasks as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_task import accuracy_panels

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 4: flossing during training (binary temporal XOR, spatial XOR)"
PANELS = {"A": "binary temporal XOR: test accuracy vs training epochs at d=70",
          "B": "spatial XOR: test accuracy vs training epochs at d=70",
          "C": "binary temporal XOR: final test accuracy vs delay",
          "D": "spatial XOR: final test accuracy vs delay"}
METRICS = ("test_accuracy", "lyap_after_floss[1]")   # lambda_1 after each episode: the report checks each run's flossing episodes
DELAY = 70             # panels A/B show this delay (the paper's)

RULES = (
    Rule("4C", quote="The accuracy of Vanilla RNNs falls to chance level for d>=40 (Fig 4C). With gradient flossing "
                     "before training, the trainability can be improved, but still goes to chance level for d=70. In "
                     "contrast, for networks with gradient flossing during training, the accuracy is improved to "
                     ">80% at d=70", where="Sec 7, Fig 4C",
         paper="none at chance for d>=40; during > 80% at d=70, pre at chance",
         claim="binary temporal XOR at the largest delay (paper: d=70): flossing during training succeeds (median > "
               "0.8) and beats preflossing; the baseline stays at chance (median < 0.6) at every delay >= 40",
         stat=st.claim_during_wins, select={"task": "binary_xor", "conditions": ("none", "pre", "during")},
         op=">", threshold=0.8, params={"leave": 0.6, "baseline_from": 40, "experiment": "fig4"}, panel="C"),
    Rule("4D", quote="gradient flossing before training improves the performance compared to baseline, but starts "
                     "failing for long delays d>60. In contrast, networks that are also flossed during training can "
                     "solve even more difficult tasks (Fig 4D)", where="Sec 7, Fig 4D",
         paper="pre fails for d > 60, during succeeds",
         claim="spatial XOR at every delay d > 60: preflossing fails (median final accuracy < 0.6) while flossing "
               "during training succeeds (median > 0.8)",
         stat=st.claim_pre_fails_long, select={"task": "spatial_xor"}, op=">", threshold=0.8,
         params={"fail": 0.6, "beyond": 60, "experiment": "fig4"},
         evidence="`results/paper-d70/fig4/`: the paper's parameters (N=80, B=16, T=300, 10^4 epochs, k=75, five "
                  "500-epoch episodes), d=70, 5 networks per condition",
         panel="D"),
)
CLAIMS = claim_texts(RULES)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 4A-D from the fig4 table (see the module docstring)."""
    return accuracy_panels(metrics, EXPERIMENTS[0], "Fig 4: flossing during training and long delays (binary tasks)",
                           DELAY, band=(0.2, 0.8))


def claims(metrics: pd.DataFrame) -> list:
    """Claims 4C and 4D on the fig4 table (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
