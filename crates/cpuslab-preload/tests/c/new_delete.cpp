// C++ under libcpuslab.so: the standard containers and smart pointers in heavy
// use from several threads, and every form of operator new/delete (plain,
// array, nothrow, sized, aligned, aligned + sized), including new of
// alignas(256) and alignas(4096) types. Prints a checksum that the test
// compares with the same program run without the library.
//
// usage: new_delete [scale=1]   exits 1 on the first failure
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define CHECK(cond, what)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "new_delete.cpp:%d: FAILED %s: %s\n", __LINE__, #cond, \
                         what);                                                      \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

struct alignas(256) Aligned256 {
    unsigned char bytes[300];
};

struct alignas(4096) Page {
    std::uint64_t words[8];
};

struct alignas(64) Line {
    std::uint64_t value;
    Line() : value(64) {}
};

static char *volatile sink;

static bool aligned(const void *p, std::size_t align) {
    return reinterpret_cast<std::uintptr_t>(p) % align == 0;
}

static std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static std::uint64_t mix(std::uint64_t h, const std::string &s) {
    for (unsigned char c : s)
        h = mix(h, c);
    return h;
}

static void operators() {
    // Plain, array, nothrow.
    for (std::size_t n : {0ul, 1ul, 24ul, 1000ul, 100000ul, 3000000ul}) {
        void *p = ::operator new(n);
        CHECK(p != nullptr && malloc_usable_size(p) >= n, "operator new");
        std::memset(p, 1, n);
        ::operator delete(p);
        p = ::operator new(n);
        ::operator delete(p, n); // sized
        char *a = new char[n + 1];
        std::memset(a, 2, n + 1);
        delete[] a;
        p = ::operator new[](n);
        ::operator delete[](p, n); // sized array
        p = ::operator new(n, std::nothrow);
        CHECK(p != nullptr, "nothrow new");
        ::operator delete(p, std::nothrow);
    }
    // Aligned, aligned + sized, aligned arrays.
    for (std::size_t align = 16; align <= (1u << 16); align <<= 1) {
        for (std::size_t n : {1ul, align, 3 * align + 5, 300000ul}) {
            void *p = ::operator new(n, std::align_val_t(align));
            CHECK(aligned(p, align) && malloc_usable_size(p) >= n, "aligned operator new");
            std::memset(p, 3, n);
            ::operator delete(p, n, std::align_val_t(align));
            p = ::operator new[](n, std::align_val_t(align));
            CHECK(aligned(p, align), "aligned operator new[]");
            ::operator delete[](p, std::align_val_t(align));
            p = ::operator new(n, std::align_val_t(align), std::nothrow);
            CHECK(p != nullptr && aligned(p, align), "aligned nothrow new");
            ::operator delete(p, std::align_val_t(align), std::nothrow);
        }
    }
    // Over-aligned types through new-expressions.
    for (int i = 0; i < 1000; i++) {
        auto *one = new Aligned256();
        CHECK(aligned(one, 256), "new Aligned256");
        std::memset(one->bytes, i, sizeof one->bytes);
        auto *many = new Aligned256[1 + i % 17];
        CHECK(aligned(many, 256), "new Aligned256[]");
        auto *page = new Page();
        CHECK(aligned(page, 4096), "new Page");
        auto lines = std::make_unique<Line[]>(1 + i % 9);
        CHECK(aligned(lines.get(), 64) && lines[0].value == 64, "make_unique<Line[]>");
        delete one;
        delete[] many;
        delete page;
    }
    std::vector<Aligned256> aligned_vector(1000);
    CHECK(aligned(aligned_vector.data(), 256), "vector<Aligned256>");
    auto shared_aligned = std::make_shared<Aligned256>();
    CHECK(aligned(shared_aligned.get(), 256), "make_shared<Aligned256>");
    // Out of memory is std::bad_alloc (and nullptr from nothrow).
    bool threw = false;
    try {
        volatile std::size_t huge = SIZE_MAX / 2;
        sink = new char[huge]; // kept: a new-expression whose result is unused may be elided
        delete[] sink;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw, "new char[SIZE_MAX / 2] did not throw bad_alloc");
    volatile std::size_t huge = SIZE_MAX - 4096;
    CHECK(::operator new(huge, std::nothrow) == nullptr, "nothrow new of SIZE_MAX");
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == nullptr,
          "aligned nothrow new of SIZE_MAX");
}

