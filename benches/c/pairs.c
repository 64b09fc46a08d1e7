/* pairs: single thread, malloc + free of one block at a time, sizes 16..1024
 * bytes (a fixed pseudo-random sequence); the allocator's fast path and
 * nothing else. usage: pairs [millions of pairs=100] */
#include <stdlib.h>

#include "bench.h"

int main(int argc, char **argv) {
    long pairs = arg_long(argc, argv, 1, 100) * 1000000L;
    size_t sizes[1024];
    uint64_t rng = 42;
    for (int i = 0; i < 1024; i++)
        sizes[i] = 16 + rng_next(&rng) % 1009;
    unsigned long sum = 0;
    double start = now_seconds();
    for (long i = 0; i < pairs; i++) {
        unsigned char *p = malloc(sizes[i & 1023]);
        p[0] = (unsigned char)i;
        ESCAPE(p);
        sum += p[0];
        free(p);
    }
    double seconds = now_seconds() - start;
    printf("pairs: %ld malloc+free pairs in %.3f s: %.1f ns/pair (check %lu)\n", pairs, seconds,
           seconds * 1e9 / (double)pairs, sum);
    return 0;
}
