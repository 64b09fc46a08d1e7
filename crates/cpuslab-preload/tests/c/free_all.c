/* Free-all returns memory without malloc_trim: allocates about 1 GiB (half in
 * blocks of 16 B to 1 KiB, half in blocks of 16 KiB to 256 KiB), touching every
 * page, frees it all, waits 1 s, then calls malloc_trim(0). Prints the resident
 * set (MiB) at each step on one line:
 *   free_all: baseline B peak P after_free F after_1s S after_trim T
 * usage: free_all [MiB=1024] */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rng.h"

static double rss_mib(void) {
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2)
        exit(2);
    fclose(f);
    return (double)pages_resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

int main(int argc, char **argv) {
    size_t total = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
    size_t max_blocks = 4u << 20;
    /* The block table lives outside malloc, so no measurement counts it. */
    void **blocks = mmap(NULL, max_blocks * sizeof(void *), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (blocks == MAP_FAILED)
        return 2;
    double baseline = rss_mib();
    uint64_t rng = 12345;
    size_t allocated = 0, n = 0;
    while (allocated < total && n < max_blocks) {
        size_t size = allocated < total / 2 ? 16 + next(&rng) % 1009
                                            : (16u << 10) + next(&rng) % (240u << 10);
        char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "free_all: out of memory\n");
            return 1;
        }
        for (size_t off = 0; off < size; off += 4096)
            p[off] = 1;
        blocks[n++] = p;
        allocated += size;
    }
    double peak = rss_mib();
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    double after_free = rss_mib();
    sleep(1);
    double after_second = rss_mib();
    malloc_trim(0);
    double after_trim = rss_mib();
    printf("free_all: baseline %.1f peak %.1f after_free %.1f after_1s %.1f after_trim %.1f\n",
           baseline, peak, after_free, after_second, after_trim);
    return 0;
}
