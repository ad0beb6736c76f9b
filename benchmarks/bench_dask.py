"""Chunked Gram benchmarks (symbrg.kernels.chunked): zarr streaming, accuracy, cluster speed-up, planning.

Run ``python benchmarks/bench_dask.py [--quick] [--n 50000] [--repeats 4]``.  Every figure is printed
next to a baseline measured in the same run, interleaved with it, and both targets of issue 16 are
checked at the end:

* zarr: N = 50,000 written to zarr with peak RSS under 2 GiB at >= 0.8x the in-memory rate per
  entry (entries of the N x N matrix per second; both paths compute the upper triangle once and
  mirror it).  ReLU depth 3, d = 5, chunk 4096 (``--quick``: N = 3,000, chunk 1024), in a temporary
  folder; the in-memory baseline ``arch.nngp(X)`` at min(N, 20,000) (3.2 GB: N = 50,000 would need
  20 GB of RAM).  ``--repeats`` pairs (in-memory, zarr), each run in a fresh subprocess (peak RSS =
  VmHWM), the ratio taken within each pair; once, the in-memory run is followed by ``np.save`` (the
  same disk's write rate) and the zarr matrix is also written by a 2-process LocalCluster.
* Accuracy: max abs difference of 1000 random entries of the zarr array against an independent
  NumPy arc-cosine recursion (written here, not symbrg's).
* mpmath: a lazy 50-digit ``gram_dask`` (N = 360, chunk 45: 36 blocks of about 0.3 s, well above dask's few milliseconds of
  overhead per task) computed on 2 worker
  processes vs 1, ``--repeats`` interleaved pairs of fresh LocalClusters; target >= 1.8x.
* A planning table: time, disk and memory per worker for N = 1e5 and 1e6 on 10 and 100 workers,
  from the measured time of one off-diagonal 4096 x 4096 block on one thread (compute + write).

Each timed run prints how busy the rest of the machine was during it ("others": the average number of
cores used by processes other than the run's own, from /proc/stat): on a shared machine a ratio is
only meaningful when both runs of a pair saw about the same.  The median over the pairs is the
figure reported against the targets.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SW, SB, DEPTH, D = 1.4, 0.1, 3, 5
#: Largest N of the in-memory baseline (3.2 GB); beyond it the zarr rate is compared per entry.
MEMORY_N = 20_000
#: The issue's targets: zarr rate / in-memory rate, zarr peak RSS, the mpmath 2-worker speed-up.
TARGET_RATE, TARGET_RSS, TARGET_SPEEDUP, TARGET_N = 0.8, 2 * 1024**3, 1.8, 50_000


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


def busy_cores() -> float:
    """CPU seconds spent by all processes of the machine so far (/proc/stat; 0 where unreadable)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")    # minus idle and iowait


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Others:
    """Measures, from entering to ``stop()``, the wall time and the cores that processes other than
    this one and ``procs`` (e.g. a cluster's workers) kept busy on average."""

    def __init__(self, procs: list | None = None):
        self.procs = procs or []

    def _own(self) -> float:
        return _cpu_self() + sum(sum(p.cpu_times()[:2]) for p in self.procs)

    def __enter__(self) -> Others:
        self.busy, self.own, self.t = busy_cores(), self._own(), time.perf_counter()
        return self

    def stop(self) -> tuple[float, float]:
        """(seconds, others' cores), and ``self.cpu``: the CPU seconds of this process and ``procs``;
        call before the processes in ``procs`` end."""
        seconds = time.perf_counter() - self.t
        self.cpu = self._own() - self.own
        return seconds, max(0.0, busy_cores() - self.busy - self.cpu) / max(seconds, 1e-9)

    def __exit__(self, *exc: object) -> None:
        pass


