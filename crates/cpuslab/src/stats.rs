//! Statistics, readable at any time without allocating: a plain value filled
//! from relaxed counters (consistent enough for monitoring, not a snapshot).

use core::fmt::{self, Write};

use rseq_core::{Counters, Index, Mode};

use crate::cache_counters::CacheCounters;
use crate::central::{self, ClassStats as SpanClassStats};
use crate::cpu_cache;
use crate::depot;
use crate::large::{self, LargeStats};
use crate::meta;
use crate::page_heap::{self, PageHeapStats};
use crate::pagemap;
use crate::size_class::{Class, NUM_CLASSES};
use crate::span;

/// One size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassStats {
    /// Object size of the class.
    pub size: usize,
    /// Objects in the program's hands.
    pub in_use: usize,
    /// Free objects cached on CPUs (and, without rseq, in threads' caches).
    pub cpu_cached: usize,
    /// Objects the per-CPU stacks of this class may hold now, all shelves
    /// together: each starts at its base and grows where it misses
    /// (docs/tuning.md, "What cpuslab can cache").
    pub cpu_capacity: usize,
    /// Free objects in the depot.
    pub depot_cached: usize,
    /// Free objects in spans.
    pub span_free: usize,
    /// Spans of this class.
    pub spans: usize,
    /// The per-CPU tier's misses, overflows and depot transfers, all shelves
    /// together ([`shelf_counters`] has them per shelf).
    pub cache: CacheCounters,
}

/// What the allocator holds, by tier.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes in the program's hands (size-class rounded; large blocks whole).
    pub allocated: usize,
    /// Bytes in spans that hold objects, plus large blocks.
    pub active: usize,
    /// Bytes that may be resident: everything committed and not returned to the OS,
    /// metadata included (an upper bound: pages of a span never touched count too).
    pub resident: usize,
    /// Bytes of address space mapped.
    pub mapped: usize,
    /// Bytes of free objects cached on CPUs (and, without rseq, in threads'
    /// caches).
    pub cpu_cache_bytes: usize,
    /// Bytes the per-CPU caches may hold above their classes' bases now, all
    /// shelves together: capacity that grew where stacks missed, at most the
    /// growth budget per shelf (docs/tuning.md, "What cpuslab can cache").
    pub cpu_growth_bytes: usize,
    /// Bytes of free objects in the depot.
    pub depot_bytes: usize,
    /// Bytes of free objects in spans.
    pub span_free_bytes: usize,
    /// Bytes of large blocks.
    pub large_bytes: usize,
    /// Number of large blocks.
    pub large_count: usize,
    /// Bytes of freed large mappings kept for reuse.
    pub large_cached_bytes: usize,
    /// Bytes of metadata (span records, page map, batch records).
    pub metadata_bytes: usize,
    /// Bytes of free page runs kept committed (warm) for new spans, within the
    /// page heap's retained budget.
    pub retained_bytes: usize,
    /// Bytes given back to the OS so far (decommitted free runs).
    pub returned_bytes: usize,
    /// Decay sweeps started so far.
    pub decays: usize,
    /// How long ago the last decay sweep started, in milliseconds (`None`: never).
    pub last_decay_ms_ago: Option<u64>,
    /// Whether the background decay thread runs.
    pub background: bool,
    /// Zeroed allocations served from never-used memory, with no clearing.
    pub zeroed_without_clearing: usize,
    /// Per size class.
    pub classes: [ClassStats; NUM_CLASSES],
    /// The rseq mode of this process.
    pub mode: Mode,
    /// What indexes the per-CPU caches.
    pub index: Index,
    /// rseq restart counters (aborts, moves, give-ups).
    pub rseq: Counters,
    /// Shelves of the per-CPU tier (one per possible CPU or concurrency id;
    /// 0 before the tier exists): the valid arguments of [`shelf_counters`].
    pub shelves: u32,
}

/// The per-CPU tier's counters of shelf `index` (a CPU id, or a concurrency
/// id with the default index), per size class in the order of
/// [`Stats::classes`]; `None` when there is no such shelf.
pub fn shelf_counters(index: u32) -> Option<[CacheCounters; NUM_CLASSES]> {
    let mut out = [CacheCounters::default(); NUM_CLASSES];
    for (class, slot) in Class::all().zip(out.iter_mut()) {
        *slot = cpu_cache::shelf_counters(index, class)?;
    }
    Some(out)
}

/// Prints [`stats`]'s report to stderr, without allocating (the report at exit
/// and `malloc_stats` use it).
pub fn print_stats() {
    let mut out = crate::os::BufferedWriter::stderr();
    let _ = write!(out, "{}", stats());
}

