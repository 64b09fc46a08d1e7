/* Every exported function of libcpuslab.so with its edge cases, glibc's
 * semantics. Run under LD_PRELOAD; exits 1 with a message on the first failure.
 * Built with -fno-builtin so that the compiler keeps every call. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Not declared by glibc 2.36's headers; free_sized and free_aligned_sized are
 * not in its libc at all: weak, so that a missing symbol reads as null. */
extern void free_sized(void *ptr, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *ptr, size_t align, size_t size) __attribute__((weak));
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

static int checks;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            fprintf(stderr, "api.c:%d: FAILED %s: ", __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* Sizes that cross every tier: tiny, class boundaries, a page, the largest
 * classes (about 256 KiB), large mappings. */
static const size_t sizes[] = {
    0, 1, 7, 8, 15, 16, 17, 24, 31, 32, 33, 48, 64, 100, 127, 128, 129, 255, 256,
    257, 511, 512, 1000, 1024, 1500, 2048, 4095, 4096, 4097, 8192, 10000, 32768,
    65536, 100000, 131072, 200000, 262143, 262144, 262145, 300000, 1 << 20,
    (4 << 20) + 3,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Values the compiler cannot fold (no warnings about impossible sizes). */
static volatile size_t huge_sizes[] = {
    SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)PTRDIFF_MAX,
    (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62, (size_t)1 << 50,
};
#define NHUGE (sizeof huge_sizes / sizeof huge_sizes[0])

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 31);
}

static int filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31))
            return 0;
    return 1;
}

static size_t first_nonzero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return i;
    return n;
}

static int aligned(const void *p, size_t align) {
    return ((uintptr_t)p & (align - 1)) == 0;
}

static void test_preloaded(void) {
    /* glibc 2.36 has no free_sized: if it resolves, libcpuslab.so is loaded. */
    CHECK(free_sized != NULL && free_aligned_sized != NULL,
          "libcpuslab.so is not preloaded");
}

static void test_malloc(void) {
    /* malloc(0): a unique, freeable pointer. */
    void *zeros[64];
    for (int i = 0; i < 64; i++) {
        zeros[i] = malloc(0);
        CHECK(zeros[i] != NULL, "malloc(0) #%d returned NULL", i);
        for (int j = 0; j < i; j++)
            CHECK(zeros[i] != zeros[j], "malloc(0) returned %p twice", zeros[i]);
    }
    for (int i = 0; i < 64; i++)
        free(zeros[i]);

    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu) returned NULL", n);
        CHECK(aligned(p, 16), "malloc(%zu) = %p is not 16-byte aligned", n, (void *)p);
        size_t usable = malloc_usable_size(p);
        CHECK(usable >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, usable);
        /* The whole usable size is ours to write. */
        fill(p, usable, (unsigned)n);
        CHECK(filled(p, usable, (unsigned)n), "malloc(%zu): contents changed", n);
        free(p);
    }

    for (size_t i = 0; i < NHUGE; i++) {
        size_t n = huge_sizes[i];
        errno = 0;
        void *p = malloc(n);
        CHECK(p == NULL, "malloc(%zu) = %p, expected NULL", n, p);
        CHECK(errno == ENOMEM, "malloc(%zu): errno %d, expected ENOMEM", n, errno);
    }

    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu",
          malloc_usable_size(NULL));

    /* Many live blocks of one size are distinct and keep their contents. */
    enum { LIVE = 3000 };
    static unsigned char *live[LIVE];
    for (int i = 0; i < LIVE; i++) {
        size_t n = 1 + (size_t)(i * 37) % 700;
        live[i] = malloc(n);
        CHECK(live[i] != NULL, "malloc(%zu) returned NULL", n);
        fill(live[i], n, (unsigned)i);
    }
    for (int i = 0; i < LIVE; i++) {
        size_t n = 1 + (size_t)(i * 37) % 700;
        CHECK(filled(live[i], n, (unsigned)i), "block %d (%zu bytes) overwritten", i, n);
        free(live[i]);
    }
}

