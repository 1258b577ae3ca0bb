"""flossrepro: Lyapunov spectra of RNNs, gradient flossing, and the paper's figures.

Library entry points::

    from flossrepro import VanillaRNN, initialize, lyapunov_spectrum, flossing_loss
"""
from flossrepro.engine.flosser import Flosser
from flossrepro.engine.flossing import (clip_grad_norm_per_member, floss_step, flossing_loss, flossing_objective, flossing_parameters)
from flossrepro.engine.init import initialize
from flossrepro.engine.lyapunov import (condition_number_estimate, lyapunov_loss, lyapunov_spectrum, lyapunov_spectrum_from_jacobians)
from flossrepro.engine.models import GRU, LSTM, VanillaRNN
from flossrepro.tasks.paper import TASKS, make_task, member_generators

__all__ = [
    "Flosser",
    "GRU",
    "LSTM",
    "TASKS",
    "VanillaRNN",
    "clip_grad_norm_per_member",
    "condition_number_estimate",
    "floss_step",
    "flossing_loss",
    "flossing_objective",
    "flossing_parameters",
    "initialize",
    "lyapunov_loss",
    "lyapunov_spectrum",
    "lyapunov_spectrum_from_jacobians",
    "make_task",
    "member_generators",
]
