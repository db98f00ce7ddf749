"""linvae: learning dynamics of the linear VAE, by one-pass SGD and by its limiting ODEs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import errors, findings, io, observables, ode, schedules, stability
from .comparison import Comparison, compare
from .dataset import make_dataset, parse_state
from .errors import IntegrationError, LinvaeError, OutputError, TooLargeError, UnphysicalStateError
from .ode import integrate
from .params import Params
from .simulation import DivergenceWarning, SimulationInterrupted, SimulationTerminated, simulate
from .stability import (
    FixedPoint,
    Threshold,
    annealing_threshold,
    collapse_threshold,
    convergence_time,
    fixed_points,
    jacobian,
    noise_threshold,
    stable_fixed_point,
    step_size_limit,
)
from .sweeps import Grid, SweepResult, open_sweep, register_task, shard_from_env, sweep

try:
    __version__ = version("linvae")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Comparison",
    "DivergenceWarning",
    "FixedPoint",
    "Grid",
    "IntegrationError",
    "LinvaeError",
    "OutputError",
    "Params",
    "SimulationInterrupted",
    "SimulationTerminated",
    "SweepResult",
    "Threshold",
    "TooLargeError",
    "UnphysicalStateError",
    "__version__",
    "annealing_threshold",
    "collapse_threshold",
    "compare",
    "convergence_time",
    "errors",
    "findings",
    "fixed_points",
    "integrate",
    "io",
    "jacobian",
    "make_dataset",
    "noise_threshold",
    "observables",
    "ode",
    "open_sweep",
    "parse_state",
    "register_task",
    "schedules",
    "shard_from_env",
    "simulate",
    "stability",
    "stable_fixed_point",
    "step_size_limit",
    "sweep",
]
