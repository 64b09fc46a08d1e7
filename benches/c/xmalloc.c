/* xmalloc: half the threads only allocate, the other half only free. A
 * producer allocates blocks of 16..1024 bytes, writes their first 8 bytes and
 * their last one, and puts them, 64 at a time, into one queue shared by all
 * threads (a mutex and two condition variables; a fixed pool of batches bounds
 * it, and a producer waits when the pool is empty). Any consumer takes the next batch,
 * reads the blocks and frees them: every free is of another thread's block,
 * and a producer's blocks end up with every consumer. Nobody spins, so the
 * result does not depend on where the scheduler puts the threads.
 * usage: xmalloc [threads, even=4] [thousands of blocks in all=10000] */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"

#define BATCH 64

struct batch {
    struct batch *next;
    int count;
    unsigned char *items[BATCH];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t filled; /* a batch was queued, or the last producer ended */
    pthread_cond_t spared; /* a batch went back to the pool */
    struct batch *head, *tail; /* the queue of full batches */
    struct batch *spare;       /* the pool of empty ones */
    long producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL,
       NULL, 0};

struct job {
    long blocks; /* producers: how many to allocate */
    uint64_t seed;
    unsigned long sum; /* consumers: the check of what they freed */
    long freed;
};

static void *produce(void *arg) {
    struct job *job = arg;
    uint64_t rng = job->seed;
    for (long done = 0; done < job->blocks;) {
        pthread_mutex_lock(&q.lock);
        while (q.spare == NULL)
            pthread_cond_wait(&q.spared, &q.lock);
        struct batch *b = q.spare;
        q.spare = b->next;
        pthread_mutex_unlock(&q.lock);
        b->count = 0;
        for (; b->count < BATCH && done < job->blocks; done++) {
            uint64_t r = rng_next(&rng);
            size_t size = 16 + r % 1009;
            unsigned char *p = malloc(size);
            *(uint64_t *)p = r; /* the size can be worked out from it */
            p[size - 1] = (unsigned char)(r >> 24);
            b->items[b->count++] = p;
        }
        b->next = NULL;
        pthread_mutex_lock(&q.lock);
        if (q.tail != NULL)
            q.tail->next = b;
        else
            q.head = b;
        q.tail = b;
        pthread_cond_signal(&q.filled);
        pthread_mutex_unlock(&q.lock);
    }
    pthread_mutex_lock(&q.lock);
    if (--q.producers_left == 0)
        pthread_cond_broadcast(&q.filled);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static void *consume(void *arg) {
    struct job *job = arg;
    unsigned long sum = 0;
    long freed = 0;
    for (;;) {
        pthread_mutex_lock(&q.lock);
        while (q.head == NULL && q.producers_left > 0)
            pthread_cond_wait(&q.filled, &q.lock);
        struct batch *b = q.head;
        if (b == NULL) {
            pthread_mutex_unlock(&q.lock);
            break;
        }
        q.head = b->next;
        if (q.head == NULL)
            q.tail = NULL;
        pthread_mutex_unlock(&q.lock);
        for (int i = 0; i < b->count; i++) {
            unsigned char *p = b->items[i];
            uint64_t r = *(uint64_t *)p;
            sum += (r >> 56) + p[16 + r % 1009 - 1];
            free(p);
        }
        freed += b->count;
        pthread_mutex_lock(&q.lock);
        b->next = q.spare;
        q.spare = b;
        pthread_cond_signal(&q.spared);
        pthread_mutex_unlock(&q.lock);
    }
    job->sum = sum;
    job->freed = freed;
    return NULL;
}

int main(int argc, char **argv) {
    long threads = arg_long(argc, argv, 1, 4);
    long blocks = arg_long(argc, argv, 2, 10000) * 1000L;
    if (threads < 2 || threads % 2 != 0) {
        fprintf(stderr, "xmalloc: the thread count must be even (half produce, half consume)\n");
        return 2;
    }
    long producers = threads / 2;
    /* Four batches in flight per producer. */
    long pool = 4 * producers;
    struct batch *batches = checked(calloc((size_t)pool, sizeof *batches));
    for (long i = 0; i < pool; i++) {
        batches[i].next = q.spare;
        q.spare = &batches[i];
    }
    q.producers_left = producers;
    struct job *jobs = checked(calloc((size_t)threads, sizeof *jobs));
    pthread_t *ids = checked(calloc((size_t)threads, sizeof *ids));
    for (long t = 0; t < producers; t++) {
        jobs[t].blocks = blocks / producers;
        jobs[t].seed = 0x2545f4914f6cdd1dull * (uint64_t)(t + 5);
    }
    blocks = blocks / producers * producers;
    double start = now_seconds();
    for (long t = producers; t < threads; t++)
        start_thread(&ids[t], consume, &jobs[t]);
    for (long t = 0; t < producers; t++)
        start_thread(&ids[t], produce, &jobs[t]);
    for (long t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    double seconds = now_seconds() - start;
    unsigned long sum = 0;
    long freed = 0;
    for (long t = producers; t < threads; t++) {
        sum += jobs[t].sum;
        freed += jobs[t].freed;
    }
    if (freed != blocks) {
        fprintf(stderr, "xmalloc: %ld blocks allocated but %ld freed\n", blocks, freed);
        return 1;
    }
    printf("xmalloc: %ld producers + %ld consumers, %ld blocks in %.3f s: %.2f M blocks/s "
           "(check %lu)\n",
           producers, producers, blocks, seconds, (double)blocks / seconds / 1e6, sum);
    free(batches);
    free(jobs);
    free(ids);
    return 0;
}
