/* libcpuslab.so loaded with dlopen after start-up (not preloaded): its TLS (the
 * own-mode rseq area, initial-exec) comes from glibc's static TLS surplus, and
 * its malloc family must work when called
 * through dlsym, from the main thread and from threads started afterwards. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef void *(*realloc_fn)(void *, size_t);

static malloc_fn my_malloc;
static free_fn my_free;
static realloc_fn my_realloc;

static int churn(int seed) {
    void *blocks[256];
    for (int i = 0; i < 256; i++) {
        size_t size = 16 + (size_t)((i * 131 + seed) % 5000);
        blocks[i] = my_malloc(size);
        if (!blocks[i]) return 1;
        memset(blocks[i], i & 0xff, size);
    }
    for (int i = 0; i < 256; i++) {
        blocks[i] = my_realloc(blocks[i], 64 + (size_t)i * 300);
        if (!blocks[i] || ((unsigned char *)blocks[i])[0] != (i & 0xff)) return 1;
    }
    for (int i = 0; i < 256; i++) my_free(blocks[i]);
    return 0;
}

static void *thread_main(void *arg) {
    return (void *)(long)churn((int)(long)arg);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    my_malloc = (malloc_fn)dlsym(lib, "malloc");
    my_free = (free_fn)dlsym(lib, "free");
    my_realloc = (realloc_fn)dlsym(lib, "realloc");
    if (!my_malloc || !my_free || !my_realloc) return 1;
    if (churn(1)) return 1;
    pthread_t threads[4];
    for (long i = 0; i < 4; i++) pthread_create(&threads[i], NULL, thread_main, (void *)i);
    for (int i = 0; i < 4; i++) {
        void *failed;
        pthread_join(threads[i], &failed);
        if (failed) return 1;
    }
    puts("dlopen checks passed");
    return 0;
}