struct Node {
    std::string name;
    std::vector<int> values;
    std::weak_ptr<Node> parent;
    std::vector<std::shared_ptr<Node>> children;
};

static std::uint64_t containers(unsigned seed, int scale) {
    std::uint64_t h = seed;
    std::uint64_t rng = seed * 2654435761u + 1;
    auto next = [&rng] {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
    };
    // vector<int> growth and vector<string>.
    std::vector<int> ints;
    for (int i = 0; i < 200000 * scale; i++)
        ints.push_back(static_cast<int>(next() % 1000003));
    std::sort(ints.begin(), ints.end());
    for (std::size_t i = 0; i < ints.size(); i += 97)
        h = mix(h, static_cast<std::uint64_t>(ints[i]));
    std::vector<std::string> strings;
    for (int i = 0; i < 30000 * scale; i++) {
        std::string s = "item-" + std::to_string(next() % 100000);
        s.append(next() % 64, 'x');
        strings.push_back(std::move(s));
    }
    std::sort(strings.begin(), strings.end());
    for (std::size_t i = 0; i < strings.size(); i += 13)
        h = mix(h, strings[i]);
    // map: insert, look up, erase.
    std::map<int, std::string> ordered;
    for (int i = 0; i < 40000 * scale; i++)
        ordered[static_cast<int>(next() % 50000)] = std::to_string(i) + "/" + std::to_string(i * 7);
    for (int i = 0; i < 20000 * scale; i++)
        ordered.erase(static_cast<int>(next() % 50000));
    for (const auto &[k, v] : ordered)
        h = mix(mix(h, static_cast<std::uint64_t>(k)), v);
    // unordered_map with string keys, rehashing as it grows.
    std::unordered_map<std::string, std::uint64_t> hashed;
    for (int i = 0; i < 50000 * scale; i++)
        hashed["key" + std::to_string(next() % 40000)] += static_cast<std::uint64_t>(i);
    std::uint64_t sum = 0;
    for (const auto &kv : hashed)
        sum += kv.second * kv.first.size();
    h = mix(h, sum);
    h = mix(h, hashed.size());
    // shared_ptr trees with weak parents; make_shared and shared_ptr(new).
    for (int round = 0; round < 20 * scale; round++) {
        auto root = std::make_shared<Node>();
        root->name = "root";
        std::vector<std::shared_ptr<Node>> all{root};
        for (int i = 0; i < 500; i++) {
            std::shared_ptr<Node> node =
                i % 2 ? std::make_shared<Node>() : std::shared_ptr<Node>(new Node());
            node->name = std::string(next() % 40, 'n') + std::to_string(i);
            node->values.assign(next() % 20, i);
            auto &parent = all[next() % all.size()];
            node->parent = parent;
            parent->children.push_back(node);
            all.push_back(node);
        }
        std::uint64_t depth_sum = 0;
        for (const auto &node : all) {
            std::uint64_t depth = 0;
            for (auto p = node->parent.lock(); p; p = p->parent.lock())
                depth++;
            depth_sum += depth + node->values.size() + node->name.size();
        }
        h = mix(h, depth_sum);
        // Break the cycles downwards and let everything go.
        for (auto &node : all)
            node->children.clear();
    }
    return h;
}

int main(int argc, char **argv) {
    int scale = argc > 1 ? std::atoi(argv[1]) : 1;
    operators();
    // The library is loaded: sized delete of a block from it is fine, and
    // malloc_usable_size (ours: the class size) answers for new'd memory.
    void *probe = ::operator new(100);
    CHECK(malloc_usable_size(probe) >= 100, "malloc_usable_size of operator new");
    ::operator delete(probe, 100);

    const int threads = 4;
    std::vector<std::uint64_t> results(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([t, scale, &results] { results[t] = containers(t + 1, scale); });
    std::uint64_t h = containers(99, scale);
    for (auto &thread : pool)
        thread.join();
    for (auto r : results)
        h = mix(h, r);
    std::printf("new_delete: checksum %016llx\n", static_cast<unsigned long long>(h));
    return 0;
}
