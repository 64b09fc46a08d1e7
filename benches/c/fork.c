/* fork: one process keeps W live blocks of 16..4096 B (so that most size
 * classes hold some) and forks F times, one child at a time; each child frees
 * a few of the blocks and allocates a few, then exits, and the parent waits
 * for it. It measures what a fork costs a program through its allocator (a
 * shell pays it for every command): the pages the allocator's fork handlers
 * write, each a page fault in the parent and a copy in the child, and the page
 * tables of the allocator's mappings, which the kernel copies. Prints
 * microseconds per fork.
 * usage: fork [forks=2000] [live blocks=10000] */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define CHILD_CHANGES 16

static void replace(unsigned char **blocks, long n, uint64_t *rng) {
    uint64_t r = rng_next(rng);
    long i = (long)(r % (uint64_t)n);
    size_t size = 16 + (size_t)((r >> 32) % 4081);
    free(blocks[i]);
    blocks[i] = checked(malloc(size));
    blocks[i][0] = (unsigned char)r;
    blocks[i][size - 1] = (unsigned char)(r >> 8);
}

int main(int argc, char **argv) {
    long forks = arg_long(argc, argv, 1, 2000);
    long n = arg_long(argc, argv, 2, 10000);
    unsigned char **blocks = checked(calloc((size_t)n, sizeof *blocks));
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (long i = 0; i < n; i++) {
        size_t size = 16 + (size_t)(rng_next(&rng) % 4081);
        blocks[i] = checked(malloc(size));
        blocks[i][0] = (unsigned char)i;
    }
    unsigned long sum = 0;
    double start = now_seconds();
    for (long k = 0; k < forks; k++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            for (int j = 0; j < CHILD_CHANGES; j++)
                replace(blocks, n, &rng);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork: child %ld failed (status %#x)\n", k, status);
            return 1;
        }
        /* The parent changes its heap between forks too. */
        replace(blocks, n, &rng);
        sum += blocks[k % n][0];
    }
    double seconds = now_seconds() - start;
    for (long i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    printf("fork: %ld forks with %ld live blocks in %.3f s: %.1f us/fork (check %lu)\n", forks, n,
           seconds, seconds * 1e6 / (double)forks, sum);
    return 0;
}