def _cluster_procs(client) -> list:
    """The worker processes of a LocalCluster and their nannies (psutil, a dependency of distributed)."""
    import psutil
    procs = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    return procs + [p.parent() for p in procs if p.parent() is not None and p.parent().pid != os.getpid()]


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
    phase = task["phase"]
    if phase == "memory":
        with Others() as clock:
            k = arch.nngp(x)
            out["seconds"], out["others"] = clock.stop()
        if task.get("save"):
            np.save(task["path"], k)                         # the disk-inclusive baseline
            out["save_seconds"] = time.perf_counter() - clock.t
            os.unlink(task["path"])
    elif phase == "zarr":
        from symbrg.core.limits import lifted
        from symbrg.kernels.chunked import gram_to_zarr
        with Others() as clock, lifted(gram_bytes=1e13, gram_work=1e13):   # --n beyond the defaults
            gram_to_zarr(arch, x, task["path"], chunk=task["chunk"])
            out["seconds"], out["others"] = clock.stop()
    elif phase == "unit":                                     # one off-diagonal block on one thread, written
        c = task["chunk"]
        job = chunked._prepare(arch, x[:2 * c], None, "nngp", c, None, None, threads=1)
        z = zarr.create_array(store=task["path"], shape=(2 * c, 2 * c), chunks=(c, c), dtype="float64",
                              fill_value=float("nan"), compressors=None)
        chunked._write_block(job, z, 0, 0)          # warm
        with Others() as clock:
            chunked._write_block(job, z, 0, 1)
            out["seconds"], out["others"] = clock.stop()
    elif phase == "cluster":
        from distributed import Client, LocalCluster

        from symbrg.core.limits import lifted
        from symbrg.kernels.chunked import gram_to_zarr
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            client.run(_warm_worker, 0)
            with Others(_cluster_procs(client)) as clock, lifted(gram_bytes=1e13, gram_work=1e13):
                gram_to_zarr(arch, x, task["path"], chunk=task["chunk"], client=client)
                out["seconds"], out["others"] = clock.stop()
            out["worker_rss"] = max(client.run(peak_rss).values())
    out["cpu"] = clock.cpu                                    # this process (and a cluster's workers)
    out["rss"] = peak_rss()
    out["base_rss"] = base
    return out


def _warm_worker(_: int) -> None:
    """Before the timing, on a worker: derive and compile the network, and import what dask's
    final concatenation needs (the first ``dask.array`` import and dispatch cost ~0.4 s once)."""
    from dask.array.core import concatenate3

    from symbrg.kernels.chunked import MpfArray, _warm
    arch = _arch()
    _warm(arch).nngp(_inputs(4))
    block = _warm(arch).nngp(_inputs(4), precision=50).view(MpfArray)
    concatenate3([[block, block], [block, block]])


