"""Chunked Gram matrices (symbrg.kernels.chunked): lazy dask arrays, zarr output, resume, clusters.

Every chunked result is compared with the in-memory ``arch.nngp``/``arch.ntk`` of the same inputs;
the cluster tests run a two-process LocalCluster, one of them killing a worker mid-run.
"""
import json
import os
import signal
import sys

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")
pytest.importorskip("zarr")

import dask  # noqa: E402
import zarr  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from helpers import cli as _cli  # noqa: E402

import symbrg  # noqa: E402
from symbrg.core.errors import InvalidArgument, OutputExists, TooExpensive, Unsupported  # noqa: E402
from symbrg.kernels import chunked  # noqa: E402
from symbrg.kernels.chunked import client_from, gram_dask, gram_to_zarr  # noqa: E402

N, N2, CHUNK = 230, 101, 64            # N is not a multiple of the chunk: edge blocks are ragged
RNG = np.random.default_rng(7)
X, Y = RNG.normal(size=(N, 5)), RNG.normal(size=(N2, 5))
NETWORKS = {"relu3": ("relu", 3), "erf2": ("erf", 2)}


@pytest.fixture(scope="module")
def nets():
    return {k: symbrg.mlp(a, depth=d, sigma_w=1.4, sigma_b=0.1) for k, (a, d) in NETWORKS.items()}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def _blocks(n, chunk=CHUNK):
    return -(-n // chunk)


def _same(got, want):
    """Equal to rounding: a block is a Gram matrix of its own, computed in another process or as a
    part of the whole, and on some machines (AVX-512 here) an entry computed so can differ in the
    last bit; a few ulp is what is asserted, not every bit."""
    return got.shape == want.shape and np.allclose(got, want, rtol=1e-15, atol=0)


# ------------------------------------------------------------------ lazy dask array
@pytest.mark.parametrize("net", NETWORKS)
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["X", "X-vs-X2"])
def test_lazy_array_equals_in_memory(nets, net, kind, symmetric):
    arch = nets[net]
    x2 = None if symmetric else Y
    lazy = gram_dask(arch, X, x2, kind=kind, chunk=CHUNK)
    assert lazy.shape == (N, N if symmetric else N2) and lazy.chunksize == (CHUNK, CHUNK)
    got = lazy.compute()
    want = getattr(arch, kind)(X, x2)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    if symmetric:
        assert np.array_equal(got, got.T)


@pytest.mark.parametrize("whole", [True, False], ids=["inputs-one-key", "inputs-sliced"])
def test_lazy_array_input_keys(nets, monkeypatch, whole):
    """Small inputs are one graph key (root-ish block tasks), large ones a key per slice: same array."""
    monkeypatch.setattr(chunked, "_WHOLE_INPUTS", 1 << 30 if whole else 0)
    arch = nets["relu3"]
    for x2 in (None, Y):
        lazy = gram_dask(arch, X, x2, chunk=CHUNK)
        assert sum(1 for k in lazy.dask if "-x" in str(k)) == (1 + (x2 is not None) if whole else
                                                               _blocks(N) + (_blocks(N2) if x2 is not None else 0))
        np.testing.assert_allclose(lazy.compute(), arch.nngp(X, x2), rtol=1e-13, atol=1e-13)


def test_symmetric_blocks_computed_once(nets, monkeypatch):
    calls = []
    block = chunked._Spec.block
    monkeypatch.setattr(chunked._Spec, "block", lambda self, a, b, **kw: calls.append(1) or block(self, a, b, **kw))
    gram_dask(nets["relu3"], X, chunk=CHUNK).compute(scheduler="sync")
    nb = _blocks(N)
    assert len(calls) == nb * (nb + 1) // 2


def _same_mpf(got, want):
    """Entry for entry the same mpmath numbers, bit for bit (sign, mantissa, exponent, bit count)."""
    return got.shape == want.shape and all(type(a) is type(b) and a._mpf_ == b._mpf_
                                           for a, b in zip(got.ravel(), want.ravel()))


def test_lazy_array_mpmath(nets):
    arch = nets["relu3"]
    got = gram_dask(arch, X[:9], chunk=4, precision=30).compute(scheduler="sync")
    want = arch.nngp(X[:9], precision=30)
    assert got.dtype == object and isinstance(got, chunked.MpfArray) and _same_mpf(got, want)