static void test_calloc(void) {
    /* Dirty blocks first, so that calloc must really zero reused memory. */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *dirty = malloc(n);
        CHECK(dirty != NULL, "malloc(%zu) returned NULL", n);
        memset(dirty, 0xa5, malloc_usable_size(dirty));
        free(dirty);
        unsigned char *p = calloc(1, n);
        CHECK(p != NULL, "calloc(1, %zu) returned NULL", n);
        size_t j = first_nonzero(p, n);
        CHECK(j == n, "calloc(1, %zu)[%zu] = %#x", n, j, p[j]);
        free(p);
        if (n > 0 && n % 8 == 0) {
            p = calloc(n / 8, 8);
            CHECK(p != NULL, "calloc(%zu, 8) returned NULL", n / 8);
            j = first_nonzero(p, n);
            CHECK(j == n, "calloc(%zu, 8)[%zu] = %#x", n / 8, j, p[j]);
            free(p);
        }
    }
    void *a = calloc(0, 16), *b = calloc(16, 0), *c = calloc(0, 0);
    CHECK(a && b && c && a != b && b != c && a != c, "calloc of 0 bytes: %p %p %p", a, b, c);
    free(a);
    free(b);
    free(c);

    static volatile size_t half = SIZE_MAX / 2 + 1, quarter = SIZE_MAX / 4 + 1;
    size_t overflows[][2] = {{half, 2}, {2, half}, {quarter, 8}, {SIZE_MAX, SIZE_MAX},
                             {(size_t)1 << 32, (size_t)1 << 32}};
    for (size_t i = 0; i < sizeof overflows / sizeof overflows[0]; i++) {
        errno = 0;
        void *p = calloc(overflows[i][0], overflows[i][1]);
        CHECK(p == NULL, "calloc(%zu, %zu) overflowed to %p", overflows[i][0],
              overflows[i][1], p);
        CHECK(errno == ENOMEM, "calloc overflow: errno %d, expected ENOMEM", errno);
    }
    errno = 0;
    void *p = calloc(1, huge_sizes[0]);
    CHECK(p == NULL && errno == ENOMEM, "calloc(1, SIZE_MAX) = %p, errno %d", p, errno);
}

static void test_realloc(void) {
    /* realloc(NULL, n) is malloc(n). */
    unsigned char *p = realloc(NULL, 100);
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "realloc(NULL, 100) = %p", (void *)p);
    free(p);
    p = realloc(NULL, 0);
    CHECK(p != NULL, "realloc(NULL, 0) returned NULL (glibc returns malloc(0))");
    free(p);

    /* realloc(p, 0) frees and returns NULL (glibc). */
    p = malloc(64);
    CHECK(p != NULL, "malloc(64) returned NULL");
    errno = 0;
    void *q = realloc(p, 0);
    CHECK(q == NULL, "realloc(p, 0) = %p, expected NULL", q);

    /* Grow through every tier and shrink back, keeping the contents. */
    size_t steps[] = {1, 10, 16, 17, 100, 1000, 5000, 70000, 262144, 300000, 1 << 20,
                      (5 << 20) + 7, 1 << 20, 300000, 200000, 5000, 100, 17, 3, 1};
    size_t nsteps = sizeof steps / sizeof steps[0];
    p = malloc(steps[0]);
    fill(p, steps[0], 7);
    for (size_t i = 1; i < nsteps; i++) {
        size_t old = steps[i - 1], n = steps[i];
        size_t kept = old < n ? old : n;
        unsigned char *moved = realloc(p, n);
        CHECK(moved != NULL, "realloc(%zu -> %zu) returned NULL", old, n);
        CHECK(filled(moved, kept, 7), "realloc(%zu -> %zu) lost contents", old, n);
        CHECK(malloc_usable_size(moved) >= n, "realloc to %zu: usable %zu", n,
              malloc_usable_size(moved));
        fill(moved, n, 7);
        p = moved;
    }
    free(p);

    /* Failure leaves the block alone: NULL, ENOMEM, contents intact. */
    p = malloc(200);
    fill(p, 200, 9);
    for (size_t i = 0; i < NHUGE; i++) {
        errno = 0;
        q = realloc(p, huge_sizes[i]);
        CHECK(q == NULL, "realloc(p, %zu) = %p, expected NULL", huge_sizes[i], q);
        CHECK(errno == ENOMEM, "realloc(p, %zu): errno %d", huge_sizes[i], errno);
        CHECK(filled(p, 200, 9), "failed realloc changed the block");
    }
    free(p);

    /* Same-size and in-class reallocs. */
    p = malloc(40);
    fill(p, 40, 3);
    q = realloc(p, 40);
    CHECK(q != NULL && filled(q, 40, 3), "realloc(p, same size) lost contents");
    free(q);
}

