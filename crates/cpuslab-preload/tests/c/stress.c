/* Multi-threaded random allocation with content checks and cross-thread frees.
 *
 * 6 x online CPUs threads each keep a table of live blocks and, at random,
 * allocate (malloc, calloc, realloc(NULL), posix_memalign, aligned_alloc,
 * memalign; mixed sizes from 1 byte to 2 MiB), check and free, check and
 * realloc, or hand a block to a shared locked queue from which any thread takes
 * it and frees it (cross-thread frees). Every block carries a byte pattern
 * derived from its own seed; it is checked before every free and realloc, so a
 * block handed out twice, or memory overwritten by the allocator, is caught.
 *
 * usage: stress [seconds=2] [threads=6*CPUs]   exits 1 on the first error */
#define _GNU_SOURCE
#include <errno.h>
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

struct block {
    unsigned char *ptr;
    size_t size;
    size_t align; /* 0: malloc's own (16) */
    uint32_t seed;
};

/* C23; glibc 2.36 lacks them (weak: null there), libcpuslab.so has them. */
extern void free_sized(void *ptr, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *ptr, size_t align, size_t size) __attribute__((weak));

#define SLOTS 256
#define QUEUE_CAP 4096

static struct {
    pthread_mutex_t lock;
    struct block items[QUEUE_CAP];
    size_t head, count;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_int stop;
static atomic_ulong total_ops, cross_frees;

static void die(const char *what, const struct block *b, size_t at) {
    fprintf(stderr,
            "stress: %s: block %p size %zu align %zu seed %u, first bad byte at %zu\n",
            what, (void *)b->ptr, b->size, b->align, b->seed, at);
    exit(1);
}

static unsigned char pattern(uint32_t seed, size_t i) {
    return (unsigned char)(seed ^ (i * 0x9e3779b1u) ^ (i >> 8));
}

/* Big blocks are filled and checked at the ends and on a sparse stride, so
 * that the test spends its time in the allocator. */
static size_t stride(size_t size) {
    return size <= 8192 ? 1 : 61;
}

static void fill(struct block *b) {
    size_t step = stride(b->size);
    for (size_t i = 0; i < b->size; i += step)
        b->ptr[i] = pattern(b->seed, i);
    if (b->size > 0)
        b->ptr[b->size - 1] = pattern(b->seed, b->size - 1);
}

static size_t check_prefix(const struct block *b, size_t n) {
    size_t step = stride(b->size);
    for (size_t i = 0; i < n; i += step)
        if (b->ptr[i] != pattern(b->seed, i))
            return i;
    if (n > 0 && n == b->size && b->ptr[n - 1] != pattern(b->seed, n - 1))
        return n - 1;
    return SIZE_MAX;
}

static void check(const struct block *b, const char *when) {
    size_t bad = check_prefix(b, b->size);
    if (bad != SIZE_MAX)
        die(when, b, bad);
}

static size_t random_size(uint64_t *rng) {
    uint64_t r = next(rng);
    unsigned pick = (unsigned)(r % 400);
    if (pick < 2)
        return 262144 + (r >> 16) % (2 << 20); /* large: mapped per block */
    if (pick < 12)
        return 4096 + (r >> 16) % 258000; /* the biggest classes */
    if (pick < 50)
        return 512 + (r >> 16) % 3584;
    return (r >> 16) % 512; /* 0..511, the common case */
}

static int allocate(struct block *b, uint64_t *rng) {
    uint64_t r = next(rng);
    b->size = random_size(rng);
    b->seed = (uint32_t)(r >> 32);
    b->align = 0;
    int how = (int)(r % 16);
    if (how < 8) {
        b->ptr = malloc(b->size);
    } else if (how < 10) {
        b->ptr = calloc(1, b->size);
        if (b->ptr)
            for (size_t i = 0; i < b->size; i += stride(b->size))
                if (b->ptr[i] != 0)
                    die("calloc returned dirty memory", b, i);
    } else if (how < 12) {
        b->ptr = realloc(NULL, b->size);
    } else {
        b->align = (size_t)1 << (3 + (r >> 8) % 10); /* 8 .. 4096 */
        if (how == 12) {
            void *p = NULL;
            int rc = posix_memalign(&p, b->align, b->size);
            if (rc != 0) {
                fprintf(stderr, "stress: posix_memalign(%zu, %zu) = %d\n", b->align, b->size, rc);
                exit(1);
            }
            b->ptr = p;
        } else if (how == 13) {
            b->ptr = memalign(b->align, b->size);
        } else {
            size_t rounded = (b->size + b->align - 1) / b->align * b->align;
            b->size = rounded;
            b->ptr = aligned_alloc(b->align, b->size);
        }
    }
    if (b->ptr == NULL) {
        fprintf(stderr, "stress: allocation of %zu bytes (align %zu) failed: %s\n", b->size,
                b->align, strerror(errno));
        exit(1);
    }
    size_t align = b->align ? b->align : 16;
    if ((uintptr_t)b->ptr % align != 0)
        die("misaligned block", b, 0);
    if (malloc_usable_size(b->ptr) < b->size)
        die("malloc_usable_size below the size asked for", b, malloc_usable_size(b->ptr));
    fill(b);
    return 1;
}

static void release(struct block *b) {
    check(b, "overwritten before free");
    switch (b->seed % 4) {
    case 1:
        if (free_sized != NULL) {
            free_sized(b->ptr, b->size);
            break;
        }
        free(b->ptr);
        break;
    case 2:
        if (b->align != 0 && free_aligned_sized != NULL) {
            free_aligned_sized(b->ptr, b->align, b->size);
        } else if (b->align == 0 && realloc(b->ptr, 0) != NULL) {
            die("realloc(p, 0) did not return NULL", b, 0); /* it frees */
        } else if (b->align != 0) {
            free(b->ptr);
        }
        break;
    default:
        free(b->ptr);
        break;
    }
    b->ptr = NULL;
}

static void resize(struct block *b, uint64_t *rng) {
    check(b, "overwritten before realloc");
    size_t old = b->size;
    size_t n = random_size(rng);
    if (n == 0)
        n = 1;
    unsigned char *p = realloc(b->ptr, n);
    if (p == NULL) {
        fprintf(stderr, "stress: realloc(%zu -> %zu) failed\n", old, n);
        exit(1);
    }
    b->ptr = p;
    b->align = 0;
    if ((uintptr_t)p % 16 != 0)
        die("misaligned realloc", b, 0);
    /* The common prefix is kept: check it against the old pattern. */
    size_t kept = old < n ? old : n;
    struct block before = *b;
    before.size = old;
    size_t bad = check_prefix(&before, kept);
    if (bad != SIZE_MAX)
        die("realloc lost contents", &before, bad);
    b->size = n;
    b->seed = (uint32_t)next(rng);
    fill(b);
}

static int enqueue(const struct block *b) {
    int done = 0;
    pthread_mutex_lock(&queue.lock);
    if (queue.count < QUEUE_CAP) {
        queue.items[(queue.head + queue.count) % QUEUE_CAP] = *b;
        queue.count++;
        done = 1;
    }
    pthread_mutex_unlock(&queue.lock);
    return done;
}

static int dequeue(struct block *b) {
    int done = 0;
    pthread_mutex_lock(&queue.lock);
    if (queue.count > 0) {
        *b = queue.items[queue.head];
        queue.head = (queue.head + 1) % QUEUE_CAP;
        queue.count--;
        done = 1;
    }
    pthread_mutex_unlock(&queue.lock);
    return done;
}

static void *worker(void *arg) {
    uint64_t rng = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    struct block slots[SLOTS];
    memset(slots, 0, sizeof slots);
    unsigned long ops = 0, cross = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int k = 0; k < 256; k++, ops++) {
            uint64_t r = next(&rng);
            struct block *b = &slots[(r >> 16) % SLOTS];
            if (b->ptr == NULL) {
                if (r % 8 == 0 && dequeue(b)) {
                    /* A block from another thread: check it, keep or free it. */
                    check(b, "handed-off block overwritten");
                    cross++;
                    if (r % 16 == 0)
                        release(b);
                } else {
                    allocate(b, &rng);
                }
                continue;
            }
            switch (r % 10) {
            case 0: case 1: case 2: case 3:
                release(b);
                break;
            case 4: case 5:
                resize(b, &rng);
                break;
            case 6: case 7:
                check(b, "overwritten before hand-off");
                if (enqueue(b))
                    b->ptr = NULL;
                break;
            default:
                check(b, "overwritten while live");
                break;
            }
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].ptr)
            release(&slots[i]);
    atomic_fetch_add(&total_ops, ops);
    atomic_fetch_add(&cross_frees, cross);
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = argc > 2 ? atoi(argv[2]) : (int)(6 * (cpus > 0 ? cpus : 1));
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    if (ids == NULL)
        return 1;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)i) != 0) {
            fprintf(stderr, "stress: pthread_create failed\n");
            return 1;
        }
    struct timespec nap = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&nap, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    struct block b;
    while (dequeue(&b))
        release(&b);
    free(ids);
    printf("stress: %d threads, %lu operations, %lu blocks freed or kept by another thread\n",
           threads, (unsigned long)atomic_load(&total_ops), (unsigned long)atomic_load(&cross_frees));
    return 0;
}