def test_mpf_arrays_pickle_compactly_and_exactly(nets):
    import pickle

    import mpmath
    got = gram_dask(nets["relu3"], X[:9], chunk=4, precision=30).compute(scheduler="sync")
    for a in (got, got.T, got[2:7, 1:3], got[:0]):                 # views, transposes, empty
        again = pickle.loads(pickle.dumps(a, protocol=5))
        assert isinstance(again, chunked.MpfArray) and _same_mpf(again, a)
    assert len(set(chunked._pack_mpf(got)[1])) == 9 * 10 // 2                    # mirror entries once
    with mpmath.workdps(40):
        special = np.array([mpmath.mpf(0), mpmath.inf, -mpmath.inf, mpmath.nan, -mpmath.mpf(2) ** -3000,
                            mpmath.mpf(1) / 3], dtype=object).view(chunked.MpfArray)
    again = pickle.loads(pickle.dumps(special))
    assert [v._mpf_ for v in again] == [v._mpf_ for v in special]         # exact at the default 15 digits
    mixed = np.array([1, "a", mpmath.mpf(2)], dtype=object).view(chunked.MpfArray)  # not all mpf: as numpy does
    assert list(pickle.loads(pickle.dumps(mixed))) == [1, "a", mpmath.mpf(2)]
    floats = pickle.loads(pickle.dumps(np.arange(4.0).view(chunked.MpfArray), protocol=5))
    assert floats.dtype == np.float64 and list(floats) == [0, 1, 2, 3]


# ------------------------------------------------------------------ zarr output
@pytest.mark.parametrize("symmetric", [True, False], ids=["X", "X-vs-X2"])
def test_zarr_equals_in_memory(nets, tmp_path, symmetric):
    arch = nets["erf2"]
    x2 = None if symmetric else Y
    z = gram_to_zarr(arch, X, tmp_path / "K.zarr", x2=x2, kind="ntk", chunk=CHUNK)
    assert z.chunks == (CHUNK, CHUNK) and z.dtype == np.float64
    np.testing.assert_allclose(z[:], arch.ntk(X, x2), rtol=1e-13, atol=1e-13)
    again = zarr.open_array(str(tmp_path / "K.zarr"), mode="r")
    assert np.array_equal(again[:], z[:]) and again.attrs["symbrg"]["complete"] is True


@pytest.mark.parametrize("n,n2,chunk", [(N, None, CHUNK), (N, N2, CHUNK), (256, None, 64), (50, None, 64)])
def test_chunk_files_are_the_ones_zarr_writes(nets, tmp_path, monkeypatch, n, n2, chunk):
    """Whole chunks (edge chunks padded with NaN) go straight to their files: byte for byte the files
    zarr itself writes; an array smaller than a chunk goes through zarr."""
    arch, x, y = nets["relu3"], RNG.normal(size=(n, 5)), None if n2 is None else Y
    direct = []
    write = chunked._write_file
    monkeypatch.setattr(chunked, "_write_file", lambda path, data: direct.append(path) or write(path, data))
    fast = gram_to_zarr(arch, x, tmp_path / "fast.zarr", x2=y, chunk=chunk)
    files = sorted(p.relative_to(tmp_path / "fast.zarr") for p in (tmp_path / "fast.zarr").rglob("c/**/*") if p.is_file())
    assert len(direct) == (len(files) if n >= chunk else 0) and len(files) == _blocks(n, chunk) * _blocks(n2 or n, chunk)
    monkeypatch.setattr(chunked, "_chunk_files", lambda arr: None)              # everything through zarr
    slow = gram_to_zarr(arch, x, tmp_path / "slow.zarr", x2=y, chunk=chunk)
    assert all((tmp_path / "fast.zarr" / f).read_bytes() == (tmp_path / "slow.zarr" / f).read_bytes() for f in files)
    assert _same(fast[:], arch.nngp(x, y)) and np.array_equal(slow[:], fast[:])
    assert not list((tmp_path / "fast.zarr").rglob("*.partial"))


