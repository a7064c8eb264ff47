/* Workload for the e2e harness: the main thread plus N worker threads that either burn
 * CPU walking a buffer (to occupy last-level cache) or idle.
 *
 *   workload [--threads N] [--mode burn|idle] [--kib K] [--seconds S]
 *            [--late L] [--late-ms MS]
 *
 * Defaults come from the environment: WORKLOAD_THREADS (2), WORKLOAD_MODE (idle),
 * WORKLOAD_KIB (1024: buffer per burning thread), WORKLOAD_SECONDS (0: run until
 * SIGTERM/SIGINT), WORKLOAD_LATE (0), WORKLOAD_LATE_MS (1000). Prints one line
 * "workload: pid P threads N mode M" once every thread runs; then, with --late L,
 * starts L more threads of the same mode, one every MS milliseconds (threads created
 * after the container started), and prints "workload: late threads L". Exits 0 on
 * SIGTERM/SIGINT (it runs as PID 1 in its container, where signals without a handler
 * are ignored). Exit 2 on a bad argument. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int burn = 0;
static long kib = 1024;

static void on_term(int sig) { (void)sig; _exit(0); }

static void *worker(void *arg) {
    (void)arg;
    if (!burn) {
        for (;;) pause();
    }
    size_t n = (size_t)kib * 1024 / sizeof(long);
    volatile long *buf = calloc(n ? n : 1, sizeof(long));
    if (buf == NULL) {
        for (;;) pause();
    }
    for (unsigned long round = 0;; round++) {
        for (size_t i = 0; i < n; i += 8) buf[i] += (long)round; /* one touch per line */
    }
    return NULL;
}

static long number(const char *what, const char *text) {
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || v < 0 || v > 1000000) {
        fprintf(stderr, "workload: bad %s '%s'\n", what, text);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *env;
    long threads = (env = getenv("WORKLOAD_THREADS")) ? number("WORKLOAD_THREADS", env) : 2;
    const char *mode = (env = getenv("WORKLOAD_MODE")) ? env : "idle";
    long seconds = (env = getenv("WORKLOAD_SECONDS")) ? number("WORKLOAD_SECONDS", env) : 0;
    if ((env = getenv("WORKLOAD_KIB")) != NULL) kib = number("WORKLOAD_KIB", env);
    long late = (env = getenv("WORKLOAD_LATE")) ? number("WORKLOAD_LATE", env) : 0;
    long late_ms = (env = getenv("WORKLOAD_LATE_MS")) ? number("WORKLOAD_LATE_MS", env) : 1000;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "workload: %s needs a value\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--threads") == 0) threads = number("--threads", argv[++i]);
        else if (strcmp(argv[i], "--mode") == 0) mode = argv[++i];
        else if (strcmp(argv[i], "--kib") == 0) kib = number("--kib", argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0) seconds = number("--seconds", argv[++i]);
        else if (strcmp(argv[i], "--late") == 0) late = number("--late", argv[++i]);
        else if (strcmp(argv[i], "--late-ms") == 0) late_ms = number("--late-ms", argv[++i]);
        else {
            fprintf(stderr, "workload: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(mode, "burn") == 0) burn = 1;
    else if (strcmp(mode, "idle") != 0) {
        fprintf(stderr, "workload: mode must be burn or idle, not '%s'\n", mode);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    for (long t = 0; t < threads; t++) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, worker, NULL) != 0) {
            perror("workload: pthread_create");
            return 1;
        }
    }
    printf("workload: pid %d threads %ld mode %s\n", (int)getpid(), threads, mode);
    fflush(stdout);
    for (long t = 0; t < late; t++) {
        pthread_t tid;
        usleep((useconds_t)(late_ms * 1000));
        if (pthread_create(&tid, NULL, worker, NULL) != 0) {
            perror("workload: pthread_create");
            return 1;
        }
    }
    if (late > 0) {
        printf("workload: late threads %ld\n", late);
        fflush(stdout);
    }
    if (seconds > 0) {
        sleep((unsigned)seconds);
        return 0;
    }
    for (;;) pause();
}