/// The most free memory cpuslab's caches can hold with `shelves` per-CPU
/// shelves in use, large mappings aside: every shelf full, the depot and the
/// page heap's retained runs at their budgets. Shelves in use are at most the
/// number of possible CPUs, and with the concurrency-id index (the default)
/// at most the number of threads that ran at once, capped by the CPUs the
/// process may use (docs/tuning.md, "What cpuslab can cache").
pub fn cached_bytes_bound(shelves: usize) -> usize {
    shelves
        .saturating_mul(crate::cpu_cache::shelf_bound_bytes())
        .saturating_add(crate::depot::BUDGET_BYTES)
        .saturating_add(crate::page_heap::RETAINED_BUDGET_BYTES)
}

/// Reads the statistics now (no allocation, no locks).
pub fn stats() -> Stats {
    crate::first_use::ensure();
    let mut lower = LowerStats::new();
    stats_into(&mut lower);
    let (decays, last_decay_ms_ago) = crate::decay::stats();
    let mut stats = Stats {
        allocated: lower.large.bytes,
        active: lower.page_heap.in_use.saturating_add(lower.large.bytes),
        resident: lower.resident(),
        mapped: lower.mapped(),
        cpu_cache_bytes: 0,
        cpu_growth_bytes: cpu_cache::growth_bytes(),
        depot_bytes: 0,
        span_free_bytes: 0,
        large_bytes: lower.large.bytes,
        large_count: lower.large.count,
        large_cached_bytes: lower.large.cached,
        metadata_bytes: lower.metadata_mapped,
        retained_bytes: lower.page_heap.free_committed,
        returned_bytes: lower.page_heap.returned,
        decays,
        last_decay_ms_ago,
        background: crate::decay::background_running(),
        zeroed_without_clearing: cpu_cache::fresh_zeroed(),
        classes: [ClassStats::default(); NUM_CLASSES],
        mode: rseq_core::mode(),
        index: cpu_cache::region().map_or(crate::config::cache_index().effective(), |r| r.index()),
        rseq: rseq_core::counters(),
        shelves: cpu_cache::region().map_or(0, |region| region.len()),
    };
    for (class, (out, lower)) in Class::all().zip(stats.classes.iter_mut().zip(&lower.classes)) {
        let size = class.size();
        let cpu_cached = cpu_cache::cached_objects(class)
            .saturating_add(crate::thread_cache::cached_objects(class));
        let depot_cached = depot::cached_objects(class);
        *out = ClassStats {
            size,
            in_use: lower
                .objects_in_use
                .saturating_sub(cpu_cached.saturating_add(depot_cached)),
            cpu_cached,
            cpu_capacity: cpu_cache::capacity_objects(class),
            depot_cached,
            span_free: lower.objects_free,
            spans: lower.spans,
            cache: (0..stats.shelves)
                .filter_map(|index| cpu_cache::shelf_counters(index, class))
                .fold(CacheCounters::default(), |mut sum, shelf| {
                    sum.add(&shelf);
                    sum
                }),
        };
        // Counters are read one by one while other threads move objects between
        // tiers: saturating arithmetic keeps a torn read a small error, not a panic.
        let bytes = |objects: usize| objects.saturating_mul(size);
        stats.allocated = stats.allocated.saturating_add(bytes(out.in_use));
        stats.cpu_cache_bytes = stats.cpu_cache_bytes.saturating_add(bytes(cpu_cached));
        stats.depot_bytes = stats.depot_bytes.saturating_add(bytes(depot_cached));
        stats.span_free_bytes = stats.span_free_bytes.saturating_add(bytes(out.span_free));
    }
    stats
}

