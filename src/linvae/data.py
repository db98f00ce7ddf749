"""The data SGD trains on: the families of the noise n and the factors c, and finite datasets.

See docs/model.md#data-families and docs/model.md#finite-datasets. The draws themselves
are made by the compiled engine; this module checks the options, once, for
:func:`linvae.simulate` and the command line, and says what each family's moments are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._validate import check_int, check_real

__all__ = ["FACTOR_FAMILIES", "NOISE_FAMILIES", "ORDERS", "DataSpec", "check_data",
           "excess_kurtosis", "pca_overlap"]

#: Families of the background noise n, each with mean 0 and variance 1.
NOISE_FAMILIES: tuple[str, ...] = tuple(_core.FAMILIES)
#: Families of the factors c.
FACTOR_FAMILIES = ("gaussian", "rademacher")
#: Orders of visits to a finite dataset.
ORDERS: tuple[str, ...] = tuple(_core.ORDERS)


def excess_kurtosis(family: str, df: float | None = None) -> float:
    """Return E[n^4] - 3 of a unit-variance family (inf for Student-t with df <= 4)."""
    if family == "student_t":
        if df is None:
            raise ValueError("excess_kurtosis('student_t') needs df, the degrees of freedom")
        return 6.0 / (df - 4.0) if df > 4.0 else math.inf
    return {"gaussian": 0.0, "rademacher": -2.0, "laplace": 3.0, "uniform": -1.2}[family]


@dataclass(frozen=True)
class DataSpec:
    """The checked data options of a run (see :func:`linvae.simulate`)."""

    noise: str = "gaussian"
    noise_df: float | None = None
    factors: str = "gaussian"
    dataset_size: int | None = None
    order: str = "shuffle"
    dataset_seed: int | None = None
    training_loss: bool = False

    @property
    def gaussian(self) -> bool:
        """Gaussian noise and factors, fresh every step (the model of the ODEs' derivation)."""
        return (self.noise == "gaussian" and self.factors == "gaussian"
                and self.dataset_size is None)

    def engine_options(self, seed: int) -> dict[str, Any]:
        """Return the engine constructor's data arguments.

        Without ``dataset_seed`` each replica's dataset comes from the run's own ``seed``
        and its replica index.
        """
        return {"noise": self.noise, "noise_df": self.noise_df or 0.0, "factors": self.factors,
                "dataset_size": self.dataset_size or 0, "order": self.order,
                "dataset_seed": seed if self.dataset_seed is None else self.dataset_seed,
                "dataset_shared": self.dataset_seed is not None}

    def attrs(self) -> dict[str, Any]:
        """Return the options as dataset attributes (netCDF-safe: those that apply, only)."""
        out: dict[str, Any] = {"noise": self.noise, "factors": self.factors}
        if self.noise_df is not None:
            out["noise_df"] = self.noise_df
        if self.dataset_size is not None:
            out.update(dataset_size=self.dataset_size, order=self.order,
                       training_loss=int(self.training_loss))
            if self.dataset_seed is not None:
                out["dataset_seed"] = self.dataset_seed
        return out


def check_data(noise: Any = "gaussian", noise_df: Any = None, factors: Any = "gaussian",
               dataset_size: Any = None, order: Any = "shuffle", dataset_seed: Any = None,
               training_loss: Any = False) -> DataSpec:
    """Check the data options, naming the parameter, the value and the rule."""
    if noise not in NOISE_FAMILIES:
        raise ValueError(f"noise must be one of {', '.join(NOISE_FAMILIES)}, got {noise!r}")
    if noise == "student_t":
        if noise_df is None:
            raise ValueError("noise='student_t' needs noise_df, its degrees of freedom (> 2)")
        noise_df = check_real("noise_df", noise_df)
        if not noise_df > 2.0:
            raise ValueError(f"noise_df must be > 2 (Student-t has no variance for df <= 2, "
                             f"so no unit-variance version), got {noise_df:g}")
    elif noise_df is not None:
        raise ValueError(f"noise_df applies to noise='student_t' only, got noise_df={noise_df!r} "
                         f"with noise={noise!r}")
    if factors not in FACTOR_FAMILIES:
        raise ValueError(f"factors must be 'gaussian' or 'rademacher', got {factors!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be 'shuffle' or 'cycle', got {order!r}")
    if not isinstance(training_loss, bool):
        raise TypeError(f"training_loss must be True or False, got {training_loss!r}")
    if dataset_size is None:
        for name, value, default in (("order", order, "shuffle"),
                                     ("dataset_seed", dataset_seed, None),
                                     ("training_loss", training_loss, False)):
            if value != default:
                raise ValueError(f"{name}={value!r} applies to a finite dataset only: give "
                                 f"dataset_size too (None means one-pass SGD)")
    else:
        dataset_size = check_int("dataset_size", dataset_size, ge=1, le=2**62)
        if dataset_seed is not None:
            dataset_seed = check_int("dataset_seed", dataset_seed, ge=0, le=2**63 - 1)
    return DataSpec(noise=noise, noise_df=noise_df, factors=factors, dataset_size=dataset_size,
                    order=order, dataset_seed=dataset_seed, training_loss=training_loss)


def pca_overlap(alpha: ArrayLike, rho: float, eta: float) -> np.ndarray:
    """Return cos^2 between the top principal component of P = alpha N samples and W*.

    The spiked-covariance result of Baik, Ben Arous and Peche (2005) as N -> infinity:
    (1 - 1/(alpha s^2)) / (1 + 1/(alpha s)) with s = rho / eta above alpha s^2 = 1, and
    0 below, where the top component is lost in the noise. Multi-epoch SGD at small tau
    and long times learns that component (docs/model.md#finite-datasets).
    """
    a = np.asarray(alpha, dtype=np.float64)
    snr = rho / eta
    with np.errstate(divide="ignore", invalid="ignore"):  # masked below the BBP point
        c2 = (1.0 - 1.0 / (a * snr**2)) / (1.0 + 1.0 / (a * snr))
    return np.where(a * snr**2 > 1.0, c2, 0.0)
