/* Thread churn and teardown: thousands of short-lived threads (joined and
 * detached), each allocating and freeing, handing blocks to others that free
 * them after the allocating thread is gone; thread-specific data whose
 * destructor frees and allocates (and re-arms itself, so it runs twice);
 * __thread pointers freed at thread exit; atexit handlers that allocate and
 * free; and finally exit() while other threads are still allocating.
 *
 * usage: churn [threads=4000]   exits 1 on the first failure */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_key_t key;
static __thread unsigned char *thread_block;
static __thread size_t thread_block_size;
static atomic_long destructor_runs, detached_done;
static atomic_int failed;

/* Blocks allocated by one thread, freed by another after it has exited. */
#define ORPHANS 4096
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *orphans[ORPHANS];
static size_t orphan_sizes[ORPHANS];
static size_t orphan_count;

static void fail(const char *what) {
    fprintf(stderr, "churn: %s\n", what);
    atomic_store(&failed, 1);
    _exit(1);
}

static int holds(const unsigned char *p, size_t n, unsigned char value) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != value)
            return 0;
    return 1;
}

static unsigned char *make(size_t n, unsigned char value) {
    unsigned char *p = malloc(n);
    if (p == NULL)
        fail("malloc returned NULL");
    memset(p, value, n);
    return p;
}

static void destroy(unsigned char *p, size_t n, unsigned char value) {
    if (!holds(p, n, value))
        fail("block overwritten");
    free(p);
}

/* pthread_key destructor: frees the value, allocates and frees, and re-arms
 * the key once so that glibc calls it a second time. */
static void key_destructor(void *value) {
    uintptr_t *v = value;
    uintptr_t round = v[0];
    if (v[1] != 0xfeedface)
        fail("thread-specific value overwritten");
    free(v);
    destroy(make(300, 0x11), 300, 0x11);
    if (thread_block != NULL) {
        destroy(thread_block, thread_block_size, 0x22);
        thread_block = NULL;
    }
    if (round == 0) {
        uintptr_t *again = malloc(2 * sizeof *again);
        if (again == NULL)
            fail("malloc in destructor");
        again[0] = 1;
        again[1] = 0xfeedface;
        pthread_setspecific(key, again);
    }
    atomic_fetch_add(&destructor_runs, 1);
}

static void *short_lived(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    enum { N = 40 };
    unsigned char *blocks[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        sizes[i] = (seed >> 8) % (i % 10 == 0 ? 70000 : 600);
        blocks[i] = make(sizes[i], (unsigned char)i);
    }
    uintptr_t *value = malloc(2 * sizeof *value);
    if (value == NULL)
        fail("malloc returned NULL");
    value[0] = 0;
    value[1] = 0xfeedface;
    pthread_setspecific(key, value);
    thread_block_size = 1 + seed % 5000;
    thread_block = make(thread_block_size, 0x22);
    /* Free most blocks here; leave a few to be freed after this thread exits. */
    for (int i = 0; i < N; i++) {
        if (i % 8 == 3) {
            pthread_mutex_lock(&orphan_lock);
            if (orphan_count < ORPHANS) {
                orphans[orphan_count] = blocks[i];
                orphan_sizes[orphan_count] = sizes[i];
                orphan_count++;
                blocks[i] = NULL;
            }
            pthread_mutex_unlock(&orphan_lock);
        }
        if (blocks[i] != NULL)
            destroy(blocks[i], sizes[i], (unsigned char)i);
    }
    return NULL;
}

static void *detached(void *arg) {
    short_lived(arg);
    atomic_fetch_add(&detached_done, 1);
    return NULL;
}

static void free_orphans(void) {
    pthread_mutex_lock(&orphan_lock);
    for (size_t i = 0; i < orphan_count; i++) {
        /* Filled with its index in its thread: 3, 11, 19, ... */
        unsigned char value = orphan_sizes[i] > 0 ? orphans[i][0] : 3;
        if (value % 8 != 3 || !holds(orphans[i], orphan_sizes[i], value))
            fail("orphaned block overwritten");
        free(orphans[i]);
    }
    orphan_count = 0;
    pthread_mutex_unlock(&orphan_lock);
}

static void at_exit_allocates(void) {
    unsigned char *blocks[100];
    for (int i = 0; i < 100; i++)
        blocks[i] = make((size_t)i * 37 + 1, (unsigned char)i);
    for (int i = 99; i >= 0; i--)
        destroy(blocks[i], (size_t)i * 37 + 1, (unsigned char)i);
    unsigned char *big = make(1 << 20, 7);
    destroy(big, 1 << 20, 7);
}

static void at_exit_report(void) {
    /* Runs first (registered last): the threads below are still allocating. */
    char *line = malloc(200);
    if (line == NULL)
        _exit(1);
    snprintf(line, 200, "churn: atexit handlers ran with threads still allocating\n");
    fputs(line, stdout);
    free(line);
    fflush(stdout);
}

static void *forever(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (;;) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 2000;
        unsigned char *p = make(n, (unsigned char)seed);
        unsigned char *q = realloc(p, n + 500);
        if (q == NULL)
            fail("realloc returned NULL");
        free(q);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int total = argc > 1 ? atoi(argv[1]) : 4000;
    if (pthread_key_create(&key, key_destructor) != 0)
        return 1;
    atexit(at_exit_allocates);
    atexit(at_exit_allocates);
    atexit(at_exit_report);

    enum { WAVE = 16 };
    pthread_t ids[WAVE];
    pthread_attr_t detach;
    pthread_attr_init(&detach);
    pthread_attr_setdetachstate(&detach, PTHREAD_CREATE_DETACHED);
    long joined = 0, detached_started = 0;
    for (int started = 0; started < total;) {
        int wave = 0;
        for (; wave < WAVE && started < total; wave++, started++) {
            if (started % 4 == 0) {
                pthread_t id;
                if (pthread_create(&id, &detach, detached, (void *)(uintptr_t)started) != 0)
                    fail("pthread_create (detached) failed");
                detached_started++;
                wave--;
                continue;
            }
            if (pthread_create(&ids[wave], NULL, short_lived, (void *)(uintptr_t)started) != 0)
                fail("pthread_create failed");
        }
        for (int i = 0; i < wave; i++)
            pthread_join(ids[i], NULL);
        joined += wave;
        free_orphans();
    }
    while (atomic_load(&detached_done) < detached_started)
        usleep(1000);
    usleep(10000); /* let detached threads finish their destructors */
    free_orphans();
    long runs = atomic_load(&destructor_runs);
    /* Two runs per thread (the destructor re-arms itself once). */
    if (runs < 2 * joined) {
        fprintf(stderr, "churn: %ld destructor runs for %ld joined threads\n", runs, joined);
        return 1;
    }
    printf("churn: %ld joined + %ld detached threads, %ld key destructor runs\n", joined,
           detached_started, runs);
    fflush(stdout);

    /* exit() with threads still allocating: the atexit handlers and the
     * library's own teardown run beside them. */
    pthread_t busy[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&busy[i], NULL, forever, (void *)(uintptr_t)(i + 1));
    usleep(20000);
    exit(0);
}
