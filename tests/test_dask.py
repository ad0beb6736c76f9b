"""Chunked Gram matrices (symbrg.kernels.chunked): lazy dask arrays, zarr output, resume, clusters.

Every chunked result is compared with the in-memory ``arch.nngp``/``arch.ntk`` of the same inputs;
the cluster tests run a two-process LocalCluster, one of them killing a worker mid-run.
"""
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


def test_symmetric_blocks_computed_once(nets, monkeypatch):
    calls = []
    block = chunked._Spec.block
    monkeypatch.setattr(chunked._Spec, "block", lambda self, a, b: calls.append(1) or block(self, a, b))
    gram_dask(nets["relu3"], X, chunk=CHUNK).compute(scheduler="sync")
    nb = _blocks(N)
    assert len(calls) == nb * (nb + 1) // 2


def test_lazy_array_mpmath(nets):
    arch = nets["relu3"]
    got = gram_dask(arch, X[:9], chunk=4, precision=30).compute(scheduler="sync")
    want = arch.nngp(X[:9], precision=30)
    assert got.dtype == object and all(a == b for a, b in zip(got.ravel(), want.ravel()))


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
    assert np.array_equal(z[:], arch.nngp(X))
    computed = []                                  # resuming a complete array computes nothing
    block = chunked._Spec.block
    monkeypatch.setattr(chunked._Spec, "block", lambda self, a, b: computed.append(1) or block(self, a, b))
    z = gram_to_zarr(arch, X, path, chunk=CHUNK, resume=True)
    assert computed == [] and np.array_equal(z[:], arch.nngp(X))


def test_fsspec_url(nets):
    pytest.importorskip("fsspec")
    arch, url = nets["relu3"], "memory://symbrg-test-dask/K.zarr"
    z = gram_to_zarr(arch, X, url, chunk=CHUNK, overwrite=True)
    assert np.array_equal(z[:], arch.nngp(X))
    with pytest.raises(OutputExists, match="^out: "):
        gram_to_zarr(arch, X, url, chunk=CHUNK)


def test_overwrite_replaces_only_zarr_folders(nets, tmp_path):
    arch = nets["relu3"]
    gram_to_zarr(arch, X[:50], tmp_path / "K.zarr", chunk=CHUNK)
    z = gram_to_zarr(arch, X, tmp_path / "K.zarr", chunk=CHUNK, overwrite=True)
    assert z.shape == (N, N) and np.array_equal(z[:], arch.nngp(X))
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
    assert np.array_equal(remote[:], local[:]) and sorted(done) == list(range(1, len(done) + 1))
    lazy = client.compute(gram_dask(arch, X, Y, kind="ntk", chunk=CHUNK)).result()
    assert np.array_equal(lazy, arch.ntk(X, Y))


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
    assert np.array_equal(got, arch.nngp(x))


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
