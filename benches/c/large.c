/* large: one thread keeps B buffers of 5..25 MiB; R times it frees one at
 * random and allocates a new one of a new random size in its place, zero-filled
 * by the program itself the way C++ `new char[n]()` does it (malloc, then
 * memset: not calloc, so an allocator cannot skip the zeroing for fresh pages),
 * then writes a few bytes of it. The cost is in the large-object path: whether
 * freed buffers are kept and reused or returned and faulted in again.
 * usage: large [replacements=2000] [buffers=20] */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MIB ((size_t)1 << 20)

static unsigned char *new_buffer(size_t size, uint64_t r) {
    unsigned char *p = checked(malloc(size));
    ESCAPE(p); /* keeps the compiler from making malloc + memset a calloc */
    memset(p, 0, size);
    p[0] = (unsigned char)r;
    p[size / 2] = (unsigned char)(r >> 8);
    p[size - 1] = (unsigned char)(r >> 16);
    return p;
}

int main(int argc, char **argv) {
    long replacements = arg_long(argc, argv, 1, 2000);
    long n = arg_long(argc, argv, 2, 20);
    unsigned char **buffers = checked(calloc((size_t)n, sizeof *buffers));
    size_t *sizes = checked(calloc((size_t)n, sizeof *sizes));
    uint64_t rng = 0x853c49e6748fea9bull;
    unsigned long sum = 0;
    double start = now_seconds();
    for (long i = 0; i < n; i++) {
        uint64_t r = rng_next(&rng);
        sizes[i] = 5 * MIB + (r >> 24) % (20 * MIB + 1);
        buffers[i] = new_buffer(sizes[i], r);
    }
    double filled = now_seconds();
    for (long k = 0; k < replacements; k++) {
        uint64_t r = rng_next(&rng);
        long i = (long)((r >> 40) % (uint64_t)n);
        unsigned char *old = buffers[i];
        size_t size = sizes[i];
        /* A zero from the fill, and the three bytes written after it. */
        sum += old[(r >> 8) % size] + old[0] + old[size / 2] + old[size - 1];
        free(old);
        sizes[i] = 5 * MIB + (r >> 24) % (20 * MIB + 1);
        buffers[i] = new_buffer(sizes[i], r);
    }
    double seconds = now_seconds() - start;
    for (long i = 0; i < n; i++)
        free(buffers[i]);
    printf("large: %ld buffers of 5..25 MiB, %ld replacements in %.3f s (%.2f ms each, %.3f s to "
           "fill) (check %lu)\n",
           n, replacements, seconds, (seconds - (filled - start)) * 1e3 / (double)replacements,
           filled - start, sum);
    free(buffers);
    free(sizes);
    return 0;
}
