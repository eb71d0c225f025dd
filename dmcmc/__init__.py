"""Denoising MCMC (Kim & Ye, ICML 2023): the DLG chain on data x noise level.

classifier.py  the noise ladder and the noise-level classifier's loss
dlg.py         Langevin-Gibbs steps, persistent chains, output blocks
integrators.py the six finishers (per-sample start level, then Tweedie)
run.py         `--mode dmcmc`
"""
