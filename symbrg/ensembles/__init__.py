"""Finite-width networks, batched training, ensembles and the shell experiment: the numerical checks
of the analytic results.  Sits on top of the engines.
"""

