"""Bridges to other frameworks, on top of :mod:`symbrg.ensembles` (nothing below imports them).

* :mod:`symbrg.interop.torch`: a PyTorch ``nn.Sequential`` of ``Linear`` layers and supported
  activations as a symbrg :class:`~symbrg.ensembles.networks.Network` and its parameters, so the
  Fisher metric and the information-shell coarse graining run on a user's own trained model
  (optional extra ``[torch]``).
"""
