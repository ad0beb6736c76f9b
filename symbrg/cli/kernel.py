"""``symbrg kernel`` (Gram matrices to .npy) and ``symbrg derive nngp|ntk`` (per-layer maps)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np

from symbrg.cli import Names, progress
from symbrg.core import checks
from symbrg.core.errors import InvalidArgument, SymbrgError, TooExpensive
from symbrg.core.printing import FORMATS, python_module, render
from symbrg.kernels.architecture import PARAMETERIZATIONS, Architecture
from symbrg.kernels.chunked import DEFAULT_CHUNK
from symbrg.kernels.grams import GRAM_BYTES

#: Arguments of the chunked drivers and their spelling on this command line (errors name the option).
_ZARR_ARGUMENTS = {"x1": "x", "client": "scheduler", "address": "scheduler", "overwrite": "force"}

KERNEL_EPILOG = """examples:
  symbrg kernel --activation relu --depth 3 --sigma-w 1.4 --sigma-b 0.1 --x X.npy --out K.npy
  symbrg kernel --activation erf --depth 2 --sigma-w 1.2 --sigma-b 0 --ntk --x X.npy --x2 Y.npy --out T.npy
  symbrg kernel --activation relu --depth 3 --sigma-w 1.4 --sigma-b 0.1 --x X.npy --out K.npy --precision 50
  symbrg kernel --activation relu --depth 3 --x X.npy --out K.zarr --chunk 4096           # beyond memory
  symbrg kernel --activation relu --depth 3 --x X.npy --out K.zarr --resume               # continue it
  symbrg kernel --activation relu --depth 3 --x X.npy --out /shared/K.zarr --scheduler tcp://head:8786