/// Bytes with binary units, for the report.
struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cpuslab: rseq mode {:?}, caches indexed by {:?}",
            self.mode, self.index
        )?;
        writeln!(
            f,
            "  allocated {}, active {}, resident {}, mapped {}",
            Bytes(self.allocated),
            Bytes(self.active),
            Bytes(self.resident),
            Bytes(self.mapped)
        )?;
        writeln!(
            f,
            "  free: {} on CPUs (capacity grown by {}), {} in the depot, {} in spans; large {} in {} blocks ({} cached); metadata {}",
            Bytes(self.cpu_cache_bytes),
            Bytes(self.cpu_growth_bytes),
            Bytes(self.depot_bytes),
            Bytes(self.span_free_bytes),
            Bytes(self.large_bytes),
            self.large_count,
            Bytes(self.large_cached_bytes),
            Bytes(self.metadata_bytes)
        )?;
        write!(
            f,
            "  returned to the OS {}; {} retained; {} decays",
            Bytes(self.returned_bytes),
            Bytes(self.retained_bytes),
            self.decays
        )?;
        if let Some(ago) = self.last_decay_ms_ago {
            write!(f, ", the last {ago} ms ago")?;
        }
        writeln!(
            f,
            "; background thread {}",
            if self.background { "on" } else { "off" }
        )?;
        writeln!(
            f,
            "  rseq: {} aborts, {} CPU moves, {} gave up; {} zeroed allocations needed no clearing",
            self.rseq.aborts, self.rseq.cpu_moved, self.rseq.gave_up, self.zeroed_without_clearing
        )?;
        writeln!(
            f,
            "  {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>12} {:>12}",
            "class",
            "in use",
            "on CPUs",
            "capacity",
            "depot",
            "spans free",
            "spans",
            "misses",
            "overflows",
            "from depot",
            "to depot"
        )?;
        for class in self.classes.iter().filter(|c| c.spans > 0) {
            writeln!(
                f,
                "  {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>12} {:>12}",
                class.size,
                class.in_use,
                class.cpu_cached,
                class.cpu_capacity,
                class.depot_cached,
                class.span_free,
                class.spans,
                class.cache.alloc_misses,
                class.cache.free_overflows,
                class.cache.from_depot,
                class.cache.to_depot
            )?;
        }
        if crate::OP_COUNTERS {
            let (allocations, frees) = self.classes.iter().fold((0u64, 0u64), |(a, f), c| {
                (
                    a.wrapping_add(c.cache.allocations),
                    f.wrapping_add(c.cache.frees),
                )
            });
            writeln!(
                f,
                "  served by the per-CPU caches: {allocations} allocations, {frees} frees"
            )?;
        }
        Ok(())
    }
}

impl Stats {
    /// The longest [`Stats::to_json`] can write (every counter at its maximum).
    pub const JSON_MAX_BYTES: usize = 48 << 10;

    /// Writes these statistics as one JSON object into `buffer`, without
    /// allocating. `Ok(len)`: the first `len` bytes hold it; `Err(needed)`:
    /// the buffer is too short, and `needed` bytes would do
    /// ([`Stats::JSON_MAX_BYTES`] always do).
    ///
    /// ```
    /// let mut buffer = [0u8; cpuslab::Stats::JSON_MAX_BYTES];
    /// let len = cpuslab::stats().to_json(&mut buffer).unwrap();
    /// assert!(buffer[..len].starts_with(b"{\"allocated\":"));
    /// ```
    pub fn to_json(&self, buffer: &mut [u8]) -> Result<usize, usize> {
        let mut out = crate::json::Writer::new(buffer);
        let _ = self.write_json(&mut out);
        out.finish()
    }

    fn write_json(&self, out: &mut crate::json::Writer<'_>) -> fmt::Result {
        write!(
            out,
            "{{\"allocated\":{},\"active\":{},\"resident\":{},\"mapped\":{},\
             \"cpu_cache_bytes\":{},\"cpu_growth_bytes\":{},\"depot_bytes\":{},\
             \"span_free_bytes\":{},\
             \"large_bytes\":{},\"large_count\":{},\"large_cached_bytes\":{},\
             \"metadata_bytes\":{},\"retained_bytes\":{},\"returned_bytes\":{},\
             \"decays\":{},\"last_decay_ms_ago\":",
            self.allocated,
            self.active,
            self.resident,
            self.mapped,
            self.cpu_cache_bytes,
            self.cpu_growth_bytes,
            self.depot_bytes,
            self.span_free_bytes,
            self.large_bytes,
            self.large_count,
            self.large_cached_bytes,
            self.metadata_bytes,
            self.retained_bytes,
            self.returned_bytes,
            self.decays,
        )?;
        match self.last_decay_ms_ago {
            Some(ms) => write!(out, "{ms}")?,
            None => out.write_str("null")?,
        }
        write!(
            out,
            ",\"background\":{},\"zeroed_without_clearing\":{},\"mode\":\"{:?}\",\
             \"index\":\"{:?}\",\"shelves\":{},\"rseq\":{{\"aborts\":{},\"cpu_moved\":{},\
             \"gave_up\":{}}},\"classes\":[",
            self.background,
            self.zeroed_without_clearing,
            self.mode,
            self.index,
            self.shelves,
            self.rseq.aborts,
            self.rseq.cpu_moved,
            self.rseq.gave_up,
        )?;
        for (i, class) in self.classes.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(
                out,
                "{{\"size\":{},\"in_use\":{},\"cpu_cached\":{},\"cpu_capacity\":{},\
                 \"depot_cached\":{},\
                 \"span_free\":{},\"spans\":{},\"alloc_misses\":{},\"free_overflows\":{},\
                 \"from_depot\":{},\"to_depot\":{},\"allocations\":{},\"frees\":{}}}",
                class.size,
                class.in_use,
                class.cpu_cached,
                class.cpu_capacity,
                class.depot_cached,
                class.span_free,
                class.spans,
                class.cache.alloc_misses,
                class.cache.free_overflows,
                class.cache.from_depot,
                class.cache.to_depot,
                class.cache.allocations,
                class.cache.frees,
            )?;
        }
        out.write_str("]}")
    }
}

