/* threads: T threads, each with a working set of W live blocks of varied sizes
 * (mostly 16..128 bytes, some up to 1 KiB and 8 KiB); every step frees a
 * random block of its own set and allocates a new one in its place, touching
 * both ends. A fourth argument keeps one band of sizes only: 1 for 16..128
 * bytes, 2 for 128..1024, 3 for 1..8 KiB (0, the default, mixes them).
 * Also prints how many 4 KiB pages hold the first bytes of a thread's live
 * blocks at the end (the mean over the threads; the pages are noted in the
 * timed part, 4 000 stores, and counted after it).
 * usage: threads [millions of steps in all=40] [threads=8]
 * [working set per thread=4000] [band=0] */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

struct job {
    long steps;
    long working_set;
    uint64_t seed;
    unsigned long sum;
    uintptr_t *pages; /* the page of each live block at the end */
};

static long band; /* 0: the mix; 1, 2, 3: one band of it */

static size_t pick_size(uint64_t r) {
    unsigned p = (unsigned)(r % 100);
    if (band == 1 || (band == 0 && p < 70))
        return 16 + (r >> 8) % 113;
    if (band == 2 || (band == 0 && p < 95))
        return 128 + (r >> 8) % 897;
    return 1024 + (r >> 8) % 7169;
}

static int by_value(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

/* How many different values `values[0..n)` holds (it sorts them). */
static long distinct(uintptr_t *values, long n) {
    qsort(values, (size_t)n, sizeof *values, by_value);
    long count = 0;
    for (long i = 0; i < n; i++)
        if (i == 0 || values[i] != values[i - 1])
            count++;
    return count;
}

static void *run(void *arg) {
    struct job *job = arg;
    uint64_t rng = job->seed;
    long w = job->working_set;
    unsigned char **set = checked(malloc((size_t)w * sizeof *set));
    size_t *sizes = checked(malloc((size_t)w * sizeof *sizes));
    for (long i = 0; i < w; i++) {
        sizes[i] = pick_size(rng_next(&rng));
        set[i] = checked(malloc(sizes[i]));
        set[i][0] = 1;
        set[i][sizes[i] - 1] = 1;
    }
    unsigned long sum = 0;
    for (long s = 0; s < job->steps; s++) {
        uint64_t r = rng_next(&rng);
        long i = (long)((r >> 32) % (uint64_t)w);
        sum += set[i][0] + set[i][sizes[i] - 1];
        free(set[i]);
        sizes[i] = pick_size(r);
        set[i] = malloc(sizes[i]);
        set[i][0] = (unsigned char)s;
        set[i][sizes[i] - 1] = 1;
    }
    for (long i = 0; i < w; i++)
        job->pages[i] = (uintptr_t)set[i] >> 12;
    for (long i = 0; i < w; i++)
        free(set[i]);
    free(set);
    free(sizes);
    job->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long steps = arg_long(argc, argv, 1, 40) * 1000000L;
    long threads = arg_long(argc, argv, 2, 8);
    long w = arg_long(argc, argv, 3, 4000);
    band = arg_long(argc, argv, 4, 0);
    struct job *jobs = checked(calloc((size_t)threads, sizeof *jobs));
    for (long t = 0; t < threads; t++)
        jobs[t] = (struct job){steps / threads, w, 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1), 0,
                               checked(malloc((size_t)w * sizeof(uintptr_t)))};
    double seconds = run_threads(threads, run, jobs, sizeof *jobs);
    unsigned long sum = 0;
    long pages = 0;
    for (long t = 0; t < threads; t++) {
        sum += jobs[t].sum;
        pages += distinct(jobs[t].pages, w);
        free(jobs[t].pages);
    }
    printf("threads: %ld threads x %ld live blocks, %ld replacements in %.3f s: %.1f ns/step "
           "(check %lu; %.0f pages a thread)\n",
           threads, w, steps, seconds, seconds * 1e9 / (double)steps, sum, (double)pages / (double)threads);
    free(jobs);
    return 0;
}
