/* larson: a server simulation in the manner of Larson and Krishnan's
 * benchmark. T lineages run at once; each owns an array of S slots, every slot
 * holding a block of 8..1000 bytes. One step frees the block of a random slot
 * and puts a new block of a random size there, writing its first 8 bytes and
 * its last one. A thread runs one round (a fixed number of steps) and then
 * hands its array to a successor: it creates a new thread to carry on with the
 * same array and exits. The successor frees the blocks its predecessors
 * allocated as it replaces them, so most frees are of blocks another thread
 * allocated (the first round's are the main thread's, which fills the arrays).
 * The rounds in all are split evenly over the lineages.
 * usage: larson [threads=4] [rounds in all=6000] [slots per thread=1000]
 *               [replacements per round=2000] */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

struct lineage {
    unsigned char **slots;
    long nslots;
    long rounds_left; /* the round running now included */
    long steps;       /* replacements per round */
    uint64_t rng;
    unsigned long sum;
};

static pthread_mutex_t finished_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t finished_changed = PTHREAD_COND_INITIALIZER;
static long finished;
static pthread_attr_t detached;

static size_t pick_size(uint64_t r) {
    return 8 + (r >> 8) % 993;
}

static unsigned char *new_block(uint64_t r) {
    size_t size = pick_size(r);
    unsigned char *p = malloc(size);
    *(uint64_t *)p = r; /* malloc's alignment covers an 8-byte store */
    p[size - 1] = (unsigned char)size;
    return p;
}

/* One round of one lineage, in its own thread; then the successor, or the
 * lineage's end. */
static void *round_of(void *arg) {
    struct lineage *l = arg;
    uint64_t rng = l->rng;
    unsigned long sum = l->sum;
    unsigned char **slots = l->slots;
    uint64_t n = (uint64_t)l->nslots;
    for (long s = 0; s < l->steps; s++) {
        uint64_t r = rng_next(&rng);
        uint64_t i = (r >> 40) % n;
        sum += *(uint64_t *)slots[i] >> 56;
        free(slots[i]);
        slots[i] = new_block(r);
    }
    l->rng = rng;
    l->sum = sum;
    if (--l->rounds_left > 0) {
        pthread_t next;
        start_thread_with(&next, &detached, round_of, l);
    } else {
        pthread_mutex_lock(&finished_lock);
        finished++;
        pthread_cond_signal(&finished_changed);
        pthread_mutex_unlock(&finished_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    long threads = arg_long(argc, argv, 1, 4);
    long rounds = arg_long(argc, argv, 2, 6000);
    long nslots = arg_long(argc, argv, 3, 1000);
    long steps = arg_long(argc, argv, 4, 2000);
    long per_lineage = rounds / threads > 0 ? rounds / threads : 1;
    rounds = per_lineage * threads;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    struct lineage *lineages = checked(calloc((size_t)threads, sizeof *lineages));
    for (long t = 0; t < threads; t++) {
        struct lineage *l = &lineages[t];
        l->slots = checked(malloc((size_t)nslots * sizeof *l->slots));
        l->nslots = nslots;
        l->rounds_left = per_lineage;
        l->steps = steps;
        l->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 11);
        for (long i = 0; i < nslots; i++)
            l->slots[i] = new_block(rng_next(&l->rng));
    }
    double start = now_seconds();
    for (long t = 0; t < threads; t++) {
        pthread_t first;
        start_thread_with(&first, &detached, round_of, &lineages[t]);
    }
    pthread_mutex_lock(&finished_lock);
    while (finished < threads)
        pthread_cond_wait(&finished_changed, &finished_lock);
    pthread_mutex_unlock(&finished_lock);
    double seconds = now_seconds() - start;
    unsigned long sum = 0;
    for (long t = 0; t < threads; t++) {
        struct lineage *l = &lineages[t];
        sum += l->sum;
        for (long i = 0; i < nslots; i++)
            free(l->slots[i]);
        free(l->slots);
    }
    double ops = (double)rounds * (double)steps;
    printf("larson: %ld threads x %ld slots, %ld rounds of %ld replacements in %.3f s: "
           "%.2f M replacements/s (check %lu)\n",
           threads, nslots, rounds, steps, seconds, ops / seconds / 1e6, sum);
    free(lineages);
    return 0;
}
