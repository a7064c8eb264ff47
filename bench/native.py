"""Small C programs the benchmarks need, compiled with ``cc`` into a work directory.

* ``floor``: the sampler's floor. It reads a list of counter files and times sweeps
  of ``pread`` + ``strtoull`` over them, keeping at most ``budget`` descriptors open
  (the rest are opened, read and closed on every sweep, exactly the policy of
  :class:`~resctrl_pipeline.resctrl.mondata.PreadReader`); budget 0 is the pure
  open/read/close floor.
* ``ticker``: the steady-state floor. Every ``interval`` ms (absolute deadlines, as
  the sampler's timer) it reads every file of a list with ``pread`` + ``strtoull``
  through descriptors opened once, until killed: the CPU a C agent would spend on
  the same reads at the same rate, wake-ups included.
* ``idle``: a container's process that costs nothing: starts ``threads - 1`` extra
  threads, then every thread sleeps in ``pause()``. Thousands of them fit where
  thousands of Python interpreters would not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["Natives", "build", "missing"]

FLOOR_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* argv: list-file sweeps budget. Keeps the first `budget` files open (pread at 0);
   the others are opened, read and closed every sweep. Prints ns per sweep. */
int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: floor LIST SWEEPS BUDGET\n"); return 2; }
    FILE *list = fopen(argv[1], "r");
    if (!list) { perror(argv[1]); return 1; }
    int sweeps = atoi(argv[2]), budget = atoi(argv[3]), n = 0, cap = 1024;
    char **paths = malloc(sizeof(char *) * cap);
    int *fds = malloc(sizeof(int) * cap);
    char path[4096];
    while (fgets(path, sizeof path, list)) {
        path[strcspn(path, "\n")] = 0;
        if (n == cap) {
            cap *= 2;
            paths = realloc(paths, sizeof(char *) * cap);
            fds = realloc(fds, sizeof(int) * cap);
        }
        paths[n] = strdup(path);
        fds[n] = -1;
        if (n < budget && (fds[n] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            perror(path); return 1;
        }
        n++;
    }
    char buf[64];
    volatile unsigned long long sink = 0;
    for (int s = 0; s < sweeps; s++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < n; i++) {
            int fd = fds[i] >= 0 ? fds[i] : open(paths[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0) { perror(paths[i]); return 1; }
            ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
            if (fds[i] < 0) close(fd);
            buf[r > 0 ? r : 0] = 0;
            sink += strtoull(buf, NULL, 10);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    }
    return 0;
}
"""

TICKER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* argv: list-file interval-ms. Opens every listed file once, then on every deadline
   (CLOCK_MONOTONIC, absolute, no drift) preads and parses each of them; runs until
   killed. Prints "ready" once the files are open. */
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: ticker LIST INTERVAL_MS\n"); return 2; }
    FILE *list = fopen(argv[1], "r");
    if (!list) { perror(argv[1]); return 1; }
    long interval_ns = atol(argv[2]) * 1000000L;
    int n = 0, cap = 1024;
    int *fds = malloc(sizeof(int) * cap);
    char path[4096];
    while (fgets(path, sizeof path, list)) {
        path[strcspn(path, "\n")] = 0;
        if (n == cap) { cap *= 2; fds = realloc(fds, sizeof(int) * cap); }
        if ((fds[n] = open(path, O_RDONLY | O_CLOEXEC)) < 0) { perror(path); return 1; }
        n++;
    }
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    volatile unsigned long long sink = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        next.tv_nsec += interval_ns;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        for (int i = 0; i < n; i++) {
            ssize_t r = pread(fds[i], buf, sizeof buf - 1, 0);
            buf[r > 0 ? r : 0] = 0;
            sink += strtoull(buf, NULL, 10);
        }
    }
}
"""

IDLE_C = r"""
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
/* argv: [threads]. Starts threads-1 extra threads; every thread pauses forever. */
static void *park(void *arg) { (void)arg; for (;;) pause(); return NULL; }
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, park, NULL) != 0) return 1;
    }
    for (;;) pause();
}
"""


@dataclass(frozen=True, slots=True)
class Natives:
    """Paths of the compiled programs."""

    floor: str
    ticker: str
    idle: str


def missing() -> str | None:
    """Why the programs cannot be built here, or None."""
    return None if shutil.which("cc") else "no C compiler (cc) on PATH"


def build(workdir: str) -> Natives:
    """Compile the programs into ``workdir`` (``cc -O2``).

    Raises:
        subprocess.CalledProcessError: the compiler failed.
    """
    out = {}
    for name, source, extra in (
        ("floor", FLOOR_C, []),
        ("ticker", TICKER_C, []),
        ("idle", IDLE_C, ["-pthread"]),
    ):
        src = os.path.join(workdir, f"{name}.c")
        exe = os.path.join(workdir, name)
        with open(src, "w", encoding="ascii") as f:
            f.write(source)
        subprocess.run(["cc", "-O2", "-o", exe, src, *extra], check=True)
        out[name] = exe
    return Natives(**out)
