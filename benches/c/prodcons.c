/* prodcons: P producer threads allocate blocks (16..512 bytes) and write to
 * them; they hand them over in batches of 256 through a bounded queue to their
 * consumer thread, which reads and frees them: every free is a remote free.
 * The threads block on a condition variable when the queue is full or empty
 * (no spinning), so the result does not depend on whether the scheduler puts
 * a producer and its consumer on the same CPU.
 * usage: prodcons [millions of blocks in all=60] [producer/consumer pairs=2] */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

#define BATCH 256
#define DEPTH 16 /* batches in flight per pair */

struct batch {
    unsigned char *items[BATCH];
    int count;
};

struct pair {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct batch batches[DEPTH];
    int full[DEPTH], nfull, first_full; /* ring of full batch indexes */
    int empty[DEPTH], nempty;           /* stack of empty batch indexes */
    long items;
    unsigned long sum;
};

static void *produce(void *arg) {
    struct pair *q = arg;
    uint64_t rng = (uint64_t)(uintptr_t)q | 1;
    for (long done = 0; done < q->items;) {
        pthread_mutex_lock(&q->lock);
        while (q->nempty == 0)
            pthread_cond_wait(&q->changed, &q->lock);
        int b = q->empty[--q->nempty];
        pthread_mutex_unlock(&q->lock);
        struct batch *batch = &q->batches[b];
        batch->count = 0;
        for (; batch->count < BATCH && done < q->items; done++) {
            size_t size = 16 + rng_next(&rng) % 497;
            unsigned char *p = malloc(size);
            p[0] = (unsigned char)done;
            p[size - 1] = 1;
            batch->items[batch->count++] = p;
        }
        pthread_mutex_lock(&q->lock);
        q->full[(q->first_full + q->nfull++) % DEPTH] = b;
        pthread_cond_broadcast(&q->changed);
        pthread_mutex_unlock(&q->lock);
    }
    return NULL;
}

static void *consume(void *arg) {
    struct pair *q = arg;
    unsigned long sum = 0;
    for (long done = 0; done < q->items;) {
        pthread_mutex_lock(&q->lock);
        while (q->nfull == 0)
            pthread_cond_wait(&q->changed, &q->lock);
        int b = q->full[q->first_full];
        q->first_full = (q->first_full + 1) % DEPTH;
        q->nfull--;
        pthread_mutex_unlock(&q->lock);
        struct batch *batch = &q->batches[b];
        for (int i = 0; i < batch->count; i++) {
            sum += batch->items[i][0];
            free(batch->items[i]);
        }
        done += batch->count;
        pthread_mutex_lock(&q->lock);
        q->empty[q->nempty++] = b;
        pthread_cond_broadcast(&q->changed);
        pthread_mutex_unlock(&q->lock);
    }
    q->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long items = arg_long(argc, argv, 1, 60) * 1000000L;
    long pairs = arg_long(argc, argv, 2, 2);
    struct pair *qs = checked(calloc((size_t)pairs, sizeof *qs));
    pthread_t *ids = checked(calloc((size_t)pairs * 2, sizeof *ids));
    double start = now_seconds();
    for (long p = 0; p < pairs; p++) {
        struct pair *q = &qs[p];
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->changed, NULL);
        for (int b = 0; b < DEPTH; b++)
            q->empty[b] = b;
        q->nempty = DEPTH;
        q->items = items / pairs;
        pthread_create(&ids[2 * p], NULL, consume, q);
        pthread_create(&ids[2 * p + 1], NULL, produce, q);
    }
    unsigned long sum = 0;
    for (long p = 0; p < pairs; p++) {
        pthread_join(ids[2 * p + 1], NULL);
        pthread_join(ids[2 * p], NULL);
        sum += qs[p].sum;
    }
    double seconds = now_seconds() - start;
    printf("prodcons: %ld producer/consumer pairs, %ld blocks in %.3f s: %.1f ns/block (check %lu)\n",
           pairs, items, seconds, seconds * 1e9 / (double)items, sum);
    free(qs);
    free(ids);
    return 0;
}