def test_chunk_files_without_o_direct(nets, tmp_path, monkeypatch):
    """A file system that refuses O_DIRECT (tmpfs: EINVAL) gets ordinary writes, the same bytes."""
    if not chunked._DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    opened, real_open = [], os.open

    def refuse_direct(path, flags, *args):
        opened.append(bool(flags & chunked._DIRECT))
        if flags & chunked._DIRECT:
            raise OSError(22, "Invalid argument")
        return real_open(path, flags, *args)
    monkeypatch.setattr(chunked.os, "open", refuse_direct)
    z = gram_to_zarr(nets["relu3"], X, tmp_path / "K.zarr", chunk=CHUNK)
    assert True in opened and False in opened and _same(z[:], nets["relu3"].nngp(X))


def test_resume_skips_written_chunks(nets, tmp_path, monkeypatch):
    arch, path = nets["relu3"], tmp_path / "K.zarr"
    nb = _blocks(N)
    total = nb * (nb + 1) // 2

    def crash(done, _total):                       # the run dies after 4 blocks
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gram_to_zarr(arch, X, path, chunk=CHUNK, progress=crash)
    assert np.isnan(zarr.open_array(str(path), mode="r")[:]).any()     # unwritten chunks read NaN
    with pytest.raises(OutputExists, match="^out: "):
        gram_to_zarr(arch, X, path, chunk=CHUNK)
    with pytest.raises(InvalidArgument, match="^resume: .*params"):
        gram_to_zarr(arch, X, path, chunk=CHUNK, params={"sigma_w": 1.3}, resume=True)
    seen = []
    z = gram_to_zarr(arch, X, path, chunk=CHUNK, resume=True, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) == total - 4 and seen[0] == (5, total) and seen[-1] == (total, total)
    assert _same(z[:], arch.nngp(X))
    computed = []                                  # resuming a complete array computes nothing
    block = chunked._Spec.block
    monkeypatch.setattr(chunked._Spec, "block", lambda self, a, b, **kw: computed.append(1) or block(self, a, b, **kw))
    z = gram_to_zarr(arch, X, path, chunk=CHUNK, resume=True)
    assert computed == [] and _same(z[:], arch.nngp(X))


def test_fsspec_url(nets):
    pytest.importorskip("fsspec")
    arch, url = nets["relu3"], "memory://symbrg-test-dask/K.zarr"
    z = gram_to_zarr(arch, X, url, chunk=CHUNK, overwrite=True)
    assert _same(z[:], arch.nngp(X))
    with pytest.raises(OutputExists, match="^out: "):
        gram_to_zarr(arch, X, url, chunk=CHUNK)


