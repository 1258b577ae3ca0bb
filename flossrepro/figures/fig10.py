"""Fig 10: flossing raises the subordinate singular values of dL/dW (higher-rank updates).

Binary temporal XOR at d=70 (fig4's runs): the singular values sigma_1, sigma_20, sigma_40 of
the recurrent weight gradient dL/dW (``grad_W_sv``, measured in the training step before
clipping) vs training epochs, without flossing and with flossing during training (episodes
dotted), for one network realisation of each condition (Fig 11 shows a second one):

- **A**: sigma_i(dL/dW) vs epochs (log scale);
- **B**: sigma_20 / sigma_1 and sigma_40 / sigma_1 vs epochs;
- **C**: test accuracy of the same networks.

The claim uses every network: right after each episode (the training step at an episode's
epoch) log10(sigma_i / sigma_1) of a flossed network against that of the unflossed networks
at the same epochs.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures import stats_training as stt
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_dynamics import SV, realization_panels

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Figs 10-11: singular values of dL/dW without and with flossing (binary temporal XOR, d=70)"
PANELS = {"A": "sigma_1, sigma_20, sigma_40 of dL/dW vs training epochs (log), one network per condition",
          "B": "sigma_20/sigma_1 and sigma_40/sigma_1 vs training epochs",
          "C": "test accuracy of the same networks"}
METRICS = tuple(f"grad_W_sv[{i}]" for i in SV) + ("test_accuracy", "lyap_after_floss[1]")

RULES = (
    Rule("10A", quote="the subordinate singular values sigma_20 and sigma_40 exhibit peaks at the times of gradient "
                      "flossing ... without gradient flossing, the subordinate singular values ... rapidly diminish to "
                      "extremely small values", where="Appendix D, Fig 10A",
         paper="sigma_20, sigma_40 peak at the episodes; sigma_1 comparable",
         claim="right after the flossing episodes, flossing raises the subordinate singular values of dL/dW relative "
               "to the first: median log10(sigma_i / sigma_1) at the episode epochs, during - none > 0, for i = 20 and "
               "40", stat=stt.claim_subordinate_sv, op=">", threshold=0.0, params={"sv": SV[1:]}, panel="A"),
)
CLAIMS = claim_texts(RULES)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 10A-C: the first network of each condition."""
    return realization_panels(metrics, 0, "Fig 10: flossing raises the subordinate singular values of dL/dW")


def claims(metrics: pd.DataFrame) -> list:
    """Claim 10A on fig4's binary XOR runs at d=70 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
