"""Chunked Gram benchmarks (symbrg.kernels.chunked): zarr streaming, accuracy, cluster speed-up, planning.

Run ``python benchmarks/bench_dask.py [--quick]``.  Every figure is printed next to a baseline
measured in the same run:

* ReLU depth 3, d = 5, N = 20,000 (``--quick``: 3,000) written to zarr in a temporary folder,
  chunk 4096 (quick: 1024): wall time, entries/s as a ratio of the in-memory ``arch.nngp`` rate
  and peak RSS (each run in a fresh subprocess, ``resource.getrusage``) against the in-memory
  run's and the output's size; the same on a 2-process LocalCluster (1 thread each).
* Accuracy: max abs difference of 1000 random entries of the zarr array against an independent
  NumPy arc-cosine recursion (written here, not symbrg's).
* mpmath, 50 digits, a small N: a lazy ``gram_dask`` computed on 2 worker processes vs 1 (speed-up).
* A planning table: time, disk and memory per worker for N = 1e5 and 1e6 on 10 and 100 workers,
  from the measured time of one off-diagonal 4096 x 4096 block on one thread (compute + write).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter

import numpy as np

SW, SB, DEPTH, D = 1.4, 0.1, 3, 5
#: Largest N of the in-memory baseline (3.2 GB); beyond it the zarr rate is compared per entry.
MEMORY_N = 20_000


def peak_rss() -> int:
    """Peak resident memory of this process in bytes: VmHWM (reset by exec, unlike ``ru_maxrss``,
    which a child inherits from its parent's peak), else ``resource.getrusage``."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _arch():
    import symbrg
    return symbrg.mlp("relu", depth=DEPTH, sigma_w=SW, sigma_b=SB)


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D))


def arccos_pairs(x: np.ndarray, y: np.ndarray, depth: int, sw: float, sb: float) -> np.ndarray:
    """The baseline: the ReLU NNGP of the pairs (x[k], y[k]) by the arc-cosine recursion, by hand."""
    d = x.shape[1]
    k = sb**2 + sw**2 * np.einsum("ij,ij->i", x, y) / d
    q1 = sb**2 + sw**2 * np.einsum("ij,ij->i", x, x) / d
    q2 = sb**2 + sw**2 * np.einsum("ij,ij->i", y, y) / d
    for _ in range(depth):
        norm = np.sqrt(q1 * q2)
        c = np.clip(k / norm, -1.0, 1.0)
        th = np.arccos(c)
        k = sb**2 + sw**2 / (2 * math.pi) * norm * (np.sin(th) + (math.pi - th) * c)
        q1, q2 = sb**2 + sw**2 * q1 / 2, sb**2 + sw**2 * q2 / 2
    return k


# ------------------------------------------------------------------ child processes (fresh RSS)
def _child(task: dict) -> dict:
    """One measured phase, run in a fresh interpreter: returns its figures and peak RSS."""
    import zarr  # noqa: F401 - imported outside the timing, as the in-memory run imports numpy

    from symbrg.kernels import chunked  # noqa: F401
    arch = _arch()
    x = _inputs(task["n"])
    arch.nngp(x[:50])                                         # derive and compile outside the timing
    base = peak_rss()
    out: dict = {}
    t = time.perf_counter()
    if task["phase"] == "memory":
        k = arch.nngp(x)
        out["seconds"] = time.perf_counter() - t
        np.save(task["path"], k)                             # the disk-inclusive baseline
        out["save_seconds"] = time.perf_counter() - t
        os.unlink(task["path"])
    elif task["phase"] == "zarr":
        from symbrg.core.limits import lifted
        from symbrg.kernels.chunked import gram_to_zarr
        with lifted(gram_bytes=1e13, gram_work=1e13):        # --n beyond the in-memory defaults
            gram_to_zarr(arch, x, task["path"], chunk=task["chunk"])
    elif task["phase"] == "cluster":
        from distributed import Client, LocalCluster

        from symbrg.kernels.chunked import gram_to_zarr
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            client.run(_warm_worker, task["n"] and 0)
            t = time.perf_counter()
            gram_to_zarr(arch, x, task["path"], chunk=task["chunk"], client=client)
            out["seconds"] = time.perf_counter() - t
            out["worker_rss"] = max(client.run(peak_rss).values())
    elif task["phase"] == "unit":                             # one off-diagonal block on one thread, written
        c = task["chunk"]
        job = chunked._prepare(arch, x[:2 * c], None, "nngp", c, None, None, threads=1)
        z = zarr.create_array(store=task["path"], shape=(2 * c, 2 * c), chunks=(c, c), dtype="float64",
                              compressors=None)
        chunked._write_block(job, z, 0, 0)          # warm
        t = time.perf_counter()
        chunked._write_block(job, z, 0, 1)
        out["seconds"] = time.perf_counter() - t
    out.setdefault("seconds", time.perf_counter() - t)
    out["rss"] = peak_rss()
    out["base_rss"] = base
    return out


