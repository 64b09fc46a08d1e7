/* Shared by the whole-program benchmarks: a fast PRNG, a clock, arguments, a
 * way to keep the compiler from removing allocations whose result looks
 * unused, and thread creation that stops the program when it fails. */
#ifndef CPUSLAB_BENCH_H
#define CPUSLAB_BENCH_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The pointer escapes: malloc/free pairs cannot be elided. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

static inline uint64_t rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A positive integer argument, or `fallback`. */
static inline long arg_long(int argc, char **argv, int index, long fallback) {
    if (argc > index) {
        long value = strtol(argv[index], NULL, 10);
        if (value > 0)
            return value;
    }
    return fallback;
}

static inline void *checked(void *p) {
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* pthread_create, or a message and exit status 1. `attr` may be NULL. */
static inline void start_thread_with(pthread_t *id, const pthread_attr_t *attr,
                                     void *(*body)(void *), void *arg) {
    int error = pthread_create(id, attr, body, arg);
    if (error != 0) {
        fprintf(stderr, "pthread_create: %s\n", strerror(error));
        exit(1);
    }
}

static inline void start_thread(pthread_t *id, void *(*body)(void *), void *arg) {
    start_thread_with(id, NULL, body, arg);
}

/* Runs `body` on `threads` threads, thread t on the t-th of the `jobs` (each
 * `job_size` bytes), waits for all of them and returns the seconds it took. */
static inline double run_threads(long threads, void *(*body)(void *), void *jobs,
                                 size_t job_size) {
    pthread_t *ids = checked(calloc((size_t)threads, sizeof *ids));
    double start = now_seconds();
    for (long t = 0; t < threads; t++)
        start_thread(&ids[t], body, (char *)jobs + (size_t)t * job_size);
    for (long t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    double seconds = now_seconds() - start;
    free(ids);
    return seconds;
}

#endif
