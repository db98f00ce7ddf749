"""linvae: learning dynamics of the linear VAE, by one-pass SGD and by its limiting ODEs.

The top level holds the verbs and nouns of a study: :class:`Params`, :func:`simulate`
with its option objects (:class:`DataSpec`, :class:`Weights` or :class:`Gram`,
:class:`Checkpoint`), :func:`integrate`, :func:`compare`, :func:`sweep` over a
:class:`Grid`, the fixed points (:func:`fixed_points`, :func:`collapse_threshold`), the
minimum of the training loss on a finite dataset (:func:`training_minimum`) and the
finite-N theory (:func:`fluctuations`, :func:`escape_time`). Everything else lives in its
module: :mod:`linvae.ode`, :mod:`linvae.stability`, :mod:`linvae.findings`,
:mod:`linvae.states`, :mod:`linvae.schedules`, :mod:`linvae.observables`,
:mod:`linvae.sweeps`, :mod:`linvae.data`, :mod:`linvae.methods`, :mod:`linvae.plot`,
:mod:`linvae.io` and :mod:`linvae.errors`.

``import linvae`` loads none of numpy, xarray, scipy or matplotlib: each name is
imported from its module the first time it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .comparison import compare
    from .data import DataSpec
    from .errors import LinvaeError
    from .finite_n import escape_time, fluctuations
    from .methods import Gram, Weights
    from .ode import integrate
    from .params import Params
    from .simulation import Checkpoint, simulate
    from .stability import (
        FixedPoint,
        collapse_threshold,
        fixed_points,
        stable_fixed_point,
        training_minimum,
    )
    from .sweeps import Grid, open_sweep, sweep

__all__ = [
    "Checkpoint",
    "DataSpec",
    "FixedPoint",
    "Gram",
    "Grid",
    "LinvaeError",
    "Params",
    "Weights",
    "__version__",
    "collapse_threshold",
    "compare",
    "escape_time",
    "fixed_points",
    "fluctuations",
    "integrate",
    "open_sweep",
    "simulate",
    "stable_fixed_point",
    "sweep",
    "training_minimum",
]

#: Public name -> the module that defines it.
_HOME = {
    "Checkpoint": "simulation",
    "DataSpec": "data",
    "FixedPoint": "stability",
    "Gram": "methods",
    "Grid": "sweeps",
    "LinvaeError": "errors",
    "Params": "params",
    "Weights": "methods",
    "collapse_threshold": "stability",
    "compare": "comparison",
    "escape_time": "finite_n",
    "fixed_points": "stability",
    "fluctuations": "finite_n",
    "integrate": "ode",
    "open_sweep": "sweeps",
    "simulate": "simulation",
    "stable_fixed_point": "stability",
    "sweep": "sweeps",
    "training_minimum": "stability",
}

#: The package's modules, importable as attributes (``linvae.ode``).
_MODULES = ("cli", "comparison", "config", "data", "dataset", "errors", "findings", "finite_n",
            "io", "methods", "observables", "ode", "params", "plot", "reproduce", "schedules",
            "simulation", "stability", "states", "sweeps")

#: Names that used to be top-level: where they live now, for the error message.
_MOVED = {
    "Comparison": "comparison", "SweepResult": "sweeps", "register_task": "sweeps",
    "shard_from_env": "sweeps", "Threshold": "stability",
    "annealing_threshold": "stability", "convergence_time": "stability",
    "noise_threshold": "stability", "step_size_limit": "stability", "jacobian": "ode",
    "make_dataset": "dataset", "parse_state": "dataset",
    "DivergenceWarning": "errors", "IntegrationError": "errors", "OutputError": "errors",
    "SimulationInterrupted": "errors", "SimulationTerminated": "errors",
    "TooLargeError": "errors", "UnphysicalStateError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("linvae")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "0+unknown"
    elif name in _MOVED:
        raise AttributeError(f"linvae.{name} is linvae.{_MOVED[name]}.{name}: the top level "
                             f"holds only {', '.join(n for n in __all__ if n[0] != '_')}")
    else:
        raise AttributeError(f"module 'linvae' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_MODULES})
