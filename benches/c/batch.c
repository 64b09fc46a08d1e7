/* batch: single thread, allocate N blocks (8..512 bytes), then free all N
 * (alternately in allocation order and in reverse), repeated: caches overflow
 * and refill in bulk. usage: batch [rounds=100] [blocks per round=100000] */
#include <stdlib.h>

#include "bench.h"

int main(int argc, char **argv) {
    long rounds = arg_long(argc, argv, 1, 100);
    long n = arg_long(argc, argv, 2, 100000);
    unsigned char **blocks = checked(malloc((size_t)n * sizeof *blocks));
    size_t *sizes = checked(malloc((size_t)n * sizeof *sizes));
    uint64_t rng = 7;
    for (long i = 0; i < n; i++)
        sizes[i] = 8 + rng_next(&rng) % 505;
    unsigned long sum = 0;
    double start = now_seconds();
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < n; i++) {
            blocks[i] = malloc(sizes[i]);
            blocks[i][0] = (unsigned char)i;
        }
        if (r % 2 == 0) {
            for (long i = 0; i < n; i++) {
                sum += blocks[i][0];
                free(blocks[i]);
            }
        } else {
            for (long i = n - 1; i >= 0; i--) {
                sum += blocks[i][0];
                free(blocks[i]);
            }
        }
    }
    double seconds = now_seconds() - start;
    long ops = rounds * n;
    printf("batch: %ld rounds of %ld blocks in %.3f s: %.1f ns/(malloc+free) (check %lu)\n", rounds,
           n, seconds, seconds * 1e9 / (double)ops, sum);
    free(blocks);
    free(sizes);
    return 0;
}
