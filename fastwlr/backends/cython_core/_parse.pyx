# cython: language_level=3
"""Text parsers of the command line's input formats (svmlight/libsvm and Vowpal Wabbit text),
compiled: not part of the kernel contract, and ``fastwlr._formats`` has pure-Python parsers that
follow exactly the same rules (the tests compare the two), used when this module is not built.

Each parser reads one block of whole lines and returns numpy arrays. A malformed line calls
``on_error(line, column, expected, got)``, which raises (the default) or returns, in which case
the line is dropped (``--skip-bad-lines``). Numbers follow one grammar, decimal with an optional
exponent (``[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?``), converted by ``strtod``
(correctly rounded, as Python's ``float``).
"""
import numpy as np

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport strtod
from libc.math cimport isfinite, NAN

cdef int64_t NO_REQUEST = -9223372036854775807 - 1
cdef int64_t MAX_INDEX = 2147483647
cdef const unsigned char* EMPTY = b""
# MurmurHash3's constants (module-level C values: literals above 2^31 would be Python ints)
cdef uint32_t M_C1 = 0xCC9E2D51
cdef uint32_t M_C2 = 0x1B873593
cdef uint32_t M_N = 0xE6546B64
cdef uint32_t M_F1 = 0x85EBCA6B
cdef uint32_t M_F2 = 0xC2B2AE35