def _run(task: dict) -> dict:
    """``task`` in a fresh interpreter (its figures: seconds, cpu, rss, others, ...)."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], capture_output=True,
                          text=True, timeout=7200)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ measurements
def zarr_vs_memory(n: int, chunk: int, folder: str, repeats: int, cluster: bool) -> dict:
    """Interleaved (in-memory, zarr) pairs; returns the figures checked against the target."""
    import zarr
    entries = n * n
    n_mem = min(n, MEMORY_N)                                  # the in-memory baseline must fit in memory
    out_gb, chunk_mb = 8 * entries / 1e9, 8 * chunk * chunk / 1e6
    print(f"ReLU depth {DEPTH}, N = {n:,} (output {out_gb:.2f} GB), chunk {chunk} ({chunk_mb:.0f} MB)"
          + (f"; the in-memory baseline at N = {n_mem:,}: rates are per entry" if n_mem != n else ""))
    path = os.path.join(folder, "K.zarr")
    ratios, mems, disks = [], [], []
    for rep in range(repeats):                          # memory, zarr then zarr, memory: drift cancels
        shutil.rmtree(path, ignore_errors=True)
        if rep % 2 == 0:
            mem = _run({"phase": "memory", "n": n_mem, "path": os.path.join(folder, "K.npy"), "save": rep == 0})
            disk = _run({"phase": "zarr", "n": n, "chunk": chunk, "path": path})
        else:
            disk = _run({"phase": "zarr", "n": n, "chunk": chunk, "path": path})
            mem = _run({"phase": "memory", "n": n_mem, "path": os.path.join(folder, "K.npy")})
        rate_mem, rate_disk = n_mem * n_mem / mem["seconds"], entries / disk["seconds"]
        ratios.append(rate_disk / rate_mem)
        mems.append(mem)
        disks.append(disk)
        print(f"  pair {rep + 1}: in memory {mem['seconds']:7.2f} s {rate_mem:9.3g} entries/s (CPU {mem['cpu']:6.1f} s, "
              f"peak RSS {mem['rss'] / 1e6:5.0f} MB, others {mem['others']:.2f} cores) | zarr {disk['seconds']:7.2f} s "
              f"{rate_disk:9.3g} entries/s (CPU {disk['cpu']:6.1f} s, peak RSS {disk['rss'] / 1e6:5.0f} MB, "
              f"others {disk['others']:.2f} cores) | ratio {ratios[-1]:.2f}")
        if rep == 0 and "save_seconds" in mem:
            rate_save = n_mem * n_mem / mem["save_seconds"]
            print(f"    in memory, then np.save: {mem['save_seconds']:.2f} s, {rate_save:.3g} entries/s (the same disk: "
                  f"{8 * n_mem**2 / 1e6 / (mem['save_seconds'] - mem['seconds']):.0f} MB/s written); zarr / that: "
                  f"{rate_disk / rate_save:.2f}x")
    best = max(entries / d["seconds"] for d in disks) / max(n_mem * n_mem / m["seconds"] for m in mems)
    rss = max(d["rss"] for d in disks)
    extra = (disks[0]["rss"] - disks[0]["base_rss"]) / 1e6
    print(f"  zarr / in-memory rate: median {statistics.median(ratios):.2f}x over {repeats} pair(s) "
          f"({', '.join(f'{r:.2f}' for r in ratios)}), best rate / best rate {best:.2f}x")
    print(f"  zarr peak RSS {rss / 1e6:.0f} MB ({rss / 2**30:.2f} GiB; {rss / (8 * entries):.3f}x the output); "
          f"above the interpreter's {disks[0]['base_rss'] / 1e6:.0f} MB: {extra:.0f} MB = {extra / chunk_mb:.1f} chunks")
    if cluster:
        cpath = os.path.join(folder, "K-cluster.zarr")
        cl = _run({"phase": "cluster", "n": n, "chunk": chunk, "path": cpath})
        rate_cl = entries / cl["seconds"]
        rate_mem = statistics.median(n_mem * n_mem / m["seconds"] for m in mems)
        print(f"  zarr, LocalCluster 2x1 {cl['seconds']:7.2f} s {rate_cl:9.3g} entries/s   worker peak RSS "
              f"{cl['worker_rss'] / 1e6:5.0f} MB   {rate_cl / rate_mem:.2f}x the median in-memory rate "
              f"(others {cl['others']:.2f} cores)")
        za, zb = zarr.open_array(cpath, mode="r"), zarr.open_array(path, mode="r")
        same = all(np.array_equal(za[i:i + chunk], zb[i:i + chunk]) for i in range(0, n, chunk))
        print(f"  cluster result identical to the local one: {same}")
        shutil.rmtree(cpath, ignore_errors=True)
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
    shutil.rmtree(path, ignore_errors=True)
    return {"n": n, "median": statistics.median(ratios), "ratios": ratios, "rss": rss}


def _mpmath_run(n: int, chunk: int, workers: int) -> dict:
    """One lazy 50-digit Gram computed on a fresh ``workers``-process LocalCluster: its seconds,
    result, the cores others kept busy meanwhile, tasks per worker, and ``compute``: the seconds
    the workers spent in tasks (from dask's task stream; the rest of ``workers x seconds`` is
    overhead: scheduling, moving blocks, the final concatenation and transfer, idle ends)."""
    from distributed import Client, LocalCluster, get_task_stream

    from symbrg.core.limits import lifted
    from symbrg.kernels.chunked import gram_dask
    arch, x = _arch(), _inputs(n, seed=2)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            Client(cl) as client:
        client.run(_warm_worker, 0)
        with lifted(mp_work=1e7):                       # the default bound stops at N = 258 (depth 3)
            lazy = gram_dask(arch, x, precision=50, chunk=chunk)
        with Others(_cluster_procs(client)) as clock, get_task_stream(client) as stream:
            result = client.compute(lazy).result()
            seconds, others = clock.stop()
        per = sorted(sum(1 for t in stream.data if t["worker"] == w) for w in {t["worker"] for t in stream.data})
        compute = sum(s["stop"] - s["start"] for t in stream.data for s in t["startstops"]
                      if s["action"] == "compute" and "finalize" not in str(t["key"]))
    return {"seconds": seconds, "result": result, "others": others, "tasks": per, "compute": compute,
            "overhead": seconds - compute / workers}


def mpmath_speedup(n: int, repeats: int) -> dict:
    from symbrg.core.limits import lifted
    chunk = max(4, n // 8)             # 36 blocks: balanced on 2 workers, each far above the per-task overhead
    nb = -(-n // chunk)
    print(f"mpmath 50 digits, ReLU depth {DEPTH}, N = {n} ({n * (n + 1) // 2:,} upper entries), chunk {chunk} "
          f"({nb * (nb + 1) // 2} blocks), fresh LocalClusters of 1 and 2 worker processes (1 thread each):")
    ratios, scaling, results = [], [], []
    for rep in range(repeats):                          # 1, 2 then 2, 1: a drift of the machine's speed cancels
        runs = [_mpmath_run(n, chunk, w) for w in ((1, 2) if rep % 2 == 0 else (2, 1))]
        one, two = sorted(runs, key=lambda r: len(r["tasks"]))
        ratios.append(one["seconds"] / two["seconds"])
        scaling.append(2 * one["compute"] / two["compute"])
        results += [one["result"], two["result"]]
        print(f"  pair {rep + 1}: 1 worker {one['seconds']:6.2f} s (tasks {one['compute']:5.2f} s + overhead "
              f"{one['overhead']:.2f} s; others {one['others']:.2f} cores) | 2 workers {two['seconds']:6.2f} s (tasks "
              f"{two['compute']:5.2f} s / 2 + overhead {two['overhead']:.2f} s; others {two['others']:.2f} cores; "
              f"tasks per worker {two['tasks']}) | speed-up {ratios[-1]:.2f}x")
    same = all(a == b and a._mpf_ == b._mpf_ for r in results[1:] for a, b in zip(results[0].ravel(), r.ravel()))
    arch, x = _arch(), _inputs(n, seed=2)
    t = time.perf_counter()
    with lifted(mp_work=1e7):
        want = arch.nngp(x, precision=50)
    inproc = time.perf_counter() - t
    same_mem = all(a._mpf_ == b._mpf_ for a, b in zip(results[0].ravel(), want.ravel()))
    print(f"  speed-up: median {statistics.median(ratios):.2f}x over {repeats} pair(s) "
          f"({', '.join(f'{r:.2f}' for r in ratios)}); the task time alone scaled by a median "
          f"{statistics.median(scaling):.2f}x (2 x task seconds on 1 worker / on 2: below 2 when the two workers "
          f"slow each other or the machine's speed drifted)")
    print(f"  every result identical: {same}, and to the in-process arch.nngp(precision=50): {same_mem} "
          f"({n * n / inproc:,.0f} entries/s in this process, all {n * n:,})")
    return {"median": statistics.median(ratios), "ratios": ratios}


def planning(chunk: int, folder: str) -> None:
    unit = _run({"phase": "unit", "n": 2 * chunk, "chunk": chunk, "path": os.path.join(folder, "unit.zarr")})
    shutil.rmtree(os.path.join(folder, "unit.zarr"), ignore_errors=True)
    per_entry = unit["seconds"] / (2 * chunk * chunk)           # a block and its mirror
    print(f"one off-diagonal {chunk} x {chunk} block on one thread, computed and written with its mirror: "
          f"{unit['seconds']:.2f} s ({2 * chunk * chunk / unit['seconds']:.3g} entries/s; others "
          f"{unit['others']:.2f} cores); worker peak RSS {unit['rss'] / 1e6:.0f} MB "
          f"({(unit['rss'] - unit['base_rss']) / 1e6:.0f} MB above the interpreter)")
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


def verdict(z: dict | None, mp: dict | None) -> None:
    print("targets (issue 16):")
    if z is not None:
        met = z["median"] >= TARGET_RATE and z["rss"] < TARGET_RSS
        note = "" if z["n"] == TARGET_N else f" (measured at N = {z['n']:,}; the target is stated for " \
                                             f"N = {TARGET_N:,}: --n {TARGET_N})"
        print(f"  zarr at >= {TARGET_RATE}x the in-memory rate per entry, peak RSS < 2 GiB: median ratio "
              f"{z['median']:.2f}x, peak RSS {z['rss'] / 2**30:.2f} GiB -> {'met' if met else 'NOT met'}{note}")
    if mp is not None:
        met = mp["median"] >= TARGET_SPEEDUP
        print(f"  mpmath 50-digit Gram, 2 worker processes >= {TARGET_SPEEDUP}x one: median speed-up "
              f"{mp['median']:.2f}x -> {'met' if met else 'NOT met'}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only, one repeat")
    ap.add_argument("--n", type=int, help="points of the zarr Gram matrix (default 20,000; the target: 50,000, "
                    "20 GB on disk; the in-memory baseline stays at 20,000)")
    ap.add_argument("--repeats", type=int, default=4, help="interleaved pairs per ratio, alternating which runs first (default 4)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster zarr run")
    ap.add_argument("--only", choices=["zarr", "mpmath", "planning"], help="run one part only")
    args = ap.parse_args()
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as exc:
        print(f"skipped (no speed-up ratio measured): {exc}; pip install 'symbrg[dask]'")
        return
    n, chunk, mp_n = (3000, 1024, 40) if args.quick else (args.n or MEMORY_N, 4096, 360)
    repeats = 1 if args.quick else max(1, args.repeats)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{os.cpu_count()} cores, load average {load} (figures are noisy on a shared machine; see 'others')")
    z = mp = None
    with tempfile.TemporaryDirectory(prefix="bench_dask-") as folder:
        if args.only in (None, "zarr"):
            z = zarr_vs_memory(n, chunk, folder, repeats, cluster=not (args.quick or args.no_cluster))
        if args.only in (None, "mpmath"):
            mp = mpmath_speedup(mp_n, repeats)
        if args.only in (None, "planning"):
            planning(chunk if not args.quick else 1024, folder)
    verdict(z, mp)
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
