# cython: language_level=3
"""Grouped top-k, alone (on scores) or fused with scoring (on dense or CSR features).

The specification is ``fastwlr/backends/reference/topk.py``: per group, the k best candidates
under the total order (higher value first; equal values: lower index first), best first, padded
with index -1 / value -inf. Fused kernels rank by the float64 log-odds z and transform only the
winners, so the n scores are never stored and exp/sigmoid runs k times per group.

Selection: one bounded min-heap of (value, index) per group, whose root is the worst candidate
kept. A scan reads each candidate once; once the heap is full a candidate costs one comparison
with the root (rows come in ascending order, so an equal value loses the tie), and for random
order only about k*(1 + ln(n/k)) candidates ever enter. Measured against a threshold-prefiltered
buffer of 2k compacted by quickselect (an alternative kernel since removed; one run, one thread,
scores only; heap time / buffer time):
    10,000 groups x 500 normal, k=10: 0.50    k=100: 1.08    one group of 10M normal, k=100: 1.09
    one group of 10M ascending, k=100: 3.11   10,000 x 500 ascending, k=10: 1.02
The heap wins clearly at the serving case (k ~ 10), loses by ~10 % at k = 100, and is the
worse of the two only on long ascending runs (every candidate enters: n*log(k)), which a
ranking of fresh candidates does not produce; in the fused kernels the dot products dominate
either way. So the heap stays (it also has no data-dependent buffer size to tune).

Until a group's heap is full, fewer candidates reach it: a segment of up to 1,024 of them is seen
first (the fused kernels score it into a buffer; topk reads the scores in place), and only those
reaching a lower bound on the segment's top k (from the maxima of 16 interleaved lanes, see
segment_bound; k <= 16) are offered: about 16 of 500 for k = 10, where about 50 entered before.
One thread, one run, before -> after: fused, 2,000 groups x 500 x 64 float32, k = 10 9.4-9.5 ->
8.3-8.5 ms, k = 16 10.9-11.0 -> 9.7 ms (scoring the log-odds alone: 6.7-6.9 ms); topk, 10,000
groups x 500 scores, k = 10 17-18 -> 8 ms. k = 1 and k = 100 unchanged.

For k > 16 the bound does not apply, and a heap of k = 100 costs ~160 replacements of log2(100)
levels and a heap sort of the 100, on branches no predictor learns. There a request's first segment
goes through a radix select and sort of the values' order keys (radix_topk), which writes its top k
worst first: a full heap for any rows after the segment. One thread, 10,000 groups x 500 normal
scores, before -> after: k = 32 38.7 -> 23 ms, k = 100 93 -> 33 ms, k = 200 152 -> 39 ms (numpy's
2-D argpartition + argsort of the k: 25, 37, 66 ms); fused on 500 x 64 float32, k = 100 130 -> 75 ms.

Threads: groups are spread over threads (dynamic schedule: ragged sizes). A group of at least
SPLIT_MIN candidates is instead cut into one chunk per thread, every chunk keeps its own top-k,
and the chunks' winners are merged by the same heap: the order is total, so the result does not
depend on the number of threads or chunks.

Errors are never raised inside ``nogil``: each thread records the lowest NaN row it met and
counts infinite log-odds; the adapter (``cython_core/__init__.py``) raises afterwards.
"""
import numpy as np

from libc.stdint cimport int64_t
from libc.math cimport INFINITY, NAN, fabs
from libc.float cimport DBL_MAX
from libc.stdlib cimport malloc, free
from cpython.buffer cimport (Py_buffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE,
                             PyObject_GetBuffer as get_buffer)
from cpython.exc cimport PyErr_Clear

from ._fastpath cimport PyObject_GetBuffer, buffer_kind, model_buffer, coef_f32, f32_ptr

from cython.parallel cimport prange, threadid

from ._math cimport (LOG_ODDS, ODDS, PROBA, feature_t, out_t, index_t, transform_block, dot_score, dot_score4,
                     dot_score8, redo_nonfinite, dot_csr_prefetch, DENSE_PREFETCH_BYTES, SCAN_PREFETCH_MIN_BYTES,
                     prefetch_span)


# What one scan reads: precomputed scores, or log-odds of dense / CSR rows.
cdef enum Source:
    SCORES = 0
    DENSE = 1
    CSR = 2

# A group this large is split across threads (below it, one thread per group is the better use).
cdef Py_ssize_t SPLIT_MIN = 1 << 16
# Below this much work (candidates x cost per candidate) in total, threads cost more than they save.
cdef Py_ssize_t PARALLEL_MIN_WORK = 1 << 15

# Per-thread scratch rows are padded so that no two threads ever write to one cache line: with the
# heaps packed (k = 1 or 10: 8-80 bytes a thread), every insertion bounced a line between the cores,
# and 2 threads took 50x the time of 1 (k = 1, ascending scores) or the same time (k = 10, normal).
cdef Py_ssize_t BAD_STRIDE = 8    # int64 per thread in ``bad``: one cache line


