//! Heavy use of std's collections with cpuslab as the global allocator: Vec
//! growth, String building, HashMap and BTreeMap with 100k entries, Arc shared
//! across threads, and thread churn (500 short-lived threads spawned in waves).
//! Every result is checked (sums, lengths, contents).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;

mod support;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const ENTRIES: u64 = 100_000;

fn report(what: &str, start: Instant) {
    println!(
        "{what}: {:.1} ms; {}",
        start.elapsed().as_secs_f64() * 1e3,
        support::brief(&cpuslab::stats())
    );
}

#[test]
fn vec_growth_keeps_contents() {
    let start = Instant::now();
    // One vector grown by push from empty to 2M elements (through every class and
    // into large objects), checked at every doubling.
    let mut v: Vec<u64> = Vec::new();
    let mut last_cap = 0;
    let mut reallocs = 0;
    for i in 0..2_000_000u64 {
        v.push(i * 3 + 1);
        if v.capacity() != last_cap {
            last_cap = v.capacity();
            reallocs += 1;
            assert!(v.iter().enumerate().all(|(j, &x)| x == j as u64 * 3 + 1));
        }
    }
    let sum: u64 = v.iter().sum();
    assert_eq!(sum, 3 * (2_000_000 * 1_999_999 / 2) + 2_000_000);
    // Shrinking moves it back down through the classes.
    for keep in [1_000_000, 100_000, 5_000, 300, 7, 0] {
        v.truncate(keep);
        v.shrink_to_fit();
        assert_eq!(v.len(), keep);
        assert!(v.iter().enumerate().all(|(j, &x)| x == j as u64 * 3 + 1));
    }
    // Many vectors of many element sizes growing side by side.
    let mut bytes: Vec<Vec<u8>> = (0..64).map(|_| Vec::new()).collect();
    let mut words: Vec<Vec<u128>> = (0..64).map(|_| Vec::new()).collect();
    for round in 0..2000usize {
        for (k, b) in bytes.iter_mut().enumerate() {
            b.extend(std::iter::repeat_n((round + k) as u8, k + 1));
        }
        let w = &mut words[round % 64];
        w.push(round as u128 * 0x1_0000_0001);
    }
    for (k, b) in bytes.iter().enumerate() {
        assert_eq!(b.len(), 2000 * (k + 1));
        for (round, chunk) in b.chunks(k + 1).enumerate() {
            assert!(chunk.iter().all(|&x| x == (round + k) as u8));
        }
    }
    for (k, w) in words.iter().enumerate() {
        assert_eq!(w.len(), 2000 / 64 + usize::from(k < 2000 % 64));
        for (n, &x) in w.iter().enumerate() {
            assert_eq!(x, (n * 64 + k) as u128 * 0x1_0000_0001);
        }
    }
    let mut deque = VecDeque::new();
    for i in 0..200_000u32 {
        deque.push_back(i);
        if i % 3 == 0 {
            deque.pop_front();
        }
    }
    assert_eq!(deque.len(), 200_000 - 200_000 / 3 - 1);
    assert_eq!(deque.front(), Some(&(200_000 / 3 + 1)));
    report(&format!("vec growth ({reallocs} growths)"), start);
}

#[test]
fn strings_build_and_format() {
    let start = Instant::now();
    let mut s = String::new();
    for i in 0..100_000 {
        write!(s, "{i},").unwrap();
    }
    let parsed: Vec<u64> = s
        .trim_end_matches(',')
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(parsed.len(), 100_000);
    assert_eq!(parsed.iter().sum::<u64>(), 100_000 * 99_999 / 2);
    // Many small strings, concatenated, cloned, dropped.
    let words: Vec<String> = (0..50_000)
        .map(|i| format!("word-{i:05}-{}", "x".repeat(i % 40)))
        .collect();
    let joined = words.join(" ");
    assert_eq!(
        joined.len(),
        words.iter().map(String::len).sum::<usize>() + words.len() - 1
    );
    let back: Vec<&str> = joined.split(' ').collect();
    assert_eq!(back.len(), words.len());
    for (a, b) in words.iter().zip(&back) {
        assert_eq!(a, b);
    }
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    for (w, u) in words.iter().zip(&upper) {
        assert_eq!(w.to_uppercase(), *u);
        assert_eq!(u.to_lowercase(), *w);
    }
    let mut big = String::new();
    for w in &words {
        big.insert_str(0, &w[..4]);
        if big.len() > 64 * 1024 {
            big = big.split_off(big.len() / 2);
        }
    }
    assert!(big.chars().all(|c| "word".contains(c)));
    report("strings", start);
}

#[test]
fn hash_map_with_100k_entries() {
    let start = Instant::now();
    let mut map: HashMap<u64, String> = HashMap::new();
    for i in 0..ENTRIES {
        assert!(map.insert(i, format!("value {i}")).is_none());
    }
    assert_eq!(map.len(), ENTRIES as usize);
    for i in 0..ENTRIES {
        assert_eq!(map[&i], format!("value {i}"));
    }
    for i in (0..ENTRIES).step_by(2) {
        assert_eq!(map.remove(&i), Some(format!("value {i}")));
    }
    assert_eq!(map.len(), ENTRIES as usize / 2);
    for (k, v) in map.iter_mut() {
        assert_eq!(k % 2, 1);
        v.push_str(" (odd)");
    }
    let total: u64 = map.keys().sum();
    assert_eq!(total, (ENTRIES / 2) * (ENTRIES / 2));
    assert!(map.values().all(|v| v.ends_with(" (odd)")));
    map.shrink_to_fit();
    let set: HashSet<Vec<u8>> = (0..ENTRIES).map(|i| i.to_le_bytes().to_vec()).collect();
    assert_eq!(set.len(), ENTRIES as usize);
    assert!(set.contains(77u64.to_le_bytes().as_slice()));
    report("hash map", start);
}

