"""The ``linvae`` command line.

Every model parameter is a flag named by its MODEL.md symbol. User mistakes (a bad value,
an unwritable output) end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("linvae")

# (flag, type, default, help) of the model parameters, shared by every command
MODEL_FLAGS: list[tuple[str, Callable[[str], Any], Any, str]] = [
    ("M", int, 1, "number of latents M (>= 1)"),
    ("M_star", int, 1, "number of generative factors M* (>= 1)"),
    ("rho", float, [1.0], "signal strength rho_k per factor (one value, or M* values)"),
    ("eta", float, 1.0, "background noise strength eta (> 0)"),
    ("beta", float, 0.5, "KL weight beta (>= 0)"),
    ("lam", float, 0.0, "L2 regularisation lam (>= 0)"),
    ("tau", float, 0.5, "learning rate tau (> 0); D uses tau/N"),
]


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (MODEL.md symbols)")
    for name, typ, default, help_ in MODEL_FLAGS:
        flag = "--" + name.replace("_", "-")
        if name == "rho":
            group.add_argument(flag, type=typ, nargs="+", default=default, help=help_)
        else:
            group.add_argument(flag, type=typ, default=default, help=help_)


def _params(args: argparse.Namespace) -> Any:
    from .params import Params

    rho = args.rho[0] if len(args.rho) == 1 else args.rho
    return Params(M=args.M, M_star=args.M_star, rho=rho, eta=args.eta, beta=args.beta,
                  lam=args.lam, tau=args.tau)


def cmd_info(args: argparse.Namespace) -> int:
    import linvae
    from linvae import _core

    print(f"linvae {linvae.__version__}")
    for k, v in _core.build_info().items():
        print(f"  {k}: {v}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .io import save
    from .simulate import simulate

    p = _params(args)
    log.info("simulating %r at N=%d for t <= %g with %d replicas", p, args.N, args.t_max,
             args.seeds)
    t0 = time.perf_counter()
    ds = simulate(p, N=args.N, t_max=args.t_max, record_every=args.record_every,
                  seeds=args.seeds, seed=args.seed, threads=args.threads, dtype=args.dtype,
                  progress=not args.quiet)
    path = save(ds, args.out)
    log.info("wrote %s (%.1f s)", path, time.perf_counter() - t0)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linvae", description="Learning dynamics of the linear VAE: one-pass SGD at "
        "large N and its limiting ODEs.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logs")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version, build flags, SIMD level, threads, Eigen")
    info.set_defaults(func=cmd_info)

    sim = sub.add_parser("simulate", help="run one-pass SGD and write the order parameters",
                         description="Run one-pass SGD (MODEL.md section 3) for several "
                         "replicas and write m, d, Q, E, R, D and eps_g over time to netCDF.")
    _add_model_flags(sim)
    run = sim.add_argument_group("run")
    run.add_argument("--N", type=int, default=10_000, help="input dimension N")
    run.add_argument("--t-max", type=float, default=10.0, help="length of the run in t = steps/N")
    run.add_argument("--record-every", type=float, default=0.1, help="spacing of recorded times")
    run.add_argument("--seeds", type=int, default=4, help="number of independent replicas")
    run.add_argument("--seed", type=int, default=0, help="base seed")
    run.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: all)")
    run.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                     help="precision of the weights")
    run.add_argument("--out", type=Path, default=Path("linvae-simulate.nc"),
                     help="output netCDF file")
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="linvae: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        print(f"linvae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"linvae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
