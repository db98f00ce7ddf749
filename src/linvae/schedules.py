"""KL-annealing schedules beta(t) (docs/model.md#findings).

A schedule is a small immutable object: calling it on times gives beta, vectorised.
The simulation evaluates it on the step grid t = s / N; the ODE evaluates it at any t.
Every schedule knows its limit ``beta_inf`` (the fixed point the dynamics head for) and
round-trips through ``to_dict`` / ``from_dict`` so it can live in dataset attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validate import check_int, check_real

__all__ = [
    "KINDS",
    "RATE_KINDS",
    "Constant",
    "Cyclical",
    "Linear",
    "Schedule",
    "Sigmoid",
    "Tanh",
    "as_schedule",
    "from_dict",
    "make_schedule",
]


@dataclass(frozen=True)
class Schedule:
    """Base class: ``beta = schedule(t)`` for scalar or array ``t`` (t >= 0)."""

    kind: ClassVar[str] = "schedule"

    def __call__(self, t: ArrayLike) -> NDArray[np.float64]:
        """Return beta at the times ``t`` (a scalar or an array), as float64."""
        return np.asarray(self._beta(np.asarray(t, dtype=np.float64)), dtype=np.float64)

    def _beta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:  # pragma: no cover
        raise NotImplementedError

    def limit(self) -> float:
        """Return the beta the schedule settles at: its fixed points are those of this constant."""
        raise NotImplementedError  # pragma: no cover

    @property
    def is_constant(self) -> bool:
        """Whether beta(t) is the same at every t."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """Return the kind and fields as a dict; :func:`from_dict` inverts it."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Constant(Schedule):
    """beta(t) = beta."""

    beta: float
    kind: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        check_real("beta", self.beta, ge=0.0)

    def _beta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.full_like(t, self.beta)

    def limit(self) -> float:
        """Return ``beta``."""
        return float(self.beta)

    @property
    def is_constant(self) -> bool:
        """Whether beta(t) is the same at every t (always, for a constant)."""
        return True


@dataclass(frozen=True)
class Tanh(Schedule):
    """The paper's annealing: beta(t) = beta_inf * tanh(gamma * t)."""

    beta_inf: float
    gamma: float
    kind: ClassVar[str] = "tanh"

    def __post_init__(self) -> None:
        check_real("beta_inf", self.beta_inf, ge=0.0)
        check_real("gamma", self.gamma, gt=0.0)

    def _beta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.beta_inf * np.tanh(self.gamma * t)

    def limit(self) -> float:
        """Return ``beta_inf``."""
        return float(self.beta_inf)


@dataclass(frozen=True)
class Linear(Schedule):
    """Linear warm-up: beta rises from ``beta0`` to ``beta_inf`` over ``t_warmup``, then stays."""

    beta_inf: float
    t_warmup: float
    beta0: float = 0.0
    kind: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        check_real("beta_inf", self.beta_inf, ge=0.0)
        check_real("t_warmup", self.t_warmup, gt=0.0)
        check_real("beta0", self.beta0, ge=0.0)

    def _beta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        frac = np.clip(t / self.t_warmup, 0.0, 1.0)
        return self.beta0 + (self.beta_inf - self.beta0) * frac

    def limit(self) -> float:
        """Return ``beta_inf``."""
        return float(self.beta_inf)


@dataclass(frozen=True)
class Sigmoid(Schedule):
    """Logistic ramp: beta(t) = beta_inf / (1 + exp(-gamma (t - t_mid)))."""

    beta_inf: float
    gamma: float
    t_mid: float
    kind: ClassVar[str] = "sigmoid"

    def __post_init__(self) -> None:
        check_real("beta_inf", self.beta_inf, ge=0.0)
        check_real("gamma", self.gamma, gt=0.0)
        check_real("t_mid", self.t_mid, ge=0.0)

    def _beta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        # the tanh form of the logistic function cannot overflow
        return self.beta_inf * 0.5 * (1.0 + np.tanh(0.5 * self.gamma * (t - self.t_mid)))

    def limit(self) -> float:
        """Return ``beta_inf``."""
        return float(self.beta_inf)


@dataclass(frozen=True)
class Cyclical(Schedule):
    """Repeated linear ramps (cyclical annealing).

    Each cycle of length ``period`` rises linearly from 0 to ``beta_max`` over the first
    ``ratio`` of the cycle and holds there for the rest; after ``n_cycles`` cycles beta
    stays at ``beta_max``.
    """

    beta_max: float
    period: float
    ratio: float = 0.5
    n_cycles: int = 4
    kind: ClassVar[str] = "cyclical"

    def __post_init__(self) -> None:
        check_real("beta_max", self.beta_max, ge=0.0)
        check_real("period", self.period, gt=0.0)
        check_real("ratio", self.ratio, gt=0.0, le=1.0)
        check_int("n_cycles", self.n_cycles, ge=1)

    def _beta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        phase = np.mod(t, self.period) / (self.ratio * self.period)
        ramp = self.beta_max * np.clip(phase, 0.0, 1.0)
        return np.where(t >= self.n_cycles * self.period, self.beta_max, ramp)

    def limit(self) -> float:
        """Return ``beta_max``, where beta stays after the last cycle."""
        return float(self.beta_max)


_KINDS: dict[str, type[Schedule]] = {
    cls.kind: cls for cls in (Constant, Tanh, Linear, Sigmoid, Cyclical)
}


#: Every kind of schedule, by name (``Schedule.kind``).
KINDS = tuple(_KINDS)
#: The kinds :func:`make_schedule` builds from a rate gamma (all but ``constant``).
RATE_KINDS = tuple(k for k in KINDS if k != "constant")


def make_schedule(kind: str, beta_inf: float, gamma: float) -> Schedule:
    """Build a schedule of rate ``gamma`` reaching ``beta_inf``, comparable across kinds.

    ``tanh``: beta_inf tanh(gamma t) (the paper's); ``linear``: warm-up over
    t_warmup = 2 / gamma (tanh is at 96 % at gamma t = 2); ``sigmoid``: logistic of rate
    4 gamma centred at t_mid = 1 / gamma; ``cyclical``: 4 linear ramps of period
    2 / gamma (ratio 0.5), then constant.
    """
    gamma = check_real("gamma", gamma, gt=0.0)
    if kind == "tanh":
        return Tanh(beta_inf, gamma)
    if kind == "linear":
        return Linear(beta_inf, t_warmup=2.0 / gamma)
    if kind == "sigmoid":
        return Sigmoid(beta_inf, gamma=4.0 * gamma, t_mid=1.0 / gamma)
    if kind == "cyclical":
        return Cyclical(beta_inf, period=2.0 / gamma, ratio=0.5, n_cycles=4)
    raise ValueError(f"kind must be one of {RATE_KINDS}, got {kind!r}")


def from_dict(spec: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict` output."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"schedule kind must be one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    names = {f.name for f in fields(cls)}
    unknown = set(spec) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for schedule kind {kind!r}")
    return cls(**spec)


def as_schedule(beta: float | Schedule) -> Schedule:
    """Accept a number (constant beta) or a schedule; reject anything else clearly."""
    if isinstance(beta, Schedule):
        return beta
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise TypeError(f"beta must be a non-negative number or a linvae.schedules.Schedule, "
                        f"got {type(beta).__name__}")
    return Constant(float(beta))

