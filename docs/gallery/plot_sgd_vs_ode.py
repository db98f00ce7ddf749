"""
SGD against its limiting ODEs
=============================

Run one-pass SGD at a few input dimensions N from a prescribed start with O(1) overlaps,
integrate the ODEs of the order parameters from the same start, and watch the gap
between them shrink like N^(-1/2) (docs/model.md, sections 4 and 5).
"""

import linvae

p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
start = linvae.ode.overlap_state(p, 0.3)  # m = d = 0.3: away from the fixed point m = 0
cmp = linvae.compare(p, Ns=[250, 1_000, 4_000], t_max=5.0, replicas=4, init=start,
                     progress=False)
print(cmp)

# %%
# The trajectories at each N against the ODE (left), and the gap against N (right):
fig = cmp.plot()
