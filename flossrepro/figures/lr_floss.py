"""Low-rank study, LR7 (ours, open): does gradient flossing raise the rank of dW?

Flossing raises the rank of the gradient dL/dW (flossing paper Fig 10); does the accumulated
change dW = W - W0 become higher-rank too? Rate network on the study's tasks (experiment
``lr_floss``) and the flossing paper's vanilla network on binary temporal XOR (``lr_floss_xor``),
each with no flossing, preflossing and flossing during training.

- **A**: effective rank of dW at matched training loss per schedule, for each task and g (a dot per
  network, the mean as a bar);
- **B**: functional rank per schedule (networks that solve the task);
- **C**: singular values of dW at the end, mean +- std per schedule (the first condition);
- **D**: training loss vs epochs per schedule (the first condition), the matched level dashed.

LR7 is a question: its verdict is ``answered`` and the row gives the answer computed from the
numbers (``lr_stats.claim_compare``). Flossing itself changes W (the episodes are part of dW), so a
change of rank can come from the episodes or from training.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures import lr_compare as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lr_panels import compare_figure
from flossrepro.figures.plotting import SCHEDULE_COLOR

EXPERIMENTS = ("lr_floss", "lr_floss_xor")
STUDY = "lowrank"
TITLE = "Low-rank study: the rank of dW with and without gradient flossing"
PANELS = {"A": "effective rank of dW at matched training loss per flossing schedule",
          "B": "functional rank per schedule", "C": "singular values of dW per schedule",
          "D": "training loss per schedule"}
METRICS = _METRICS + ("test_accuracy",)
SCHED_LABEL = {s: SCHEDULE_LABEL[s] for s in ("none", "pre", "during")}   # not LABEL: the figure map reads that

RULES = (
    Rule("LR7", quote="(ours) gradient flossing raises the rank of the gradient dL/dW (flossing paper, Fig 10): does it "
                      "raise the rank of the accumulated change dW?", where="SPEC-lowrank LR7 (our question)",
         paper="an open question (not in the paper)", authors="-",
         claim="open question, does flossing raise the rank of dW? Answered per task and g at matched training loss "
               "(the highest of the schedules' median final training losses; a network that never reaches it is left "
               "out): the effective rank of dW (its singular-value tail) and the functional rank (the paper's measure), "
               "preflossing and flossing during training - no flossing, with 95% intervals, and the final training "
               "losses",
         stat=st.claim_compare, question=True, paper_setup=False, panel="A",
         params={"key": "flossing.schedule", "ref": "none", "others": ("pre", "during"), "labels": SCHED_LABEL,
                 "by": ("task.name", "init.g")}),
)
CLAIMS = claim_texts(RULES)
CLAIM_PANELS = {r.id: r.panel for r in RULES}  # the panel each claim is read from (report's figure map)


def plot(metrics: pd.DataFrame) -> Figure:
    return compare_figure(metrics, RULES[0], SCHEDULE_COLOR, TITLE)


def claims(metrics: pd.DataFrame) -> list:
    """LR7's answer (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