def _warm_worker(_: int) -> None:
    """Derive and compile the network on a worker before the timing."""
    from symbrg.kernels.chunked import _warm
    arch = _arch()
    _warm(arch).nngp(_inputs(4))
    _warm(arch).nngp(_inputs(4), precision=50)


def _run(task: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ measurements
def zarr_vs_memory(n: int, chunk: int, folder: str, cluster: bool) -> tuple[str, float]:
    import zarr
    entries = n * n
    n_mem = min(n, MEMORY_N)                                  # the in-memory baseline must fit in memory
    mem = _run({"phase": "memory", "n": n_mem, "path": os.path.join(folder, "K.npy")})
    path = os.path.join(folder, "K.zarr")
    disk = _run({"phase": "zarr", "n": n, "chunk": chunk, "path": path})
    rate_mem, rate_disk = n_mem * n_mem / mem["seconds"], entries / disk["seconds"]
    if n_mem != n:
        print(f"(the in-memory baseline is measured at N = {n_mem:,}: rates are per entry)")
    out_gb, chunk_mb = 8 * entries / 1e9, 8 * chunk * chunk / 1e6
    print(f"ReLU depth {DEPTH}, N = {n:,} (output {out_gb:.2f} GB), chunk {chunk} ({chunk_mb:.0f} MB):")
    print(f"  in memory  arch.nngp      {mem['seconds']:7.2f} s  {rate_mem:10.3g} entries/s   "
          f"peak RSS {mem['rss'] / 1e6:7.0f} MB")
    rate_save = n_mem * n_mem / mem["save_seconds"]
    print(f"  in memory, then np.save   {mem['save_seconds']:7.2f} s  {rate_save:10.3g} entries/s   "
          f"(the same disk: {8 * n_mem**2 / 1e6 / (mem['save_seconds'] - mem['seconds']):.0f} MB/s written)")
    print(f"  zarr, local (all cores)   {disk['seconds']:7.2f} s  {rate_disk:10.3g} entries/s   "
          f"peak RSS {disk['rss'] / 1e6:7.0f} MB   rate ratio {rate_disk / rate_mem:.2f}x in-memory, "
          f"{rate_disk / rate_save:.2f}x in-memory + np.save")
    extra = (disk["rss"] - disk["base_rss"]) / 1e6
    print(f"  zarr peak RSS: {disk['rss'] / mem['rss']:.3f}x the in-memory run's, "
          f"{disk['rss'] / (8 * entries):.3f}x the output; above the interpreter's "
          f"{disk['base_rss'] / 1e6:.0f} MB: {extra:.0f} MB = {extra / chunk_mb:.1f} chunks")
    if cluster:
        cpath = os.path.join(folder, "K-cluster.zarr")
        cl = _run({"phase": "cluster", "n": n, "chunk": chunk, "path": cpath})
        rate_cl = entries / cl["seconds"]
        print(f"  zarr, LocalCluster 2x1    {cl['seconds']:7.2f} s  {rate_cl:10.3g} entries/s   "
              f"worker peak RSS {cl['worker_rss'] / 1e6:5.0f} MB   rate ratio {rate_cl / rate_mem:.2f}x in-memory")
        za, zb = zarr.open_array(cpath, mode="r"), zarr.open_array(path, mode="r")
        same = all(np.array_equal(za[i:i + chunk], zb[i:i + chunk]) for i in range(0, n, chunk))
        print(f"  cluster result identical to the local one: {same}")
    # accuracy: 1000 random entries against the hand-written recursion
    z = zarr.open_array(path, mode="r")
    x = _inputs(n)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, n, 1000), rng.integers(0, n, 1000)
    got = z.vindex[rows, cols]
    want = arccos_pairs(x[rows], x[cols], DEPTH, SW, SB)
    err = np.abs(got - want)
    print(f"  accuracy: max |zarr - NumPy arc-cosine recursion| over 1000 random entries = {err.max():.2e} "
          f"(max relative {np.max(err / np.abs(want)):.2e}; entries up to {np.abs(want).max():.3g})")
    return path, rate_disk


