"""Argument validation shared by every engine.

Job: turn bad input into a :mod:`symbrg.core.errors` exception that names the argument, in one place,
so that no module writes its own ``if x <= 0: raise`` twice.  Each checker returns the cleaned
value (a float, an int, a float64 array) so that call sites read ``q = positive("q11", q11)``.

Symbolic values (sympy expressions with free symbols) pass the scalar checkers untouched: the
constraint is then an assumption of the derivation, not a runtime check.
"""
from __future__ import annotations

import errno
import math
import numbers
import os
import re
import secrets
import socket
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np
import sympy as sp

from symbrg.core.errors import (
    InvalidArgument,
    NonFinite,
    NotPositive,
    NotPositiveDefinite,
    OutOfRange,
    OutputExists,
    ShapeMismatch,
    SymbrgError,
    UnknownName,
)

__all__ = ["scalar", "positive", "nonnegative", "in_range", "integer", "finite_array", "matching",
           "choice", "psd_matrix", "output_target", "atomic_write", "remove_temporaries", "umask", "resolve_symbols"]


def _is_symbolic(value: Any) -> bool:
    return isinstance(value, sp.Basic) and bool(value.free_symbols)


def scalar(name: str, value: Any) -> Any:
    """A finite real number (returned as float), or a symbolic expression (returned as is) that is
    not provably non-real (e.g. ``I*s`` is refused).  Complex numbers and bools are refused, not
    cast (a cast would drop the imaginary part silently)."""
    if _is_symbolic(value):
        if value.is_extended_real is False:
            raise InvalidArgument(name, f"expected a real value, got {value}")
        return value
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating)):
        raise InvalidArgument(name, f"expected a real number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(name, f"expected a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise NonFinite(name, f"must be finite, got {x}")
    return x


def positive(name: str, value: Any) -> Any:
    """A number > 0; a symbolic value passes unless its assumptions prove it is not positive
    (e.g. ``-s`` with ``s`` positive)."""
    x = scalar(name, value)
    if (x.is_positive is False) if _is_symbolic(x) else x <= 0:
        raise NotPositive(name, f"must be > 0, got {x}")
    return x


def nonnegative(name: str, value: Any) -> Any:
    """A number >= 0; a symbolic value passes unless its assumptions prove it negative."""
    x = scalar(name, value)
    if (x.is_nonnegative is False) if _is_symbolic(x) else x < 0:
        raise NotPositive(name, f"must be >= 0, got {x}")
    return x


def in_range(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
             closed: tuple[bool, bool] = (True, True)) -> Any:
    """A number in the interval [low, high] (open ends as ``closed`` says)."""
    x = scalar(name, value)
    if _is_symbolic(x):
        return x
    ok_low = x >= low if closed[0] else x > low
    ok_high = x <= high if closed[1] else x < high
    if not (ok_low and ok_high):
        lb, rb = ("[" if closed[0] else "("), ("]" if closed[1] else ")")
        raise OutOfRange(name, f"must lie in {lb}{low}, {high}{rb}, got {x}")
    return x


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (bools and non-integral floats are refused) within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, sp.Integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise InvalidArgument(name, f"must be an integer, got {value!r}")
    n = int(value)
    if minimum is not None and n < minimum:
        raise OutOfRange(name, f"must be >= {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise OutOfRange(name, f"must be <= {maximum}, got {n}")
    return n


def finite_array(name: str, value: Any, ndim: int | Iterable[int] | None = None, *,
                 dtype: Any = np.float64, nonempty: bool = True) -> np.ndarray:
    """A finite array of the given dimensionality (float64 by default).

    Only boolean, integer and real floating input is converted; complex input is refused unless
    ``dtype`` is complex (a cast to a real dtype would drop the imaginary part), and so are text
    and object arrays, except objects that are all real numbers (a sympy Matrix of numbers, mpf).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raise InvalidArgument(name, "expected a numeric array") from None
    kinds = "biufc" if np.dtype(dtype).kind == "c" else "biuf"
    if raw.dtype.kind == "O" and all(isinstance(v, numbers.Real) or (isinstance(v, sp.Expr) and v.is_number
                                                                      and v.is_extended_real) for v in raw.flat):
        kinds += "O"
    if raw.dtype.kind not in kinds:
        what = {"c": "complex values (the imaginary part would be lost)", "O": "Python objects",
                "U": "text", "S": "bytes"}.get(raw.dtype.kind, f"dtype {raw.dtype}")
        raise InvalidArgument(name, f"expected a real numeric array, got {what}")
    try:
        arr = np.asarray(raw, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(name, "expected a numeric array") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ShapeMismatch(name, f"expected {' or '.join(map(str, allowed))} dimensions, "
                                      f"got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ShapeMismatch(name, f"must not be empty, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise NonFinite(name, f"contains {bad} non-finite value(s)")
    return arr


def matching(name: str, actual: int | tuple[int, ...], expected: int | tuple[int, ...],
             what: str = "length") -> None:
    """Raise :class:`ShapeMismatch` unless ``actual == expected`` (lengths or shapes)."""
    if actual != expected:
        raise ShapeMismatch(name, f"{what} {actual} does not match the expected {expected}")


def choice(name: str, value: str, options: Iterable[str]) -> str:
    """One of a fixed set of names."""
    opts = list(options)
    if value not in opts:
        raise UnknownName(name, f"unknown value {value!r}; choose one of {', '.join(map(str, opts))}")
    return value


def psd_matrix(name: str, value: Any, *, strict: bool = False, rtol: float = 1e-10) -> np.ndarray:
    """A finite, symmetric, positive semi-definite (or definite, ``strict``) square matrix.

    Symmetry and definiteness are judged relative to the largest absolute eigenvalue:
    eigenvalues >= -rtol * max|λ| count as zero (or, with ``strict``, must exceed rtol * max|λ|).
    """
    m = finite_array(name, value, ndim=2)
    if m.shape[0] != m.shape[1]:
        raise ShapeMismatch(name, f"must be square, got shape {m.shape}")
    scale = float(np.max(np.abs(m))) if m.size else 0.0
    if not np.allclose(m, m.T, rtol=0, atol=rtol * max(scale, 1e-300)):
        raise NotPositiveDefinite(name, "must be symmetric")
    lam = np.linalg.eigvalsh(0.5 * (m + m.T))
    top = max(float(np.max(np.abs(lam))), 1e-300)
    if strict and lam[0] <= rtol * top:
        raise NotPositiveDefinite(name, f"must be positive definite (smallest eigenvalue {lam[0]:.3g})")
    if lam[0] < -rtol * top:
        raise NotPositiveDefinite(name, f"must be positive semi-definite (smallest eigenvalue "
                                        f"{lam[0]:.3g})")
    return m


#: Temporary files of :func:`atomic_write` are named ``.NAME.symbrg-HOST-PID-RANDOM.tmp`` in the
#: target's folder, so a later run on the same host can recognise (and remove) those a killed
#: process left behind; the host keeps a folder shared over the network safe from other machines.
_TEMPORARY = re.compile(r"\..*\.symbrg-([A-Za-z0-9]*)-(\d+)-[0-9a-f]{16}\.tmp")
#: The files this process is writing right now, by path, with their (st_dev, st_ino): what the
#: signal path (:func:`remove_temporaries`) deletes.  Only a file still carrying the recorded
#: inode is deleted, so a finished output renamed over a reserved name is never touched.
_LIVE: dict[str, tuple[int, int]] = {}
_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's file-creation mask, read without changing it where the kernel says it
    (``Umask:`` in /proc/self/status, Linux >= 4.7); else set and restored under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def remove_temporaries() -> None:
    """Delete every temporary file an :func:`atomic_write` of this process has open.

    For a signal handler: it allocates little, takes no lock and ignores files already gone; the
    targets (old files, finished outputs) are never touched.
    """
    for path in list(_LIVE):
        _discard(path)


def _discard(path: str) -> None:
    """Delete the tracked file ``path`` if it is still the one this process created."""
    ident = _LIVE.pop(path, None)
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
    except OSError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _host() -> str:
    """This machine's name, reduced to letters and digits (a part of temporary file names)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40]


def _remove_stale(folder: Path) -> None:
    """Remove this user's temporaries in ``folder`` whose writing process (on this host) is gone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    host = _host()
    for entry in entries:
        m = _TEMPORARY.fullmatch(entry.name)
        if not m or m.group(1) != host or int(m.group(2)) == os.getpid() or _pid_alive(int(m.group(2))):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid == os.getuid() and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass


def _refuse_non_regular(target: Path, force: bool, argument: str) -> None:
    """Refuse a target that is not a regular file (always) or that exists (without ``force``)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidArgument(argument, f"cannot write {target}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise InvalidArgument(argument, f"{target} is a symbolic link to {os.readlink(target)}; "
                                        "refusing to replace it (give the path it points to)")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InvalidArgument(argument, f"{target} is {kind}; only regular files are written or replaced")
    if not force:
        raise OutputExists(argument, f"{target} exists; pass force (--force) to overwrite")


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder
        pass
    finally:
        os.close(fd)


def _track(path: str, fd: int) -> None:
    st = os.fstat(fd)
    _LIVE[path] = (st.st_dev, st.st_ino)


def _publish(tmp: str, target: Path, force: bool, argument: str) -> None:
    """Put the finished ``tmp`` at ``target``: replace a regular file with ``force``, else create
    exclusively (a hard link fails atomically if the target exists, so of several concurrent
    writers exactly one wins; without hard links, the name is reserved with O_EXCL first)."""
    _refuse_non_regular(target, True, argument)          # again: the target may have changed meanwhile
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputExists(argument, f"{target} exists (written meanwhile by another process); "
                                     "pass force (--force) to overwrite") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
            raise
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise OutputExists(argument, f"{target} exists (written meanwhile by another process); "
                                         "pass force (--force) to overwrite") from None
        _track(str(target), fd)                           # an empty reservation until replaced
        os.close(fd)
        os.replace(tmp, target)
        _LIVE.pop(str(target), None)
    else:
        os.unlink(tmp)


def output_target(path: str | os.PathLike, *, force: bool = False, argument: str = "out") -> Path:
    """The checks :func:`atomic_write` makes before any data exist, for callers to make them before
    expensive work (nothing is created): a non-empty path, nothing but a regular file there (and only
    with ``force``), and a nearest existing ancestor folder that is a writable folder.  Returns the
    path."""
    if not str(path).strip():
        raise InvalidArgument(argument, "the output path is empty")
    target = Path(path)
    _refuse_non_regular(target, force, argument)
    missing = []
    folder = target.absolute().parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:                                # can the folders be made? (made and removed again: no trace)
        for sub in reversed(missing):
            sub.mkdir()
        if not folder.is_dir() or not os.access(target.absolute().parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not a writable folder")
    except OSError as exc:
        raise InvalidArgument(argument, f"cannot write in {target.parent}: {exc.strerror or exc}") from None
    finally:
        for sub in missing:
            with suppress(OSError):
                sub.rmdir()
    return target


@contextmanager
def atomic_write(path: str | os.PathLike, *, force: bool = False, mode: str = "w",
                 argument: str = "out") -> Iterator[IO[Any]]:
    """Write ``path`` atomically and durably; ``mode`` is the :func:`open` mode of the handle.

    The data go to ``.NAME.symbrg-HOST-PID-RANDOM.tmp`` in the target's folder (mode 0600 while
    written), which is flushed, given the mode ``0o666 & ~umask`` (0644 under umask 022), fsynced
    and renamed into place; the folder is fsynced.  Without ``force`` the target is created
    exclusively, so an existing (or concurrently written) file is refused with
    :class:`OutputExists`; with ``force`` only a regular file is replaced.  A symbolic link, folder,
    device, FIFO or socket at the target is always refused (:class:`InvalidArgument`).  On any
    error, and on SIGTERM/SIGINT/SIGHUP in the command line (:func:`remove_temporaries`), the
    temporary file is removed and the old target is left as it was.  Temporaries left by killed
    processes of this user in the folder are removed first.
    """
    target = output_target(path, force=force, argument=argument)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        tmp = str(folder / f".{target.name[:160]}.symbrg-{_host()}-{os.getpid()}-{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise InvalidArgument(argument, f"cannot write in {folder}: {exc.strerror or exc}") from None
    _track(tmp, fd)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~umask())
            os.fsync(fh.fileno())
        _publish(tmp, target, force, argument)
        _fsync_folder(folder)
    except OSError as exc:
        if isinstance(exc, SymbrgError):
            raise
        raise InvalidArgument(argument, f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        _discard(tmp)


def resolve_symbols(argument: str, given: "sp.Symbol | str | Iterable[sp.Symbol | str]",
                    pool: Iterable[sp.Basic], *, what: str = "the expression's symbols") -> tuple[sp.Symbol, ...]:
    """The symbols of ``pool`` that the user means by ``given`` (a symbol, a name, or several), matched by name.

    A user's ``Symbol('a', positive=True)`` and the expression's ``Symbol('a', real=True)`` are
    different sympy objects: differentiating or substituting with the user's one silently gives 0 or
    does nothing.  Each item is matched by its name against the symbols in ``pool``; a name that is
    not there (or that names two symbols with different assumptions) raises an error naming
    ``argument`` and listing ``what`` (e.g. "the expression's symbols are a, b, x").  For a mapping
    pass its keys: ``dict(zip(resolve_symbols(arg, m, pool), m.values()))``.
    """
    items = [given] if isinstance(given, (sp.Symbol, str)) else list(given)
    by_name: dict[str, list[sp.Symbol]] = {}
    for s in pool:
        if isinstance(s, sp.Symbol) and s not in by_name.setdefault(s.name, []):
            by_name[s.name].append(s)
    listing = ", ".join(sorted(by_name)) or "(none)"
    out = []
    for item in items:
        if not isinstance(item, (sp.Symbol, str)):
            raise InvalidArgument(argument, f"expected a symbol or a symbol name, got {item!r}")
        name = item.name if isinstance(item, sp.Symbol) else item.strip()
        found = by_name.get(name, [])
        if len(found) > 1:
            raise InvalidArgument(argument, f"{name!r} names {len(found)} different symbols "
                                            f"(assumptions {', '.join(str(s.assumptions0) for s in found)})")
        if not found:
            raise UnknownName(argument, f"no symbol named {name!r}; {what} are {listing}")
        out.append(found[0])
    return tuple(out)
