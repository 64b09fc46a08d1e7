/* fork() while other threads allocate: the child must never inherit an
 * allocator lock held by a thread that does not exist in it.
 *
 * Worker threads allocate, check and free in a loop; meanwhile the main thread
 * (and, now and then, a worker) forks many times. Each child allocates and
 * frees at once (small, big and large blocks, realloc, a thread of its own,
 * sometimes a grandchild), checks the contents, and leaves with _exit. A child
 * arms alarm() first: if it deadlocks, SIGALRM kills it and the parent reports
 * the failure instead of hanging.
 *
 * usage: fork [forks=200] [threads=4]   exits 1 on the first failure */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_ALARM_SECONDS 20

static atomic_int stop;
static atomic_int failures;

static int wait_child(pid_t pid, const char *who) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "fork: %s %d killed by signal %d%s\n", who, (int)pid,
                WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (deadlock: alarm)" : "");
    else
        fprintf(stderr, "fork: %s %d exited with %d\n", who, (int)pid, WEXITSTATUS(status));
    return 1;
}

/* Allocates blocks of many sizes, fills, checks and frees them. 0 if fine. */
static int churn(unsigned seed, int rounds) {
    enum { N = 64 };
    unsigned char *blocks[N];
    size_t sizes[N];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            size_t n = (seed >> 8) % 1000;
            if (i % 16 == 0)
                n = 4096 + (seed >> 4) % 300000; /* big classes and large blocks */
            sizes[i] = n;
            blocks[i] = malloc(n);
            if (blocks[i] == NULL)
                return 1;
            memset(blocks[i], (int)(i + r), n);
        }
        for (int i = 0; i < N; i += 2) {
            unsigned char *p = realloc(blocks[i], sizes[i] + 100);
            if (p == NULL)
                return 1;
            blocks[i] = p;
            memset(p + sizes[i], (int)(i + r), 100);
            sizes[i] += 100;
        }
        for (int i = 0; i < N; i++) {
            for (size_t j = 0; j < sizes[i]; j += 97)
                if (blocks[i][j] != (unsigned char)(i + r))
                    return 1;
            free(blocks[i]);
        }
    }
    return 0;
}

static void *child_thread(void *arg) {
    return (void *)(intptr_t)churn((unsigned)(uintptr_t)arg, 4);
}

/* What a child does: allocate and free at once, from two threads. */
__attribute__((noreturn))
static void child(unsigned seed, int may_fork_again) {
    alarm(CHILD_ALARM_SECONDS);
    if (churn(seed, 2) != 0) {
        fprintf(stderr, "fork: child %d: contents check failed\n", (int)getpid());
        _exit(3);
    }
    pthread_t id;
    void *result = NULL;
    if (pthread_create(&id, NULL, child_thread, (void *)(uintptr_t)seed) != 0 ||
        pthread_join(id, &result) != 0 || result != NULL) {
        fprintf(stderr, "fork: child %d: thread failed\n", (int)getpid());
        _exit(4);
    }
    if (may_fork_again) {
        pid_t pid = fork();
        if (pid == 0)
            child(seed + 1, 0);
        if (pid < 0 || wait_child(pid, "grandchild") != 0)
            _exit(5);
    }
    _exit(0);
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    long rounds = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (churn(seed + (unsigned)rounds, 1) != 0) {
            fprintf(stderr, "fork: worker contents check failed\n");
            atomic_fetch_add(&failures, 1);
        }
        /* Now and then fork from this thread too. */
        if (++rounds % 50 == 0) {
            pid_t pid = fork();
            if (pid == 0)
                child(seed, 0);
            if (pid < 0 || wait_child(pid, "child of a worker") != 0)
                atomic_fetch_add(&failures, 1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 200;
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    pthread_t ids[64];
    if (threads > 64)
        threads = 64;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)(i * 7919)) != 0)
            return 1;
    for (int i = 0; i < forks && atomic_load(&failures) == 0; i++) {
        pid_t pid = fork();
        if (pid == 0)
            child((unsigned)i, i % 10 == 0);
        if (pid < 0) {
            perror("fork");
            atomic_fetch_add(&failures, 1);
            break;
        }
        if (wait_child(pid, "child") != 0)
            atomic_fetch_add(&failures, 1);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    if (atomic_load(&failures) != 0) {
        fprintf(stderr, "fork: %d failures\n", atomic_load(&failures));
        return 1;
    }
    printf("fork: %d forks with %d threads allocating: all children finished\n", forks, threads);
    return 0;
}
