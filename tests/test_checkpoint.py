"""Checkpoint and resume: bit-identical continuation, and bad checkpoints rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import xarray as xr
from interrupts import interrupt_at_checkpoint

import linvae

P = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0, beta=linvae.schedules.Tanh(0.8, 0.5),
                  lam=0.05, tau=0.5)
RUN: dict[str, Any] = {"N": 3000, "t_max": 3.0, "record_every": 0.1, "seeds": 3, "seed": 11,
                       "progress": False}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("stop_at", [2, 9])
def test_stopped_and_resumed_run_is_bit_identical(tmp_path: Path, dtype: str, stop_at: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    full = linvae.simulate(P, dtype=dtype, **RUN)
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as mp:
        interrupt_at_checkpoint(mp, stop_at, RUN["N"])
        with pytest.raises(linvae.errors.SimulationInterrupted) as info:
            linvae.simulate(P, dtype=dtype, checkpoint=ckpt, checkpoint_every=0.0, **RUN)
    partial = info.value.partial
    assert 0 < partial.sizes["t"] < full.sizes["t"]
    resumed = linvae.simulate(P, dtype=dtype, resume=ckpt, threads=1, **RUN)
    xr.testing.assert_identical(full.drop_attrs(), resumed.drop_attrs())
    # another run's checkpoint is refused, saying what differs
    with pytest.raises(ValueError, match=r"belongs to another run.*tau"):
        linvae.simulate(P.replace(tau=0.4), dtype=dtype, resume=ckpt, **RUN)


def test_bad_checkpoints_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as mp:
        interrupt_at_checkpoint(mp, 3, RUN["N"])
        with pytest.raises(linvae.errors.SimulationInterrupted):
            linvae.simulate(P, checkpoint=ckpt, checkpoint_every=0.0, **RUN)
    data = ckpt.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        linvae.simulate(P, resume=tmp_path / "truncated.ckpt", **RUN)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x01  # one bit inside the stored weights
    (tmp_path / "flipped.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"corrupted|truncated"):
        linvae.simulate(P, resume=tmp_path / "flipped.ckpt", **RUN)
    (tmp_path / "other.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="truncated or not a linvae checkpoint"):
        linvae.simulate(P, resume=tmp_path / "other.ckpt", **RUN)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        linvae.simulate(P, resume=tmp_path / "missing.ckpt", **RUN)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        linvae.simulate(P, checkpoint=ckpt, checkpoint_every=-1.0, **RUN)