An --out ending in .zarr (a folder, or an fsspec URL such as s3://bucket/K.zarr) is written chunk by
chunk (needs the [dask] extra: pip install 'symbrg[dask]'); an interrupted run continues with --resume.
With --scheduler (or $DASK_SCHEDULER_ADDRESS) the chunks run as tasks on that dask.distributed
cluster, each worker writing its own chunks: the store must be one all workers reach.
"""
DERIVE_EPILOG = """examples:
  symbrg derive nngp --activation relu --depth 3
  symbrg derive ntk --activation erf --depth 2 --format latex
  symbrg derive nngp --activation tanh --depth 2 --format python
"""


def _architecture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activation", default="relu", help="activation name, e.g. relu, erf, gelu, "
                   "'rectified:2', 'monomial:3', tanh (default: relu)")
    p.add_argument("--depth", type=int, default=3, help="number of hidden layers (default: 3)")
    p.add_argument("--sigma-w", type=float, default=1.0, help="weight scale σ_w > 0 (default: 1)")
    p.add_argument("--sigma-b", type=float, default=0.0, help="bias scale σ_b >= 0 (default: 0, no bias)")
    p.add_argument("--parameterization", default="ntk", choices=Names(PARAMETERIZATIONS),
                   help="'ntk' (default) or 'standard'")
    p.add_argument("--width", type=int, default=1, help="hidden width (enters only the standard-"
                   "parameterization NTK; default 1)")


def _arch(ns: argparse.Namespace):
    from symbrg.kernels.architecture import mlp
    return mlp(ns.activation, ns.depth, ns.sigma_w, ns.sigma_b, ns.parameterization, width=ns.width)


def _load(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(name, f"cannot read {path}: {exc}") from None


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _free_disk(path: str, force: bool) -> int:
    """Free bytes on the file system that will hold ``path`` (after the target checks of atomic_write)."""
    folder = checks.output_target(path, force=force).absolute().parent
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _check_resources(arch: "Architecture", ns: argparse.Namespace, n1: int, n2: int, symmetric: bool) -> None:
    """Refuse, before the output file is created, a Gram matrix whose work exceeds the limits
    (:meth:`~symbrg.kernels.architecture.Architecture.check_gram`), whose file exceeds ``gram_bytes`` or the free
    disk space of the target folder, or whose decimal strings (--precision) exceed the free memory."""
    size = arch.check_gram("x", n1, n2, symmetric=symmetric and ns.precision is None, precision=ns.precision)
    if ns.precision is None:
        size += 128                                        # the .npy header
        GRAM_BYTES.check("out", size, cost=f"{size / 1e9:.3g} GB on disk")
        free = _free_disk(ns.out, ns.force)
        if size > free:
            raise TooExpensive("out", f"the Gram matrix needs {size / 1e9:.3g} GB but the target folder has "
                                      f"{free / 1e9:.3g} GB free")
        return
    need = size + n1 * n2 * 4 * (ns.precision + 8)        # mpf values, then unicode decimal strings
    GRAM_BYTES.check("x", need, cost=f"{need / 1e9:.3g} GB in memory")
    avail = _available_memory()
    if avail is not None and need > avail:
        raise TooExpensive("x", f"{n1} x {n2} entries at {ns.precision} digits need about "
                                f"{need / 1e9:.3g} GB of memory, {avail / 1e9:.3g} GB available")


def _one_dimensional(option: str, x: np.ndarray) -> None:
    """Say on stderr (one line) that a 1-D array is read as N points in one dimension, never silently."""
    if x.ndim == 1:
        print(f"symbrg: note: {option} has shape ({x.shape[0]},): read as {x.shape[0]} points in one "
              f"dimension (d = 1); save an array of shape (1, {x.shape[0]}) for one point in "
              f"{x.shape[0]} dimensions", file=sys.stderr)


def _is_zarr(out: str) -> bool:
    """Whether ``--out`` names a zarr array (a folder or fsspec URL ending in .zarr)."""
    return out.rstrip("/").lower().endswith(".zarr")


def _zarr_options(ns: argparse.Namespace) -> None:
    """Refuse, in one line, the options that do not go with the output: --chunk, --resume and
    --scheduler need --out *.zarr; --precision needs a .npy; --resume and --force exclude each other."""
    if _is_zarr(ns.out):
        if ns.precision is not None:
            raise InvalidArgument("precision", "a zarr array holds float64: --precision writes decimal strings "
                                               "to a .npy (--out K.npy)")
        if ns.resume and ns.force:
            raise InvalidArgument("force", "--resume continues the array, --force replaces it: pass one of them")
        if ns.chunk is not None:
            checks.integer("chunk", ns.chunk, minimum=1)
        return
    for option, given in (("chunk", ns.chunk is not None), ("resume", ns.resume),
                          ("scheduler", ns.scheduler is not None)):
        if given:
            raise InvalidArgument(option, f"--{option} goes with a chunked zarr output (--out K.zarr); "
                                          f"{ns.out} is written as one .npy file")


def _run_zarr(ns: argparse.Namespace, arch: Architecture, x1: np.ndarray, x2: np.ndarray | None) -> int:
    """``--out K.zarr``: the Gram matrix chunk by chunk (:func:`symbrg.kernels.chunked.gram_to_zarr`),
    here or on the cluster of ``--scheduler`` / ``$DASK_SCHEDULER_ADDRESS``; a bar of the blocks."""
    from symbrg.kernels.chunked import client_from, gram_to_zarr
    chunk = DEFAULT_CHUNK if ns.chunk is None else ns.chunk
    try:
        client = client_from(ns.scheduler)
        where = f" on the cluster at {client.scheduler.address}" if client is not None else ""
        try:
            with progress.bar(ns, total=None, desc="kernel", unit="block") as bar:
                z = gram_to_zarr(arch, x1, ns.out, x2=x2, kind="ntk" if ns.ntk else "nngp", chunk=chunk,
                                 resume=ns.resume, overwrite=ns.force, client=client,
                                 progress=progress.tracker(bar))
        finally:
            if client is not None:
                client.close()
    except SymbrgError as exc:
        exc.argument = _ZARR_ARGUMENTS.get(exc.argument or "", exc.argument)
        for api, option in (("resume=True", "--resume"), ("overwrite=True", "--force")):
            exc.message = exc.message.replace(api, option)
        raise
    print(f"wrote {'NTK' if ns.ntk else 'NNGP'} Gram matrix {tuple(z.shape)} to {ns.out} "
          f"(zarr, chunks {min(chunk, max(z.shape))}){where}")
    return 0


def run_kernel(ns: argparse.Namespace) -> int:
    _zarr_options(ns)
    arch = _arch(ns)
    x1 = checks.finite_array("x", _load(ns.x, "x"), ndim=(1, 2))
    x2 = checks.finite_array("x2", _load(ns.x2, "x2"), ndim=(1, 2)) if ns.x2 else None
    _one_dimensional("--x", x1)
    if x2 is not None:
        _one_dimensional("--x2", x2)
    if x2 is not None:
        checks.matching("x2", x2.shape[1] if x2.ndim == 2 else 1, x1.shape[1] if x1.ndim == 2 else 1,
                        "input dimension")
    if _is_zarr(ns.out):
        return _run_zarr(ns, arch, x1, x2)
    _check_resources(arch, ns, len(x1), len(x1 if x2 is None else x2), x2 is None)
    gram = arch.ntk if ns.ntk else arch.nngp
    if ns.precision is not None:  # keep the digits: an object array of decimal strings
        import mpmath
        with checks.atomic_write(ns.out, force=ns.force, mode="wb") as fh, \
                progress.bar(ns, total=len(x1), desc="kernel", unit="row") as bar:  # refuses an existing file up front
            k = gram(x1, x2, precision=ns.precision, progress=progress.tracker(bar))
            k = np.vectorize(lambda v: mpmath.nstr(v, ns.precision), otypes=[object])(k).astype(str)
            np.save(fh, k)
        shape = k.shape
    else:  # float64 streams into the (temporary) file tile by tile: memory stays bounded
        shape = (len(x1), len(x1 if x2 is None else x2))
        with checks.atomic_write(ns.out, force=ns.force, mode="w+b") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": shape})
            offset = fh.tell()
            fh.flush()
            size = offset + 8 * shape[0] * shape[1]
            if hasattr(os, "posix_fallocate"):  # reserve the disk now: a full disk is a clear error, not a SIGBUS
                os.posix_fallocate(fh.fileno(), 0, size)
            else:
                fh.truncate(size)
            k = np.memmap(fh, dtype="<f8", mode="r+", offset=offset, shape=shape)
            with progress.bar(ns, total=None, desc="kernel", unit="tile") as bar:
                gram(x1, x2, out=k, progress=progress.tracker(bar))
            k.flush()
            del k
    print(f"wrote {'NTK' if ns.ntk else 'NNGP'} Gram matrix {shape} to {ns.out}")
    return 0


def run_derive(ns: argparse.Namespace) -> int:
    arch = _arch(ns)
    kind = ns.what
    if ns.format == "python":
        prog = arch.ntk_program if kind == "ntk" else arch.nngp_program
        outputs = ["K (the NNGP)", "Theta (the NTK)"] if kind == "ntk" else ["K (the NNGP)"]
        print(python_module(prog, name=f"{kind}_{arch.name}", title=f"{kind.upper()} of {arch.name}",
                            outputs=outputs), end="")
        return 0
    print(render(arch.derivation(kind), ns.format), end="")
    return 0


def register(commands, derive) -> None:
    k = commands.add_parser("kernel", help="write an NNGP or NTK Gram matrix to a .npy file or a zarr array",
                            description="Evaluate the infinite-width NNGP (or NTK with --ntk) Gram "
                            "matrix of an MLP on the rows of X.npy (and X2.npy).", epilog=KERNEL_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _architecture_args(k)
    k.add_argument("--ntk", action="store_true", help="the NTK instead of the NNGP")
    k.add_argument("--x", required=True, help="inputs, a .npy array of shape (N, d)")
    k.add_argument("--x2", help="second inputs (N2, d); default: the same as --x")
    k.add_argument("--out", required=True, help="output .npy file (float64 is streamed into it tile by tile: "
                   "memory stays bounded; the file appears only when complete), or a zarr array: a folder or "
                   "fsspec URL ending in .zarr, written chunk by chunk (the [dask] extra)")
    k.add_argument("--precision", type=int, help="mpmath digits (>= 15); the file then holds decimal strings "
                   "(.npy only)")
    k.add_argument("--force", action="store_true", help="overwrite an existing output file (or zarr array)")
    k.add_argument("--chunk", type=int, metavar="C", help=f"zarr only: the side of a square chunk (default "
                   f"{DEFAULT_CHUNK}: 134 MB, a few seconds of work on one thread)")
    k.add_argument("--resume", action="store_true", help="zarr only: continue an interrupted array, skipping "
                   "the chunks already written (the same inputs and network are required)")
    k.add_argument("--scheduler", metavar="ADDRESS", help="zarr only: run the chunks on the dask.distributed "
                   "cluster at ADDRESS (e.g. tcp://head:8786; default $DASK_SCHEDULER_ADDRESS, else here); "
                   "the store must be shared by all workers")
    k.set_defaults(func=run_kernel)
    for kind in ("nngp", "ntk"):
        d = derive.add_parser(kind, help=f"the per-layer {kind.upper()} map of an MLP",
                              description=f"Print the per-layer {kind.upper()} kernel program of an MLP.",
                              epilog=DERIVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        _architecture_args(d)
        d.add_argument("--format", default="text", choices=FORMATS,
                       help="text (default), latex, markdown, or python (an importable NumPy module)")
        d.set_defaults(func=run_derive)
