/* scratch: false sharing an allocator brings about. The main thread allocates
 * one small block per worker, back to back, and hands them out; each worker
 * frees the block it was given, then, again and again, allocates a block of
 * the same size, writes it many times and frees it. An allocator that gives a
 * worker back the block it just freed (per-thread and per-CPU caches do) puts
 * the workers' blocks in the lines the main thread's blocks shared, and every
 * write then takes the line from another core; one that returns a block to
 * the thread that allocated it does not.
 * usage: scratch [threads=2] [rounds in all=2000] [writes per round=10000]
 *                [block bytes=8] */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

struct job {
    unsigned char *given;
    long rounds;
    long writes;
    size_t size;
    unsigned long sum;
};

static void *run(void *arg) {
    struct job *job = arg;
    free(job->given);
    unsigned long sum = 0;
    for (long r = 0; r < job->rounds; r++) {
        volatile unsigned char *p = checked(malloc(job->size));
        for (long w = 0; w < job->writes; w++) {
            p[0] = (unsigned char)w;
            p[job->size - 1] = (unsigned char)(p[job->size - 1] + 1);
        }
        sum += p[job->size - 1];
        free((void *)p);
    }
    job->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long threads = arg_long(argc, argv, 1, 2);
    long rounds = arg_long(argc, argv, 2, 2000);
    long writes = arg_long(argc, argv, 3, 10000);
    long size = arg_long(argc, argv, 4, 8);
    struct job *jobs = checked(calloc((size_t)threads, sizeof *jobs));
    for (long t = 0; t < threads; t++)
        jobs[t] = (struct job){checked(malloc((size_t)size)), rounds / threads, writes,
                               (size_t)size, 0};
    double seconds = run_threads(threads, run, jobs, sizeof *jobs);
    unsigned long sum = 0;
    for (long t = 0; t < threads; t++)
        sum += jobs[t].sum;
    printf("scratch: %ld threads, %ld rounds of %ld writes to %ld-byte blocks in %.3f s: "
           "%.1f ns/write (check %lu)\n",
           threads, rounds / threads * threads, writes, size, seconds,
           seconds * 1e9 / (double)(rounds / threads * threads * writes), sum);
    free(jobs);
    return 0;
}
