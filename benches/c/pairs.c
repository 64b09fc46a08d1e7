/* pairs: malloc + free of one block at a time, sizes 16..1024 bytes (a fixed
 * pseudo-random sequence); the allocator's fast path and nothing else. With
 * more than one thread the pairs are split evenly over the threads, each
 * running the same loop on its own blocks (no sharing).
 * usage: pairs [millions of pairs in all=100] [threads=1] */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

struct job {
    long pairs;
    unsigned long sum;
};

static size_t sizes[1024];

static void *run(void *arg) {
    struct job *job = arg;
    unsigned long sum = 0;
    for (long i = 0; i < job->pairs; i++) {
        unsigned char *p = malloc(sizes[i & 1023]);
        p[0] = (unsigned char)i;
        ESCAPE(p);
        sum += p[0];
        free(p);
    }
    job->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long pairs = arg_long(argc, argv, 1, 100) * 1000000L;
    long threads = arg_long(argc, argv, 2, 1);
    uint64_t rng = 42;
    for (int i = 0; i < 1024; i++)
        sizes[i] = 16 + rng_next(&rng) % 1009;
    struct job *jobs = checked(calloc((size_t)threads, sizeof *jobs));
    for (long t = 0; t < threads; t++)
        jobs[t].pairs = pairs / threads;
    pairs = jobs[0].pairs * threads;
    double seconds;
    if (threads == 1) {
        double start = now_seconds();
        run(&jobs[0]); /* no thread at all: the single-threaded case as it always was */
        seconds = now_seconds() - start;
    } else {
        seconds = run_threads(threads, run, jobs, sizeof *jobs);
    }
    unsigned long sum = 0;
    for (long t = 0; t < threads; t++)
        sum += jobs[t].sum;
    printf("pairs: %ld threads, %ld malloc+free pairs in %.3f s: %.1f ns/pair, %.1f M pairs/s "
           "(check %lu)\n",
           threads, pairs, seconds, seconds * 1e9 / (double)pairs, (double)pairs / seconds / 1e6,
           sum);
    free(jobs);
    return 0;
}
