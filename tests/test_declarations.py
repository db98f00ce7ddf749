"""The model is declared once: every consumer follows the declarations.

The parameters are declared in :data:`linvae.params.FIELDS` (and their real scalars in
cpp/linvae/model.hpp, exported as ``_core.REAL_PARAMS``); the order parameters in
cpp/linvae/model.hpp (``_core.ORDER_PARAMETERS``). These tests walk the declarations and
check each place that derives from them, so that a new parameter or order parameter
added to its declaration reaches all of them (docs/contributing.md).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import linvae
from linvae import _core, cli
from linvae.comparison import VARIABLES
from linvae.dataset import make_dataset, state_shapes
from linvae.observables import DIMS, ORDER_PARAMETERS, SYMMETRIC
from linvae.ode import StateLayout
from linvae.params import FIELDS, Field, Params, parameter_table
from linvae.plot import STANDARD
from linvae.simulation import empty_records
from linvae.sweeps import PARAM_FIELDS, Grid, point_key

ROOT = Path(__file__).resolve().parents[1]


def other_value(f: Field) -> Any:
    """A valid value of ``f`` other than its default."""
    if f.kind == "int":
        return 2
    if f.kind in ("vector", "rate"):  # a rate's default (None) follows tau
        return 0.75
    return f.default + 0.25


def bad_value(f: Field) -> Any:
    """A value that breaks ``f``'s rule."""
    bound = f.gt if f.gt is not None else f.ge
    assert bound is not None, f"{f.name} has no rule"
    return bound - 1 if f.kind == "int" else bound - 0.5


# -- parameters ------------------------------------------------------------------------
def test_the_signature_of_params_is_the_declaration() -> None:
    sig = inspect.signature(Params.__init__).parameters
    names = [n for n in sig if n != "self"]
    assert names == [f.name for f in FIELDS]
    for f in FIELDS:
        assert sig[f.name].default == f.default, f.name
    assert Params() == Params(**{f.name: f.default for f in FIELDS})


def test_the_compiled_parameters_are_the_declared_reals() -> None:
    assert _core.REAL_PARAMS == tuple(f.name for f in FIELDS if f.kind in ("real", "rate"))
    p = Params(**{f.name: other_value(f) for f in FIELDS})
    c = p._to_core()
    assert (c.M, c.M_star, c.rho) == (p.M, p.M_star, list(p.rho))
    given = dict(zip(("tau", "tau_V", "tau_D"), p.rates, strict=True))
    for name in _core.REAL_PARAMS:
        assert getattr(c, name) == given.get(name, getattr(p, name)), name
    # a rate not given reaches the compiled code as tau
    c = Params(tau=0.3)._to_core()
    assert c.tau == c.tau_V == c.tau_D == 0.3


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_a_field_reaches_every_consumer(f: Field, tmp_path: Path) -> None:
    value = other_value(f)
    p = Params(**{f.name: value})
    assert p != Params()
    # repr and the attribute round trip
    assert f"{f.name}=" in repr(p)
    assert Params.from_attrs(p.to_attrs()) == p
    # validation names the field and its rule
    with pytest.raises(ValueError, match=f"{f.name}.*{f.rule[0]}"):
        Params(**{f.name: bad_value(f)})
    # the command line and the [model] section of a config file
    flag = "--" + f.name.replace("_", "-")
    parser = cli.build_parser()
    args = parser.parse_args(["simulate", flag, str(value)])
    assert cli._params(args) == p
    config = tmp_path / "run.toml"
    config.write_text(f"[model]\n{f.name} = {value!r}\n")
    argv = ["simulate", "--config", str(config)]
    assert cli._params(cli._parse(parser, argv, parser.parse_args(argv))[0]) == p
    # sweeps: a grid axis and the point key
    assert f.name in PARAM_FIELDS
    assert Grid(**{f.name: [0.5 if f.default is None else f.default, value]}).shape == (2,)
    assert point_key("simulate", p, {}) != point_key("simulate", Params(), {})
    # the model page
    assert f"| {f.symbol} | {f.help} | {f.rule} |" in parameter_table()


def test_the_model_page_shows_the_declared_table() -> None:
    text = (ROOT / "docs" / "model.md").read_text()
    assert parameter_table() in text, ("docs/model.md must show the table of "
                                       "linvae.params.parameter_table():\n" + parameter_table())


# -- order parameters ------------------------------------------------------------------
def test_the_order_parameters_are_the_compiled_declaration() -> None:
    assert ORDER_PARAMETERS == tuple(name for name, _, _ in _core.ORDER_PARAMETERS)
    assert STANDARD[:-1] == ORDER_PARAMETERS and VARIABLES[:-1] == ORDER_PARAMETERS
    for name in SYMMETRIC:
        assert DIMS[name] == ("latent", "latent2")


@pytest.mark.parametrize(("M", "Ms"), [(1, 1), (2, 1), (3, 2)])
def test_layout_records_and_datasets_follow_the_declaration(M: int, Ms: int) -> None:
    p = Params(M=M, M_star=Ms)
    shapes = state_shapes(p)
    assert list(shapes) == list(ORDER_PARAMETERS)
    size = {"latent": M, "latent2": M, "factor": Ms}
    for k in ORDER_PARAMETERS:
        assert shapes[k] == tuple(size[d] for d in DIMS[k])
    # the flat ODE layout: a symmetric matrix as its upper triangle, the rest in full
    lay = StateLayout(M, Ms)
    want = sum(M * (M + 1) // 2 if k in SYMMETRIC else math.prod(shapes[k])
               for k in ORDER_PARAMETERS)
    assert lay.size == want == len(lay.labels) == _core.OdeSystem(
        p._to_core(), 0, [0.5, 0, 0, 0]).size
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=(4, *shapes[k])) for k in ORDER_PARAMETERS}
    for k in SYMMETRIC:
        state[k] = state[k] + np.swapaxes(state[k], -1, -2)
    back = lay.unpack(lay.pack(state))
    for k in ORDER_PARAMETERS:
        np.testing.assert_array_equal(back[k], state[k], err_msg=k)
    # records and datasets
    rec = empty_records(p, 2, 3)
    assert list(rec) == list(ORDER_PARAMETERS)
    ds = make_dataset({k: np.zeros((2, 3, *shapes[k])) for k in ORDER_PARAMETERS},
                      np.arange(3.0), p)
    for k in ORDER_PARAMETERS:
        assert ds[k].dims == ("replica", "t", *DIMS[k]), k


@pytest.mark.parametrize("method", ["weights", "gram"])
def test_engines_record_every_declared_order_parameter_by_name(method: str) -> None:
    p = Params(M=2, M_star=1)
    ds = linvae.simulate(p, 200, 0.05, 0.05, method=method, progress=False)
    for k in ORDER_PARAMETERS:
        assert np.isfinite(ds[k].values).all(), k
