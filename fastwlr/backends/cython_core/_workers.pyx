# cython: language_level=3
"""Where OpenMP's worker threads wake up (Linux): kept off the calling thread's core.

Not part of the kernel contract: the adapter (``fastwlr._kernels``) calls ``steer`` before a
parallel kernel call and ``record`` after one; without this module (no compiled core, not Linux,
no OpenMP) both are skipped and only speed changes.

Why: libgomp's workers spin for a while after a parallel region (300,000 pauses: 7.8 ms on this
project's AMD EPYC VM), then sleep. Woken by the next region, a sleeping worker was placed by the
scheduler on the caller's own core (the other vCPU, idle, is halted), where it could not run while
the caller spun at the region's closing barrier for the same 300,000 pauses: a region of 2 threads
on cold workers took 7.8 ms however small its work. Setting the workers' affinity to "every core
of the caller's mask but the one it runs on" just before the region makes the wake land on another
core: 100-400 us instead (C reproduction: 7.8 ms -> 0.1 ms for an empty region).

The workers are found by their thread ids, recorded by a region of the same size run right after a
kernel's region (their pool is per calling thread, so the ids are thread-local too). Before use an
id is checked to still be a thread of this process (tgkill with signal 0); if one is gone (libgomp
ends surplus workers when a team shrinks), the ids are recorded again after the next region.
"""

cdef extern from *:
    """
    #if defined(__linux__) && defined(_OPENMP)
    #include <sched.h>
    #include <unistd.h>
    #include <sys/syscall.h>
    #include <omp.h>
    #define FASTWLR_STEER 1
    #define FASTWLR_MAX_WORKERS 256
    /* per calling thread: its pool's worker ids (index = OpenMP thread number; 0 is the caller),
       how many are known, and the caller's core they were last kept off */
    static __thread pid_t fastwlr_tids[FASTWLR_MAX_WORKERS];
    static __thread int fastwlr_n_tids = 0;
    static __thread int fastwlr_steered_cpu = -1;

    static int fastwlr_record(int n) {
        if (n > FASTWLR_MAX_WORKERS) n = FASTWLR_MAX_WORKERS;
        if (n <= fastwlr_n_tids || n < 2) return 0;
        int team = 0;
        pid_t* ids = fastwlr_tids;   /* the caller's thread-local array, written by every thread */
        #pragma omp parallel num_threads(n)
        {
            ids[omp_get_thread_num()] = (pid_t)syscall(SYS_gettid);
            if (omp_get_thread_num() == 0) team = omp_get_num_threads();
        }
        fastwlr_n_tids = team;     /* the team OpenMP gave, maybe smaller than asked */
        fastwlr_steered_cpu = -1;
        return 1;
    }

    static int fastwlr_steer(int n) {
        int cpu, t;
        cpu_set_t mask;
        pid_t pid;
        if (n > fastwlr_n_tids) n = fastwlr_n_tids;
        if (n < 2) return 0;
        cpu = sched_getcpu();
        if (cpu < 0 || cpu == fastwlr_steered_cpu) return 0;
        if (sched_getaffinity(0, sizeof mask, &mask) != 0 || !CPU_ISSET(cpu, &mask)) return 0;
        CPU_CLR(cpu, &mask);
        if (CPU_COUNT(&mask) == 0) return 0;     /* the caller is pinned to one core: nothing to do */
        pid = getpid();
        for (t = 1; t < n; t++) {
            if (syscall(SYS_tgkill, pid, fastwlr_tids[t], 0) != 0) {   /* gone: record again */
                fastwlr_n_tids = 0;
                return 0;
            }
            sched_setaffinity(fastwlr_tids[t], sizeof mask, &mask);
        }
        fastwlr_steered_cpu = cpu;
        return 1;
    }
    #else
    #define FASTWLR_STEER 0
    static int fastwlr_record(int n) { (void)n; return 0; }
    static int fastwlr_steer(int n) { (void)n; return 0; }
    #endif
    """
    int FASTWLR_STEER
    int fastwlr_record(int n) nogil
    int fastwlr_steer(int n) nogil

AVAILABLE = bool(FASTWLR_STEER)


def steer(int n_threads):
    """Before a region of n_threads: keep this thread's recorded workers off its current core
    (a system call only when that core changed since the last time). True if it moved them."""
    return fastwlr_steer(n_threads) != 0


def record(int n_threads):
    """After a region of n_threads (its workers awake, so cheap): learn their thread ids if not
    known yet. True if it ran a region to do so."""
    cdef int r
    with nogil:
        r = fastwlr_record(n_threads)
    return r != 0