#[test]
fn btree_map_with_100k_entries() {
    let start = Instant::now();
    let mut map: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for i in 0..ENTRIES as u32 {
        let key = format!("{:08}", (i as u64 * 7919) % ENTRIES);
        map.entry(key).or_default().push(i);
    }
    assert_eq!(map.len(), ENTRIES as usize); // 7919 is prime to 100k: a permutation
    let mut previous: Option<&String> = None;
    for (k, v) in &map {
        assert!(previous.is_none_or(|p| p < k));
        previous = Some(k);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0] as u64 * 7919) % ENTRIES, k.parse::<u64>().unwrap());
    }
    let removed: Vec<_> = map
        .range("00050000".to_string().."00060000".to_string())
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(removed.len(), 10_000);
    let mut removed_sum = 0;
    for k in &removed {
        let v = map.remove(k).unwrap();
        assert_eq!((v[0] as u64 * 7919) % ENTRIES, k.parse::<u64>().unwrap());
        removed_sum += v[0] as u64;
    }
    assert_eq!(map.len(), ENTRIES as usize - 10_000);
    let sum: u64 = map.values().map(|v| v[0] as u64).sum();
    assert_eq!(sum + removed_sum, ENTRIES * (ENTRIES - 1) / 2);
    report("btree map", start);
}

#[test]
fn arc_shared_across_threads() {
    let start = Instant::now();
    let data: Arc<Vec<u64>> = Arc::new((1..=100_000).collect());
    let table = Arc::new(RwLock::new(HashMap::new()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<Arc<String>>();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let data = Arc::clone(&data);
            let table = Arc::clone(&table);
            let results = Arc::clone(&results);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let sum: u64 = data.iter().filter(|&&x| x % 8 == t).sum();
                for i in 0..2000u64 {
                    let shared = Arc::new(format!("{t}:{i}"));
                    tx.send(Arc::clone(&shared)).unwrap();
                    table.write().unwrap().insert((t, i), shared);
                }
                results.lock().unwrap().push((t, sum));
            })
        })
        .collect();
    drop(tx);
    // The receiver drops the clones here, on another thread than the one that
    // allocated them (the last reference may fall on either side).
    let received: usize = rx.iter().map(|s| s.len()).sum();
    for t in threads {
        t.join().unwrap();
    }
    let expected_len: usize = (0..8u64)
        .flat_map(|t| (0..2000u64).map(move |i| format!("{t}:{i}").len()))
        .sum();
    assert_eq!(received, expected_len);
    let mut results = results.lock().unwrap().clone();
    results.sort();
    let total: u64 = results.iter().map(|r| r.1).sum();
    assert_eq!(total, 100_000 * 100_001 / 2);
    let table = Arc::try_unwrap(table).unwrap().into_inner().unwrap();
    assert_eq!(table.len(), 16_000);
    for ((t, i), s) in &table {
        assert_eq!(Arc::strong_count(s), 1);
        assert_eq!(**s, format!("{t}:{i}"));
    }
    assert_eq!(Arc::strong_count(&data), 1);
    report("arc across threads", start);
}

#[test]
fn thread_churn_500_threads_in_waves() {
    let start = Instant::now();
    const WAVES: usize = 10;
    const PER_WAVE: usize = 50;
    let done = Arc::new(AtomicUsize::new(0));
    let mut survivors: Vec<Box<[u8]>> = Vec::new();
    for wave in 0..WAVES {
        let handles: Vec<_> = (0..PER_WAVE)
            .map(|k| {
                let done = Arc::clone(&done);
                std::thread::Builder::new()
                    .name(format!("churn-{wave}-{k}"))
                    .spawn(move || {
                        let id = wave * PER_WAVE + k;
                        // Allocate a little of everything, keep one block to hand back.
                        let mut v: Vec<Box<[u8]>> = (0..64)
                            .map(|j| vec![(id + j) as u8; 1 + (id * 37 + j * 101) % 3000].into())
                            .collect();
                        let s: String = (0..100)
                            .map(|j| char::from(b'a' + (j % 26) as u8))
                            .collect();
                        assert_eq!(s.len(), 100);
                        for (j, b) in v.iter().enumerate() {
                            assert!(b.iter().all(|&x| x == (id + j) as u8));
                        }
                        let kept = v.swap_remove(id % 64);
                        done.fetch_add(1, Ordering::Relaxed);
                        (id, kept)
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            let (id, kept) = h.join().unwrap();
            let j = id % 64;
            assert_eq!(kept.len(), 1 + (id * 37 + j * 101) % 3000);
            assert!(kept.iter().all(|&x| x == (id + j) as u8));
            survivors.push(kept);
        }
    }
    assert_eq!(done.load(Ordering::Relaxed), WAVES * PER_WAVE);
    assert_eq!(survivors.len(), WAVES * PER_WAVE);
    drop(survivors);
    report("thread churn (500 threads)", start);
}