cdef inline bint is_space(unsigned char c) noexcept nogil:
    # bytes.isspace()'s set, without the line end (lines are split first)
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef bint number_ok(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Does s[0:n] match the number grammar?"""
    cdef Py_ssize_t i = 0, digits = 0
    if i < n and (s[i] == 43 or s[i] == 45):
        i += 1
    while i < n and is_digit(s[i]):
        i += 1
        digits += 1
    if i < n and s[i] == 46:
        i += 1
        while i < n and is_digit(s[i]):
            i += 1
            digits += 1
    if digits == 0:
        return False
    if i < n and (s[i] == 101 or s[i] == 69):
        i += 1
        if i < n and (s[i] == 43 or s[i] == 45):
            i += 1
        if i >= n or not is_digit(s[i]):
            return False
        while i < n and is_digit(s[i]):
            i += 1
    return i == n


cdef inline uint32_t rotl32(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef uint32_t murmur3(const unsigned char* data, Py_ssize_t n, uint32_t seed) noexcept nogil:
    """MurmurHash3_x86_32 (Austin Appleby), little-endian block reads."""
    cdef uint32_t h = seed, k
    cdef uint32_t c1 = M_C1, c2 = M_C2
    cdef Py_ssize_t nblocks = n // 4, i
    for i in range(nblocks):
        k = (<uint32_t>data[4 * i]) | (<uint32_t>data[4 * i + 1] << 8) | (<uint32_t>data[4 * i + 2] << 16) \
            | (<uint32_t>data[4 * i + 3] << 24)
        k *= c1
        k = rotl32(k, 15)
        k *= c2
        h ^= k
        h = rotl32(h, 13)
        h = h * 5 + M_N
    cdef const unsigned char* tail = data + nblocks * 4
    cdef Py_ssize_t rest = n & 3
    k = 0
    if rest >= 3:
        k ^= <uint32_t>tail[2] << 16
    if rest >= 2:
        k ^= <uint32_t>tail[1] << 8
    if rest >= 1:
        k ^= tail[0]
        k *= c1
        k = rotl32(k, 15)
        k *= c2
        h ^= k
    h ^= <uint32_t>n
    h ^= h >> 16
    h *= M_F1
    h ^= h >> 13
    h *= M_F2
    h ^= h >> 16
    return h


cdef uint64_t feature_hash(const unsigned char* s, Py_ssize_t n, uint32_t h_ns) noexcept nogil:
    """vw's hashstring: an all-digit name is its value plus the namespace hash (mod 2^64), any
    other name murmur3 seeded with the namespace hash."""
    cdef uint64_t v = 0
    cdef Py_ssize_t i
    for i in range(n):
        if not is_digit(s[i]):
            return murmur3(s, n, h_ns)
        v = v * 10 + (s[i] - 48)
    return v + h_ns


def murmur3_32(data, uint32_t seed=0):
    """MurmurHash3 x86 32-bit of bytes (str as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    cdef const unsigned char[:] view = data
    if view.shape[0] == 0:
        return murmur3(EMPTY, 0, seed)
    return murmur3(&view[0], view.shape[0], seed)


cdef class _Out:
    """Growable output arrays of one block."""
    cdef public object label, weight, request, line, indptr, indices, data
    cdef double[::1] lab, wt, val
    cdef int64_t[::1] req, ln, ptr
    cdef int32_t[::1] idx
    cdef Py_ssize_t n_rows, nnz

    def __init__(self, Py_ssize_t max_rows, Py_ssize_t max_nnz):
        self.label = np.empty(max_rows, dtype=np.float64)
        self.weight = np.empty(max_rows, dtype=np.float64)
        self.request = np.empty(max_rows, dtype=np.int64)
        self.line = np.empty(max_rows, dtype=np.int64)
        self.indptr = np.zeros(max_rows + 1, dtype=np.int64)
        self.indices = np.empty(max_nnz, dtype=np.int32)
        self.data = np.empty(max_nnz, dtype=np.float64)
        self.lab, self.wt, self.req, self.ln = self.label, self.weight, self.request, self.line
        self.ptr, self.idx, self.val = self.indptr, self.indices, self.data
        self.n_rows = 0
        self.nnz = 0

    def arrays(self):
        n, nnz = self.n_rows, self.nnz
        # copies: a block's worst-case buffers must not outlive it
        return (self.label[:n].copy(), self.weight[:n].copy(), self.request[:n].copy(), self.line[:n].copy(),
                self.indptr[:n + 1].copy(), self.indices[:nnz].copy(), self.data[:nnz].copy())


cdef inline Py_ssize_t skip_space(const unsigned char* s, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    while i < end and is_space(s[i]):
        i += 1
    return i


cdef inline Py_ssize_t token_end(const unsigned char* s, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    while i < end and not is_space(s[i]):
        i += 1
    return i


cdef inline bint parse_int64(const unsigned char* s, Py_ssize_t n, int64_t* out) noexcept nogil:
    """[+-]?digits within (-2^63, 2^63), the range both parsers accept (-2^63 marks "no qid")."""
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef uint64_t v = 0
    if i < n and (s[i] == 43 or s[i] == 45):
        neg = s[i] == 45
        i += 1
    if i == n:
        return False
    while i < n:
        if not is_digit(s[i]):
            return False
        if v > (<uint64_t>9223372036854775807ULL - (s[i] - 48)) // 10:
            return False
        v = v * 10 + (s[i] - 48)
        i += 1
    out[0] = -<int64_t>v if neg else <int64_t>v
    return True


def parse_svmlight(bytes block, int64_t first_line, on_error, int64_t n_features=-1):
    """(label, qid, line, indptr, indices, data) of the svmlight rows of ``block``."""
    cdef const unsigned char* s = block
    cdef Py_ssize_t n = len(block)
    cdef _Out out = _Out(block.count(b"\n") + 1, block.count(b":") + 1)
    cdef Py_ssize_t pos = 0, end, i, t, c, row_nnz0
    cdef int64_t lineno = first_line - 1, qid, idx
    cdef int64_t limit = MAX_INDEX if n_features < 0 else min(n_features, MAX_INDEX)
    cdef double x
    cdef char* stop
    while pos <= n:
        lineno += 1
        end = pos
        while end < n and s[end] != 10:
            end += 1
        line_end = end
        c = pos
        while c < end and s[c] != 35:  # '#': a comment to the end of the line
            c += 1
        end = c
        i = skip_space(s, pos, end)
        if i == end:
            pos = line_end + 1
            continue
        row_nnz0 = out.nnz
        err = None
        # the label
        t = token_end(s, i, end)
        if not number_ok(s + i, t - i):
            err = (i - pos + 1, "a label (a number)", block[i:t])
        else:
            x = strtod(<const char*>(s + i), &stop)
            if not isfinite(x):
                err = (i - pos + 1, "a label (a number) (finite)", block[i:t])
        out.lab[out.n_rows] = x
        qid = NO_REQUEST
        i = skip_space(s, t, end)
        if err is None and i < end and end - i >= 4 and s[i] == 113 and s[i + 1] == 105 and s[i + 2] == 100 \
                and s[i + 3] == 58:  # "qid:"
            t = token_end(s, i, end)
            if not parse_int64(s + i + 4, t - i - 4, &qid) or qid == NO_REQUEST:
                err = (i - pos + 1, "qid:INTEGER", block[i:t])
            i = skip_space(s, t, end)
        while err is None and i < end:
            t = token_end(s, i, end)
            c = i
            while c < t and s[c] != 58:
                c += 1
            if c == t:
                err = (i - pos + 1, "index:value", block[i:t])
                break
            if c == i:
                err = (i - pos + 1, "a feature index (an integer >= 0)", b"")
                break
            idx = 0
            for k in range(i, c):
                if not is_digit(s[k]):
                    err = (i - pos + 1, "a feature index (an integer >= 0)", block[i:c])
                    break
                if idx < limit:  # saturate: only "below the limit or not" matters
                    idx = idx * 10 + (s[k] - 48)
            if err is not None:
                break
            if idx >= limit:
                err = (i - pos + 1, f"a feature index below {limit} (the column count)", block[i:c])
                break
            if not number_ok(s + c + 1, t - c - 1):
                err = (c + 1 - pos + 1, "a feature value (a number)", block[c + 1:t])
                break
            x = strtod(<const char*>(s + c + 1), &stop)
            if not isfinite(x):
                err = (c + 1 - pos + 1, "a feature value (a number) (finite)", block[c + 1:t])
                break
            out.idx[out.nnz] = <int32_t>idx
            out.val[out.nnz] = x
            out.nnz += 1
            i = skip_space(s, t, end)
        if err is not None:
            out.nnz = row_nnz0
            on_error(lineno, *err)
        else:
            out.req[out.n_rows] = qid
            out.ln[out.n_rows] = lineno
            out.n_rows += 1
            out.ptr[out.n_rows] = out.nnz
        pos = line_end + 1
    label, _, request, line, indptr, indices, data = out.arrays()
    return label, request, line, indptr, indices, data


def parse_vw(bytes block, int64_t first_line, on_error, int bits, uint32_t seed):
    """(label, weight, tags, line, indptr, indices, data) of the VW rows of ``block``."""
    cdef const unsigned char* s = block
    cdef Py_ssize_t n = len(block)
    cdef _Out out = _Out(block.count(b"\n") + 1, n // 2 + 1)
    cdef Py_ssize_t pos = 0, end, i, t, c, bar, seg_end, name_end, row_nnz0, k
    cdef Py_ssize_t tok_start[3]
    cdef Py_ssize_t tok_stop[3]
    cdef Py_ssize_t ntok
    cdef int64_t lineno = first_line - 1
    cdef uint32_t mask = <uint32_t>((<uint64_t>1 << bits) - 1)
    cdef uint32_t h_ns
    cdef double x, label, weight, scale
    cdef char* stop
    tags = []
    while pos <= n:
        lineno += 1
        end = pos
        while end < n and s[end] != 10:
            end += 1
        i = skip_space(s, pos, end)
        if i == end:
            pos = end + 1
            continue
        row_nnz0 = out.nnz
        err = None
        bar = pos
        while bar < end and s[bar] != 124:  # '|'
            bar += 1
        if bar == end:
            t = end
            while t > pos and is_space(s[t - 1]):
                t -= 1
            err = (t - pos + 1, "'|' and the features", b"end of line")
        tag = b""
        label, weight = NAN, 1.0
        if err is None:
            # header tokens: at most three matter (label, importance, tag; a 4th is an error anyway)
            ntok = 0
            i = skip_space(s, pos, bar)
            extra = -1
            while i < bar:
                t = token_end(s, i, bar)
                if ntok < 3:
                    tok_start[ntok], tok_stop[ntok] = i, t
                    ntok += 1
                elif extra < 0:
                    extra = i
                i = skip_space(s, t, bar)
            if ntok and extra < 0 and (s[tok_start[ntok - 1]] == 39 or (ntok >= 2 and not is_space(s[bar - 1]))):
                t = tok_start[ntok - 1]
                tag = block[t + 1 if s[t] == 39 else t:tok_stop[ntok - 1]]
                ntok -= 1
            if ntok > 2:  # 3 tokens and no tag, or 4 and more (tag or not): the third is one too many
                err = (tok_start[2] - pos + 1, "'|' after 'label [importance] [tag]'", block[tok_start[2]:tok_stop[2]])
            if err is None and ntok >= 1:
                if not number_ok(s + tok_start[0], tok_stop[0] - tok_start[0]):
                    err = (tok_start[0] - pos + 1, "a label (a number)", block[tok_start[0]:tok_stop[0]])
                else:
                    label = strtod(<const char*>(s + tok_start[0]), &stop)
                    if not isfinite(label):
                        err = (tok_start[0] - pos + 1, "a label (a number) (finite)", block[tok_start[0]:tok_stop[0]])
            if err is None and ntok == 2:
                what = "an importance weight (a number >= 0)"
                if not number_ok(s + tok_start[1], tok_stop[1] - tok_start[1]):
                    err = (tok_start[1] - pos + 1, what, block[tok_start[1]:tok_stop[1]])
                else:
                    weight = strtod(<const char*>(s + tok_start[1]), &stop)
                    if not isfinite(weight):
                        err = (tok_start[1] - pos + 1, what + " (finite)", block[tok_start[1]:tok_stop[1]])
                    elif weight < 0:
                        err = (tok_start[1] - pos + 1, what, block[tok_start[1]:tok_stop[1]])
        c = bar
        while err is None and c < end:
            seg_end = c + 1
            while seg_end < end and s[seg_end] != 124:
                seg_end += 1
            i = c + 1
            scale = 1.0
            if i < seg_end and not is_space(s[i]):
                t = token_end(s, i, seg_end)
                name_end = i
                while name_end < t and s[name_end] != 58:
                    name_end += 1
                h_ns = murmur3(s + i, name_end - i, seed)
                if name_end < t:
                    if not number_ok(s + name_end + 1, t - name_end - 1):
                        err = (name_end + 1 - pos + 1, "a namespace scale (a number)", block[name_end + 1:t])
                        break
                    scale = strtod(<const char*>(s + name_end + 1), &stop)
                    if not isfinite(scale):
                        err = (name_end + 1 - pos + 1, "a namespace scale (a number) (finite)", block[name_end + 1:t])
                        break
                i = t
            else:
                h_ns = murmur3(EMPTY, 0, seed)
            i = skip_space(s, i, seg_end)
            while i < seg_end:
                t = token_end(s, i, seg_end)
                k = i  # the first ':' splits name and value (as vw)
                while k < t and s[k] != 58:
                    k += 1
                if k == t:
                    x = 1.0
                    name_end = t
                else:
                    name_end = k
                    if name_end == i:
                        err = (i - pos + 1, "a feature name before ':'", block[i:t])
                        break
                    if not number_ok(s + k + 1, t - k - 1):
                        err = (k + 1 - pos + 1, "a feature value (a number)", block[k + 1:t])
                        break
                    x = strtod(<const char*>(s + k + 1), &stop)
                    if not isfinite(x):
                        err = (k + 1 - pos + 1, "a feature value (a number) (finite)", block[k + 1:t])
                        break
                out.idx[out.nnz] = <int32_t>(feature_hash(s + i, name_end - i, h_ns) & mask)
                out.val[out.nnz] = x * scale
                out.nnz += 1
                i = skip_space(s, t, seg_end)
            c = seg_end
        if err is not None:
            out.nnz = row_nnz0
            on_error(lineno, *err)
        else:
            out.lab[out.n_rows] = label
            out.wt[out.n_rows] = weight
            out.ln[out.n_rows] = lineno
            tags.append(tag.decode("utf-8", "replace"))
            out.n_rows += 1
            out.ptr[out.n_rows] = out.nnz
        pos = end + 1
    label_a, weight_a, _, line, indptr, indices, data = out.arrays()
    return label_a, weight_a, tags, line, indptr, indices, data
