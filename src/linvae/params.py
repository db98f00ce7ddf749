"""Model parameters of the linear VAE (docs/model.md#data and docs/model.md#model)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validate import check_array, check_int, check_real
from .schedules import Schedule, as_schedule, from_dict

__all__ = ["Params"]


def check_params(p: Any, name: str = "p") -> Params:
    """Return ``p`` if it is a :class:`linvae.Params`, else raise naming ``name``."""
    if not isinstance(p, Params):
        raise TypeError(f"{name} must be a linvae.Params, got {type(p).__name__}")
    return p


@dataclass(frozen=True, init=False)
class Params:
    """Parameters of the model and of SGD, with the symbols of docs/model.md.

    Parameters
    ----------
    M : int
        Number of latents (>= 1). ``M > M_star`` means superfluous latents.
    M_star : int
        Number of generative factors M* (>= 1).
    rho : float or sequence of float
        Signal strength per factor, rho_k >= 0; a scalar means all equal.
    eta : float
        Background noise strength, > 0.
    beta : float or Schedule
        Weight of the rate (KL) term, >= 0, or a schedule beta(t) for KL annealing.
    lam : float
        L2 regularisation strength, >= 0.
    tau : float
        Learning rate, > 0 (tau for W and V, tau/N for D).
    """

    M: int
    M_star: int
    rho: tuple[float, ...]
    eta: float
    beta: Schedule
    lam: float
    tau: float

    def __init__(self, M: int = 1, M_star: int = 1, rho: float | ArrayLike = 1.0,
                 eta: float = 1.0, beta: float | Schedule = 0.5, lam: float = 0.0,
                 tau: float = 0.5) -> None:
        M = check_int("M", M, ge=1)
        M_star = check_int("M_star", M_star, ge=1)
        if np.ndim(rho) == 0:  # a scalar means every factor has the same strength
            rho = np.full(M_star, check_real("rho", rho, ge=0.0))
        rho_vec = check_array("rho", rho, (M_star,), ge=0.0)
        set_ = object.__setattr__
        set_(self, "M", M)
        set_(self, "M_star", M_star)
        set_(self, "rho", tuple(float(r) for r in rho_vec))
        set_(self, "eta", check_real("eta", eta, gt=0.0))
        set_(self, "beta", as_schedule(beta))
        set_(self, "lam", check_real("lam", lam, ge=0.0))
        set_(self, "tau", check_real("tau", tau, gt=0.0))

    # -- convenient views -------------------------------------------------------------
    @property
    def rho_vec(self) -> NDArray[np.float64]:
        """The signal strengths rho as an array of length M*."""
        return np.array(self.rho, dtype=np.float64)

    @property
    def P(self) -> NDArray[np.float64]:
        """P = diag(rho)."""
        return np.diag(self.rho_vec)

    def beta_at(self, t: ArrayLike) -> NDArray[np.float64]:
        """Return beta(t), vectorised over t."""
        return self.beta(t)

    @property
    def beta_inf(self) -> float:
        """The beta the dynamics settle at (the constant, or the schedule's limit)."""
        return self.beta.limit()

    def replace(self, **changes: Any) -> Params:
        """Return a copy with some fields changed (validated again)."""
        fields = {**self._fields(), **changes}
        return Params(**fields)

    def _fields(self) -> dict[str, Any]:
        beta: float | Schedule = self.beta.limit() if self.beta.is_constant else self.beta
        return {"M": self.M, "M_star": self.M_star, "rho": self.rho, "eta": self.eta,
                "beta": beta, "lam": self.lam, "tau": self.tau}

    # -- serialisation (dataset attributes, config files) ---------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """Flat netCDF-safe attributes; :meth:`from_attrs` inverts it."""
        attrs: dict[str, Any] = {"M": self.M, "M_star": self.M_star,
                                 "rho": np.array(self.rho), "eta": self.eta,
                                 "lam": self.lam, "tau": self.tau,
                                 "beta_schedule": json.dumps(self.beta.to_dict())}
        if self.beta.is_constant:
            attrs["beta"] = self.beta.limit()
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Params:
        """Build the parameters from the attributes of :meth:`to_attrs`."""
        beta: float | Schedule = from_dict(json.loads(attrs["beta_schedule"])) \
            if "beta_schedule" in attrs else float(attrs["beta"])
        rho = np.atleast_1d(np.asarray(attrs["rho"], dtype=np.float64))
        return cls(M=int(attrs["M"]), M_star=int(attrs["M_star"]), rho=rho,
                   eta=float(attrs["eta"]), beta=beta, lam=float(attrs["lam"]),
                   tau=float(attrs["tau"]))

    def __repr__(self) -> str:
        rho: Any = self.rho[0] if len(set(self.rho)) == 1 else list(self.rho)
        beta: Any = self.beta.limit() if self.beta.is_constant else self.beta
        return (f"Params(M={self.M}, M_star={self.M_star}, rho={rho!r}, eta={self.eta!r}, "
                f"beta={beta!r}, lam={self.lam!r}, tau={self.tau!r})")