def test_overwrite_replaces_only_zarr_folders(nets, tmp_path):
    arch = nets["relu3"]
    gram_to_zarr(arch, X[:50], tmp_path / "K.zarr", chunk=CHUNK)
    z = gram_to_zarr(arch, X, tmp_path / "K.zarr", chunk=CHUNK, overwrite=True)
    assert z.shape == (N, N) and _same(z[:], arch.nngp(X))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="^out: .*no zarr array"):
        gram_to_zarr(arch, X, other, chunk=CHUNK, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------ on a cluster
def test_cluster_equals_local(nets, client, tmp_path):
    arch = nets["relu3"]
    local = gram_to_zarr(arch, X, tmp_path / "local.zarr", chunk=CHUNK)
    done = []
    remote = gram_to_zarr(arch, X, tmp_path / "remote.zarr", chunk=CHUNK, client=client,
                          progress=lambda d, t: done.append(d))
    assert _same(remote[:], local[:]) and sorted(done) == list(range(1, len(done) + 1))
    lazy = client.compute(gram_dask(arch, X, Y, kind="ntk", chunk=CHUNK)).result()
    assert _same(lazy, arch.ntk(X, Y))


def test_lazy_mpmath_on_the_cluster(nets, client):
    arch, x = nets["relu3"], X[:11]
    got = client.compute(gram_dask(arch, x, chunk=4, precision=30)).result()      # blocks move as MpfArrays
    assert isinstance(got, chunked.MpfArray) and _same_mpf(got, arch.nngp(x, precision=30))


def test_killed_worker_chunks_are_recomputed(nets, client, tmp_path):
    arch = nets["relu3"]
    x = np.random.default_rng(3).normal(size=(2000, 5))
    killed = []

    def kill_one(done, total):                        # after the first block: SIGKILL a worker
        if not killed:
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            os.kill(pids[victim], signal.SIGKILL)
            killed.append((victim, done, total))

    z = gram_to_zarr(arch, x, tmp_path / "K.zarr", chunk=100, client=client, progress=kill_one)
    assert killed and killed[0][1] < killed[0][2] // 2           # killed early in the run
    got = z[:]
    assert not np.isnan(got).any() and z.attrs["symbrg"]["complete"] is True
    assert _same(got, arch.nngp(x))


def test_client_from(client, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert client_from(None) is None
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", client.scheduler.address)
    with client_from(None) as c:
        assert c.scheduler.address == client.scheduler.address
    with pytest.raises(InvalidArgument, match="^address: "):
        client_from("   ")


# ------------------------------------------------------------------ errors
def test_missing_extra_is_a_clear_error(nets, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)           # import zarr -> ImportError
    with pytest.raises(Unsupported, match=r"^out: needs the \[dask\] extra: pip install 'symbrg\[dask\]'"):
        gram_to_zarr(nets["relu3"], X, tmp_path / "K.zarr")
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(Unsupported, match=r"^chunk: needs the \[dask\] extra"):
        gram_dask(nets["relu3"], X)
    assert not (tmp_path / "K.zarr").exists()


def test_too_large_requests_are_refused(nets, tmp_path, monkeypatch):
    arch, path = nets["relu3"], tmp_path / "K.zarr"
    with symbrg.limits.lifted(gram_work=1000), pytest.raises(TooExpensive, match="^x1: .*gram_work"):
        gram_to_zarr(arch, X, path)
    with symbrg.limits.lifted(gram_bytes=1000), pytest.raises(TooExpensive, match="^out: .*on disk"):
        gram_to_zarr(arch, X, path)
    with symbrg.limits.lifted(gram_bytes=1e5), pytest.raises(TooExpensive, match="^chunk: .*per chunk"):
        gram_dask(arch, X, chunk=N)
    with symbrg.limits.lifted(gram_bytes=1e5):
        gram_dask(arch, X, chunk=CHUNK)                          # 32 kB per chunk: fine
    monkeypatch.setattr(chunked.shutil, "disk_usage", lambda p: type("U", (), {"free": 10_000})())
    with pytest.raises(TooExpensive, match="^out: the Gram matrix needs .* GB free"):
        gram_to_zarr(arch, X, path)
    with symbrg.limits.lifted(gram_work=1000), pytest.raises(TooExpensive, match="^x1: "):
        gram_dask(arch, X)
    assert not path.exists()


@pytest.mark.parametrize("chunk", [0, -4, 2.5, "64", True])
def test_bad_chunk(nets, tmp_path, chunk):
    with pytest.raises(InvalidArgument, match="^chunk: "):
        gram_dask(nets["relu3"], X, chunk=chunk)
    with pytest.raises(InvalidArgument, match="^chunk: "):
        gram_to_zarr(nets["relu3"], X, tmp_path / "K.zarr", chunk=chunk)


def test_bad_arguments(nets, tmp_path):
    arch = nets["relu3"]
    with pytest.raises(InvalidArgument, match="^kind: "):
        gram_dask(arch, X, kind="nngpp")
    with pytest.raises(InvalidArgument, match="^params: "):
        gram_dask(arch, X, params={"sigma_q": 1.0})
    with pytest.raises(InvalidArgument, match="^x2: "):
        gram_dask(arch, X, np.ones((3, 4)))
    with pytest.raises(InvalidArgument, match="^client: "):
        gram_to_zarr(arch, X, tmp_path / "K.zarr", client="tcp://localhost:1")
    with pytest.raises(InvalidArgument, match="^overwrite: "):
        gram_to_zarr(arch, X, tmp_path / "K.zarr", resume=True, overwrite=True)
    with pytest.raises(InvalidArgument, match="^arch: "):
        gram_dask("relu", X)
    assert dask.is_dask_collection(gram_dask(arch, X))        # lazy: nothing computed yet


# ------------------------------------------------------------------ arch.nngp / arch.ntk dispatch
def test_api_chunks_is_the_lazy_array(nets):
    arch = nets["relu3"]
    lazy = arch.nngp(X, chunks=CHUNK)
    assert dask.is_dask_collection(lazy) and lazy.chunksize == (CHUNK, CHUNK)
    assert np.array_equal(lazy.compute(), gram_dask(arch, X, chunk=CHUNK).compute())
    np.testing.assert_allclose(arch.ntk(X, Y, chunks=CHUNK).compute(), arch.ntk(X, Y), rtol=1e-13, atol=1e-13)


def test_api_out_zarr_stores_the_array(nets, tmp_path):
    arch = nets["erf2"]
    z = arch.ntk(X, out=tmp_path / "K.zarr", chunks=CHUNK)             # a PathLike
    assert isinstance(z, zarr.Array) and z.chunks == (CHUNK, CHUNK)
    np.testing.assert_allclose(z[:], arch.ntk(X), rtol=1e-13, atol=1e-13)
    seen = []
    z = arch.nngp(X, Y, out=str(tmp_path / "L.zarr"), progress=lambda d, t: seen.append(d))   # a str
    assert z.chunks == (chunked.DEFAULT_CHUNK,) * 2 and seen == [1]
    np.testing.assert_allclose(z[:], arch.nngp(X, Y), rtol=1e-13, atol=1e-13)
    with pytest.raises(OutputExists, match="^out: "):
        arch.nngp(X, out=tmp_path / "K.zarr")
    if pytest.importorskip("fsspec"):
        z = arch.nngp(X, out="memory://symbrg-test-api/K.zarr", chunks=CHUNK)    # an fsspec URL
        assert np.array_equal(z[:], gram_to_zarr(arch, X, tmp_path / "M.zarr", chunk=CHUNK)[:])


@pytest.mark.parametrize("options,argument", [
    (dict(out="K.npy"), "out"),                          # a path that is not .zarr
    (dict(chunks=CHUNK, threads=2), "threads"),
    (dict(chunks=CHUNK, progress=print), "progress"),
    (dict(chunks=CHUNK, out=np.empty((N, N))), "out"),
    (dict(out="K.zarr", precision=30), "precision"),
    (dict(chunks=0), "chunks"),
    (dict(chunks=2.5), "chunks"),
])
def test_api_bad_combinations(nets, tmp_path, monkeypatch, options, argument):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgument, match=f"^{argument}: "):
        nets["relu3"].nngp(X, **options)
    assert not (tmp_path / "K.zarr").exists()


def test_api_without_the_extra(nets, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(Unsupported, match=r"^chunks: needs the \[dask\] extra"):
        nets["relu3"].nngp(X, chunks=CHUNK)
    with pytest.raises(Unsupported, match=r"^out: needs the \[dask\] extra"):
        nets["relu3"].ntk(X, out=tmp_path / "K.zarr")
    assert nets["relu3"].nngp(X[:5]).shape == (5, 5)               # the in-memory path needs neither


def test_chunked_sees_the_network_structurally(nets):
    from symbrg.kernels.grams import GramNetwork
    assert isinstance(nets["relu3"], GramNetwork)
    with pytest.raises(InvalidArgument, match="^arch: "):            # the class itself is not a network
        gram_dask(symbrg.kernels.Architecture, X)


# ------------------------------------------------------------------ symbrg kernel --out K.zarr


KERNEL = ["kernel", "--activation", "relu", "--depth", "3", "--sigma-w", "1.4", "--sigma-b", "0.1"]


def test_cli_kernel_zarr(nets, tmp_path, capsys):
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    x, out = str(tmp_path / "X.npy"), str(tmp_path / "K.zarr")
    status, stdout, _ = _cli([*KERNEL, "--x", x, "--out", out, "--chunk", str(CHUNK)], capsys)
    assert status == 0 and "(230, 230)" in stdout and f"chunks {CHUNK}" in stdout
    z = zarr.open_array(out, mode="r")
    assert z.chunks == (CHUNK, CHUNK) and _same(z[:], nets["relu3"].nngp(X))
    status, _, err = _cli([*KERNEL, "--x", x, "--out", out, "--chunk", str(CHUNK)], capsys)   # exists
    assert status == 2 and err.count("\n") == 1 and "--resume" in err and "--force" in err
    status, _, _ = _cli([*KERNEL, "--ntk", "--x", x, "--x2", str(tmp_path / "Y.npy"), "--out", out, "--force"],
                        capsys)
    assert status == 0
    z = zarr.open_array(out, mode="r")
    assert z.chunks == (chunked.DEFAULT_CHUNK,) * 2
    np.testing.assert_allclose(z[:], nets["relu3"].ntk(X, Y), rtol=1e-13, atol=1e-13)


def test_cli_kernel_zarr_resume(nets, tmp_path, capsys):
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "K.zarr"

    def crash(done, _total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):                     # an interrupted run: 3 blocks written
        gram_to_zarr(nets["relu3"], X, out, chunk=CHUNK, progress=crash)
    status, _, err = _cli([*KERNEL, "--x", str(tmp_path / "X.npy"), "--out", str(out), "--chunk", "32",
                           "--resume"], capsys)
    assert status == 2 and err.startswith("symbrg: error: resume: ") and "chunk" in err
    status, _, _ = _cli([*KERNEL, "--x", str(tmp_path / "X.npy"), "--out", str(out), "--chunk", str(CHUNK),
                         "--resume"], capsys)
    assert status == 0
    z = zarr.open_array(str(out), mode="r")
    assert z.attrs["symbrg"]["complete"] is True and _same(z[:], nets["relu3"].nngp(X))


@pytest.mark.parametrize("extra,argument", [
    (["--out", "K.zarr", "--precision", "30"], "precision"),
    (["--out", "K.npy", "--chunk", "64"], "chunk"),
    (["--out", "K.npy", "--resume"], "resume"),
    (["--out", "K.npy", "--scheduler", "tcp://127.0.0.1:1"], "scheduler"),
    (["--out", "K.zarr", "--resume", "--force"], "force"),
    (["--out", "K.zarr", "--chunk", "0"], "chunk"),
    (["--out", "K.zarr", "--scheduler", " "], "scheduler"),
])
def test_cli_kernel_bad_combinations(tmp_path, capsys, monkeypatch, extra, argument):
    monkeypatch.chdir(tmp_path)
    np.save("X.npy", X[:20])
    status, stdout, err = _cli([*KERNEL, "--x", "X.npy", *extra], capsys)
    assert status == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"symbrg: error: {argument}: "), err
    assert not (tmp_path / "K.zarr").exists() and not (tmp_path / "K.npy").exists()


def test_cli_kernel_on_the_cluster(nets, client, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "X.npy", X)
    x = str(tmp_path / "X.npy")
    status, stdout, _ = _cli([*KERNEL, "--x", x, "--out", str(tmp_path / "A.zarr"), "--chunk", str(CHUNK),
                              "--scheduler", client.scheduler.address], capsys)
    assert status == 0 and client.scheduler.address in stdout
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", client.scheduler.address)      # the same via the environment
    status, stdout, _ = _cli([*KERNEL, "--x", x, "--out", str(tmp_path / "B.zarr"), "--chunk", str(CHUNK)], capsys)
    assert status == 0 and client.scheduler.address in stdout
    want = nets["relu3"].nngp(X)
    for name in ("A.zarr", "B.zarr"):
        assert _same(zarr.open_array(str(tmp_path / name), mode="r")[:], want)


# ------------------------------------------------------------------ experiments and sweeps on the cluster
TINY = dict(widths=(2, 10, 10, 200, 1), sigma_w=(2 ** 0.5, 10 ** 0.5, 10 ** 0.5, 200 ** 0.5),
            n_train=50, n_test=50, fisher_set=100, epochs=30, bootstrap=500, seed=1)


def test_experiment_on_the_cluster_equals_local(client, tmp_path):
    from symbrg.ensembles.experiment import preset, run_shell_experiment
    cfg = preset("paper", members=6, block=2, **TINY)
    quiet = dict(progress=lambda line: None, figures=False)
    local = run_shell_experiment(cfg, tmp_path / "local", **quiet)
    remote = run_shell_experiment(cfg, tmp_path / "remote", client=client, **quiet)
    same = json.dumps(remote) == json.dumps(local)                             # bit for bit
    assert same, "the cluster's results differ from the local ones"
    for name in ("block_0000.npz", "block_0001.npz", "block_0002.npz"):
        a, b = np.load(tmp_path / "local" / "blocks" / name), np.load(tmp_path / "remote" / "blocks" / name)
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a.files)
    stopped = run_shell_experiment(cfg, tmp_path / "resumed", client=client, stop_after=1, **quiet)
    assert stopped["complete"] is False
    resumed = run_shell_experiment(cfg, tmp_path / "resumed", client=client, resume=True, **quiet)
    same = json.dumps(resumed) == json.dumps(local)
    assert same, "a run resumed on the cluster differs from the local one"
    with pytest.raises(InvalidArgument, match="^client: "):
        run_shell_experiment(cfg, client="tcp://localhost:1", **quiet)