static void test_reallocarray(void) {
    unsigned char *p = reallocarray(NULL, 10, 10);
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "reallocarray(NULL, 10, 10) = %p",
          (void *)p);
    fill(p, 100, 5);
    unsigned char *q = reallocarray(p, 100, 100);
    CHECK(q != NULL && filled(q, 100, 5), "reallocarray(p, 100, 100) lost contents");
    p = q;
    static volatile size_t half = SIZE_MAX / 2 + 1;
    errno = 0;
    q = reallocarray(p, half, 2);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow = %p, errno %d", (void *)q,
          errno);
    CHECK(filled(p, 100, 5), "reallocarray overflow changed the block");
    errno = 0;
    q = reallocarray(NULL, 2, half);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray(NULL) overflow = %p, errno %d",
          (void *)q, errno);
    free(p);
}

static void test_posix_memalign(void) {
    size_t align_sizes[] = {0, 1, 8, 100, 4096, 5000, 262144, 300000, 1 << 21};
    for (size_t align = sizeof(void *); align <= ((size_t)1 << 22); align <<= 1) {
        for (size_t i = 0; i < sizeof align_sizes / sizeof align_sizes[0]; i++) {
            size_t n = align_sizes[i];
            void *p = (void *)1;
            int rc = posix_memalign(&p, align, n);
            CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", align, n, rc);
            CHECK(p != NULL && aligned(p, align), "posix_memalign(%zu, %zu) gave %p", align,
                  n, p);
            CHECK(malloc_usable_size(p) >= n, "posix_memalign(%zu, %zu): usable %zu", align,
                  n, malloc_usable_size(p));
            memset(p, 0x5a, n);
            free(p);
        }
    }
    /* Not a power of two, or below sizeof(void *): EINVAL, out untouched. */
    size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097, SIZE_MAX,
                    ((size_t)1 << 63) + 8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *sentinel = (void *)0x1234;
        void *p = sentinel;
        int rc = posix_memalign(&p, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) = %d, expected EINVAL", bad[i], rc);
        CHECK(p == sentinel, "posix_memalign(align %zu) wrote the out-pointer: %p", bad[i], p);
    }
    /* Too big: ENOMEM, out untouched. */
    void *sentinel = (void *)0x5678, *p = sentinel;
    int rc = posix_memalign(&p, 64, huge_sizes[0]);
    CHECK(rc == ENOMEM && p == sentinel, "posix_memalign(64, SIZE_MAX) = %d, %p", rc, p);
}

static void test_aligned_alloc(void) {
    for (size_t align = 1; align <= ((size_t)1 << 21); align <<= 1) {
        for (size_t n = align; n <= 4 * align && n <= ((size_t)1 << 22); n += align) {
            void *p = aligned_alloc(align, n);
            CHECK(p != NULL && aligned(p, align), "aligned_alloc(%zu, %zu) = %p", align, n,
                  p);
            CHECK(malloc_usable_size(p) >= n, "aligned_alloc(%zu, %zu): usable %zu", align,
                  n, malloc_usable_size(p));
            memset(p, 1, n);
            free(p);
        }
    }
    size_t bad[] = {0, 3, 24, 100, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(bad[i], 64);
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu, 64) = %p, errno %d", bad[i],
              p, errno);
    }
}

static void test_memalign(void) {
    for (size_t align = 1; align <= ((size_t)1 << 21); align <<= 1) {
        void *p = memalign(align, 3 * align + 1);
        CHECK(p != NULL && aligned(p, align), "memalign(%zu) = %p", align, p);
        free(p);
        p = __libc_memalign(align, 100);
        CHECK(p != NULL && aligned(p, align), "__libc_memalign(%zu) = %p", align, p);
        free(p);
    }
    /* Not a power of two: rounded up to the next one (glibc). */
    size_t odd[][2] = {{24, 32}, {48, 64}, {100, 128}, {3000, 4096}, {5000, 8192}};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        for (int k = 0; k < 8; k++) {
            void *p = memalign(odd[i][0], 40);
            CHECK(p != NULL && aligned(p, odd[i][1]), "memalign(%zu) = %p, not %zu-aligned",
                  odd[i][0], p, odd[i][1]);
            free(p);
        }
    }
    errno = 0;
    void *p = memalign(huge_sizes[0], 16);
    CHECK(p == NULL && errno == EINVAL, "memalign(SIZE_MAX, 16) = %p, errno %d", p, errno);
    errno = 0;
    p = memalign(64, huge_sizes[0]);
    CHECK(p == NULL && errno == ENOMEM, "memalign(64, SIZE_MAX) = %p, errno %d", p, errno);
}

