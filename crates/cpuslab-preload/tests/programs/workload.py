# An allocation-heavy Python workload: a 200k-entry dict, 100k strings sorted,
# lists, sets, string building, and 4 threads doing the same kind of work.
# Prints a checksum that does not depend on the allocator (compared with a run
# without LD_PRELOAD).
import hashlib
import threading


def work(seed, n):
    h = hashlib.sha256(str(seed).encode())
    table = {}
    for i in range(n):
        key = "k%d-%d" % (seed, (i * 7919) % (n * 3))
        table[key] = [i, str(i) * (i % 7), (i, seed)]
    for i in range(0, n, 3):
        table.pop("k%d-%d" % (seed, (i * 7919) % (n * 3)), None)
    words = sorted("%x" % ((i * 2654435761 + seed) % 1000003) + "w" * (i % 40) for i in range(n // 2))
    h.update("".join(words[::97]).encode())
    h.update(str(len(table)).encode())
    h.update(str(sum(len(v[1]) for v in table.values())).encode())
    s = set(range(0, n, 2)) ^ set(range(0, n, 3))
    h.update(str(len(s)).encode())
    return h.hexdigest()


big = {"key%d" % i: ("value%d" % i) * (i % 5) for i in range(200000)}
strings = sorted(str((i * 7919) % 100003) + "x" * (i % 50) for i in range(100000))
total = hashlib.sha256()
total.update(str(len(big)).encode())
total.update(str(sum(len(v) for v in big.values())).encode())
total.update("".join(strings[::1000]).encode())
del big

results = [None] * 4


def run(t):
    results[t] = work(t, 50000)


threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for r in results:
    total.update(r.encode())
print("python checksum", total.hexdigest())
