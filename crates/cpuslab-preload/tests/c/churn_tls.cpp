// Thread churn with C++ thread_local destructors: thousands of std::threads,
// each with thread_local objects (std::string, std::vector, a map) whose
// destructors allocate and free, a __thread pointer freed by a
// pthread_key destructor, static objects whose destructors allocate at exit,
// and exit() while detached threads are still allocating.
//
// usage: churn_tls [threads=3000]   exits 1 on the first failure
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

static std::atomic<long> destructors{0};

static void fail(const char *what) {
    std::fprintf(stderr, "churn_tls: %s\n", what);
    std::_Exit(1);
}

struct PerThread {
    std::string name;
    std::vector<std::string> log;
    std::map<int, std::vector<int>> table;

    PerThread() : name(std::string(40, 't')) {}

    ~PerThread() {
        // Allocates while the thread is being torn down.
        std::string summary = name + ":" + std::to_string(log.size());
        std::vector<int> copy;
        for (auto &entry : table)
            copy.insert(copy.end(), entry.second.begin(), entry.second.end());
        for (std::size_t i = 0; i < copy.size(); i++)
            if (copy[i] != static_cast<int>(i % 7))
                fail("thread_local contents overwritten");
        if (summary.size() < name.size())
            fail("bad summary");
        destructors.fetch_add(1);
    }
};

thread_local PerThread per_thread;
thread_local std::vector<char> scratch(3000, 's');
static __thread char *raw_block;
static pthread_key_t key;

static void key_destructor(void *value) {
    std::free(value);
    if (raw_block != nullptr) {
        if (raw_block[0] != 'r' || raw_block[4999] != 'r')
            fail("__thread block overwritten");
        std::free(raw_block);
        raw_block = nullptr;
    }
}

static void work(int id) {
    per_thread.name += std::to_string(id);
    int k = 0;
    for (int i = 0; i < 20; i++) {
        per_thread.log.push_back(std::string(static_cast<std::size_t>(i * 13 % 200), 'l'));
        auto &v = per_thread.table[i];
        for (int j = 0; j < 10; j++)
            v.push_back(k++ % 7);
    }
    if (scratch.size() != 3000 || scratch[2999] != 's')
        fail("thread_local vector overwritten");
    raw_block = static_cast<char *>(std::malloc(5000));
    if (raw_block == nullptr)
        fail("malloc returned NULL");
    std::memset(raw_block, 'r', 5000);
    pthread_setspecific(key, std::malloc(64));
}

struct StaticWithAllocatingDestructor {
    std::vector<std::string> items;
    ~StaticWithAllocatingDestructor() {
        std::string all;
        for (auto &s : items)
            all += s;
        std::vector<int> more(100000, 1);
        if (all.size() != 1000 * 5 || more[99999] != 1)
            std::_Exit(1);
    }
};

static StaticWithAllocatingDestructor at_exit_object;

int main(int argc, char **argv) {
    int total = argc > 1 ? std::atoi(argv[1]) : 3000;
    for (int i = 0; i < 1000; i++)
        at_exit_object.items.push_back("item.");
    if (pthread_key_create(&key, key_destructor) != 0)
        return 1;
    std::atexit([] {
        std::string s(100000, 'a');
        std::vector<std::string> v(100, s);
        if (v[99].size() != 100000)
            std::_Exit(1);
    });

    const int wave = 16;
    long expected = 0;
    while (expected < total) {
        std::vector<std::thread> threads;
        for (int i = 0; i < wave && expected < total; i++, expected++)
            threads.emplace_back(work, static_cast<int>(expected));
        for (auto &t : threads)
            t.join();
    }
    if (destructors.load() != expected) {
        std::fprintf(stderr, "churn_tls: %ld thread_local destructors for %ld threads\n",
                     destructors.load(), expected);
        return 1;
    }
    std::printf("churn_tls: %ld threads, %ld thread_local destructors\n", expected,
                destructors.load());
    std::fflush(stdout);

    // exit() while detached threads still allocate (with their own
    // thread_local objects) and the static destructors run.
    for (int i = 0; i < 4; i++)
        std::thread([i] {
            for (unsigned n = 0;; n++) {
                std::string s(static_cast<std::size_t>((n * 37 + static_cast<unsigned>(i)) % 3000), 'x');
                std::vector<std::string> v(8, s);
                per_thread.log.push_back(std::move(s));
                if (per_thread.log.size() > 100)
                    per_thread.log.clear();
            }
        }).detach();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::exit(0);
}
