"""Options of simulate as objects: DataSpec, Weights/Gram, Checkpoint.

Each object gives bit for bit the result of the separate keywords it replaces (which
keep working), an object together with those keywords is a TypeError naming them, and a
bad object is refused before any work with the message of the keyword it stands for.
METHODS, the registry of the methods, is what the command line offers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from interrupts import interrupt_at_checkpoint

import linvae
from linvae import Checkpoint, DataSpec, Gram, Weights, cli
from linvae.errors import OutputError, SimulationInterrupted
from linvae.methods import METHODS, Method, as_method
from linvae.simulation import empty_records, new_engine

P = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0, beta=linvae.schedules.Tanh(0.8, 0.5),
                  lam=0.05, tau=0.5)
RUN: dict[str, Any] = {"N": 300, "t_max": 0.6, "record_every": 0.2, "seeds": 2, "seed": 5,
                       "progress": False}


def sim(**kw: Any) -> xr.Dataset:
    return linvae.simulate(P, **{**RUN, **kw})


# -- data=DataSpec(...) ---------------------------------------------------------------------

DATA_CASES = [
    {"noise": "laplace", "factors": "rademacher"},
    {"noise": "student_t", "noise_df": 5.0},
    {"dataset_size": 40, "order": "cycle", "dataset_seed": 7, "training_loss": True},
]


@pytest.mark.parametrize("options", DATA_CASES)
def test_data_spec_equals_the_keywords(options: dict[str, Any]) -> None:
    xr.testing.assert_identical(sim(**options), sim(data=DataSpec(**options)))


def test_data_spec_is_checked_like_the_keywords() -> None:
    for bad, match in (({"noise": "cauchy"}, r"noise must be one of .*got 'cauchy'"),
                       ({"order": "cycle"}, r"order='cycle' applies to a finite dataset only"),
                       ({"dataset_size": 0}, r"dataset_size must be >= 1, got 0")):
        with pytest.raises(ValueError, match=match):
            sim(**bad)
        with pytest.raises(ValueError, match=match):
            sim(data=DataSpec(**bad))


@pytest.mark.parametrize(("name", "value"), [
    ("noise", "laplace"), ("noise_df", 5.0), ("factors", "rademacher"), ("dataset_size", 10),
    ("order", "cycle"), ("dataset_seed", 3), ("training_loss", True)])
def test_data_spec_with_a_data_keyword_is_a_type_error(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=(r"give the data options either as data=DataSpec\(\.\.\.\) "
                                         rf"or as keywords, not both: got data and {name}=")):
        sim(data=DataSpec(), **{name: value})


def test_data_type_error_names_every_keyword_and_defaults_are_fine() -> None:
    with pytest.raises(TypeError, match=r"got data and noise='laplace', dataset_size=10$"):
        sim(data=DataSpec(), noise="laplace", dataset_size=10)
    # a keyword given its default value is the keyword left out
    xr.testing.assert_identical(sim(data=DataSpec(noise="uniform")),
                                sim(data=DataSpec(noise="uniform"), noise="gaussian", order="shuffle"))


def test_data_must_be_a_data_spec() -> None:
    with pytest.raises(TypeError, match=r"data must be a linvae\.DataSpec.*got dict \{'noise'"):
        sim(data={"noise": "laplace"})


# -- method=Weights(...) / Gram(...) ----------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [
    ({}, {"method": Weights()}),
    ({"dtype": "float32"}, {"method": Weights(dtype="float32")}),
    ({"method": "gram"}, {"method": Gram()}),
])
def test_method_object_equals_the_name(old: dict[str, Any], new: dict[str, Any]) -> None:
    ds = sim(**new)
    xr.testing.assert_identical(sim(**old), ds)
    assert ds.attrs["method"] == new["method"].name
    assert ds.attrs["dtype"] == old.get("dtype", "float64")


def test_method_registry_and_as_method() -> None:
    assert METHODS == {"weights": Weights, "gram": Gram}
    assert all(issubclass(c, Method) and c.name == name for name, c in METHODS.items())
    assert linvae.simulation.METHODS == tuple(METHODS)
    assert as_method("weights") == Weights() and as_method("gram") == Gram()
    assert as_method("weights", "float32") == Weights(dtype="float32")
    assert as_method(Gram(compensated=False)) == Gram(compensated=False)
    assert as_method(Weights("float32"), dtype="float64") == Weights("float32")  # the default
    assert dataclasses.is_dataclass(Weights()) and hash(Gram()) == hash(Gram())
    with pytest.raises(dataclasses.FrozenInstanceError):
        Weights().dtype = "float32"  # type: ignore[misc]


def test_cli_method_choices_come_from_the_registry() -> None:
    assert cli.RUN_FLAGS["method"]["choices"] == list(METHODS)
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and "simulate" in a.choices)
    flag = next(a for a in sub.choices["simulate"]._actions if "--method" in a.option_strings)
    assert list(flag.choices) == list(METHODS)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: Weights(dtype="float16"), ValueError,  # type: ignore[arg-type]
     r"^dtype must be 'float64' or 'float32', got 'float16'$"),
    (lambda: Gram(compensated="yes"), TypeError,  # type: ignore[arg-type]
     r"compensated must be True or False, got str 'yes'"),
    (lambda: as_method(Gram(), dtype="float32"), TypeError,
     r"dtype='float32' goes with a method name only: method=Gram\(compensated=True\)"),
    (lambda: sim(method=Weights(), dtype="float32"), TypeError,
     r"dtype='float32' goes with a method name only"),
    (lambda: sim(method="gram", dtype="float32"), ValueError,
     r"method='gram' runs in float64 only, got dtype='float32'"),
    (lambda: sim(method="exact"), ValueError, r"method must be 'weights' or 'gram', got 'exact'"),
    (lambda: sim(method=Gram, dtype="float16"), ValueError,
     r"dtype must be 'float64' or 'float32', got 'float16'"),
    (lambda: sim(method=Gram(), noise="laplace"), ValueError,
     r"method='gram' needs Gaussian noise and factors, got noise='laplace'"),
    (lambda: sim(method=Gram(), data=DataSpec(factors="rademacher")), ValueError,
     r"method='gram' needs Gaussian noise and factors, got factors='rademacher'"),
    (lambda: sim(method=Gram(), dataset_size=10), ValueError,
     r"method='gram' draws a fresh sample every step, so it cannot train on dataset_size=10"),
    (lambda: sim(method=Gram(), N=4), ValueError, r"method='gram' needs N >= M_star \+ 2 M = 5"),
])
def test_bad_methods_are_refused(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_gram_check_is_the_method_s_own() -> None:
    Gram().check(P, 5, DataSpec())
    Weights().check(P, 1, DataSpec(noise="laplace", dataset_size=3))
    with pytest.raises(ValueError, match=r"N >= M_star \+ 2 M = 5, got 4"):
        Gram().check(P, 4, DataSpec())


def test_new_engine_is_the_method_s_engine() -> None:
    """new_engine(method=, dtype=, **options) builds what the method object builds."""
    def state(e: Any) -> dict[str, Any]:
        e.init_random(1)
        e.run(np.full(100, 0.5), np.array([100]), empty_records(P, 1, 1), rec_start=0,
              threads=1)
        return {k: np.asarray(v) for k, v in e.get_state(0).items()}

    common: dict[str, Any] = {"replicas": 1, "seed": 1, "blowup": 1e8}
    for old, new in (({"method": "weights", "dtype": "float32"}, Weights("float32")),
                     ({"method": "gram", "compensated": False}, Gram(compensated=False)),
                     ({"method": "gram"}, Gram())):
        a = state(new_engine(P, 200, **common, **old))
        b = state(new.engine(P, 200, data=DataSpec(), **common))
        c = state(new_engine(P, 200, method=new, **common))
        assert a.keys() == b.keys() == c.keys()
        assert all(np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]) for k in a)
        if isinstance(new, Gram):  # the option reached the engine
            assert np.any(a["D_comp"] != 0) == new.compensated


# -- checkpoint=Checkpoint(...) ---------------------------------------------------------------

CKPT_RUN = {**RUN, "N": 400, "t_max": 2.0, "record_every": 0.25}


def test_checkpoint_object_interrupted_and_resumed_equals_one_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = linvae.simulate(P, **CKPT_RUN)
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as mp:
        interrupt_at_checkpoint(mp, 2, CKPT_RUN["N"])
        with pytest.raises(SimulationInterrupted, match=r"Checkpoint\(\.\.\., resume=True\)") \
                as info:
            linvae.simulate(P, checkpoint=Checkpoint(ckpt, every=0.0), **CKPT_RUN)
    assert 0 < info.value.partial.sizes["t"] < full.sizes["t"]
    assert info.value.checkpoint == ckpt
    stamp = ckpt.read_bytes()
    resumed = linvae.simulate(P, checkpoint=Checkpoint(ckpt, resume=True), **CKPT_RUN)
    xr.testing.assert_identical(full.drop_attrs(), resumed.drop_attrs())
    assert ckpt.read_bytes() != stamp  # the continued run kept checkpointing there
    # the old keywords read the same checkpoint to the same result
    (tmp_path / "old.ckpt").write_bytes(stamp)
    again = linvae.simulate(P, checkpoint=tmp_path / "old.ckpt", resume=tmp_path / "old.ckpt",
                            **CKPT_RUN)
    xr.testing.assert_identical(full.drop_attrs(), again.drop_attrs())
    # and a finished run's checkpoint resumes to its result without rewriting it
    stamp = ckpt.stat().st_mtime_ns
    done = linvae.simulate(P, checkpoint=Checkpoint(str(ckpt), resume=True), **CKPT_RUN)
    xr.testing.assert_identical(full.drop_attrs(), done.drop_attrs())
    assert ckpt.stat().st_mtime_ns == stamp


def test_checkpoint_object_equals_the_keywords(tmp_path: Path) -> None:
    a = linvae.simulate(P, checkpoint=tmp_path / "a.ckpt", checkpoint_every=5.0,
                        stop_signals=("SIGTERM", "SIGUSR1"), **RUN)
    b = linvae.simulate(P, checkpoint=Checkpoint(tmp_path / "b.ckpt", every=5.0,
                                                 stop_signals=("SIGTERM", "SIGUSR1")), **RUN)
    xr.testing.assert_identical(a, b)
    assert (tmp_path / "a.ckpt").is_file() and (tmp_path / "b.ckpt").is_file()


@pytest.mark.parametrize(("kw", "named"), [
    ({"checkpoint_every": 10.0}, r"checkpoint_every=10\.0"),
    ({"resume": "x.ckpt"}, r"resume='x\.ckpt'"),
    ({"stop_signals": ("SIGUSR1",)}, r"stop_signals=\('SIGUSR1',\)"),
    ({"checkpoint_every": 1.0, "stop_signals": "SIGHUP"},
     r"checkpoint_every=1\.0, stop_signals='SIGHUP'$"),
])
def test_checkpoint_object_with_a_checkpoint_keyword_is_a_type_error(
        tmp_path: Path, kw: dict[str, Any], named: str) -> None:
    with pytest.raises(TypeError, match=(r"give the checkpoint options either as "
                                         r"checkpoint=Checkpoint\(\.\.\.\) or as keywords, not "
                                         rf"both: got checkpoint=Checkpoint\(.*\) and {named}")):
        sim(checkpoint=Checkpoint(tmp_path / "run.ckpt"), **kw)
    assert not list(tmp_path.iterdir())


def test_checkpoint_keywords_at_their_defaults_are_fine(tmp_path: Path) -> None:
    sim(checkpoint=Checkpoint(tmp_path / "run.ckpt"), checkpoint_every=600.0, resume=None,
        stop_signals=["SIGTERM"])
    assert (tmp_path / "run.ckpt").is_file()


@pytest.mark.parametrize(("kw", "error", "match"), [
    ({"every": -1.0}, ValueError, r"Checkpoint\.every must be >= 0, got -1\.0"),
    ({"every": "often"}, TypeError, r"Checkpoint\.every must be a real number"),
    ({"resume": "run.ckpt"}, TypeError, r"Checkpoint\.resume must be True or False"),
    ({"stop_signals": ("SIGKILL",)}, ValueError, r"stop_signals must be among .*'SIGKILL'"),
    ({"path": 3}, TypeError, r"Checkpoint\.path must be a file path .*got int 3"),
])
def test_bad_checkpoint_is_refused(tmp_path: Path, kw: dict[str, Any], error: type[Exception],
                                   match: str) -> None:
    with pytest.raises(error, match=match):
        Checkpoint(**{"path": tmp_path / "run.ckpt", **kw})


def test_checkpoint_normalises_and_is_checked_before_any_work(tmp_path: Path) -> None:
    c = Checkpoint(tmp_path / "x.ckpt", every=1, stop_signals="SIGUSR1")  # type: ignore[arg-type]
    assert c.every == 1.0 and isinstance(c.every, float) and c.stop_signals == ("SIGUSR1",)
    huge = {**RUN, "N": 10**10, "seeds": 64}  # would fail for want of memory after the checks
    with pytest.raises(OutputError, match="is a folder"):
        linvae.simulate(P, checkpoint=Checkpoint(tmp_path), **huge)
    # resume=True needs the file, as resume=path does: nothing to continue is an error
    for call in ({"checkpoint": Checkpoint(tmp_path / "none.ckpt", resume=True)},
                 {"checkpoint": tmp_path / "none.ckpt", "resume": tmp_path / "none.ckpt"}):
        with pytest.raises(FileNotFoundError, match=r"checkpoint '.*none\.ckpt' does not exist"):
            linvae.simulate(P, **call, **huge)
    assert not list(tmp_path.iterdir())
