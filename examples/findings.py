"""Draw the paper's three findings, and disentanglement, to PNG files from the ODEs.

    python examples/findings.py [output-directory]      (default: ./findings-figures)

Takes about a minute. Every number comes from linvae's fixed-point analysis and ODE
integration (docs/model.md#odes and docs/model.md#findings); nothing is simulated here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import linvae
from linvae import Params, findings


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # 1. posterior collapse: one factor (with the (beta, rho) phase diagram), then a
    #    cascade of thresholds for three factors of distinct strength
    p1 = Params(M=1, M_star=1, rho=1.0, eta=1.0, tau=0.1)
    sweep = findings.collapse_sweep(p1, np.linspace(0.05, 3.0, 60))
    phase = findings.phase_diagram(p1, betas=np.linspace(0.05, 4.5, 46),
                                   rhos=np.linspace(0.0, 3.0, 16))
    findings.plot_collapse(sweep, phase).savefig(out / "collapse.png", dpi=120)
    p3 = Params(M=3, M_star=3, rho=[3.0, 2.0, 1.0], eta=0.5, tau=0.1)
    cascade = findings.collapse_sweep(p3, np.linspace(0.05, 4.5, 46))
    findings.plot_collapse(cascade).savefig(out / "collapse_cascade.png", dpi=120)
    print("collapse thresholds (numerical vs rho_k + eta):",
          [f"{t:.6f} vs {q:g}" for t, q in zip(cascade["threshold"].values,
                                                cascade["predicted"].values, strict=True)])

    # 2. superfluous latents: (M, M*) = (2, 1) below and above eta, then eps_g,
    #    convergence time and the slowest eigenvalue vs M
    traj = findings.superfluous()
    vs_M = findings.superfluous_vs_M(Ms=(1, 2, 3, 4))
    findings.plot_superfluous(traj, vs_M).savefig(out / "superfluous.png", dpi=120)
    print("noise-fitting threshold at tau = 0.2:",
          repr(linvae.stability.noise_threshold(Params(M=2, M_star=1, rho=1.0, eta=1.0, tau=0.2))))

    # 3. KL annealing: convergence time vs gamma for each schedule, gamma* marked
    ann = findings.annealing(gammas=np.geomspace(0.01, 1.0, 13))
    findings.plot_annealing(ann).savefig(out / "annealing.png", dpi=120)
    print(f"gamma* = {float(ann['gamma_star']):.4f}; constant beta converges at "
          f"t = {float(ann['t_constant']):.1f}")

    # 4. disentanglement: M = M* = 2 with distinct rho, from an entangled start
    dis = findings.disentanglement()
    findings.plot_disentanglement(dis).savefig(out / "disentanglement.png", dpi=120)
    print(f"disentanglement score {dis['score'].values[0]:.3f} -> "
          f"{dis['score'].values[-1]:.4f}")
    print(f"figures written to {out}/ in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "findings-figures"))