def test_cli_experiment_scheduler(client, tmp_path, capsys):
    shell = ["experiment", "shell", "--preset", "paper", "--members", "4", "--epochs", "5", "--block", "2",
             "--bootstrap", "200", "--no-figures"]
    status, _, _ = _cli(["-q", *shell, "--out", str(tmp_path / "local")], capsys)
    assert status == 0
    status, _, _ = _cli(["-q", *shell, "--out", str(tmp_path / "remote"), "--scheduler", client.scheduler.address],
                        capsys)
    assert status == 0
    same = (tmp_path / "local" / "results.json").read_bytes() == (tmp_path / "remote" / "results.json").read_bytes()
    assert same, "the cluster's results.json differs from the local one"
    status, _, err = _cli(["-q", *shell, "--out", str(tmp_path / "bad"), "--scheduler", ""], capsys)
    assert status == 2 and err.startswith("symbrg: error: --scheduler: ") and err.count("\n") == 1


def test_cosnet_sweep_on_the_cluster_equals_local(client, capsys):
    # a mutated sweep (one mutation, no mutation table) keeps it short; it must not verify anywhere
    sweep = ["prove", "cosnet-erg", "--dim", "1,2", "--regulator", "sharp,litim", "--points", "2",
             "--mutate", "mass-dropped-map", "--json"]
    status, local, _ = _cli(sweep, capsys)
    assert status == 1
    rows = json.loads(local)["sweep"]
    assert [(r["dim"], r["regulator"]) for r in rows] == [("1", "sharp"), ("1", "litim"), ("2", "sharp"),
                                                          ("2", "litim")]
    assert not any(r["verified"] for r in rows) and all("cutoff-map" in r["failed"] for r in rows)
    status, remote, _ = _cli([*sweep, "--scheduler", client.scheduler.address], capsys)
    assert status == 1 and remote == local