def mpmath_speedup(n: int) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    from symbrg.kernels.chunked import gram_dask
    arch = _arch()
    x = _inputs(n, seed=2)
    times, results, busy, tasks = {}, {}, {}, {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            client.run(_warm_worker, 0)
            lazy = gram_dask(arch, x, precision=50, chunk=max(4, n // 12))   # 78 blocks: balanced on 2 workers
            with get_task_stream(client) as stream:
                t = time.perf_counter()
                results[workers] = client.compute(lazy).result()
                times[workers] = time.perf_counter() - t
            busy[workers] = sum(s["stop"] - s["start"] for task in stream.data for s in task["startstops"]
                                if s["action"] == "compute")
            tasks[workers] = sorted(Counter(task["worker"] for task in stream.data).values())
    t = time.perf_counter()
    arch.nngp(x, precision=50)
    inproc = time.perf_counter() - t
    entries = n * (n + 1) // 2
    print(f"mpmath in this process: arch.nngp(precision=50) {inproc:.2f} s for all {n * n:,} entries "
          f"({n * n / inproc:,.0f} entries/s)")
    same = all(a == b for a, b in zip(results[1].ravel(), results[2].ravel()))
    print(f"mpmath 50 digits, ReLU depth {DEPTH}, N = {n} ({entries:,} upper entries), chunk {max(4, n // 6)}: "
          f"1 worker {times[1]:.2f} s ({entries / times[1]:,.0f} entries/s), 2 workers {times[2]:.2f} s: "
          f"speed-up ratio {times[1] / times[2]:.2f}x (identical: {same})")
    print(f"  tasks per worker with 2 workers: {tasks[2]}; summed compute time 2 workers / 1 worker = "
          f"{busy[2] / busy[1]:.2f} (1.0: two free cores; 2.0: the workers share one core)")


def planning(chunk: int, folder: str) -> None:
    unit = _run({"phase": "unit", "n": 2 * chunk, "chunk": chunk, "path": os.path.join(folder, "unit.zarr")})
    per_entry = unit["seconds"] / (2 * chunk * chunk)           # a block and its mirror
    print(f"one off-diagonal {chunk} x {chunk} block on one thread, computed and written with its mirror: "
          f"{unit['seconds']:.2f} s ({2 * chunk * chunk / unit['seconds']:.3g} entries/s); worker peak RSS "
          f"{unit['rss'] / 1e6:.0f} MB ({(unit['rss'] - unit['base_rss']) / 1e6:.0f} MB above the interpreter)")
    print(f"planning (chunk {chunk}, symmetric, one thread per worker, perfect scaling, the store's bandwidth "
          "not modelled):")
    print(f"  {'N':>9} {'workers':>8} {'blocks':>9} {'time':>10} {'disk':>9} {'RAM/worker':>11} "
          f"{'store write rate needed':>24}")
    for n in (10**5, 10**6):
        nb = -(-n // chunk)
        blocks = nb * (nb + 1) // 2
        for workers in (10, 100):
            seconds = per_entry * n * n / workers
            when = f"{seconds / 3600:.1f} h" if seconds > 7200 else f"{seconds / 60:.1f} min"
            print(f"  {n:>9.0e} {workers:>8} {blocks:>9,} {when:>10} {8 * n * n / 1e12:>7.2f} TB "
                  f"{unit['rss'] / 1e9:>9.2f} GB {8 * n * n / seconds / 1e9:>19.2f} GB/s")
    print("  (N = 1e5 and up exceeds the default gram_work and gram_bytes limits: lift them with "
          "symbrg.limits.lifted(gram_work=..., gram_bytes=...) or --limit)")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--n", type=int, help="points of the zarr Gram matrix (default 20,000; e.g. 50,000: 20 GB "
                    "on disk, the in-memory baseline stays at 20,000)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    args = ap.parse_args()
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as exc:
        print(f"skipped (no speed-up ratio measured): {exc}; pip install 'symbrg[dask]'")
        return
    n, chunk, mp_n = (3000, 1024, 40) if args.quick else (args.n or MEMORY_N, 4096, 240)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{os.cpu_count()} cores, load average {load} (figures are noisy on a shared machine)")
    with tempfile.TemporaryDirectory(prefix="bench_dask-") as folder:
        zarr_vs_memory(n, chunk, folder, cluster=not (args.quick or args.no_cluster))
        mpmath_speedup(mp_n)
        planning(chunk if not args.quick else 1024, folder)


if __name__ == "__main__":
    main()
