"""Models: MENTOR (Eq. 1-24), its ablations, the baselines, and their losses and kernels."""
