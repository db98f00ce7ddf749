"""
Posterior collapse against beta
===============================

The stable fixed point of the ODEs for a range of KL weights beta: the latent learns
the factor below the threshold beta = rho + eta and collapses above it
(docs/model.md, section 6). The threshold itself is found by bisection.
"""

import numpy as np

import linvae
from linvae import findings

p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
sweep = findings.collapse_sweep(p, betas=np.linspace(0.1, 3.0, 30))
print("collapse threshold:", linvae.collapse_threshold(p))

# %%
fig = findings.plot_collapse(sweep)
