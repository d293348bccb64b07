"""Grouped top-k, alone or fused with scoring, compiled by Numba.

Specification: ``fastwlr/backends/reference/topk.py``; algorithm: ``cython_core/_topk.pyx`` (one
bounded min-heap of (value, index) per group under the total order "higher value, then lower
index"; fused kernels rank by the float64 log-odds and transform only the winners; a group of
``SPLIT_MIN`` or more candidates is cut into chunks whose top-k are merged by the same heap). The
order is total, so results depend neither on the thread count nor on how groups are spread.

Differences from the Cython core, both for compile time (each dtype combination compiles once,
for seconds): values are written as float64 and the adapter casts to the output dtype (the same
rounding: apply_output's double is rounded once either way), and dense / CSR / precomputed scores
share one kernel (``source``), so only the (values dtype, index dtype) pair selects a compilation.
Groups go to threads in fixed blocks (Numba's ``prange`` is statically scheduled), each with its
own heap scratch.

Never raises: each block records its lowest NaN row and counts infinite log-odds; the adapter raises.
"""
import numpy as np
from numba import prange

from ._jit import apply_output, dot_csr, dot_dense, jit

SCORES, DENSE, CSR = 0, 1, 2
SPLIT_MIN = 1 << 16      # a group this large is split across threads (as in cython_core/_topk.pyx)
BLOCKS_PER_THREAD = 8    # groups are cut into this many blocks per thread: ragged sizes even out


@jit(inline="always")
def _worse(va, ia, vb, ib):
    return va < vb or (va == vb and ia > ib)


@jit(inline="always")
def _sift_down(hv, hi, m, pos):
    v = hv[pos]
    ix = hi[pos]
    while True:
        child = 2 * pos + 1
        if child >= m:
            break
        if child + 1 < m and _worse(hv[child + 1], hi[child + 1], hv[child], hi[child]):
            child += 1
        if not _worse(hv[child], hi[child], v, ix):
            break
        hv[pos] = hv[child]
        hi[pos] = hi[child]
        pos = child
    hv[pos] = v
    hi[pos] = ix


@jit(inline="always")
def _sift_up(hv, hi, pos):
    v = hv[pos]
    ix = hi[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if not _worse(v, ix, hv[parent], hi[parent]):
            break
        hv[pos] = hv[parent]
        hi[pos] = hi[parent]
        pos = parent
    hv[pos] = v
    hi[pos] = ix


@jit(inline="always")
def _push(hv, hi, m, k, v, ix):
    """Offer (v, ix) to a heap of m <= k entries (root = worst kept); returns the new size."""
    if m < k:
        hv[m] = v
        hi[m] = ix
        _sift_up(hv, hi, m)
        return m + 1
    if _worse(hv[0], hi[0], v, ix):
        hv[0] = v
        hi[0] = ix
        _sift_down(hv, hi, k, 0)
    return m


@jit()
def _scan(source, vals, ind, indptr, d, w, b, exclude, has_exclude, start, stop, hv, hi, m, k, bad):
    """Offer rows [start, stop) to the heap; bad[0] = lowest NaN row (-1: none), bad[1] += #inf."""
    for i in range(start, stop):
        if has_exclude and exclude[i]:
            continue
        if source == SCORES:
            z = np.float64(vals[i])
        elif source == DENSE:
            z = dot_dense(vals[i * d:(i + 1) * d], w, d) + b
        else:
            z = dot_csr(vals[indptr[i]:indptr[i + 1]], ind[indptr[i]:indptr[i + 1]], w) + b
        if z != z:  # NaN: remember the row, rank the others
            if bad[0] < 0 or i < bad[0]:
                bad[0] = i
            continue
        if source != SCORES and abs(z) == np.inf:
            bad[1] += 1
        m = _push(hv, hi, m, k, z, i)
    return m


@jit()
def _finish(hv, hi, m, k, output, out_idx, out_val):
    """Heapsort best first (the worst sits at the root), transform, pad to k."""
    for end in range(m - 1, 0, -1):
        v = hv[0]
        ix = hi[0]
        hv[0] = hv[end]
        hi[0] = hi[end]
        hv[end] = v
        hi[end] = ix
        _sift_down(hv, hi, end, 0)
    for j in range(m):
        out_idx[j] = hi[j]
        out_val[j] = apply_output(hv[j], output)
    for j in range(m, k):
        out_idx[j] = -1
        out_val[j] = -np.inf


@jit(parallel=True)
def select_groups(rows, model, selection, out):
    """rows = (source, vals, ind, indptr, d), model = (w, b), selection = (exclude, has_exclude,
    offsets, k, output, n_threads), out = (out_idx, out_val, bad). Fills out_idx / out_val (G, k).
    ``bad``: (n_blocks, 2) int64, rows [-1, 0] on entry, where n_blocks = bad.shape[0] >= n_threads."""
    source, vals, ind, indptr, d = rows
    w, b = model
    exclude, has_exclude, offsets, k, output, n_threads = selection
    out_idx, out_val, bad = out
    G = offsets.shape[0] - 1
    split = n_threads > 1
    n_blocks = bad.shape[0]
    # Phase 1: blocks of whole groups; groups of SPLIT_MIN or more are left to phase 2.
    for blk in prange(n_blocks):
        hv = np.empty(k)
        hi = np.empty(k, dtype=np.int64)
        for g in range(blk * G // n_blocks, (blk + 1) * G // n_blocks):
            start = offsets[g]
            stop = offsets[g + 1]
            if split and stop - start >= SPLIT_MIN:
                continue
            m = _scan(source, vals, ind, indptr, d, w, b, exclude, has_exclude, start, stop, hv, hi, 0, k,
                      bad[blk])
            _finish(hv, hi, m, k, output, out_idx[g], out_val[g])
    if not split:
        return
    # Phase 2: each big group with every thread, then one merge of the chunks' winners.
    for g in range(G):
        start = offsets[g]
        size = offsets[g + 1] - start
        if size < SPLIT_MIN:
            continue
        n_chunks = min(n_threads, n_blocks, size // (SPLIT_MIN // 2))
        chv = np.empty((n_chunks, k))
        chi = np.empty((n_chunks, k), dtype=np.int64)
        cm = np.zeros(n_chunks, dtype=np.int64)
        for c in prange(n_chunks):
            cm[c] = _scan(source, vals, ind, indptr, d, w, b, exclude, has_exclude,
                          start + size * c // n_chunks, start + size * (c + 1) // n_chunks, chv[c], chi[c], 0,
                          k, bad[c])
        hv = np.empty(k)
        hi = np.empty(k, dtype=np.int64)
        m = 0
        for c in range(n_chunks):
            for j in range(cm[c]):
                m = _push(hv, hi, m, k, chv[c, j], chi[c, j])
        _finish(hv, hi, m, k, output, out_idx[g], out_val[g])
