"""How far the dense scoring kernel is from reading the same bytes: a C loop, no Python.

    python benchmarks/experiments/kernel_ceiling.py                         # 2,000 x 256 and 10,000 x 64
    python benchmarks/experiments/kernel_ceiling.py --shape 1000000x64 --threads 1 2
    python benchmarks/experiments/kernel_ceiling.py --smoke                 # seconds

The C code of ``fastwlr/backends/cython_core/_math.pxd`` (its verbatim blocks, the kernels the
extension modules inline) is compiled with a small harness by the system C compiler (``cc -O3
-march=native -fopenmp``, as setup.py builds the core) and times, on float32 rows that start 16
bytes past a cache line as numpy's do, best of many passes over the same X (so X stays in the
caches it fits in):

* ``read``: a plain sum of X's bytes, 64 at a time (the floor for any kernel that reads X once);
* ``kernel``: the eight-row kernel as the scoring loop calls it (``fastwlr_dot8_f32w``: aligned
  lines, shifted coefficients), with and without the software prefetch of ``prefetch_span``;
* ``aligned``: the same kernel on rows that start on a line (no shift, no masks: what the rows'
  offset costs).

Threads: an OpenMP loop over blocks of eight rows, static schedule (rows beyond a multiple of
eight are not read). Needs gcc or clang with
OpenMP and AVX-512 for the kernel paths measured in docs/performance.md (without AVX-512 the
harness times the AVX2 kernels instead).
"""
import argparse
import re
import subprocess
import tempfile
from pathlib import Path

MATH_PXD = Path(__file__).resolve().parents[2] / "fastwlr" / "backends" / "cython_core" / "_math.pxd"

HARNESS = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static volatile double sink;

/* mode 0: read, 1: kernel + prefetch, 2: kernel, no prefetch */
static double run(const float* X, Py_ssize_t n, Py_ssize_t d, const float* w32, double* out,
                  int nt, int mode, int reps) {
    Py_ssize_t groups = n / 8, total = n * d * (Py_ssize_t)sizeof(float), rb = d * (Py_ssize_t)sizeof(float);
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now(), acc = 0.0;
        if (mode == 0) {   /* the bits XORed: an integer reduction, which the compiler vectorises */
            const uint32_t* u = (const uint32_t*)X;
            Py_ssize_t m = n * d;
            uint32_t bits = 0;
            #pragma omp parallel for num_threads(nt) schedule(static) reduction(^:bits)
            for (Py_ssize_t i = 0; i < m; i++) bits ^= u[i];
            acc = bits;
        } else {
            #pragma omp parallel for num_threads(nt) schedule(static)
            for (Py_ssize_t g = 0; g < groups; g++) {
                Py_ssize_t i = g * 8;
                if (mode == 1)   /* as the scoring loop: DENSE_PREFETCH_BYTES ahead, never past X */
                    fastwlr_prefetch_span(X, i * rb + AHEAD, (i + 8) * rb + AHEAD < total ? (i + 8) * rb + AHEAD : total);
                fastwlr_dot8_f32w(X + i * d, w32, d, out + i);
            }
            acc = out[n / 2];
        }
        double t = now() - t0;
        sink = acc;
        if (t < best) best = t;
    }
    return best;
}

static void* lines(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

int main(int argc, char** argv) {
    Py_ssize_t n = atol(argv[1]), d = atol(argv[2]);
    int nt = atoi(argv[3]), reps = atoi(argv[4]);
    char* raw = lines((size_t)(n * d * 4 + 128));
    float* shifted = (float*)(raw + 16);   /* numpy's large arrays start 16 bytes past a line */
    float* aligned = (float*)raw;
    float* w32p = lines((size_t)(d + 32) * 4);
    float* w32 = w32p + 16;
    double* out = lines((size_t)n * 8 + 64);
    for (Py_ssize_t j = 0; j < d + 32; j++) w32p[j] = 0.0f;
    for (Py_ssize_t j = 0; j < d; j++) w32[j] = (float)(0.01 * (double)(j % 7 - 3));
    for (Py_ssize_t i = 0; i < n * d; i++) shifted[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    double t_read = run(shifted, n, d, w32, out, nt, 0, reps);
    double t_pf = run(shifted, n, d, w32, out, nt, 1, reps);
    double t_nopf = run(shifted, n, d, w32, out, nt, 2, reps);
    for (Py_ssize_t i = 0; i < n * d; i++) aligned[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    double t_al = run(aligned, n, d, w32, out, nt, 2, reps);
    printf("%ld %ld %d %.3f %.3f %.3f %.3f\n", (long)n, (long)d, nt, t_read * 1e6, t_pf * 1e6, t_nopf * 1e6,
           t_al * 1e6);
    return 0;
}
"""


def kernel_source():
    """The C of _math.pxd's verbatim blocks, in order, with the one Python type they use and the
    scoring loop's prefetch distance (its DENSE_PREFETCH_BYTES) as AHEAD."""
    text = MATH_PXD.read_text()
    blocks = re.findall(r'cdef extern from \*:\n    """\n(.*?)\n    """', text, flags=re.S)
    body = "\n".join("\n".join(line[4:] for line in block.splitlines()) for block in blocks)
    ahead = int(re.search(r"DENSE_PREFETCH_BYTES = (\d+)", text).group(1))
    return f"#include <stddef.h>\ntypedef ptrdiff_t Py_ssize_t;\n#define AHEAD {ahead}\n" + body


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", nargs="+", default=["2000x256", "10000x64"], help="rows x float32 features")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cc", default="cc")
    parser.add_argument("--smoke", action="store_true", help="a tiny shape, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.shape, args.threads = ["808x64"], [1]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "ceiling.c", Path(tmp) / "ceiling"
        src.write_text(kernel_source() + HARNESS)
        subprocess.run([args.cc, "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe), "-lm"], check=True)
        print("float32 rows 16 bytes past a line unless 'aligned'; best of many passes, microseconds (GB/s)\n")
        print("| rows x d | threads | read X | kernel + prefetch | kernel, no prefetch | kernel, aligned rows |")
        print("|---|---:|---:|---:|---:|---:|")
        for shape in args.shape:
            n, d = (int(v) for v in shape.lower().split("x"))
            reps = max(20, int(3e8 / (n * d)))
            for nt in args.threads:
                out = subprocess.run([str(exe), str(n), str(d), str(nt), str(reps)], check=True, capture_output=True,
                                     text=True).stdout.split()
                times = [float(v) for v in out[3:]]
                gb = n * d * 4 / 1e3
                print(f"| {n:,} x {d} | {nt} | " + " | ".join(f"{t:.1f} ({gb / t:.0f})" for t in times) + " |",
                      flush=True)


if __name__ == "__main__":
    main()
