r"""The Mehler series of :class:`symbrg.core.special.MehlerSeries` as compiled loops (numba).

Job: evaluate, entry by entry in one pass over a tile, exactly what the NumPy evaluation of
:func:`symbrg.core.special._mehler_numpy` computes pass by pass over the whole tile,

.. math::  E = \sum_{k=0}^{K_{g}} a_{n_k}(q_{11})\,b_{n_k}(q_{22})\,x^{k}, \qquad
           n_k = p + s\,k,\quad x = \rho \;(s = 1) \text{ or } \rho^2 \;(s = 2),

(times :math:`\rho` for an odd pair) with each entry's group g the first whose thresholds certify
it, by Horner's rule :math:`b \leftarrow b\,x + a_{n}b_{n}` (and the slope's
:math:`d \leftarrow d\,x + b`): the same IEEE operations in the same order, so the same bits
(numba, like NumPy, does not contract a product and a sum into a fused multiply-add unless asked
to).  Where the NumPy version pays three passes over a tile per term, here the terms of the low
orders are one loop over a row that stays in the first-level cache, which the compiler
vectorizes, and the few entries beyond them (about one in five) add their terms four
entries at a time, sorted by order.  The loops release the GIL, so the tile threads of a Gram
matrix run in parallel.

The kernels are compiled on first use and cached on disk (numba's ``cache=True``); importing this
module imports numba, so :mod:`symbrg.core.special` imports it only when a series is evaluated and
falls back to NumPy where numba is missing.  Entries no group certifies are returned, for the
caller to evaluate by the whole series or its fallback.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["mehler_rows"]

_jit = numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
#: the per-entry steps of every entry, inlined into the loops
_step = numba.njit(inline="always", fastmath=False, error_model="numpy")


@_jit
def _group(r2: float, i: int, j: int, ta: np.ndarray, tb: np.ndarray, capa: np.ndarray, capb: np.ndarray) -> int:
    r"""The group of an entry beyond the low orders (:math:`\rho^2 > U_i(N_0)^2V_j(N_0)^2`): the first
    g >= 1 up to the entry's cap with :math:`\rho^2 \le U_i(N_g)^2V_j(N_g)^2`, else -1 (the
    fallback)."""
    last = min(max(capa[i], capb[j]), ta.shape[0] - 1)
    g = 1
    while g <= last:
        if r2 <= ta[g, i] * tb[g, j]:
            return g
        g += 1
    return -1


@_jit
def _beyond_row(i: int, w: int, cand: np.ndarray, m: int, r2s: np.ndarray, x: np.ndarray, ca: np.ndarray,
                cb: np.ndarray, ta: np.ndarray, tb: np.ndarray, capa: np.ndarray, capb: np.ndarray,
                K: np.ndarray, p: int, step: int, acc: np.ndarray, dacc: np.ndarray, high: np.ndarray,
                work: np.ndarray, fallback: np.ndarray) -> int:
    r"""The entries ``cand[:m]`` of row i beyond the low orders: their groups (:func:`_group`; the flat
    indices of those with none go to ``fallback``, and their number is returned), then Horner's sums
    b and d over their terms above the low orders, :math:`d \leftarrow d\,x + b`,
    :math:`b \leftarrow b\,x + a_nb_n`, into ``acc`` and ``dacc``, ``high`` set.  One call per row
    (a call per entry would cost more than its work), the entries sorted by their top term (a counting sort), highest
    first, and summed four at a time: four independent Horner chains instead of one (whose
    latency, not its arithmetic, bounds a single chain).  A lane whose top term is below the
    current one adds a zero coefficient to zero sums, which stay exactly 0, so each entry's sums
    are the bits of its own chain alone."""
    top, order, per = work[0], work[1], work[2]
    G = K.size
    per[:G + 1] = 0
    kept = 0
    count = 0
    for e in range(m):
        j = cand[e]
        group = _group(r2s[j], i, j, ta, tb, capa, capb)
        if group > 0:
            high[j] = True
            top[j] = group
            per[G - group] += 1
            kept += 1
        else:
            fallback[count] = i * w + j
            count += 1
    for t in range(1, G + 1):
        per[t] += per[t - 1]
    for e in range(m - 1, -1, -1):
        j = cand[e]
        if high[j]:
            per[G - top[j]] -= 1
            order[per[G - top[j]]] = j
            top[j] = K[top[j]]
    m = kept
    K0 = K[0]
    for b in range(0, m, 4):
        j0 = order[b]
        j1 = order[min(b + 1, m - 1)]
        j2 = order[min(b + 2, m - 1)]
        j3 = order[min(b + 3, m - 1)]
        t1 = top[j1] if b + 1 < m else K0
        t2 = top[j2] if b + 2 < m else K0
        t3 = top[j3] if b + 3 < m else K0
        x0, x1, x2, x3 = x[j0], x[j1], x[j2], x[j3]
        a0 = a1 = a2 = a3 = 0.0
        d0 = d1 = d2 = d3 = 0.0
        for k in range(top[j0], K0, -1):
            n = p + step * k
            cn = ca[n, i]
            c0 = cn * cb[n, j0]
            c1 = cn * cb[n, j1] if k <= t1 else 0.0
            c2 = cn * cb[n, j2] if k <= t2 else 0.0
            c3 = cn * cb[n, j3] if k <= t3 else 0.0
            d0 = d0 * x0 + a0
            d1 = d1 * x1 + a1
            d2 = d2 * x2 + a2
            d3 = d3 * x3 + a3
            a0 = a0 * x0 + c0
            a1 = a1 * x1 + c1
            a2 = a2 * x2 + c2
            a3 = a3 * x3 + c3
        acc[j0], dacc[j0] = a0, d0
        if b + 1 < m:
            acc[j1], dacc[j1] = a1, d1
        if b + 2 < m:
            acc[j2], dacc[j2] = a2, d2
        if b + 3 < m:
            acc[j3], dacc[j3] = a3, d3
    return count


@_step
def _rho(q12: float, ia: float, ib: float, clip: bool) -> tuple[float, float]:
    r""":math:`\rho = (q_{12}/\sqrt{q_{11}})/\sqrt{q_{22}}` (clipped to [-1, 1] with ``clip``) and
    :math:`\min(\rho^2, 1)`, NaN kept."""
    r = q12 * ia
    r = r * ib
    if clip:
        if r > 1.0:
            r = 1.0
        elif r < -1.0:
            r = -1.0
    r2 = r * r
    if r2 > 1.0:
        r2 = 1.0
    return r, r2


@_step
def _post(value: float, slope: float, r: float, x: float, ia: float, ib: float, p: int, step: int,
          with_slope: bool) -> tuple[float, float]:
    r"""The series' value and slope from Horner's sums S(x) and S'(x): the odd pair's factor rho, the
    chain rule to d/drho and 1/sqrt(q11 q22) (the NumPy version's order of operations)."""
    if with_slope:
        if step == 2 and p == 1:
            slope = slope * x
            slope = slope + slope
            slope = slope + value
        elif step == 2:
            slope = slope * r
            slope = slope + slope
        slope = slope * ia
        slope = slope * ib
    if step == 2 and p == 1:
        value = value * r
    return value, slope


@_jit
def mehler_rows(out: np.ndarray, slope: np.ndarray, q12: np.ndarray, ca: np.ndarray, cb: np.ndarray,
                ta: np.ndarray, tb: np.ndarray, capa: np.ndarray, capb: np.ndarray, inva: np.ndarray,
                invb: np.ndarray, K: np.ndarray, p: int, step: int, clip: bool, with_slope: bool,
                fallback: np.ndarray) -> int:
    r"""A tile: ``out[i, j]`` (and ``slope[i, j]``) for row variance i (side A) and column variance j
    (side B), ``q12`` of the tile's shape.  Row by row: each entry's rho, group and terms beyond
    the low orders, then the low orders as loops over the row.  Returns the number of entries no
    group certifies, their flat indices in ``fallback[:count]``."""
    h, w = out.shape
    K0 = K[0]
    x = np.empty(w)
    rho = np.empty(w)
    acc = np.zeros(w)
    dacc = np.zeros(w)
    high = np.zeros(w, dtype=np.bool_)
    r2s = np.empty(w)
    cand = np.empty(w, dtype=np.int64)              # the row's entries beyond the low orders
    work = np.empty((3, max(w, K.size + 1)), dtype=np.int64)
    count = 0
    for i in range(h):
        ia = inva[i]
        m = 0
        for j in range(w):
            r, r2 = _rho(q12[i, j], ia, invb[j], clip)
            rho[j] = r
            x[j] = r if step == 1 else r2
            r2s[j] = r2
            high[j] = False
            if r2 > ta[0, i] * tb[0, j]:
                cand[m] = j
                m += 1
        if m:
            count += _beyond_row(i, w, cand, m, r2s, x, ca, cb, ta, tb, capa, capb, K, p, step, acc, dacc,
                                 high, work, fallback[count:])
        o = out[i]
        s = slope[i]
        n = p + step * K0
        ai = ca[n, i]
        for j in range(w):
            c = ai * cb[n, j]
            if high[j]:
                if with_slope:
                    s[j] = dacc[j] * x[j] + acc[j]
                o[j] = c + acc[j] * x[j]
            else:
                if with_slope:
                    s[j] = 0.0
                o[j] = c
        for k in range(K0 - 1, -1, -1):
            n = p + step * k
            ai = ca[n, i]
            if with_slope:
                for j in range(w):
                    s[j] = s[j] * x[j] + o[j]
            for j in range(w):
                o[j] = o[j] * x[j] + ai * cb[n, j]
        for j in range(w):
            value, sl = _post(o[j], s[j] if with_slope else 0.0, rho[j], x[j], ia, invb[j], p, step, with_slope)
            o[j] = value
            if with_slope:
                s[j] = sl
    return count
