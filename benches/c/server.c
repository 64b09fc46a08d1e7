/* server: a server-like mix with a larger working set. T worker threads handle
 * requests; each request allocates a request buffer (0.5..8 KiB), 8..24 header
 * strings (16..96 bytes), and a response grown by realloc (256 B doubling to
 * 1..64 KiB); it replaces one of its thread's long-lived sessions (64 B..2 KiB,
 * 10000 per thread) and inserts an entry (32 B..4 KiB) into a cache shared by
 * all threads (32768 slots under striped locks), freeing the entry it
 * replaces, which another thread may have allocated. One request in 500 also
 * uses a large buffer (256 KiB..2 MiB). Short, medium and long lifetimes.
 * usage: server [thousands of requests in all=600] [threads=4] */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SESSIONS 10000
#define CACHE_SLOTS 32768
#define STRIPES 64

static unsigned char *cache[CACHE_SLOTS];
static pthread_mutex_t stripes[STRIPES];

struct job {
    long requests;
    uint64_t seed;
    unsigned long sum;
};

static void *worker(void *arg) {
    struct job *job = arg;
    uint64_t rng = job->seed;
    unsigned char **sessions = checked(calloc(SESSIONS, sizeof *sessions));
    for (int i = 0; i < SESSIONS; i++) {
        size_t n = 64 + rng_next(&rng) % 1985;
        sessions[i] = checked(malloc(n));
        memset(sessions[i], 1, 64);
    }
    unsigned long sum = 0;
    char *headers[24];
    for (long r = 0; r < job->requests; r++) {
        uint64_t x = rng_next(&rng);
        /* The request. */
        size_t request_size = 512 + x % 7681;
        unsigned char *request = malloc(request_size);
        memset(request, (int)r, request_size < 1024 ? request_size : 1024);
        int nheaders = 8 + (int)((x >> 16) % 17);
        for (int h = 0; h < nheaders; h++) {
            size_t n = 16 + rng_next(&rng) % 81;
            headers[h] = malloc(n);
            memcpy(headers[h], request + h, 16);
            headers[h][n - 1] = 0;
        }
        /* The response, grown as it is written. */
        size_t target = 1024 + (x >> 24) % 64513, capacity = 256, length = 0;
        unsigned char *response = malloc(capacity);
        while (length < target) {
            size_t chunk = 200;
            if (length + chunk > capacity) {
                capacity *= 2;
                response = checked(realloc(response, capacity));
            }
            memset(response + length, (int)length, chunk);
            length += chunk;
        }
        sum += response[length / 2] + (unsigned char)headers[0][3];
        /* Sometimes a large buffer. */
        if ((x >> 40) % 500 == 0) {
            size_t n = (256 << 10) + (x >> 8) % (2 << 20);
            unsigned char *big = malloc(n);
            for (size_t i = 0; i < n; i += 4096)
                big[i] = (unsigned char)i;
            sum += big[n / 2 & ~(size_t)4095];
            free(big);
        }
        /* Replace a long-lived session. */
        int s = (int)((x >> 8) % SESSIONS);
        sum += sessions[s][0];
        free(sessions[s]);
        size_t session_size = 64 + (x >> 20) % 1985;
        sessions[s] = malloc(session_size);
        memcpy(sessions[s], response, 64);
        /* Insert into the shared cache. */
        size_t entry_size = 32 + (x >> 28) % 4065;
        unsigned char *entry = malloc(entry_size);
        memcpy(entry, response, entry_size < length ? entry_size : length);
        int slot = (int)((x >> 33) % CACHE_SLOTS);
        pthread_mutex_t *lock = &stripes[slot % STRIPES];
        pthread_mutex_lock(lock);
        unsigned char *old = cache[slot];
        cache[slot] = entry;
        pthread_mutex_unlock(lock);
        if (old != NULL) {
            sum += old[0];
            free(old);
        }
        for (int h = 0; h < nheaders; h++)
            free(headers[h]);
        free(response);
        free(request);
    }
    for (int i = 0; i < SESSIONS; i++)
        free(sessions[i]);
    free(sessions);
    job->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long requests = arg_long(argc, argv, 1, 600) * 1000L;
    long threads = arg_long(argc, argv, 2, 4);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripes[i], NULL);
    struct job *jobs = checked(calloc((size_t)threads, sizeof *jobs));
    for (long t = 0; t < threads; t++)
        jobs[t] = (struct job){requests / threads, 0x2545f4914f6cdd1dull * (uint64_t)(t + 3), 0};
    double seconds = run_threads(threads, worker, jobs, sizeof *jobs);
    unsigned long sum = 0;
    for (long t = 0; t < threads; t++)
        sum += jobs[t].sum;
    for (int i = 0; i < CACHE_SLOTS; i++)
        free(cache[i]);
    printf("server: %ld threads, %ld requests in %.3f s: %.2f us/request (check %lu)\n", threads,
           requests, seconds, seconds * 1e6 / (double)requests, sum);
    free(jobs);
    return 0;
}
