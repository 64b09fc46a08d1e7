/* mixed: small and large blocks together, with a content check. T threads each
 * keep a working set of live blocks; one operation frees a random one and
 * allocates a new one in its place. Sizes are mostly small, 16 B..4 KiB (as
 * many in each power-of-two band), and one in 100 is large, 64 KiB..1 MiB.
 * Every new block gets a pattern from its own tag in its first 32 bytes (all
 * of it when smaller) and in its last byte, which touches both ends; the
 * pattern is checked before the block is freed, so a block that was handed out
 * twice, or overwritten by the allocator, stops the program with exit status 3.
 * usage: mixed [threads=4] [thousands of operations in all=4000]
 *              [live blocks per thread=1000] */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"

#define PATTERN 32

struct slot {
    unsigned char *p;
    size_t size;
    unsigned char tag;
};

struct job {
    long ops;
    long live;
    uint64_t seed;
    unsigned long sum;
    long large;
};

static size_t pick_size(uint64_t r) {
    if ((r >> 8) % 100 == 0)
        return (64 << 10) + (r >> 16) % ((1 << 20) - (64 << 10) + 1);
    size_t low = (size_t)16 << ((r >> 16) % 8); /* 16, 32, ..., 2048 */
    return low + (r >> 24) % (low + 1);          /* low..2 low */
}

static void fill(struct slot *s, uint64_t r) {
    s->size = pick_size(r);
    s->tag = (unsigned char)(r >> 56);
    s->p = malloc(s->size);
    if (s->p == NULL) {
        fprintf(stderr, "mixed: malloc(%zu) failed\n", s->size);
        _exit(1);
    }
    size_t n = s->size < PATTERN ? s->size : PATTERN;
    for (size_t i = 0; i < n; i++)
        s->p[i] = (unsigned char)(s->tag + i);
    s->p[s->size - 1] = (unsigned char)(s->tag ^ 0xa5);
}

/* Checks the pattern, frees the block; the check value of what it read. */
static unsigned long release(struct slot *s) {
    size_t n = s->size < PATTERN ? s->size : PATTERN;
    int bad = s->p[s->size - 1] != (unsigned char)(s->tag ^ 0xa5);
    for (size_t i = 0; i < n && i < s->size - 1; i++)
        bad |= s->p[i] != (unsigned char)(s->tag + i);
    if (bad) {
        fprintf(stderr, "mixed: block %p of %zu bytes (tag %u) was overwritten\n", (void *)s->p,
                s->size, s->tag);
        _exit(3);
    }
    unsigned long sum = s->p[0] + s->p[s->size - 1];
    free(s->p);
    return sum;
}

static void *run(void *arg) {
    struct job *job = arg;
    uint64_t rng = job->seed;
    long w = job->live;
    struct slot *set = checked(malloc((size_t)w * sizeof *set));
    for (long i = 0; i < w; i++)
        fill(&set[i], rng_next(&rng));
    unsigned long sum = 0;
    long large = 0;
    for (long op = 0; op < job->ops; op++) {
        uint64_t r = rng_next(&rng);
        struct slot *s = &set[(r >> 40) % (uint64_t)w];
        sum += release(s);
        fill(s, rng_next(&rng));
        large += s->size > 4096;
    }
    for (long i = 0; i < w; i++)
        sum += release(&set[i]);
    free(set);
    job->sum = sum;
    job->large = large;
    return NULL;
}

int main(int argc, char **argv) {
    long threads = arg_long(argc, argv, 1, 4);
    long ops = arg_long(argc, argv, 2, 4000) * 1000L;
    long live = arg_long(argc, argv, 3, 1000);
    struct job *jobs = checked(calloc((size_t)threads, sizeof *jobs));
    for (long t = 0; t < threads; t++)
        jobs[t] = (struct job){ops / threads, live, 0xd1b54a32d192ed03ull * (uint64_t)(t + 7), 0, 0};
    ops = ops / threads * threads;
    double seconds = run_threads(threads, run, jobs, sizeof *jobs);
    unsigned long sum = 0;
    long large = 0;
    for (long t = 0; t < threads; t++) {
        sum += jobs[t].sum;
        large += jobs[t].large;
    }
    printf("mixed: %ld threads x %ld live blocks, %ld operations (%ld large) in %.3f s: "
           "%.2f M operations/s, every block checked (check %lu)\n",
           threads, live, ops, large, seconds, (double)ops / seconds / 1e6, sum);
    free(jobs);
    return 0;
}