def test_cosnet_sweep_rows_and_errors(capsys, monkeypatch):
    from symbrg.cli import cosnet
    calls = []

    def row(dim, regulator, points, mutate, bounds, *more):   # the certificates themselves are tested above
        calls.append((dim, regulator))
        ok = (dim, regulator) != ("4", "exponential")
        return {"dim": dim, "regulator": regulator, "verified": ok, "identities_verified": 12 if ok else 11,
                "identities": 12, "mutations_refused": 6, "mutations": 6, "vacuous": [],
                "failed": [] if ok else ["polchinski"]}

    monkeypatch.setattr(cosnet, "_sweep_row", row)
    status, text, _ = _cli(["prove", "cosnet-erg", "--sweep"], capsys)
    lines = text.splitlines()
    assert status == 1 and len(calls) == 12 and len(lines) == 13                # dims 1..4 x 3 regulators
    assert calls[:3] == [("1", "sharp"), ("1", "litim"), ("1", "exponential")]
    assert lines[0].split()[:4] == ["dim", "1", "sharp", "VERIFIED"] and "12/12 identities" in lines[0]
    assert "NOT VERIFIED" in lines[12 - 1] and "failed: polchinski" in lines[11]
    assert lines[-1] == "11/12 certificates verified"
    for bad, argument in ((["--dim", "1,"], "dim"), (["--dim", "1,0"], "dim"), (["--regulator", "sharp,nope"],
                          "regulator"), (["--sweep", "--format", "latex"], "format"),
                          (["--dim", "3", "--scheduler", "tcp://127.0.0.1:1"], "scheduler"),
                          (["--sweep", "--scheduler", " "], "scheduler")):
        status, _, err = _cli(["prove", "cosnet-erg", *bad], capsys)
        assert status == 2 and err.startswith(f"symbrg: error: {argument}: ") and err.count("\n") == 1, err
