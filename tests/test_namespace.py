"""The public namespace: small, complete, light to import, and typed."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import linvae

HEAVY = ("numpy", "xarray", "scipy", "matplotlib", "netCDF4", "pandas", "dask")


def test_every_public_name_resolves_to_its_home() -> None:
    assert len(linvae.__all__) <= 20, "the top level is for the user's verbs and nouns"
    for name in linvae.__all__:
        value = getattr(linvae, name)
        if name != "__version__":
            home = importlib.import_module(f"linvae.{linvae._HOME[name]}")
            assert getattr(home, name) is value, name


def test_simulate_option_objects_are_top_level() -> None:
    # the objects that hold simulate's options, each from its module
    assert {"DataSpec", "Weights", "Gram", "Checkpoint"} <= set(linvae.__all__)
    assert linvae._HOME["DataSpec"] == "data" and linvae._HOME["Checkpoint"] == "simulation"
    assert linvae._HOME["Weights"] == linvae._HOME["Gram"] == "methods"


def test_dir_lists_names_and_modules() -> None:
    listing = dir(linvae)
    assert set(linvae.__all__) <= set(listing)
    for mod in ("ode", "stability", "findings", "states", "schedules", "sweeps", "plot",
                "errors", "io", "observables", "data", "methods"):
        assert mod in listing
        assert getattr(linvae, mod).__name__ == f"linvae.{mod}"


def test_moved_name_says_where_it_lives() -> None:
    with pytest.raises(AttributeError, match=r"linvae\.stability\.noise_threshold"):
        _ = linvae.noise_threshold
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = linvae.no_such_name


@pytest.mark.parametrize(("old", "name", "home"), [
    ("linvae.plot", "predicted_spread", "linvae.finite_n"),
    ("linvae.reproduce", "run_compare", "linvae.comparison"),
    ("linvae.stability", "KIND_TOL", "linvae.observables"),
])
def test_name_that_moved_module_still_works_and_says_where(old: str, name: str,
                                                           home: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"^{old}\.{name} is {home}\.{name}:"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)
    assert name not in module.__all__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = module.no_such_name


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", (f"{code}\nimport sys, json\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")],
        capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_is_light() -> None:
    assert _loaded_after("import linvae") == []


def test_cli_help_needs_no_xarray_or_scipy() -> None:
    code = ("import sys, contextlib, io\nsys.argv = ['linvae', '--help']\n"
            "from linvae.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main()")
    loaded = _loaded_after(code)
    assert not set(loaded) & {"xarray", "scipy", "matplotlib", "netCDF4", "pandas", "dask"}, \
        loaded


def test_package_is_typed() -> None:
    assert (Path(linvae.__file__).parent / "py.typed").is_file()


def test_status_codes_come_from_the_core() -> None:
    from linvae import _core
    from linvae.simulation import DIVERGENCE_REASONS

    members = {int(v): k for k, v in _core.Status.__members__.items()}
    assert sorted(members) == sorted(DIVERGENCE_REASONS) == list(range(5))
    assert DIVERGENCE_REASONS[int(_core.Status.running)] == ""
    assert DIVERGENCE_REASONS[int(_core.Status.indefinite)] == \
        "Gram matrix not positive semidefinite"
