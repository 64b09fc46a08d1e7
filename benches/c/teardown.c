/* teardown: single thread, allocate N blocks (16..256 bytes, each written
 * once), then free them all in an order unrelated to the allocation order (a
 * shuffle), repeated: what freeing a large hash table or tree costs, where
 * each free finds its block's metadata cold. Prints ns per free (the frees
 * and the read of each block before it are timed, not the allocations and
 * the shuffle).
 * usage: teardown [rounds=10] [blocks per round=1000000] */
#include <stdlib.h>

#include "bench.h"

int main(int argc, char **argv) {
    long rounds = arg_long(argc, argv, 1, 10);
    long n = arg_long(argc, argv, 2, 1000000);
    unsigned char **blocks = checked(malloc((size_t)n * sizeof *blocks));
    uint64_t rng = 11;
    unsigned long sum = 0;
    double freeing = 0;
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < n; i++) {
            size_t size = 16 + rng_next(&rng) % 241;
            blocks[i] = checked(malloc(size));
            blocks[i][0] = (unsigned char)i;
        }
        /* A Fisher-Yates shuffle, driven by the benchmarks' xorshift. */
        for (long i = n - 1; i > 0; i--) {
            long j = (long)(rng_next(&rng) % (uint64_t)(i + 1));
            unsigned char *t = blocks[i];
            blocks[i] = blocks[j];
            blocks[j] = t;
        }
        double start = now_seconds();
        for (long i = 0; i < n; i++) {
            sum += blocks[i][0];
            free(blocks[i]);
        }
        freeing += now_seconds() - start;
    }
    printf("teardown: %ld rounds of %ld blocks freed in shuffled order in %.3f s: %.1f ns/free (check %lu)\n",
           rounds, n, freeing, freeing * 1e9 / (double)(rounds * n), sum);
    free(blocks);
    return 0;
}
