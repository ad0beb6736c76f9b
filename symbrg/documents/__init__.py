"""Derivation documents: export of derivations to files and the derivation library.  Sits on top.
"""

