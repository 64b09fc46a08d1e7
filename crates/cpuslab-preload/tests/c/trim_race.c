/* malloc_trim(0) in a loop while worker threads allocate and free: the remote
 * drain of every CPU's cache must never hand one block to two owners.
 *
 * 4 x online CPUs threads each keep up to 64 blocks of 16 B to 2 KiB, every
 * byte tagged with the owner's word (thread, serial), checked before free; the
 * main thread calls malloc_trim(0) until the time is up. A block handed out
 * twice shows as a broken tag (exit 1) or as the allocator's double-free report
 * (abort).
 *
 * usage: trim_race [seconds=2] [threads=4*CPUs]   exits 1 on the first error */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"

#define LIVE 64
#define MIN_SIZE 16
#define MAX_SIZE 2048

struct block {
    uint64_t *ptr;
    size_t words;
    uint64_t tag;
};

static atomic_int stop;
static atomic_ulong total_ops;

/* A tag that differs per (thread, serial) and is never zero. */
static uint64_t tag_of(uint64_t thread, uint64_t serial) {
    uint64_t x = (thread << 40 | serial) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    return x | 1;
}

static void check_and_free(const struct block *b) {
    for (size_t i = 0; i < b->words; i++) {
        if (b->ptr[i] != b->tag) {
            fprintf(stderr, "trim_race: broken tag in %p (%zu bytes) at word %zu: "
                            "another owner wrote it\n",
                    (void *)b->ptr, b->words * 8, i);
            exit(1);
        }
    }
    free(b->ptr);
}

static void *worker(void *arg) {
    uint64_t thread = (uint64_t)(uintptr_t)arg;
    uint64_t rng = thread * 0x2545f4914f6cdd1dull + 1, serial = 0;
    struct block live[LIVE];
    size_t n = 0;
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 256; i++, ops++) {
            if (n < LIVE && (n == 0 || next(&rng) % 2)) {
                size_t size = MIN_SIZE + next(&rng) % (MAX_SIZE - MIN_SIZE + 1);
                struct block b = {malloc(size), size / 8, tag_of(thread, ++serial)};
                if (!b.ptr) {
                    fprintf(stderr, "trim_race: malloc(%zu) failed\n", size);
                    exit(1);
                }
                for (size_t w = 0; w < b.words; w++)
                    b.ptr[w] = b.tag;
                live[n++] = b;
            } else {
                size_t k = next(&rng) % n;
                check_and_free(&live[k]);
                live[k] = live[--n];
            }
        }
    }
    while (n > 0)
        check_and_free(&live[--n]);
    atomic_fetch_add(&total_ops, ops);
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = argc > 2 ? atoi(argv[2]) : (int)(4 * (cpus > 0 ? cpus : 1));
    pthread_t tids[1024];
    if (threads < 1 || threads > 1024)
        return 2;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tids[t], NULL, worker, (void *)(uintptr_t)(t + 1)) != 0)
            return 2;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long trims = 0;
    do {
        malloc_trim(0);
        trims++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    atomic_store(&stop, 1);
    for (int t = 0; t < threads; t++)
        pthread_join(tids[t], NULL);
    printf("trim_race: %d threads, %lu operations, %lu trims, no broken tag\n", threads,
           atomic_load(&total_ops), trims);
    return 0;
}
