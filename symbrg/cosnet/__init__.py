"""The generalized cos-net field theory and the BRG = ERG theorem.  Depends on everything below it.
"""
from symbrg.cosnet.four_point import (
    connected_four_point,
    connected_four_point_mpmath,
    phase_average_cos4,
    sample_four_point,
)

__all__ = ["connected_four_point", "connected_four_point_mpmath", "phase_average_cos4", "sample_four_point"]
