/* Bad frees, one per run (the test runs each in its own process):
 *
 *   stack, interior, interior-large, static, mmap, wild, glibc, realloc-stack,
 *   realloc-interior: free (or realloc) of a pointer the allocator never
 *   returned. Prints "pointer 0x..." on stdout first; the library must print
 *   one line naming that pointer on stderr and abort (SIGABRT).
 *
 *   double-small, double-small-drained, double-small-kept, double-large,
 *   double-large-reused: a double free; prints what the following allocations
 *   returned ("distinct" or "DUPLICATE") unless the library aborts first.
 *
 * usage: bad_free CASE */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static char static_buffer[256];

/* Hides where a pointer comes from, so the compiler does not warn about (or
 * fold) a free of a non-heap object. */
static void *launder(void *p) {
    void *volatile v = p;
    return v;
}

static void announce(const void *p) {
    printf("pointer %p\n", p);
    fflush(stdout);
}

static void bad_free(void *p) {
    announce(p);
    free(launder(p));
    printf("free(%p) returned\n", p);
}

static void bad_realloc(void *p) {
    announce(p);
    void *q = realloc(launder(p), 100);
    printf("realloc(%p) returned %p\n", p, q);
}

/* After a double free of `size`-byte blocks: allocate many blocks of that size
 * and report whether any pointer was handed out twice. */
static void report_duplicates(size_t size, int count) {
    void **blocks = calloc((size_t)count, sizeof *blocks);
    int duplicate = 0;
    for (int i = 0; i < count; i++) {
        blocks[i] = malloc(size);
        for (int j = 0; j < i; j++)
            if (blocks[i] == blocks[j]) {
                printf("DUPLICATE: malloc(%zu) returned %p twice (allocations %d and %d)\n",
                       size, blocks[i], j, i);
                duplicate = 1;
            }
    }
    if (!duplicate)
        printf("distinct: %d allocations of %zu bytes after the double free\n", count, size);
    fflush(stdout);
}

/* Runs this (single-threaded) process on one CPU only, so that both frees of
 * a double free reach the same per-CPU cache whatever the cache index. */
static void pin_to_one_cpu(void) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed)) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            sched_setaffinity(0, sizeof one, &one);
            return;
        }
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    pin_to_one_cpu();
    char stack_buffer[64];
    memset(stack_buffer, 0, sizeof stack_buffer);
    if (!strcmp(what, "stack")) {
        bad_free(stack_buffer);
    } else if (!strcmp(what, "interior")) {
        char *p = malloc(64);
        bad_free(p + 8);
    } else if (!strcmp(what, "interior-large")) {
        char *p = malloc(1 << 20);
        bad_free(p + 4096);
    } else if (!strcmp(what, "static")) {
        bad_free(static_buffer);
    } else if (!strcmp(what, "mmap")) {
        void *page = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        bad_free(page);
    } else if (!strcmp(what, "wild")) {
        bad_free((void *)(uintptr_t)0xdeadbeef000ull);
    } else if (!strcmp(what, "glibc")) {
        /* A block from glibc's own malloc (what a library bound to libc's
         * symbol directly would hand over). */
        void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        void *(*libc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
        if (libc_malloc == NULL || libc_malloc == malloc) {
            fprintf(stderr, "bad_free: cannot find glibc's own malloc\n");
            return 2;
        }
        bad_free(libc_malloc(100));
    } else if (!strcmp(what, "realloc-stack")) {
        bad_realloc(stack_buffer);
    } else if (!strcmp(what, "realloc-interior")) {
        char *p = malloc(300);
        bad_realloc(p + 16);
    } else if (!strcmp(what, "double-small")) {
        /* The second free lands in this CPU's cache like the first. */
        void *p = malloc(48);
        announce(p);
        free(p);
        free(launder(p));
        report_duplicates(48, 4);
    } else if (!strcmp(what, "double-small-interleaved")) {
        /* Another block freed in between: p is no longer the cache's top item,
         * so the second free is not caught on the fast path. */
        void *p = malloc(48);
        void *q = malloc(48);
        announce(p);
        free(p);
        free(q);
        free(launder(p));
        report_duplicates(48, 4);
    } else if (!strcmp(what, "double-small-drained")) {
        /* The first free reaches the spans (malloc_trim drains every cache)
         * before the second one; other blocks of the span stay live. */
        void *keep = malloc(48);
        void *p = malloc(48);
        announce(p);
        free(p);
        malloc_trim(0);
        free(launder(p));
        malloc_trim(0);
        report_duplicates(48, 4096);
        free(keep);
    } else if (!strcmp(what, "double-small-kept")) {
        /* As double-small, with the span kept alive and the caches drained
         * after the second free: the duplicate reaches the spans. */
        void *keep = malloc(48);
        void *p = malloc(48);
        announce(p);
        free(p);
        free(launder(p));
        malloc_trim(0);
        report_duplicates(48, 4096);
        free(keep);
    } else if (!strcmp(what, "double-large")) {
        void *p = malloc(1 << 20);
        announce(p);
        free(p);
        free(launder(p));
        report_duplicates(1 << 20, 8);
    } else if (!strcmp(what, "double-large-reused")) {
        /* The address is live again (reused) when the second free comes:
         * that frees someone else's block, undetectable by any allocator. */
        void *p = malloc(1 << 20);
        free(p);
        void *q = malloc(1 << 20);
        printf("reused: %s\n", q == p ? "yes" : "no");
        announce(p);
        free(launder(p));
        report_duplicates(1 << 20, 8);
    } else {
        fprintf(stderr, "bad_free: unknown case \"%s\"\n", what);
        return 2;
    }
    return 0;
}
