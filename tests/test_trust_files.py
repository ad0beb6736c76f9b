"""Safe files (issue 12): every output is written through ``checks.atomic_write``, which honours the
umask, creates exclusively, replaces only regular files, cleans up its temporaries (also after a
killed run, and on SIGTERM/SIGINT in the command line) and leaves the old file intact."""
import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from symbrg.cli import main
from symbrg.core import checks
from symbrg.core.errors import InvalidArgument, OutputExists

X = np.random.default_rng(7).normal(size=(5, 3))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_mode_follows_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert checks.umask() == mask
    with checks.atomic_write(tmp_path / "a.txt") as fh:
        fh.write("x")
    assert _mode(tmp_path / "a.txt") == expected
    xfile = tmp_path / "X.npy"
    np.save(xfile, X)
    assert main(["kernel", "--x", str(xfile), "--out", str(tmp_path / "K.npy")]) == 0
    assert _mode(tmp_path / "K.npy") == expected


def test_umask_without_proc(tmp_path, umask, monkeypatch):
    """Where /proc/self/status says nothing, the umask is read by setting and restoring it."""
    def no_proc(*args, **kwargs):
        raise OSError(errno.ENOENT, "no /proc")
    monkeypatch.setattr(checks, "open", no_proc, raising=False)
    umask(0o027)
    assert checks.umask() == 0o027
    assert os.umask(0o027) == 0o027                      # left as it was


