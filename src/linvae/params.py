"""Model parameters of the linear VAE (docs/model.md#data and docs/model.md#model).

:data:`FIELDS` declares each parameter once: its name, symbol, kind, rule, default, help
and whether it belongs to the model or to SGD. :class:`Params` (validation, repr, the
attribute round trip), the command-line flags and TOML keys, sweep hashing and grid axes,
and the parameter table of docs/model.md are all derived from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validate import check_array, check_int, check_real
from .schedules import Schedule, as_schedule, from_dict

__all__ = ["FIELDS", "Field", "Params"]


@dataclass(frozen=True)
class Field:
    """The declaration of one parameter.

    ``kind`` is "int" (a size), "real" (a real scalar, taken by the compiled code by
    ``name``), "rate" (a real scalar that, when not given (None), follows ``tau``),
    "vector" (one real per factor; a scalar means all equal) or "schedule" (a number, or
    a schedule of time). ``gt``/``ge`` is the rule, ``role`` says whether
    the parameter defines the model (its loss) or SGD (how the loss is minimised).
    """

    name: str
    symbol: str
    kind: Literal["int", "real", "rate", "vector", "schedule"]
    default: Any
    help: str
    role: Literal["model", "sgd"] = "model"
    gt: float | None = None
    ge: float | None = None

    @property
    def rule(self) -> str:
        """The rule of valid values, as written in messages and docs (">= 0")."""
        if self.gt is not None:
            return f"> {self.gt:g}"
        return f">= {self.ge:g}" if self.ge is not None else "any"

    def check(self, value: Any, p: dict[str, Any]) -> Any:
        """Return ``value`` validated and in its stored form (``p``: the fields before it)."""
        if self.kind == "int":
            return check_int(self.name, value, ge=None if self.ge is None else int(self.ge))
        if self.kind == "real" or (self.kind == "rate" and value is not None):
            return check_real(self.name, value, gt=self.gt, ge=self.ge)
        if self.kind == "rate":  # not given: the rate follows tau
            return None
        if self.kind == "vector":
            n = p["M_star"]
            if np.ndim(value) == 0:  # a scalar means every factor has the same value
                value = np.full(n, check_real(self.name, value, gt=self.gt, ge=self.ge))
            return tuple(float(v) for v in check_array(self.name, value, (n,), gt=self.gt,
                                                       ge=self.ge))
        return as_schedule(value)


#: Every parameter of :class:`Params`, in the order of its keywords.
FIELDS: tuple[Field, ...] = (
    Field("M", "M", "int", 1, "number of latents; M > M* means superfluous latents", ge=1),
    Field("M_star", "M*", "int", 1, "number of generative factors", ge=1),
    Field("rho", "rho_k", "vector", 1.0, "signal strength per factor (one value for all, or "
          "M* values)", ge=0.0),
    Field("eta", "eta", "real", 1.0, "background noise strength", gt=0.0),
    Field("beta", "beta", "schedule", 0.5, "weight of the rate (KL) term, or a schedule "
          "beta(t) for KL annealing", ge=0.0),
    Field("lam", "lam", "real", 0.0, "L2 regularisation strength", ge=0.0),
    Field("tau", "tau", "real", 0.5, "learning rate of W, and of V and D unless tau_V, tau_D "
          "are given (D's step is tau/N)", "sgd", gt=0.0),
    Field("tau_V", "tau_V", "rate", None, "learning rate of the encoder V", "sgd", gt=0.0),
    Field("tau_D", "tau_D", "rate", None, "learning rate of the encoder variances D (their "
          "step is tau_D/N)", "sgd", gt=0.0),
)

_BY_NAME = {f.name: f for f in FIELDS}


def check_params(p: Any, name: str = "p") -> Params:
    """Return ``p`` if it is a :class:`linvae.Params`, else raise naming ``name``."""
    if not isinstance(p, Params):
        raise TypeError(f"{name} must be a linvae.Params, got {type(p).__name__}")
    return p


def parameter_table() -> str:
    """Return the Markdown table of the parameters in docs/model.md, from :data:`FIELDS`."""
    rows = ["| symbol | meaning | rule | default | role | in the code |",
            "| --- | --- | --- | --- | --- | --- |"]
    for f in FIELDS:
        flag = "--" + f.name.replace("_", "-")
        default = "tau" if f.kind == "rate" else repr(f.default)
        rows.append(f"| {f.symbol} | {f.help} | {f.rule} | {default} | {f.role} | "
                    f"`{f.name}`, `{flag}` |")
    return "\n".join(rows)


@dataclass(frozen=True, init=False)
class Params:
    """Parameters of the model and of SGD, with the symbols of docs/model.md.

    Each keyword is a field of :data:`FIELDS`, which states its rule and default.

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
        Learning rate of W, > 0; also that of V and D unless ``tau_V``, ``tau_D`` are
        given (D's step is tau/N).
    tau_V, tau_D : float, optional
        Learning rates of the encoder V and of its variances D (step tau_D/N), > 0. Not
        given (None), each follows ``tau``: :attr:`rates` gives the three in use.
    """

    M: int
    M_star: int
    rho: tuple[float, ...]
    eta: float
    beta: Schedule
    lam: float
    tau: float
    tau_V: float | None
    tau_D: float | None

    # The signature lists the keywords for readers and type checkers; their defaults are
    # those of FIELDS (a test checks), and the body only follows FIELDS.
    def __init__(self, M: int = 1, M_star: int = 1, rho: float | ArrayLike = 1.0,
                 eta: float = 1.0, beta: float | Schedule = 0.5, lam: float = 0.0,
                 tau: float = 0.5, tau_V: float | None = None,
                 tau_D: float | None = None) -> None:
        given = locals()
        values: dict[str, Any] = {}
        for f in FIELDS:
            values[f.name] = f.check(given[f.name], values)
            object.__setattr__(self, f.name, values[f.name])

    # -- convenient views -------------------------------------------------------------
    @property
    def rho_vec(self) -> NDArray[np.float64]:
        """The signal strengths rho as an array of length M*."""
        return np.array(self.rho, dtype=np.float64)

    @property
    def P(self) -> NDArray[np.float64]:
        """P = diag(rho)."""
        return np.diag(self.rho_vec)

    @property
    def rates(self) -> tuple[float, float, float]:
        """The learning rates in use, (tau_W, tau_V, tau_D) with tau_W = tau."""
        return (self.tau, self.tau if self.tau_V is None else self.tau_V,
                self.tau if self.tau_D is None else self.tau_D)

    def scaled_rates(self, factor: float) -> Params:
        """Return a copy with every learning rate multiplied by ``factor`` (ratios kept)."""
        f = check_real("factor", factor, gt=0.0)
        return self.replace(tau=self.tau * f,
                            **{k: None if getattr(self, k) is None else getattr(self, k) * f
                               for k in ("tau_V", "tau_D")})

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
        """Return the keywords that build this object again (a constant beta as its number)."""
        return {f.name: self._plain(f) for f in FIELDS}

    def _plain(self, f: Field) -> Any:
        value = getattr(self, f.name)
        if f.kind == "schedule" and value.is_constant:
            return value.limit()
        return value

    # -- serialisation (dataset attributes, config files) ---------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """Flat netCDF-safe attributes; :meth:`from_attrs` inverts it.

        A vector is an array; a schedule is its JSON under ``<name>_schedule`` and, if
        constant, its number under ``<name>``; a rate that follows tau is left out.
        """
        attrs: dict[str, Any] = {}
        for f in FIELDS:
            value = getattr(self, f.name)
            if f.kind == "rate" and value is None:
                continue
            if f.kind == "vector":
                attrs[f.name] = np.array(value)
            elif f.kind == "schedule":
                attrs[f"{f.name}_schedule"] = json.dumps(value.to_dict())
                if value.is_constant:
                    attrs[f.name] = value.limit()
            else:
                attrs[f.name] = value
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Params:
        """Build the parameters from the attributes of :meth:`to_attrs`."""
        values: dict[str, Any] = {}
        for f in FIELDS:
            if f.kind == "schedule":
                key = f"{f.name}_schedule"
                values[f.name] = from_dict(json.loads(attrs[key])) if key in attrs \
                    else float(attrs[f.name])
            elif f.kind == "vector":
                values[f.name] = np.atleast_1d(np.asarray(attrs[f.name], dtype=np.float64))
            elif f.kind == "rate":
                values[f.name] = float(attrs[f.name]) if f.name in attrs else None
            else:
                values[f.name] = (int if f.kind == "int" else float)(attrs[f.name])
        return cls(**values)

    def _to_core(self) -> Any:
        """Return the compiled code's parameter struct (its real parameters by name)."""
        from . import _core

        c = _core.Params()
        c.M, c.M_star, c.rho = self.M, self.M_star, list(self.rho)
        rates = dict(zip(("tau", "tau_V", "tau_D"), self.rates, strict=True))
        for name in _core.REAL_PARAMS:
            setattr(c, name, rates[name] if name in rates else getattr(self, name))
        return c

    def __repr__(self) -> str:
        def show(f: Field) -> str:
            value = self._plain(f)
            if f.kind == "vector" and len(set(value)) == 1:
                value = value[0]
            elif f.kind == "vector":
                value = list(value)
            return f"{f.name}={value!r}"

        return f"Params({', '.join(show(f) for f in FIELDS if self._plain(f) is not None)})"
