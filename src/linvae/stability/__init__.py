"""Fixed points of the limiting ODEs, their linear stability, and thresholds derived from it.

Everything here works on the ODEs of docs/model.md#odes (:mod:`linvae.ode`), in the
flat layout of :class:`linvae.ode.StateLayout` (Q and E stored as upper triangles, so
the Jacobian has no spurious antisymmetric modes). Fixed points are found by root
finding with the analytic Jacobian from many starts, as docs/model.md#pitfalls advises,
not by long integration; the integrator only supplies extra starting guesses.

The package has five modules: :mod:`~linvae.stability.search` (the search,
:class:`FixedPoint`), :mod:`~linvae.stability.thresholds` (collapse and noise-fitting
thresholds in beta, the step-size limit, the annealing rate),
:mod:`~linvae.stability.convergence` (the convergence time),
:mod:`~linvae.stability.report` (:class:`StabilityReport`: all of it at one parameter
set, as ``linvae stability`` prints it) and :mod:`~linvae.stability.statics` (the
minimum of the training loss on P = alpha N samples, :func:`training_minimum`, which
multi-epoch SGD reaches at small tau).

Symmetries of the ODEs, used to deduplicate fixed points:

* latent sign flips: latent i's rows of m and d, and row and column i of Q, E and R
  change sign (the diagonal entries do not), D is unchanged;
* latent permutations: rows of m, d and D, rows and columns of Q, E and R;
* orthogonal transformations of the factors within a group of equal rho_k (sign flips of
  single factors included): m -> m O, d -> d O. For a group of g >= 2 equal rho_k these
  form a continuous family, so a fixed point comes with up to g(g-1)/2 zero eigenvalues
  that are symmetry directions, not instabilities; they are counted in
  :attr:`FixedPoint.n_symmetry` and left out of the stability verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._moved import forward
from .convergence import convergence_time
from .report import StabilityReport, stability_report
from .search import (
    MAX_ROLE_STARTS,
    MAX_STATE_SIZE,
    RESIDUAL_TOL,
    FixedPoint,
    check_size,
    fixed_point_data,
    fixed_points,
    role_state,
    stable_fixed_point,
)
from .statics import (
    Spectrum,
    TrainingMinimum,
    dataset_spectrum,
    spiked_spectrum,
    training_minimum,
)
from .thresholds import (
    Threshold,
    annealing_threshold,
    collapse_growth_rate,
    collapse_threshold,
    collapse_thresholds,
    collapsed_state,
    latent_sector,
    noise_threshold,
    step_size_limit,
)

__all__ = [
    "MAX_ROLE_STARTS",
    "MAX_STATE_SIZE",
    "RESIDUAL_TOL",
    "FixedPoint",
    "Spectrum",
    "StabilityReport",
    "Threshold",
    "TrainingMinimum",
    "annealing_threshold",
    "check_size",
    "collapse_growth_rate",
    "collapse_threshold",
    "collapse_thresholds",
    "collapsed_state",
    "convergence_time",
    "dataset_spectrum",
    "fixed_point_data",
    "fixed_points",
    "latent_sector",
    "noise_threshold",
    "role_state",
    "spiked_spectrum",
    "stability_report",
    "stable_fixed_point",
    "step_size_limit",
    "training_minimum",
]

#: Names that used to live here: the module that has them now (the kind of a latent is
#: read from its order parameters, by the ODE's steady states too).
_MOVED = {"KIND_TOL": "observables"}


if TYPE_CHECKING:  # type checkers see the moved names, and no __getattr__ hiding typos
    from ..observables import KIND_TOL  # noqa: F401 - for type checkers
else:
    __getattr__ = forward(__name__, _MOVED)
