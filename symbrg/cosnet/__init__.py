"""The generalized cos-net field theory and the BRG = ERG theorem.  Depends on everything below it.
"""