static void test_valloc(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t vs[] = {0, 1, 100, 4095, 4096, 4097, 10000, 300000};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        size_t n = vs[i];
        void *p = valloc(n);
        CHECK(p != NULL && aligned(p, page), "valloc(%zu) = %p", n, p);
        CHECK(malloc_usable_size(p) >= n, "valloc(%zu): usable %zu", n, malloc_usable_size(p));
        memset(p, 2, n);
        free(p);
        p = pvalloc(n);
        size_t rounded = n == 0 ? page : (n + page - 1) / page * page;
        CHECK(p != NULL && aligned(p, page), "pvalloc(%zu) = %p", n, p);
        CHECK(malloc_usable_size(p) >= rounded, "pvalloc(%zu): usable %zu < %zu", n,
              malloc_usable_size(p), rounded);
        memset(p, 3, rounded);
        free(p);
    }
    errno = 0;
    void *p = pvalloc(huge_sizes[0]);
    CHECK(p == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX) = %p, errno %d", p, errno);
    errno = 0;
    p = valloc(huge_sizes[0]);
    CHECK(p == NULL && errno == ENOMEM, "valloc(SIZE_MAX) = %p, errno %d", p, errno);
}

static void test_free_sized(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        void *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu) returned NULL", n);
        free_sized(p, n);
        for (size_t align = 16; align <= 8192; align *= 8) {
            size_t rounded = (n + align - 1) / align * align;
            p = aligned_alloc(align, rounded);
            CHECK(p != NULL, "aligned_alloc(%zu, %zu) returned NULL", align, rounded);
            free_aligned_sized(p, align, rounded);
        }
    }
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
}

static void test_libc_aliases(void) {
    /* Blocks from the __libc_* names and the plain names are interchangeable:
     * either both are ours or free() would report an invalid pointer. */
    void *p = __libc_malloc(100);
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "__libc_malloc(100) = %p", p);
    free(p);
    p = malloc(100);
    __libc_free(p);
    unsigned char *c = __libc_calloc(10, 10);
    CHECK(c != NULL, "__libc_calloc returned NULL");
    CHECK(first_nonzero(c, 100) == 100, "__libc_calloc(10, 10) is not zeroed");
    fill(c, 100, 1);
    c = __libc_realloc(c, 5000);
    CHECK(c != NULL && filled(c, 100, 1), "__libc_realloc lost contents");
    c = realloc(c, 50);
    CHECK(c != NULL && filled(c, 50, 1), "realloc of a __libc_realloc block lost contents");
    __libc_free(c);
    errno = 0;
    p = __libc_calloc(huge_sizes[0], 2);
    CHECK(p == NULL && errno == ENOMEM, "__libc_calloc overflow = %p", p);
    CHECK(__libc_realloc(NULL, 0) != NULL, "__libc_realloc(NULL, 0) returned NULL");
}