cdef inline Py_ssize_t heap_stride(Py_ssize_t kh) noexcept nogil:
    # kh entries rounded up to whole cache lines (8 doubles or int64), plus one line of gap
    return ((kh + 7) // 8 + 1) * 8


# ------------------------------------------------------------------ bounded heap of (value, index)

cdef inline bint worse(double va, int64_t ia, double vb, int64_t ib) noexcept nogil:
    # The total order of the specification: higher value better, equal values -> lower index better.
    # Bitwise, not short-circuit: no branch, so sift_down picks its child with a conditional move
    # (which child is worse is a coin toss no predictor learns).
    return (va < vb) | ((va == vb) & (ia > ib))


cdef inline void sift_down(double* hv, int64_t* hi, Py_ssize_t m, Py_ssize_t pos) noexcept nogil:
    cdef double v = hv[pos]
    cdef int64_t ix = hi[pos]
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= m:
            break
        if child + 1 < m:
            child += worse(hv[child + 1], hi[child + 1], hv[child], hi[child])
        if not worse(hv[child], hi[child], v, ix):
            break
        hv[pos] = hv[child]
        hi[pos] = hi[child]
        pos = child
    hv[pos] = v
    hi[pos] = ix


cdef inline void replace_root(double* hv, int64_t* hi, Py_ssize_t k, double v, int64_t ix) noexcept nogil:
    # The root (the worst of a full heap of k) leaves and (v, ix), known to be better, enters.
    hv[0] = v
    hi[0] = ix
    sift_down(hv, hi, k, 0)


cdef inline void sift_up(double* hv, int64_t* hi, Py_ssize_t pos) noexcept nogil:
    cdef double v = hv[pos]
    cdef int64_t ix = hi[pos]
    cdef Py_ssize_t parent
    while pos > 0:
        parent = (pos - 1) // 2
        if not worse(v, ix, hv[parent], hi[parent]):
            break
        hv[pos] = hv[parent]
        hi[pos] = hi[parent]
        pos = parent
    hv[pos] = v
    hi[pos] = ix


cdef inline Py_ssize_t heap_push(double* hv, int64_t* hi, Py_ssize_t m, Py_ssize_t k, double v,
                                 int64_t ix) noexcept nogil:
    """Offer (v, ix) to a heap of m <= k entries; returns the new size."""
    if m < k:
        hv[m] = v
        hi[m] = ix
        sift_up(hv, hi, m)
        return m + 1
    # The hot path: a full heap and a candidate no better than the root is one or two comparisons.
    if worse(hv[0], hi[0], v, ix):
        replace_root(hv, hi, k, v, ix)
    return m


cdef inline void heap_sort_desc(double* hv, int64_t* hi, Py_ssize_t m) noexcept nogil:
    # Heapsort with the worst at the root: moving the root to the end each time leaves best first.
    cdef Py_ssize_t end
    cdef double v
    cdef int64_t ix
    for end in range(m - 1, 0, -1):
        v = hv[0]
        ix = hi[0]
        hv[0] = hv[end]
        hi[0] = hi[end]
        hv[end] = v
        hi[end] = ix
        sift_down(hv, hi, end, 0)


# ------------------------------------------------------------------ scan and finish

cdef inline void note_nonfinite(int source, double z, Py_ssize_t i, int64_t* bad) noexcept nogil:
    # NaN: remember the lowest row (the caller raises); inf: counted for fused sources only,
    # where it hints at inf features (an inf score passed to topk is a legitimate score).
    if z != z:
        if bad[0] < 0 or i < bad[0]:
            bad[0] = i
    elif source != SCORES:
        bad[1] += 1


cdef inline double offer(double z, Py_ssize_t i, double* hv, int64_t* hi, Py_ssize_t k, double thr,
                         int64_t* bad) noexcept nogil:
    """Offer score i to a full heap whose root value is thr; returns the new root value.

    Rows come in ascending order, so a candidate equal to the root's value has a higher index and
    loses the tie: "z > thr" alone decides (and is false for NaN)."""
    if z > thr:
        replace_root(hv, hi, k, z, i)
        return hv[0]
    if z != z:
        note_nonfinite(SCORES, z, i, bad)
    return thr


cdef inline Py_ssize_t scan_scores_heap(const feature_t* vals, Py_ssize_t start, Py_ssize_t stop, double* hv,
                                        int64_t* hi, Py_ssize_t m, Py_ssize_t k, int64_t* bad) noexcept nogil:
    """Offer scores [start, stop) (ascending) to the heap of size m; returns its new size.

    ``bad[0]``: lowest index with a NaN score seen by this thread (-1: none); NaN is not ranked.
    (scan_scores uses it for the rare segment that holds a NaN.)"""
    cdef Py_ssize_t i = start, r
    cdef double z, thr
    cdef bint skip
    while m < k and i < stop:  # filling: every candidate enters, -inf included
        z = vals[i]
        if z == z:
            m = heap_push(hv, hi, m, k, z, i)
        else:
            note_nonfinite(SCORES, z, i, bad)
        i += 1
    if m < k:
        return m
    # Full heap: one comparison with the root per candidate (see offer). Almost every score loses
    # to the root: test a block of 8 at once (branch-free, vectorisable) and look at single scores
    # only in a block holding one that is better than the root or NaN ("not <= thr" is both).
    thr = hv[0]
    while i + 8 <= stop:
        skip = True
        for r in range(8):
            skip = skip & (vals[i + r] <= thr)
        if not skip:
            for r in range(8):
                thr = offer(vals[i + r], i + r, hv, hi, k, thr, bad)
        i += 8
    while i < stop:
        thr = offer(vals[i], i, hv, hi, k, thr, bad)
        i += 1
    return m


# A fused scan scores its first rows a segment at a time into a per-thread buffer (8 KB: it stays
# in L1 between the two passes) and selects from the buffer: a whole segment is seen before any
# row is offered, so a lower bound on its top k can keep most rows out of the heap (segment_bound).
# Once the heap is full, its root is the better bound, and rows are compared with it as they are
# scored, eight at a time, with no buffer (scan_rows).
cdef Py_ssize_t SEGMENT = 1024
# per-thread buffers a cache line apart
cdef Py_ssize_t Z_STRIDE = SEGMENT + 8
# the lower bound needs k <= LANES (the serving case, k ~ 10) and a segment of 2 * LANES rows
DEF LANES = 16


cdef struct Rows:
    # what scoring a row needs, read once per scan
    int source                 # DENSE or CSR (its arrays travel beside: fused types)
    Py_ssize_t d               # dense row length
    const double* w
    const float* w32           # float32 coefficients for float32 rows (coef_f32), or NULL
    double b
    const unsigned char* exclude
    Py_ssize_t end_bytes       # dense: prefetch X up to this byte (0: no prefetch; see prefetch_end)
    Py_ssize_t nnz_end         # CSR: gathers prefetched up to this non-zero


cdef inline void dot_rows(const Rows* rs, const feature_t* vals, const index_t* ind, const index_t* indptr,
                          Py_ssize_t i, Py_ssize_t cnt, double* z) noexcept nogil:
    """z[0:cnt] = x . w of rows i, ..., i + cnt - 1 (cnt <= 8; no intercept), the bits of dense
    or CSR scoring. For CSR rows and the last few dense rows of a span: scan_rows scores full
    blocks of eight dense rows itself."""
    cdef Py_ssize_t r = 0, d = rs.d
    if rs.source == CSR:
        for r in range(cnt):
            z[r] = dot_csr_prefetch(vals, ind, indptr[i + r], indptr[i + r + 1], rs.w, rs.nnz_end)
        return
    if cnt >= 4:
        dot_score4(vals + i * d, rs.w, rs.w32, d, z)
        r = 4
    while r < cnt:
        z[r] = dot_score(vals + (i + r) * d, rs.w, rs.w32, d)
        r += 1


cdef inline void mark_rows(const Rows* rs, Py_ssize_t i, Py_ssize_t cnt, double* z, int64_t* bad) noexcept nogil:
    # The rare block with an excluded row or a non-finite log-odds: an excluded row becomes NaN
    # (never ranked, not reported), another row's NaN or inf is noted (note_nonfinite).
    cdef Py_ssize_t r
    for r in range(cnt):
        if rs.exclude != NULL and rs.exclude[i + r]:
            z[r] = NAN
        elif not (fabs(z[r]) < INFINITY):
            note_nonfinite(rs.source, z[r], i + r, bad)


cdef inline void maxima8(double* l, const double* z, Py_ssize_t cnt) noexcept nogil:
    # l[r] = max(l[r], z[r]) for cnt <= 8 entries; NaN never wins
    cdef Py_ssize_t r
    if cnt == 8:
        for r in range(8):
            l[r] = z[r] if z[r] > l[r] else l[r]
    else:
        for r in range(cnt):
            l[r] = z[r] if z[r] > l[r] else l[r]


cdef inline double kth_largest16(const double* lm, Py_ssize_t k) noexcept nogil:
    # The k-th largest of 16 values: the largest value that at least k of them reach. Counting
    # (16 x 16 comparisons) instead of sorting: no data-dependent branch to mispredict.
    cdef double t = -INFINITY
    cdef Py_ssize_t i, j, c
    for j in range(LANES):
        c = 0
        for i in range(LANES):
            c += lm[i] >= lm[j]
        if c >= k and lm[j] > t:
            t = lm[j]
    return t


cdef inline double segment_bound(const double* lm, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """A value that at least k of a segment's n log-odds reach (-inf: no useful one), from the
    maxima lm of its LANES interleaved lanes (z[j], z[j + LANES], ...).

    The maxima are LANES different entries, so at least k entries reach the k-th largest of them:
    no entry below it can be in the top k. For k = 10 of 500 normal log-odds about 16 entries
    reach it, where about 50 enter a heap that is offered them all."""
    if k > LANES or n < 2 * LANES:
        return -INFINITY
    return kth_largest16(lm, k)


cdef inline Py_ssize_t offer_one(double v, int64_t ix, double lo, double* hv, int64_t* hi, Py_ssize_t m,
                                 Py_ssize_t k) noexcept nogil:
    # v (row ix, after every row offered before it) to the heap of size m if it reaches lo
    if v >= lo:   # not NaN
        if m < k:
            return heap_push(hv, hi, m, k, v, ix)
        if v > hv[0]:   # equal to the root: a higher index, so the tie loses
            replace_root(hv, hi, k, v, ix)
    return m


cdef extern from *:
    """
    #if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
    #include <immintrin.h>
    #endif
    /* Bit r set where z[r] >= lo, for r < 8 (never for NaN: an ordered comparison). */
    static inline unsigned fastwlr_ge_mask8(const double* z, double lo) {
    #if defined(__AVX512F__)
        return _mm512_cmp_pd_mask(_mm512_loadu_pd(z), _mm512_set1_pd(lo), _CMP_GE_OQ);
    #elif defined(__AVX__)
        __m256d l = _mm256_set1_pd(lo);
        return (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(z), l, _CMP_GE_OQ))
             | ((unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(z + 4), l, _CMP_GE_OQ)) << 4);
    #else
        unsigned m = 0;
        for (int r = 0; r < 8; r++) m |= (unsigned)(z[r] >= lo) << r;
        return m;
    #endif
    }
    /* The same for float entries; lo is a float value or -inf here (a score or a bound made of
       scores), so comparing in float is exact. */
    static inline unsigned fastwlr_ge_mask8f(const float* z, double lo) {
    #if defined(__AVX512F__) && defined(__AVX512VL__)
        return _mm256_cmp_ps_mask(_mm256_loadu_ps(z), _mm256_set1_ps((float)lo), _CMP_GE_OQ);
    #elif defined(__AVX__)
        return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z), _mm256_set1_ps((float)lo), _CMP_GE_OQ));
    #else
        unsigned m = 0;
        for (int r = 0; r < 8; r++) m |= (unsigned)(z[r] >= lo) << r;
        return m;
    #endif
    }
    /* z[r] += b for r < cnt; 1 if then every z[r] is > -inf and <= lim (so none is NaN). A full
       block of eight in registers: the scalar adds and comparisons, each waiting on the eight-row
       kernel's store, were a sixth of a one-thread request of 2,000 x 256 float32. */
    static inline int fastwlr_add_in_range(double* z, Py_ssize_t cnt, double b, double lim) {
    #if defined(__AVX512F__)
        if (cnt == 8) {
            __m512d v = _mm512_add_pd(_mm512_loadu_pd(z), _mm512_set1_pd(b));
            _mm512_storeu_pd(z, v);
            return (_mm512_cmp_pd_mask(v, _mm512_set1_pd(lim), _CMP_LE_OQ)
                    & _mm512_cmp_pd_mask(v, _mm512_set1_pd(-INFINITY), _CMP_GT_OQ)) == 0xff;
        }
    #endif
        int ok = 1;
        for (Py_ssize_t r = 0; r < cnt; r++) {
            z[r] = z[r] + b;
            ok &= (z[r] <= lim) & (z[r] > -INFINITY);
        }
        return ok;
    }
    """
    int add_in_range "fastwlr_add_in_range"(double* z, Py_ssize_t cnt, double b, double lim) noexcept nogil
    unsigned ge_mask8 "fastwlr_ge_mask8"(const double* z, double lo) noexcept nogil
    unsigned ge_mask8f "fastwlr_ge_mask8f"(const float* z, double lo) noexcept nogil
    int lowest_bit "__builtin_ctz"(unsigned m) noexcept nogil


cdef inline Py_ssize_t select_segment(const feature_t* z, Py_ssize_t n, Py_ssize_t first, double lo, double* hv,
                                      int64_t* hi, Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    """Offer z[0:n] (rows first, first + 1, ...; ascending) that reach ``lo`` to the heap of size m;
    returns its new size. NaN entries are skipped (they fail every comparison).

    Eight entries at a time, one vector comparison gives the few that reach lo (or a full heap's
    root, if higher) as bits, and only those are offered, lowest bit first: no branch per entry.
    (Testing the eight one by one, as the compiler did with plain comparisons, spent more time
    mispredicting than the heap did.)"""
    cdef Py_ssize_t i = 0, j
    cdef unsigned bits
    cdef double cut
    while i + 8 <= n:
        cut = lo if m < k or hv[0] < lo else hv[0]
        if feature_t is float:
            bits = ge_mask8f(z + i, cut)
        else:
            bits = ge_mask8(z + i, cut)
        while bits:
            j = lowest_bit(bits)
            bits &= bits - 1
            m = offer_one(z[i + j], first + i + j, lo, hv, hi, m, k)
        i += 8
    while i < n:
        m = offer_one(z[i], first + i, lo, hv, hi, m, k)
        i += 1
    return m


# Larger k (the bound above needs k <= LANES): a request's first segment goes through a radix select
# and sort instead of the heap. With k = 100 of 500, the heap took ~160 replacements of log2(100)
# levels each and a heap sort of the 100, all on branches no predictor learns: 9.5 us a request,
# where numpy's vectorised argpartition + argsort of the 100 took 3.2 us.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #define FASTWLR_RADIX_MAX 1024   /* SEGMENT */

    /* The selection's order as an unsigned key: a larger value has a larger key, and -0.0 and
       +0.0 (equal in the order) one key. Not for NaN. */
    static inline uint64_t fastwlr_order_key(double v) {
        uint64_t u;
        v += 0.0;   /* -0.0 -> +0.0 */
        memcpy(&u, &v, 8);
        return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
    }

    /* The best min(k, valid) of z[0:n] (n <= FASTWLR_RADIX_MAX; NaN entries never enter) under the
       specification's order (larger first; equal: lower position first), into hv/hi worst first:
       the reverse of the result, and so a full min-heap for the rows after them. Values z[p],
       indices first + p. Returns the count.
       Select, eight bits at a time from the top bit in which the keys differ (those above it are
       the same in all: normal log-odds around -3 share their top 12 bits): a histogram of the
       candidates left finds the digit of the k-th largest; those above it are winners, those below
       are out, and the search goes on among the equal ones until they are as many as still needed
       (or all equal: the lowest positions win). Four histograms, one per position mod 4: keys that
       share their top digits (most of them, in the first passes) otherwise increment one counter
       in a chain. Sort the winners: up to 64 by insertion (k = 33: 26 -> 23 ms for 10,000 groups);
       more by stable counting passes on their bytes, least significant first (in descending order
       of the byte), skipping the bytes all of them share.
       Equal keys keep their position order throughout (candidates are kept in position order). */
    #define FASTWLR_DEFINE_RADIX_TOPK(T, SFX) \
    static Py_ssize_t fastwlr_radix_topk_##SFX(const T* z, Py_ssize_t n, int64_t first, Py_ssize_t k, \
                                               double* hv, int64_t* hi) { \
        uint64_t key[FASTWLR_RADIX_MAX], wk[FASTWLR_RADIX_MAX], sk[FASTWLR_RADIX_MAX]; \
        uint16_t pos[FASTWLR_RADIX_MAX], cand[FASTWLR_RADIX_MAX], wp[FASTWLR_RADIX_MAX], sp[FASTWLR_RADIX_MAX]; \
        uint32_t hist[4][256]; \
        Py_ssize_t nv = 0, c = 0, i; \
        uint64_t all_and = ~(uint64_t)0, all_or = 0; \
        for (i = 0; i < n; i++) { \
            double v = (double)z[i]; \
            uint64_t kv = fastwlr_order_key(v), valid = -(uint64_t)(v == v); \
            key[nv] = kv; \
            pos[nv] = (uint16_t)i; \
            all_and &= kv | ~valid; \
            all_or |= kv & valid; \
            nv += v == v; \
        } \
        if (nv <= k) { \
            memcpy(wk, key, nv * sizeof(uint64_t)); \
            memcpy(wp, pos, nv * sizeof(uint16_t)); \
            c = nv; \
        } else { \
            Py_ssize_t nc = nv, need = k, m; \
            uint64_t diff = all_and ^ all_or; \
            int b, top = diff ? 64 - __builtin_clzll(diff) : 0;   /* bits [0, top) differ somewhere */ \
            for (i = 0; i < nv; i++) cand[i] = (uint16_t)i; \
            while (top > 0 && nc > need) { \
                int shift = top > 8 ? top - 8 : 0; \
                uint64_t mask = ((uint64_t)1 << (top - shift)) - 1;   /* a digit of up to 8 bits */ \
                Py_ssize_t above = 0; \
                top = shift; \
                memset(hist, 0, sizeof hist); \
                for (i = 0; i < nc; i++) hist[i & 3][(key[cand[i]] >> shift) & mask]++; \
                for (b = (int)mask; ; b--) { \
                    Py_ssize_t h = (Py_ssize_t)hist[0][b] + hist[1][b] + hist[2][b] + hist[3][b]; \
                    if (above + h >= need) break; \
                    above += h; \
                } \
                need -= above; \
                m = 0; \
                for (i = 0; i < nc; i++) {   /* above b: a winner; equal: still a candidate */ \
                    uint16_t ci = cand[i]; \
                    int dg = (int)((key[ci] >> shift) & mask); \
                    wk[c] = key[ci]; \
                    wp[c] = pos[ci]; \
                    c += dg > b; \
                    cand[m] = ci; \
                    m += dg == b; \
                } \
                nc = m; \
            } \
            for (i = 0; i < need; i++) {   /* all of them, or the lowest positions of equal keys */ \
                wk[c] = key[cand[i]]; \
                wp[c] = pos[cand[i]]; \
                c++; \
            } \
        } \
        if (c <= 64) {   /* few: a stable insertion sort (descending keys; equal keys stay in order) */ \
            for (i = 0; i < c; i++) { \
                uint64_t kk = wk[i]; \
                uint16_t pp = wp[i]; \
                Py_ssize_t j = i; \
                while (j > 0 && sk[j - 1] < kk) { sk[j] = sk[j - 1]; sp[j] = sp[j - 1]; j--; } \
                sk[j] = kk; \
                sp[j] = pp; \
            } \
        } else {   /* least significant byte first, stable and descending, skipping shared bytes */ \
            uint64_t all_and = ~(uint64_t)0, all_or = 0, *ck = wk, *dk = sk, *tk; \
            uint16_t *cp = wp, *dp = sp, *tp; \
            int shift, b; \
            for (i = 0; i < c; i++) { all_and &= wk[i]; all_or |= wk[i]; } \
            for (shift = 0; shift < 64; shift += 8) { \
                uint32_t at = 0; \
                if ((((all_and ^ all_or) >> shift) & 255) == 0) continue; \
                memset(hist[0], 0, sizeof hist[0]); \
                for (i = 0; i < c; i++) hist[0][255 - ((ck[i] >> shift) & 255)]++; \
                for (b = 0; b < 256; b++) { uint32_t h = hist[0][b]; hist[0][b] = at; at += h; } \
                for (i = 0; i < c; i++) { \
                    uint32_t o = hist[0][255 - ((ck[i] >> shift) & 255)]++; \
                    dk[o] = ck[i]; \
                    dp[o] = cp[i]; \
                } \
                tk = ck; ck = dk; dk = tk; \
                tp = cp; cp = dp; dp = tp; \
            } \
            if (cp != sp) memcpy(sp, cp, c * sizeof(uint16_t)); \
        } \
        for (i = 0; i < c; i++) {   /* best first in sp: stored worst first */ \
            uint16_t e = sp[c - 1 - i]; \
            hv[i] = (double)z[e]; \
            hi[i] = first + (int64_t)e; \
        } \
        return c; \
    }
    FASTWLR_DEFINE_RADIX_TOPK(double, f64)
    FASTWLR_DEFINE_RADIX_TOPK(float, f32)
    """
    Py_ssize_t RADIX_MAX "FASTWLR_RADIX_MAX"
    Py_ssize_t radix_topk_f64 "fastwlr_radix_topk_f64"(const double* z, Py_ssize_t n, int64_t first, Py_ssize_t k,
                                                       double* hv, int64_t* hi) noexcept nogil
    Py_ssize_t radix_topk_f32 "fastwlr_radix_topk_f32"(const float* z, Py_ssize_t n, int64_t first, Py_ssize_t k,
                                                       double* hv, int64_t* hi) noexcept nogil


cdef inline Py_ssize_t radix_topk(const feature_t* z, Py_ssize_t n, Py_ssize_t first, Py_ssize_t k, double* hv,
                                  int64_t* hi) noexcept nogil:
    if feature_t is float:
        return radix_topk_f32(z, n, first, k, hv, hi)
    return radix_topk_f64(z, n, first, k, hv, hi)


cdef inline bint radix_pays(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    # an empty heap, a k the segment bound cannot serve, and a segment the select can hold
    return m == 0 and k > LANES and n <= RADIX_MAX


cdef inline double offer_block(const Rows* rs, Py_ssize_t i, Py_ssize_t cnt, double* z, double* hv, int64_t* hi,
                               Py_ssize_t k, double thr, int64_t* bad) noexcept nogil:
    """Offer rows i..i+cnt-1 (log-odds z[0:cnt]) to the full heap whose root value is thr;
    returns the new root value. mark_rows first: excluded rows become NaN, which never enter, and
    non-finite log-odds are noted."""
    cdef Py_ssize_t r
    mark_rows(rs, i, cnt, z, bad)
    for r in range(cnt):
        if z[r] > thr:   # false for NaN, so for an excluded row; equal: a higher index loses the tie
            replace_root(hv, hi, k, z[r], i + r)
            thr = hv[0]
    return thr


cdef inline Py_ssize_t scan_rows(const Rows* rs, const feature_t* vals, const index_t* ind, const index_t* indptr,
                                 Py_ssize_t start, Py_ssize_t stop, double* hv, int64_t* hi, Py_ssize_t m,
                                 Py_ssize_t k, int64_t* bad, double* z) noexcept nogil:
    """Offer the log-odds of dense or CSR rows [start, stop) to the heap of size m; returns its new
    size. ``bad``: lowest NaN row, count of infinite log-odds (note_nonfinite).

    While the heap is not full, rows are scored a segment at a time into the buffer z (SEGMENT
    doubles) and those reaching the segment's bound are offered (select_segment). Once it is full,
    each block of eight is compared with the root as it is scored: a block that all lose to it is
    skipped whole, and a value equal to it loses the tie (rows are ascending). Only rows that
    cannot be in the top k are left out, so the heap ends with the same top k.

    Both phases are one loop with one inlined dot kernel and the model in locals. (With a loop
    for each, the compiler kept the eight rows' pointers of the second on the stack: 20-30 %
    slower on one request of 20,000 x 64.)"""
    cdef Py_ssize_t i = start, seg = start, seg_end = start, r, cnt, j, d = rs.d
    cdef Py_ssize_t row_bytes = d * sizeof(feature_t), end_bytes = rs.end_bytes
    cdef const double* w = rs.w
    cdef const float* w32 = rs.w32
    cdef double b = rs.b, thr = 0.0, lim
    cdef bint dense = rs.source == DENSE, excl = rs.exclude != NULL, buffering, ok
    cdef double lm[LANES]
    cdef double zb[8]
    cdef double* dst
    while i < stop:
        buffering = m < k
        if buffering:
            if i == seg_end:  # a new segment (k = 1: the first block fills the heap; no bound needed)
                seg = i
                seg_end = min(i + (SEGMENT if k > 1 else 8), stop)
                for j in range(LANES):
                    lm[j] = -INFINITY
            cnt = min(8, seg_end - i)
            dst = z + (i - seg)
            lim = DBL_MAX
        else:
            cnt = min(8, stop - i)
            dst = zb
            lim = thr
        # ok: every row of the block is > -inf and <= lim, so not NaN either. Buffering, that is
        # "all finite"; streaming, "none beats the root, and none is -inf". Otherwise the rows are
        # looked at one by one (mark_rows notes non-finite log-odds, and NaNs excluded rows).
        ok = not excl
        if dense and cnt == 8:
            if end_bytes > 0:
                prefetch_span(vals, i * row_bytes + DENSE_PREFETCH_BYTES,
                              min((i + 8) * row_bytes + DENSE_PREFETCH_BYTES, end_bytes))
            dot_score8(vals + i * d, w, w32, d, dst)
        else:   # CSR rows, and the last few dense rows
            dot_rows(rs, vals, ind, indptr, i, cnt, dst)
        ok = ok & add_in_range(dst, cnt, b, lim)
        if not ok and dense:   # maybe a float32 sum that overflowed (dot_score8, dot_score4)
            redo_nonfinite(vals + i * d, w, w32, d, b, dst, cnt)
        if buffering:
            if not ok:
                mark_rows(rs, i, cnt, dst, bad)
            # the lanes of rows i..i+7 (i - seg is a multiple of 8): the first or second half of lm
            maxima8(lm + ((i - seg) & (LANES - 1)), dst, cnt)
            if i + cnt == seg_end:
                if radix_pays(m, k, seg_end - seg):
                    m = radix_topk(z, seg_end - seg, seg, k, hv, hi)
                else:
                    m = select_segment(z, seg_end - seg, seg, segment_bound(lm, seg_end - seg, k), hv, hi, m, k)
                thr = hv[0]
        elif not ok:
            thr = offer_block(rs, i, cnt, dst, hv, hi, k, thr, bad)
        i += cnt
    return m


cdef inline Py_ssize_t scan_scores(const feature_t* vals, Py_ssize_t start, Py_ssize_t stop, double* hv, int64_t* hi,
                                   Py_ssize_t m, Py_ssize_t k, int64_t* bad) noexcept nogil:
    """Offer scores [start, stop) (ascending) to the heap of size m; returns its new size.

    While the heap is not full, a segment at a time, as the fused scan's buffer but in place: one
    pass takes the maxima of its 16 interleaved lanes and looks for NaN; the segment's bound keeps
    all but a few scores out of the heap (segment_bound), and eight at a time a vector comparison
    picks the scores to offer (select_segment). A segment holding a NaN, and everything after the
    heap is full, go through scan_scores_heap, which reports the lowest NaN index in ``bad[0]``
    (-1: none). 10,000 groups x 500 normal scores, k = 10, one thread: 17-18 -> 8 ms."""
    cdef Py_ssize_t i = start, n, r, j
    cdef double lm[LANES]
    cdef double v
    cdef bint nan
    while i < stop:
        if m == k or k == 1:
            # a full heap's root is the better bound, and the plain scan tests it in one pass
            # (k = 1: full after one score); the lanes' pass would only add a read of each score
            return scan_scores_heap(vals, i, stop, hv, hi, m, k, bad)
        n = min(SEGMENT, stop - i)
        nan = False
        r = 0
        for j in range(LANES):
            lm[j] = -INFINITY
        while r + LANES <= n:
            for j in range(LANES):
                v = vals[i + r + j]
                nan = nan | (v != v)
                lm[j] = v if v > lm[j] else lm[j]
            r += LANES
        for j in range(n - r):
            v = vals[i + r + j]
            nan = nan | (v != v)
            lm[j] = v if v > lm[j] else lm[j]
        if nan:
            m = scan_scores_heap(vals, i, i + n, hv, hi, m, k, bad)
        elif radix_pays(m, k, n):
            m = radix_topk(vals + i, n, i, k, hv, hi)
        else:
            m = select_segment(vals + i, n, i, segment_bound(lm, n, k), hv, hi, m, k)
        i += n
    return m


cdef inline Py_ssize_t scan(int source, const feature_t* vals, const index_t* ind, const index_t* indptr,
                            Py_ssize_t d, const double* w, const float* w32, double b, const unsigned char* exclude,
                            Py_ssize_t start, Py_ssize_t stop, double* hv, int64_t* hi, Py_ssize_t m,
                            Py_ssize_t k, int64_t* bad, Py_ssize_t pf_end, double* z) noexcept nogil:
    # given scores (exclude is not offered there) or rows scored through the buffer z
    cdef Rows rs
    if source == SCORES:
        return scan_scores(vals, start, stop, hv, hi, m, k, bad)
    rs = Rows(source, d, w, w32, b, exclude, pf_end * d * sizeof(feature_t) if source == DENSE else 0,
              indptr[pf_end] if source == CSR and pf_end > 0 else 0)
    return scan_rows(&rs, vals, ind, indptr, start, stop, hv, hi, m, k, bad, z)


cdef inline Py_ssize_t prefetch_end(int source, Py_ssize_t first, Py_ssize_t last,
                                    Py_ssize_t row_bytes) noexcept nogil:
    # Rows [first, last) are all this call scans: prefetch up to last, across the bounds of groups
    # and chunks (a request of 500 x 64 float32 is 128 KB: deciding group by group turned the
    # prefetch off for 10,000 such requests in 1.3 GB), unless dense rows are few enough for the
    # hardware prefetcher alone (SCAN_PREFETCH_MIN_BYTES, _math.pxd). CSR
    # rows prefetch their gathers from the coefficients always, as CSR scoring does.
    if source == CSR:
        return last
    if source == DENSE and (last - first) * row_bytes > SCAN_PREFETCH_MIN_BYTES:
        return last
    return 0


cdef inline void finish(double* hv, int64_t* hi, Py_ssize_t m, Py_ssize_t k, int output,
                        int64_t* out_idx, out_t* out_val) noexcept nogil:
    """Sort the m winners best first, transform them (in place: the heap is done), pad the row
    to k. Winners already worst first (radix_topk's, when no later row entered) are reversed."""
    cdef Py_ssize_t j
    cdef double v
    cdef int64_t ix
    cdef bint ascending = True
    for j in range(1, m):
        ascending = ascending & (not worse(hv[j], hi[j], hv[j - 1], hi[j - 1]))
    if ascending:
        for j in range(m // 2):
            v = hv[j]
            ix = hi[j]
            hv[j] = hv[m - 1 - j]
            hi[j] = hi[m - 1 - j]
            hv[m - 1 - j] = v
            hi[m - 1 - j] = ix
    else:
        heap_sort_desc(hv, hi, m)
    transform_block(hv, m, output)   # the bits of apply_output, eight at a time
    for j in range(m):
        out_idx[j] = hi[j]
        out_val[j] = <out_t>hv[j]
    for j in range(m, k):
        out_idx[j] = -1
        out_val[j] = -INFINITY


cdef inline Py_ssize_t merge_chunks(double* hv, int64_t* hi, Py_ssize_t hs, const Py_ssize_t* chunk_m,
                                    Py_ssize_t n_chunks, double* out_v, int64_t* out_i, Py_ssize_t kh) noexcept nogil:
    # The winners of n_chunks heaps (chunk c: hv/hi + c * hs, chunk_m[c] entries) pushed into one
    # heap of kh (out_v/out_i): at most n_chunks * kh pushes. The order is total, so the result is
    # the top-kh of the chunks' union however the rows were cut. Returns its size.
    cdef Py_ssize_t c, j, m = 0
    for c in range(n_chunks):
        for j in range(chunk_m[c]):
            m = heap_push(out_v, out_i, m, kh, hv[c * hs + j], hi[c * hs + j])
    return m


cdef struct Model:
    const double* w       # coefficients (NULL when ranking given scores)
    const float* w32      # their float32 copy for float32 rows (coef_f32), or NULL
    double b              # intercept
    Py_ssize_t d          # dense row length (0 for CSR and for scores)


cdef struct Selection:
    const unsigned char* exclude   # per row, 1 = skip; NULL: none
    const int64_t* offsets         # G + 1 group bounds
    Py_ssize_t G
    Py_ssize_t k                   # output columns per group
    Py_ssize_t kh                  # heap size: min(k, largest group)
    int output                     # transform of the winners (LOG_ODDS for scores)
    int64_t* out_idx               # (G, k)
    double* hv                     # heaps: (n_threads + 1, heap_stride(kh)) values and indices
    int64_t* hi
    Py_ssize_t* chunk_m            # (n_threads,)
    int64_t* bad                   # (n_threads, BAD_STRIDE): lowest NaN row, count of inf
    double* z                      # (n_threads, Z_STRIDE): a segment's log-odds (fused sources)
    int n_threads
    Py_ssize_t row_cost            # multiply-adds a row: decides whether threads pay


cdef void select_groups(int source, const feature_t* vals, const index_t* ind, const index_t* indptr,
                        const Model* model, const Selection* sel, out_t* out_val) noexcept nogil:
    """The driver. Outputs are (G, k); heaps hold kh = min(k, largest group) entries, so a huge k
    costs only its output. All arrays C-contiguous."""
    cdef Py_ssize_t g, t, c, m, start, stop, size, n_chunks
    # local copies: the loops below read them as plain values (the compiler keeps them in registers)
    cdef Py_ssize_t d = model.d, G = sel.G, k = sel.k, kh = sel.kh, row_cost = sel.row_cost
    cdef const double* w = model.w
    cdef const float* w32 = model.w32
    cdef double b = model.b
    cdef const unsigned char* exclude = sel.exclude
    cdef const int64_t* offsets = sel.offsets
    cdef int output = sel.output, n_threads = sel.n_threads
    cdef int64_t* out_idx = sel.out_idx
    cdef double* hv = sel.hv
    cdef int64_t* hi = sel.hi
    cdef Py_ssize_t* chunk_m = sel.chunk_m
    cdef int64_t* bad = sel.bad
    cdef double* z = sel.z
    cdef Py_ssize_t hs = heap_stride(kh)
    cdef Py_ssize_t n = offsets[G] - offsets[0]
    cdef Py_ssize_t pf_end = prefetch_end(source, offsets[0], offsets[G], d * sizeof(feature_t))
    cdef bint split = n_threads > 1
    # Phase 1 spreads groups over threads: a single group (one request) gains nothing from a
    # parallel region, and waking the pool cost 4-10x the work on a loaded machine (one request of
    # 500 x 256: 33 us on one thread, 130-345 us with two)
    cdef bint threaded = n_threads > 1 and G > 1 and n * row_cost > PARALLEL_MIN_WORK

    # Phase 1: one thread per group, groups of SPLIT_MIN or more left to phase 2. On one thread, no
    # parallel region at all: entering one, even for a team of one, cost ~1 us (a futex call).
    if threaded:
        for g in prange(G, schedule="dynamic", chunksize=4, num_threads=n_threads):
            start = offsets[g]
            stop = offsets[g + 1]
            if split and stop - start >= SPLIT_MIN:
                continue
            t = threadid()
            m = scan(source, vals, ind, indptr, d, w, w32, b, exclude, start, stop, hv + t * hs, hi + t * hs, 0,
                     kh, bad + BAD_STRIDE * t, pf_end, z + Z_STRIDE * t)
            finish(hv + t * hs, hi + t * hs, m, k, output, out_idx + g * k, out_val + g * k)
    else:
        for g in range(G):
            start = offsets[g]
            stop = offsets[g + 1]
            if split and stop - start >= SPLIT_MIN:
                continue
            m = scan(source, vals, ind, indptr, d, w, w32, b, exclude, start, stop, hv, hi, 0, kh, bad, pf_end, z)
            finish(hv, hi, m, k, output, out_idx + g * k, out_val + g * k)

    if not split:
        return
    # Phase 2: each big group with every thread: a top-k per chunk, then one merge.
    for g in range(G):
        start = offsets[g]
        size = offsets[g + 1] - start
        if size < SPLIT_MIN:
            continue
        n_chunks = min(<Py_ssize_t>n_threads, size // (SPLIT_MIN // 2))
        for c in prange(n_chunks, schedule="static", chunksize=1, num_threads=n_threads):
            chunk_m[c] = scan(source, vals, ind, indptr, d, w, w32, b, exclude, start + size * c // n_chunks,
                              start + size * (c + 1) // n_chunks, hv + c * hs, hi + c * hs, 0, kh,
                              bad + BAD_STRIDE * c, pf_end, z + Z_STRIDE * c)
        m = merge_chunks(hv, hi, hs, chunk_m, n_chunks, hv + n_threads * hs, hi + n_threads * hs, kh)
        finish(hv + n_threads * hs, hi + n_threads * hs, m, k, output, out_idx + g * k, out_val + g * k)


cdef class _Scratch:
    """Outputs and per-thread scratch of one call, allocated (and freed) by numpy under the GIL."""
    cdef object out_idx_arr, out_val_arr, bad_arr, keep
    cdef int64_t* out_idx
    cdef void* out_val
    cdef double* hv
    cdef int64_t* hi
    cdef Py_ssize_t* chunk_m
    cdef int64_t* bad
    cdef double* z

    cdef readonly Py_ssize_t kh

    def __init__(self, const int64_t[::1] offsets, Py_ssize_t k, int n_threads, out_dtype):
        cdef Py_ssize_t G = offsets.shape[0] - 1, g, largest = 0
        for g in range(G):
            largest = max(largest, offsets[g + 1] - offsets[g])
        self.kh = max(1, min(k, largest))
        cdef int64_t[:, ::1] oi = np.empty((G, k), dtype=np.int64)
        cdef double[:, ::1] hv = np.empty((n_threads + 1, heap_stride(self.kh)), dtype=np.float64)
        cdef int64_t[:, ::1] hi = np.empty((n_threads + 1, heap_stride(self.kh)), dtype=np.int64)
        cdef Py_ssize_t[::1] cm = np.zeros(n_threads, dtype=np.intp)
        cdef int64_t[:, ::1] bad = np.full((n_threads, BAD_STRIDE), -1, dtype=np.int64)
        cdef double[:, ::1] z = np.empty((n_threads, Z_STRIDE), dtype=np.float64)
        cdef unsigned char[::1] ov
        bad[:, 1] = 0
        self.out_idx_arr = np.asarray(oi)
        self.out_val_arr = np.empty((G, k), dtype=out_dtype)
        ov = self.out_val_arr.reshape(-1).view(np.uint8)
        self.bad_arr = np.asarray(bad)
        self.keep = (hv, hi, cm, ov, z)
        # &x[0, 0] is invalid for an empty view; a zero-size output is never written anyway
        self.out_idx = &oi[0, 0] if oi.shape[0] > 0 else NULL
        self.out_val = <void*>&ov[0] if ov.shape[0] > 0 else NULL
        self.hv = &hv[0, 0]
        self.hi = &hi[0, 0]
        self.chunk_m = &cm[0]
        self.bad = &bad[0, 0]
        self.z = &z[0, 0]

    cdef Selection selection(self, const int64_t[::1] offsets, Py_ssize_t k, const unsigned char* exclude,
                             int output, int n_threads, Py_ssize_t row_cost):
        return Selection(exclude, &offsets[0], offsets.shape[0] - 1, k, self.kh, output, self.out_idx,
                         self.hv, self.hi, self.chunk_m, self.bad, self.z, n_threads, row_cost)

    def report(self):
        """(lowest NaN row or -1, count of infinite log-odds)."""
        nan = self.bad_arr[:, 0][self.bad_arr[:, 0] >= 0]
        return (int(nan.min()) if nan.size else -1), int(self.bad_arr[:, 1].sum())


# ------------------------------------------------------------------ entry points (checked input only)

def topk(const feature_t[::1] scores, const int64_t[::1] offsets, Py_ssize_t k, int n_threads):
    """-> (indices, values of the scores' dtype, lowest NaN index or -1)."""
    cdef Py_ssize_t G = offsets.shape[0] - 1
    cdef _Scratch s = _Scratch(offsets, k, n_threads, np.asarray(scores).dtype)
    cdef const feature_t* p = &scores[0] if scores.shape[0] > 0 else NULL
    cdef Model model = Model(NULL, NULL, 0.0, 0)
    cdef Selection sel = s.selection(offsets, k, NULL, LOG_ODDS, n_threads, 1)
    with nogil:
        select_groups(SCORES, p, <const int*>NULL, <const int*>NULL, &model, &sel, <feature_t*>s.out_val)
    return s.out_idx_arr, s.out_val_arr, s.report()[0]


def _fused(int source, const feature_t[::1] vals, const index_t[::1] ind, const index_t[::1] indptr,
           Py_ssize_t d, const double[::1] coef, double intercept, const int64_t[::1] offsets, Py_ssize_t k,
           int output, exclude, out_dtype, int n_threads, Py_ssize_t row_cost):
    cdef Py_ssize_t G = offsets.shape[0] - 1
    cdef const unsigned char[::1] excl_view
    cdef const unsigned char* excl = NULL
    if exclude is not None:
        excl_view = np.ascontiguousarray(exclude).view(np.uint8)
        excl = &excl_view[0] if excl_view.shape[0] > 0 else NULL
    cdef _Scratch s = _Scratch(offsets, k, n_threads, out_dtype)
    cdef const feature_t* v = &vals[0] if vals.shape[0] > 0 else NULL
    cdef const index_t* ip = &ind[0] if ind.shape[0] > 0 else NULL
    cdef const index_t* pp = &indptr[0] if indptr.shape[0] > 0 else NULL
    cdef const double* w = &coef[0] if coef.shape[0] > 0 else NULL
    cdef bint is32 = s.out_val_arr.dtype == np.float32
    coef32 = coef_f32(w, d) if source == DENSE and feature_t is float else None
    cdef Model model = Model(w, f32_ptr(coef32), intercept, d)
    cdef Selection sel = s.selection(offsets, k, excl, output, n_threads, row_cost)
    with nogil:
        if is32:
            select_groups(source, v, ip, pp, &model, &sel, <float*>s.out_val)
        else:
            select_groups(source, v, ip, pp, &model, &sel, <double*>s.out_val)
    nan_row, n_inf = s.report()
    return s.out_idx_arr, s.out_val_arr, nan_row, n_inf


def score_topk_dense(const feature_t[:, ::1] X, const double[::1] coef, double intercept,
                     const int64_t[::1] offsets, Py_ssize_t k, int output, exclude, out_dtype, int n_threads):
    """-> (indices, values, lowest NaN row or -1, count of infinite log-odds)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef const int[::1] no_index = np.empty(0, dtype=np.intc)
    flat = np.asarray(X).reshape(-1)
    return _fused(DENSE, flat, no_index, no_index, d, coef, intercept, offsets, k, output,
                  exclude, out_dtype, n_threads, d + 1)


def score_topk_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                   const double[::1] coef, double intercept, const int64_t[::1] offsets, Py_ssize_t k,
                   int output, exclude, out_dtype, int n_threads):
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t cost = 1 + (indices.shape[0] // n if n > 0 else 0)
    return _fused(CSR, data, indices, indptr, 0, coef, intercept, offsets, k, output,
                  exclude, out_dtype, n_threads, cost)


# ---------------------------------------------------------------------------------------------
# One request served without the general driver: X, coef and the intercept checked as in
# _scoring.score_fast (_fastpath.pxd), heaps on the C heap, and only the two outputs allocated.
# A request of FAST_SPLIT_WORK element operations or more asks threads_for(work); with several
# threads (the adapter's rule gives them to a loop of requests once its workers are awake) each
# scans a contiguous chunk into its own heap and the chunks' winners are merged, as phase 2 above:
# the order is total, so the same result. Anything else (offsets, exclude, a request of SPLIT_MIN
# rows, a NaN or inf log-odds) returns None: the full path checks, selects and reports.

cdef object _ndarray = np.ndarray
cdef object _empty = np.empty
cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)
cdef object _I64 = np.dtype(np.int64)


# one request of 2,000 x 256 float32 took 33 us on one thread and 18 us on two awake ones
cdef Py_ssize_t FAST_SPLIT_WORK = 1 << 18


cdef inline Py_ssize_t request_chunk(int kind, const void* X, Py_ssize_t n, Py_ssize_t d, const double* w,
                                     const float* w32, double b, Py_ssize_t c, Py_ssize_t nt, double* hv, int64_t* hi,
                                     Py_ssize_t kh, int64_t* bad, double* z) noexcept nogil:
    # chunk c of nt of one dense request's rows: its top-kh into (hv, hi); returns its size. The
    # prefetch follows the chunk, which is all this thread reads: one request of 2,000 x 256 float32
    # on two threads is 1 MB a thread, in its L2 from one call to the next, and prefetching it
    # anyway took 6 % longer (15.8-16.4 against 14.8-15.1 us)
    cdef Py_ssize_t first = n * c // nt, last = n * (c + 1) // nt
    if kind == 4:
        return scan(DENSE, <const float*>X, <const int*>NULL, <const int*>NULL, d, w, w32, b, NULL, first, last,
                    hv, hi, 0, kh, bad, prefetch_end(DENSE, first, last, d * 4), z)
    return scan(DENSE, <const double*>X, <const int*>NULL, <const int*>NULL, d, w, NULL, b, NULL, first, last,
                hv, hi, 0, kh, bad, prefetch_end(DENSE, first, last, d * 8), z)


def score_topk_fast(X, coef, intercept, k, int output, threads_for, call_ended):
    """-> (indices (1, k), values (1, k)) of the one request X, or None (see above)."""
    cdef Py_buffer cv
    cdef double b = 0.0   # set by model_buffer before any use
    if not model_buffer(coef, intercept, _ndarray, &cv, &b):
        return None
    try:
        return request_topk(X, k, <const double*>cv.buf, cv.shape[0], _PER_CALL, b, output, threads_for, call_ended)
    finally:
        PyBuffer_Release(&cv)


# request_topk's coef32 when the caller has not prepared one: made for float32 X only
cdef object _PER_CALL = object()


cdef object request_topk(X, k, const double* w, Py_ssize_t d, coef32, double b, int output, threads_for,
                         call_ended):
    """One request's top k by the fast path, for a finite model (w, d, b): the checks of X and k
    (an exact ndarray; an int in [1, 2^28]), the selection and the outputs; None where the full
    path must decide (see above). coef32: coef_f32's result for w (a prepared model: DenseScorer,
    _scoring.pyx), or _PER_CALL."""
    cdef Py_buffer xv
    cdef Py_ssize_t n, kk, kh, m, c, hs
    cdef int kind, nt = 1
    cdef bint asked
    cdef int64_t* bad
    cdef double* hv
    cdef int64_t* hi
    cdef Py_ssize_t* chunk_m
    cdef double* z
    cdef const float* w32
    if type(X) is not _ndarray or type(k) is not int or not (1 <= k <= (1 << 28)):
        return None
    kk = k
    if PyObject_GetBuffer(X, &xv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
        PyErr_Clear()
        return None
    try:
        kind = buffer_kind(&xv)
        if kind == 0 or xv.ndim != 2 or xv.shape[1] != d:
            return None
        n = xv.shape[0]
        if n >= SPLIT_MIN or n == 0:
            return None
        kh = min(kk, n)
        if kind == 8:
            coef32 = None
        elif coef32 is _PER_CALL:
            coef32 = coef_f32(w, d)
        w32 = f32_ptr(coef32)
        idx = _empty((1, kk), _I64)
        vals = _empty((1, kk), _F64 if (output == ODDS or kind == 8) else _F32)
        asked = n * (d + 1) >= FAST_SPLIT_WORK   # then the adapter hears of the call's end too
        if asked:
            nt = max(1, min(<Py_ssize_t>threads_for(n * (d + 1)), n // kh))
        hs = heap_stride(kh)
        # nt chunks' heaps, then the merged one (a single chunk: its heap is the result)
        hv = <double*>malloc((nt + 1) * hs * sizeof(double))
        hi = <int64_t*>malloc((nt + 1) * hs * sizeof(int64_t))
        bad = <int64_t*>malloc(nt * BAD_STRIDE * sizeof(int64_t))
        chunk_m = <Py_ssize_t*>malloc(nt * sizeof(Py_ssize_t))
        z = <double*>malloc(nt * Z_STRIDE * sizeof(double))
        try:
            if hv == NULL or hi == NULL or bad == NULL or chunk_m == NULL or z == NULL:
                raise MemoryError()
            for c in range(nt):
                bad[BAD_STRIDE * c] = -1
                bad[BAD_STRIDE * c + 1] = 0
            with nogil:
                if nt == 1:   # no parallel region (see select_groups)
                    chunk_m[0] = request_chunk(kind, xv.buf, n, d, w, w32, b, 0, 1, hv, hi, kh, bad, z)
                else:
                    for c in prange(nt, schedule="static", chunksize=1, num_threads=nt):
                        chunk_m[c] = request_chunk(kind, xv.buf, n, d, w, w32, b, c, nt, hv + c * hs, hi + c * hs,
                                                   kh, bad + BAD_STRIDE * c, z + Z_STRIDE * c)
            if asked:
                call_ended(nt)
            for c in range(nt):
                if bad[BAD_STRIDE * c] >= 0 or bad[BAD_STRIDE * c + 1] > 0:
                    return None
            if nt == 1:
                write_winners(hv, hi, chunk_m[0], kk, output, idx, vals)
            else:
                m = merge_chunks(hv, hi, hs, chunk_m, nt, hv + nt * hs, hi + nt * hs, kh)
                write_winners(hv + nt * hs, hi + nt * hs, m, kk, output, idx, vals)
        finally:
            free(hv)
            free(hi)
            free(bad)
            free(chunk_m)
            free(z)
        return idx, vals
    finally:
        PyBuffer_Release(&xv)


cdef int write_winners(double* hv, int64_t* hi, Py_ssize_t m, Py_ssize_t k, int output, idx, vals) except -1:
    # finish() into the request's two new outputs, asked for as buffers (two memoryviews of them
    # were ~0.3 us of a request)
    cdef Py_buffer iv, vv
    get_buffer(idx, &iv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    try:
        get_buffer(vals, &vv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        try:
            if vv.itemsize == 8:
                finish(hv, hi, m, k, output, <int64_t*>iv.buf, <double*>vv.buf)
            else:
                finish(hv, hi, m, k, output, <int64_t*>iv.buf, <float*>vv.buf)
        finally:
            PyBuffer_Release(&vv)
    finally:
        PyBuffer_Release(&iv)
    return 0
