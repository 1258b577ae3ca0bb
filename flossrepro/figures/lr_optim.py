"""Low-rank study, LR6 (the reviewers' open question): does the optimiser change the rank of dW?

Flip-flop, rate network; Adam (lr 0.05 / N, the authors' optimiser), plain SGD (lr 0.05), SGD with
momentum 0.9 (lr 0.005).

- **A**: effective rank of dW (Roy-Vetterli, ``exp`` of the entropy of the normalised singular
  values) at matched training loss, per optimiser and g (a dot per network, the mean as a bar);
- **B**: functional rank (networks that solve the task), per optimiser and g;
- **C**: singular values of dW at the end, mean +- std per optimiser (g nearest 0.9);
- **D**: training loss vs epochs per optimiser, mean +- std (g nearest 0.9), the matched level dashed.

LR6 is a question, not a claim of the paper: its verdict is ``answered`` and the row gives the
answer computed from the numbers (``lr_stats.claim_compare``).
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures import lr_compare as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lr_panels import compare_figure

EXPERIMENTS = ("lr_optim",)
STUDY = "lowrank"
TITLE = "Low-rank study: the rank of dW by optimiser (Adam, SGD, SGD with momentum; flip-flop)"
PANELS = {"A": "effective rank of dW at matched training loss, by optimiser and g",
          "B": "functional rank by optimiser and g",
          "C": "singular values of dW by optimiser (g nearest 0.9)", "D": "training loss by optimiser (g nearest 0.9)"}
METRICS = _METRICS
OPT_LABEL = {"adam": "Adam", "sgd": "SGD", "sgdm": "SGD + momentum"}
OPT_COLOR = {"adam": "#1f77b4", "sgd": "#d62728", "sgdm": "#2ca02c"}

RULES = (
    Rule("LR6", quote="Also, do you think that the optimizer may play a role in this? Given that Adam has momemtum, "
                      "consecutive updates are highly correlated, which may lead to the low dimensionality of "
                      "\\delta W.", where="NeurIPS 2020 reviews (R1, additional feedback)",
         paper="an open question (the authors used Adam only)", authors="authors used Adam only",
         claim="open question, does the optimiser (Adam vs SGD with and without momentum) change the rank of dW? "
               "Answered per g at matched training loss (the highest of the optimisers' median final training losses; "
               "a network that never reaches it is left out): the effective rank of dW (its singular-value tail) and the functional rank (the paper's "
               "measure), SGD variants - Adam, with 95% intervals, and the final training losses",
         stat=st.claim_compare, question=True, paper_setup=False, panel="A",
         params={"key": "optim.name", "ref": "adam", "others": ("sgd", "sgdm"), "labels": OPT_LABEL, "by": ("init.g",)}),
)
CLAIMS = claim_texts(RULES)
CLAIM_PANELS = {r.id: r.panel for r in RULES}  # the panel each claim is read from (report's figure map)


def plot(metrics: pd.DataFrame) -> Figure:
    return compare_figure(metrics, RULES[0], OPT_COLOR, TITLE)


def claims(metrics: pd.DataFrame) -> list:
    """LR6's answer (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
