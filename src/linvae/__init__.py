"""linvae: learning dynamics of the linear VAE, by one-pass SGD and by its limiting ODEs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import io, observables, ode, schedules
from .compare import Comparison, compare
from .dataset import make_dataset, parse_state
from .ode import integrate
from .params import Params
from .simulate import DivergenceWarning, SimulationInterrupted, simulate

try:
    __version__ = version("linvae")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Comparison",
    "DivergenceWarning",
    "Params",
    "SimulationInterrupted",
    "__version__",
    "compare",
    "integrate",
    "io",
    "make_dataset",
    "observables",
    "ode",
    "parse_state",
    "schedules",
    "simulate",
]
