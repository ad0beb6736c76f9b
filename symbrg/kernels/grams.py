r"""What every Gram-matrix driver shares: the memory bound, the progress callback, the input check,
and the structural view of a network that the chunked drivers need.

Job: hold the pieces used both by the in-memory drivers of
:mod:`symbrg.kernels.architecture` and by the chunked (dask/zarr) drivers of
:mod:`symbrg.kernels.chunked`, so that neither imports the other at module level and the
architecture may hand a request to the chunked drivers (``arch.nngp(X, chunks=C)``,
``arch.nngp(X, out="K.zarr")``) without an import cycle.

Defining equation: a Gram matrix :math:`G_{ij} = k(x_i, x'_j)` of inputs ``x1`` (N1, d) and ``x2``
(N2, d), float64, 8 N1 N2 bytes (checked against :data:`GRAM_BYTES`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

from symbrg.core import checks
from symbrg.core.limits import Limit
from symbrg.core.types import ArrayLike, NDArray

__all__ = ["GRAM_BYTES", "Progress", "Points", "GramNetwork"]

GRAM_BYTES = Limit("gram_bytes", 8e9, "bytes of a Gram matrix held in memory or written to a file")

#: A progress callback of the Gram drivers: ``progress(done, total)`` units of work (tiles, rows or blocks).
Progress: TypeAlias = Callable[[int, int], None]
#: The rows of a Gram driver's input: (N, d) float64.
Points: TypeAlias = "NDArray[np.float64]"


@runtime_checkable
class GramNetwork(Protocol):
    """What the chunked drivers use of a network (:class:`symbrg.kernels.architecture.Architecture`
    has all of it): its layers and name (to fingerprint it and to rebuild it in a worker), its
    programs, the parameter and work checks, and the in-memory Gram drivers that compute one block."""

    @property
    def layers(self) -> tuple: ...

    @property
    def name(self) -> str: ...

    @property
    def nngp_program(self) -> Any: ...

    @property
    def ntk_program(self) -> Any: ...

    def _param_args(self, prog: Any, params: Any, d: int) -> list[Any]: ...

    def check_gram(self, argument: str, n1: int, n2: int, *, symmetric: bool,
                   precision: int | None = None) -> int: ...

    def nngp(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
             params: Any = None, threads: int | None = None) -> Any: ...

    def ntk(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
            params: Any = None, threads: int | None = None) -> Any: ...


def _gram_inputs(x1: ArrayLike, x2: ArrayLike | None) -> tuple[Points, Points, bool]:
    """The inputs as finite (N, d) arrays of one dimension d, and whether ``x2`` is ``x1`` (``None``)."""
    a1 = checks.finite_array("x1", x1, ndim=(1, 2))
    a1 = a1[:, None] if a1.ndim == 1 else a1
    same = x2 is None
    a2 = a1 if x2 is None else checks.finite_array("x2", x2, ndim=(1, 2))
    a2 = a2[:, None] if a2.ndim == 1 else a2
    checks.matching("x2", a2.shape[1], a1.shape[1], "input dimension")
    return a1, a2, same
