"""linvae: learning dynamics of the linear VAE, by one-pass SGD and by its limiting ODEs."""

from __future__ import annotations

from . import observables, schedules
from .dataset import make_dataset, parse_state
from .params import Params
from .simulate import DivergenceWarning, SimulationInterrupted, simulate

__all__ = [
    "DivergenceWarning",
    "Params",
    "SimulationInterrupted", "make_dataset", "observables", "parse_state", "schedules",
    "simulate",
]
