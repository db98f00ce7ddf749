"""SGD concentrates on the limiting ODE as N grows: trajectories and gap vs N.

Writes docs/figures/sgd_vs_ode.png (about a minute on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import linvae

p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
start = linvae.states.overlap_state(p, 0.3)
cmp = linvae.compare(p, Ns=[1_000, 4_000, 16_000], t_max=10.0, replicas=4, init=start,
                     record_every=0.25, progress=True)
print(cmp)
out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/sgd_vs_ode.png")
out.parent.mkdir(parents=True, exist_ok=True)
cmp.plot().savefig(out, dpi=120)
print(f"wrote {out}")