def _cli_kernel(tmp_path, out, *extra):
    xfile = tmp_path / "X.npy"
    np.save(xfile, X)
    return main(["kernel", "--x", str(xfile), "--out", str(out), *extra])


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("symbrg: error: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_force_refuses_fifo_symlink_and_folder(tmp_path, capsys):
    fifo, link, folder, victim = tmp_path / "fifo", tmp_path / "link", tmp_path / "folder", tmp_path / "v.npy"
    os.mkfifo(fifo)
    victim.write_bytes(b"keep me")
    link.symlink_to(victim)
    folder.mkdir()
    for target, kind in ((fifo, "FIFO"), (folder, "folder"), (link, f"symbolic link to {victim}")):
        for force in ([], ["--force"]):
            assert _cli_kernel(tmp_path, target, *force) == 2
            _one_line_error(capsys, "out: ", kind)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir() and not any(folder.iterdir())
    assert link.is_symlink() and victim.read_bytes() == b"keep me"
    assert _cli_kernel(tmp_path, victim, "--force") == 0    # the regular file it points to: replaced
    np.testing.assert_allclose(np.load(link), np.load(victim))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.npy", "fifo", "folder", "link", "v.npy"]


def test_force_refuses_a_device_node(tmp_path):
    """A /dev/null-like character device made in tmp_path (needs CAP_MKNOD; real /dev untouched)."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("cannot create a device node here")
    with pytest.raises(InvalidArgument, match="out: .* is a device"):
        with checks.atomic_write(node, force=True) as fh:
            fh.write("x")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_existing_file_refused_without_force_and_replaced_with(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(OutputExists, match="out: .*exists"):
        with checks.atomic_write(target) as fh:
            fh.write("new")
    assert target.read_text() == "old"
    with checks.atomic_write(target, force=True) as fh:
        fh.write("new")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_unwritable_or_empty_paths_are_one_line_errors(tmp_path, capsys):
    for out, words in (("", ("empty",)), ("/proc/symbrg-test/K.npy", ("cannot write",)),
                       (str(tmp_path / "X.npy" / "K.npy"), ("cannot write",))):
        assert _cli_kernel(tmp_path, out) == 2
        _one_line_error(capsys, "out: ", *words)
    assert main(["export", "nngp-relu", "--out", ""]) == 2
    _one_line_error(capsys, "--out: ", "empty")
    assert sorted(os.listdir(tmp_path)) == ["X.npy"]


def _race(tmp_path, writers: int = 4) -> list:
    """``writers`` threads write the same new file at once, all past the up-front check."""
    target = tmp_path / "K.txt"
    barrier = threading.Barrier(writers)
    outcome = [None] * writers

    def write(k: int) -> None:
        try:
            with checks.atomic_write(target) as fh:
                fh.write(f"writer {k}")
                barrier.wait()                              # everyone is writing: the target is free
            outcome[k] = "wrote"
        except OutputExists as exc:
            outcome[k] = exc

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcome.count("wrote") == 1, outcome
    assert all(isinstance(o, OutputExists) for o in outcome if o != "wrote")
    assert target.read_text() == f"writer {outcome.index('wrote')}"
    assert sorted(os.listdir(tmp_path)) == ["K.txt"]                    # no temporaries left
    return outcome


def test_four_concurrent_writers_exactly_one_wins(tmp_path):
    _race(tmp_path)


def test_four_concurrent_writers_without_hard_links(tmp_path, monkeypatch):
    """A filesystem without hard links (EPERM from link): the name is reserved with O_EXCL."""
    def no_link(src, dst, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_link)
    _race(tmp_path)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = checks._host()
        stale = tmp_path / f".K.npy.symbrg-{host}-{dead.pid}-0123456789abcdef.tmp"
        live = tmp_path / f".K.npy.symbrg-{host}-{alive.pid}-0123456789abcdef.tmp"
        elsewhere = tmp_path / f".K.npy.symbrg-{host}x-{dead.pid}-0123456789abcdef.tmp"  # another machine's
        other = tmp_path / f".K.npy.symbrg-{host}-{dead.pid}-notours.tmp"        # not our pattern
        for p in (stale, live, elsewhere, other):
            p.write_bytes(b"\0" * 1000)
        with checks.atomic_write(tmp_path / "other.txt") as fh:
            fh.write("x")
        assert not stale.exists() and live.exists() and elsewhere.exists() and other.exists()
    finally:
        alive.kill()
        alive.wait()


def test_failed_write_and_remove_temporaries_keep_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with checks.atomic_write(target, force=True) as fh:
            fh.write("half")
            raise ZeroDivisionError
    with pytest.raises(InvalidArgument):                # what the signal path does mid-write
        with checks.atomic_write(target, force=True) as fh:
            fh.write("half")
            (tmp,) = set(os.listdir(tmp_path)) - {"a.txt"}
            m = checks._TEMPORARY.fullmatch(tmp)                     # recognisable by a later run
            assert m and m.group(2) == str(os.getpid()) and _mode(tmp_path / tmp) == 0o600
            checks.remove_temporaries()
            assert os.listdir(tmp_path) == ["a.txt"]
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_full_disk_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """The kernel reserves its file's disk space up front: ENOSPC is refused before any work."""
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full)
    assert _cli_kernel(tmp_path, tmp_path / "K.npy") == 2
    _one_line_error(capsys, "out: ", "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["X.npy"]
    monkeypatch.undo()
    assert _cli_kernel(tmp_path, tmp_path / "K.npy") == 0


def test_main_restores_the_signal_handlers(tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    assert _cli_kernel(tmp_path, tmp_path / "K.npy") == 0
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_during_a_long_kernel_write(tmp_path, sig, status):
    """A signal while a 288 MB Gram matrix is being written: exit 128 + signum with one line,
    the old file byte-identical, no temporary file left (the Gram runs on worker threads)."""
    np.save(tmp_path / "X.npy", np.random.default_rng(0).normal(size=(6000, 5)))
    old = tmp_path / "K.npy"
    old.write_bytes(b"the old output")
    proc = subprocess.Popen([sys.executable, "-m", "symbrg", "kernel", "--depth", "10", "--x", "X.npy",
                             "--out", "K.npy", "--force"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(".symbrg-" in n for n in os.listdir(tmp_path)):        # the write has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "the write finished before the signal; make it larger"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, (out, err)
    assert err == f"symbrg: interrupted ({signal.Signals(sig).name})\n" and out == ""
    assert old.read_bytes() == b"the old output"
    assert sorted(os.listdir(tmp_path)) == ["K.npy", "X.npy"]