static void test_info(void) {
    CHECK(malloc_trim(0) == 1, "malloc_trim(0) != 1");
    CHECK(malloc_trim(1 << 20) == 1, "malloc_trim(1 MiB) != 1");

    /* uordblks (bytes in use) grows with live allocation and falls back after. */
    enum { N = 64 };
    struct mallinfo2 before = mallinfo2();
    void *small[N * 16], *large[N];
    for (int i = 0; i < N * 16; i++) {
        small[i] = malloc(1000);
        memset(small[i], 1, 1000);
    }
    for (int i = 0; i < N; i++) {
        large[i] = malloc(1 << 20);
        memset(large[i], 1, 4096);
    }
    struct mallinfo2 during = mallinfo2();
    size_t expected = (size_t)N * 16 * 1000 + (size_t)N * (1 << 20);
    CHECK(during.uordblks >= before.uordblks + expected,
          "mallinfo2().uordblks went from %zu to %zu with %zu more bytes live",
          before.uordblks, during.uordblks, expected);
    CHECK(during.hblks >= (size_t)N && during.hblkhd >= (size_t)N << 20,
          "mallinfo2() large blocks: hblks %zu, hblkhd %zu", during.hblks, during.hblkhd);
    CHECK(during.arena > 0, "mallinfo2().arena = 0 with blocks live");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
    CHECK(old.uordblks > 0 && old.hblks >= N, "mallinfo(): uordblks %d, hblks %d",
          old.uordblks, old.hblks);
    for (int i = 0; i < N * 16; i++)
        free(small[i]);
    for (int i = 0; i < N; i++)
        free(large[i]);
    struct mallinfo2 after = mallinfo2();
    CHECK(after.uordblks + expected / 2 <= during.uordblks,
          "mallinfo2().uordblks %zu after freeing, %zu before", after.uordblks,
          during.uordblks);
    CHECK(malloc_trim(0) == 1, "malloc_trim(0) != 1 after freeing");

    /* malloc_stats writes its report to stderr: catch it in a file. */
    fflush(stderr);
    FILE *catcher = tmpfile();
    CHECK(catcher != NULL, "tmpfile() failed");
    int saved = dup(STDERR_FILENO);
    CHECK(saved >= 0 && dup2(fileno(catcher), STDERR_FILENO) >= 0, "dup2 failed");
    malloc_stats();
    dup2(saved, STDERR_FILENO);
    close(saved);
    char report[4096];
    rewind(catcher);
    size_t got = fread(report, 1, sizeof report - 1, catcher);
    report[got] = 0;
    fclose(catcher);
    CHECK(got > 0 && strstr(report, "cpuslab") != NULL,
          "malloc_stats() wrote %zu bytes to stderr: \"%s\"", got, report);
}

/* malloc_info: well-formed XML with cpuslab's classes; bad options refused. */
static void test_malloc_info(void) {
    void *keep[64];
    for (int i = 0; i < 64; i++) keep[i] = malloc(48);
    for (int i = 0; i < 64; i++) free(keep[i]);
    FILE *out = tmpfile();
    CHECK(out != NULL, "tmpfile failed");
    CHECK(malloc_info(0, out) == 0, "malloc_info(0, f) failed");
    static char xml[1 << 16];
    rewind(out);
    size_t got = fread(xml, 1, sizeof xml - 1, out);
    xml[got] = 0;
    fclose(out);
    CHECK(strncmp(xml, "<malloc version=\"cpuslab-1\">", 28) == 0, "malloc_info starts: %.60s", xml);
    CHECK(strstr(xml, "<size from=\"48\" to=\"48\"") != NULL, "no 48-byte class in: %s", xml);
    CHECK(strstr(xml, "</malloc>\n") != NULL, "malloc_info not closed: %s", xml);
    errno = 0;
    CHECK(malloc_info(1, stdout) == -1 && errno == EINVAL, "malloc_info(1): errno %d", errno);
}

/* mallopt: glibc's no-op parameters accepted, cpuslab's mapped, others EINVAL. */
static void test_mallopt(void) {
    CHECK(mallopt(M_ARENA_MAX, 2) == 1, "mallopt(M_ARENA_MAX) refused");
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt(M_MMAP_THRESHOLD) refused");
    CHECK(mallopt(-1001, 300) == 1, "mallopt(M_CPUSLAB_DECAY_MS, 300) refused");
    CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1, "mallopt(M_TRIM_THRESHOLD, -1) refused");
    CHECK(mallopt(-1002, 1 << 20) == 0 && errno == EINVAL, "cpu cache of 1 MiB accepted");
    CHECK(mallopt(-1002, 32 << 10) == 1, "mallopt(M_CPUSLAB_CPU_CACHE_BYTES, 32 KiB) refused");
    errno = 0;
    CHECK(mallopt(M_PERTURB, 0x55) == 0 && errno == EINVAL, "mallopt(M_PERTURB): errno %d", errno);
    errno = 0;
    CHECK(mallopt(12345, 1) == 0 && errno == EINVAL, "mallopt(12345): errno %d", errno);
    CHECK(mallopt(-1001, 1000) == 1, "decay back to 1000 ms refused");
}

int main(void) {
    test_preloaded();
    test_malloc();
    test_calloc();
    test_realloc();
    test_reallocarray();
    test_posix_memalign();
    test_aligned_alloc();
    test_memalign();
    test_valloc();
    test_free_sized();
    test_libc_aliases();
    test_info();
    test_malloc_info();
    test_mallopt();
    printf("api: %d checks passed\n", checks);
    return 0;
}
