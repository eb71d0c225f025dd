"""Diffusion Schrödinger Bridge (De Bortoli, Thornton, Heng & Doucet, NeurIPS 2021).

schedule: the time grid gamma_k and the reference process; networks: the forward and
backward networks (an MLP/NCSN++ from `models`, or a per-step affine map); losses:
mean matching; cache: the trajectory cache; ipf: half-iterations and sampling;
data: the two endpoint distributions; run: `--mode dsb`.
"""