// --- the lower tiers (spans, page heap, large objects, metadata) ---------------------

/// Counters of the lower tiers; a plain value, filled without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerStats {
    /// Page heap: address space reserved, bytes in use / free (committed or
    /// decommitted).
    pub page_heap: PageHeapStats,
    /// Large objects: bytes mapped and count.
    pub large: LargeStats,
    /// Bytes mapped for metadata (span records, page-map nodes).
    pub metadata_mapped: usize,
    /// Span records in use.
    pub span_records: usize,
    /// Per size class: spans, objects handed out, free objects in spans.
    pub classes: [SpanClassStats; NUM_CLASSES],
}

impl LowerStats {
    /// All counters zero.
    pub const fn new() -> LowerStats {
        const ZERO_CLASS: SpanClassStats = SpanClassStats {
            spans: 0,
            objects_in_use: 0,
            objects_free: 0,
            invalid_frees: 0,
        };
        LowerStats {
            page_heap: PageHeapStats {
                mapped: 0,
                in_use: 0,
                free_committed: 0,
                free_decommitted: 0,
                decommits: 0,
                returned: 0,
            },
            large: LargeStats {
                bytes: 0,
                count: 0,
                cached: 0,
            },
            metadata_mapped: 0,
            span_records: 0,
            classes: [ZERO_CLASS; NUM_CLASSES],
        }
    }

    /// Address space mapped from the OS: page-heap chunks, large objects and
    /// metadata.
    pub fn mapped(&self) -> usize {
        [
            self.page_heap.mapped,
            self.large.bytes,
            self.large.cached,
            self.metadata_mapped,
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    /// An upper bound of resident memory: page-heap memory not decommitted,
    /// large objects and metadata.
    pub fn resident(&self) -> usize {
        [
            self.page_heap.resident(),
            self.large.bytes,
            self.large.cached,
            self.metadata_mapped,
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    /// Bytes held free in spans of size classes.
    pub fn free_in_spans(&self) -> usize {
        Class::all()
            .zip(self.classes.iter())
            .map(|(c, s)| c.size().saturating_mul(s.objects_free))
            .fold(0, usize::saturating_add)
    }
}

impl Default for LowerStats {
    fn default() -> Self {
        LowerStats::new()
    }
}

/// Copies the current counters into `out` (relaxed reads, no locks).
pub fn stats_into(out: &mut LowerStats) {
    out.page_heap = page_heap::stats();
    out.large = large::stats();
    out.metadata_mapped =
        meta::mapped_bytes() + pagemap::node_bytes() + crate::class_range::start_map_bytes();
    out.span_records = span::live_records();
    for (class, slot) in Class::all().zip(out.classes.iter_mut()) {
        *slot = central::class_stats(class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fits_its_bound_and_reports_the_length_it_needs() {
        let mut stats = stats();
        let mut buffer = vec![0u8; Stats::JSON_MAX_BYTES];
        let len = stats.to_json(&mut buffer).unwrap();
        assert_eq!(stats.to_json(&mut buffer[..len - 1]), Err(len));
        assert_eq!(stats.to_json(&mut buffer[..len]), Ok(len));

        let max = usize::MAX;
        stats.allocated = max;
        stats.active = max;
        stats.resident = max;
        stats.mapped = max;
        stats.cpu_cache_bytes = max;
        stats.cpu_growth_bytes = max;
        stats.depot_bytes = max;
        stats.span_free_bytes = max;
        stats.large_bytes = max;
        stats.large_count = max;
        stats.large_cached_bytes = max;
        stats.metadata_bytes = max;
        stats.retained_bytes = max;
        stats.returned_bytes = max;
        stats.decays = max;
        stats.last_decay_ms_ago = Some(u64::MAX);
        stats.zeroed_without_clearing = max;
        stats.shelves = u32::MAX;
        stats.mode = Mode::Fallback;
        stats.index = Index::ConcurrencyId;
        stats.rseq = Counters {
            aborts: u64::MAX,
            cpu_moved: u64::MAX,
            gave_up: u64::MAX,
        };
        let full = CacheCounters {
            alloc_misses: u64::MAX,
            free_overflows: u64::MAX,
            from_depot: u64::MAX,
            to_depot: u64::MAX,
            allocations: u64::MAX,
            frees: u64::MAX,
        };
        for class in stats.classes.iter_mut() {
            *class = ClassStats {
                size: max,
                in_use: max,
                cpu_cached: max,
                cpu_capacity: max,
                depot_cached: max,
                span_free: max,
                spans: max,
                cache: full,
            };
        }
        let len = stats.to_json(&mut buffer).unwrap();
        println!("the longest JSON: {len} bytes");
        assert!(len <= Stats::JSON_MAX_BYTES);
    }
}
