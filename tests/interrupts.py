"""Stopping a run at a chosen checkpoint, the way Ctrl-C between chunks would."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import linvae

sim_module = importlib.import_module("linvae.simulation")


def interrupt_at_checkpoint(monkeypatch: pytest.MonkeyPatch, k: int, N: int) -> None:
    """Run in chunks of ~200 steps at dimension N and raise Ctrl-C at the k-th checkpoint.

    That is what a user pressing Ctrl-C between chunks does; the run then saves its
    state on the way out. (The work rule sizes the weight engine's chunks, the step cap
    the Gram chain's.)
    """
    monkeypatch.setattr(sim_module, "_CHUNK_WORK", N * 3 * 200)
    monkeypatch.setattr(sim_module, "_CHUNK_STEPS", 200)
    real_save = linvae.io.save_checkpoint
    calls = {"n": 0}

    def save(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == k:
            raise KeyboardInterrupt
        return real_save(*args, **kw)

    monkeypatch.setattr(linvae.io, "save_checkpoint", save)
