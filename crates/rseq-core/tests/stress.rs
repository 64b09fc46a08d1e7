//! A stress test in the style of the kernel's rseq `param_test`.
//!
//! 6 x online-CPU threads pop and push items between per-CPU stacks (indexed by CPU
//! and by concurrency id), per-CPU lists, and per-CPU counters, while faults are
//! injected: a delay spun inside every critical section, SIGPROF at a high rate
//! (whose handler itself runs list operations), `sched_yield`, and migrations with
//! `sched_setaffinity`. A drainer thread meanwhile stops random CPUs' stacks
//! remotely, in a tight loop, rearranges them, and moves items between CPUs. After
//! each round a single-threaded check finds every item exactly once and the
//! counters summing to exactly what the threads counted. The timer keeps firing
//! during the check, so the handler is kept quiet while it counts (and the check
//! holds its window open long enough that signals land in it every round).
//!
//! The remote race is forced, not left to luck: the drainer holds each stack
//! stopped for `HOLD` after its fence, so that the sections its fence aborted
//! restart while the stack is stopped; and every stack section spins
//! `HEADER_DELAY` (longer than the hold) between its two header loads, so that the
//! resume lands between them. Sections that load the header in the wrong order
//! then pair a pre-drain `top` with the resumed `capacity`, on every stop of a busy
//! CPU.
//!
//! Capacities move too: some of the drainer's stops lower a stack's capacity,
//! and a worker whose push finds the stack full raises it back
//! (`raise_capacity`, which takes no stop), spinning `HEADER_DELAY` between its
//! load of the capacity and its store, so that the drainer's stops begin inside
//! it. A raise that does not take the slot's lock then ends those stops early
//! (its broken twin waits inside the window until a stop has begun: see
//! `fault::delay_raise`).
//!
//! Each scenario runs in a child process (this binary, re-run on the `child` test)
//! so that it can pick its rseq mode through the environment: glibc's area, our own
//! registration, the fallback, the fence without membarrier, and three deliberately
//! broken variants that the check must catch: a restart that does not re-arm
//! `rseq_cs`, the header loaded `top` first, and a capacity raise without the lock.

use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rseq_core::fault::{self, Broken};
use rseq_core::{Index, ListHead, ListNode, Mode, OpError, PerCpu, Stack, StackParts};

const CHILD_ENV: &str = "RSEQ_STRESS_SCENARIO";
/// Set in a child that must run without rseq (it calls `rseq_core::disable_rseq`).
const NO_RSEQ: &str = "RSEQ_CORE_TEST_NO_RSEQ";
/// Exit status of a child whose check found lost, duplicated or foreign items.
const CORRUPTION_EXIT: i32 = 3;

// ---- the parent side: one test per scenario --------------------------------------

fn run_scenario(scenario: &str, set: &[(&str, &str)], remove: &[&str]) -> (i32, String) {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario);
    for name in remove {
        command.env_remove(name);
    }
    for (name, value) in set {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("---- scenario {scenario} ----\n{text}");
    (output.status.code().unwrap_or(-1), text)
}

fn assert_clean(scenario: &str, set: &[(&str, &str)], remove: &[&str]) {
    let (code, text) = run_scenario(scenario, set, remove);
    assert_eq!(code, 0, "scenario {scenario} failed:\n{text}");
    assert!(
        text.contains("CLEAN"),
        "scenario {scenario} did not report its check:\n{text}"
    );
}

#[test]
fn stress_in_glibc_mode() {
    assert_clean("glibc", &[], &["GLIBC_TUNABLES", NO_RSEQ]);
}

#[test]
fn stress_in_own_registration_mode() {
    assert_clean(
        "own",
        &[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")],
        &[NO_RSEQ],
    );
}

#[test]
fn stress_in_fallback_mode() {
    let set = [("GLIBC_TUNABLES", "glibc.pthread.rseq=0"), (NO_RSEQ, "1")];
    assert_clean("fallback", &set, &[]);
}

#[test]
fn stress_with_the_fence_by_migration() {
    assert_clean("no-membarrier", &[], &["GLIBC_TUNABLES", NO_RSEQ]);
}

#[test]
fn the_stress_test_catches_a_restart_that_does_not_rearm() {
    let (code, text) = run_scenario("broken-restart", &[], &["GLIBC_TUNABLES", NO_RSEQ]);
    assert_eq!(
        code, CORRUPTION_EXIT,
        "the broken restart path went unnoticed; the stress test cannot catch its bug class:\n{text}"
    );
}

#[test]
fn the_stress_test_catches_a_header_loaded_top_first() {
    let (code, text) = run_scenario("broken-load-order", &[], &["GLIBC_TUNABLES", NO_RSEQ]);
    assert_eq!(
        code, CORRUPTION_EXIT,
        "sections that load `top` before `capacity` went unnoticed; the stress test \
         cannot catch the remote race:\n{text}"
    );
    assert!(
        header_delays_reported(&text) > 0,
        "the header delay point did not run:\n{text}"
    );
}

#[test]
fn the_stress_test_catches_a_raise_without_the_lock() {
    let (code, text) = run_scenario("broken-raise", &[], &["GLIBC_TUNABLES", NO_RSEQ]);
    assert_eq!(
        code, CORRUPTION_EXIT,
        "a capacity raise that ends a remote stop early went unnoticed; the stress \
         test cannot catch it:\n{text}"
    );
    assert!(
        reported(&text, " raises") > 0,
        "no capacity raise ran:\n{text}"
    );
}

/// The count a child's round line reports as "N header delays" (the last one).
fn header_delays_reported(text: &str) -> u64 {
    reported(text, " header delays")
}

/// The number a child's last round line puts before `what` ("N raises").
fn reported(text: &str, what: &str) -> u64 {
    text.rsplit_once(what)
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

// ---- the child side --------------------------------------------------------------

struct Scenario {
    mode: Mode,
    broken: Broken,
    no_membarrier: bool,
    rounds: u32,
    round: Duration,
    /// Pauses spun inside every section: longer sections catch more preemptions.
    delay: u32,
}

/// How long every remote stop keeps its stack stopped after the fence, before the
/// drainer changes anything: the sections the fence aborted restart within it.
const HOLD: Duration = Duration::from_micros(20);
/// The delay between a stack section's two header loads: long enough that a stop
/// which began as the section started ends (resumes) before its second load.
const HEADER_DELAY: Duration = Duration::from_micros(60);

fn scenario(name: &str) -> Scenario {
    let normal = |mode| Scenario {
        mode,
        broken: Broken::Nothing,
        no_membarrier: false,
        rounds: 2,
        round: Duration::from_millis(900),
        delay: 100,
    };
    match name {
        "glibc" => normal(Mode::Glibc),
        "own" => normal(Mode::Own),
        "fallback" => normal(Mode::Fallback),
        "no-membarrier" => Scenario {
            no_membarrier: true,
            ..normal(Mode::Glibc)
        },
        "broken-restart" => Scenario {
            broken: Broken::Restart,
            rounds: 20,
            round: Duration::from_millis(500),
            // A window long enough that a preemption often lands in an unprotected
            // rerun, where another thread on that CPU then changes the stack.
            delay: 1000,
            ..normal(Mode::Glibc)
        },
        "broken-load-order" => Scenario {
            broken: Broken::LoadOrder,
            ..normal(Mode::Glibc)
        },
        "broken-raise" => Scenario {
            broken: Broken::RaiseUnlocked,
            // Caught in rounds 1 to 5 of 10 runs here; the child stops at the
            // first, so the margin costs nothing when the check works.
            rounds: 20,
            ..normal(Mode::Glibc)
        },
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn child() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let scenario = scenario(&name);
    if std::env::var_os(NO_RSEQ).is_some() {
        assert!(rseq_core::disable_rseq());
    }
    assert_eq!(
        rseq_core::mode(),
        scenario.mode,
        "the environment did not select the mode"
    );
    fault::set_delay_spins(scenario.delay);
    let header_delay = fault::pauses_in(HEADER_DELAY);
    fault::set_header_delay_spins(header_delay);
    fault::set_stop_hold_spins(fault::pauses_in(HOLD));
    fault::set_broken(scenario.broken);
    let world = World::new();
    world.seed();
    install_signal_handler(world);
    println!(
        "mode {:?}; mm_cid {}; {} threads on {} CPUs ({} possible); delay {} pauses; \
         header delay {header_delay} pauses ({HEADER_DELAY:?}); drainer hold {HOLD:?}; \
         broken: {:?}",
        rseq_core::mode(),
        if rseq_core::mm_cid_available() {
            "available"
        } else {
            "unavailable"
        },
        worker_count(),
        online_cpus(),
        rseq_core::possible_cpus(),
        scenario.delay,
        scenario.broken
    );
    for round in 1..=scenario.rounds {
        fault::set_membarrier_disabled(scenario.no_membarrier);
        let tally = world.run(scenario.round);
        fault::set_membarrier_disabled(false);
        let check = world.check(&tally);
        let c = rseq_core::counters();
        println!(
            "round {round}: {} ops, {} remote stops ({} refused), {} migrations, {} signals \
             ({} handler ops, {} quieted by the check); aborts {}, cpu moved {}, gave up {}; {} header delays; {} raises; {check}",
            tally.ops,
            tally.stops,
            tally.stop_errors,
            tally.migrations,
            SIGNALS.load(Ordering::Relaxed),
            HANDLER_OPS.load(Ordering::Relaxed),
            HANDLERS_QUIETED.load(Ordering::Relaxed),
            c.aborts,
            c.cpu_moved,
            c.gave_up,
            fault::header_delays(),
            fault::raise_delays()
        );
        if !check.is_clean() {
            println!("CORRUPTION DETECTED in round {round}");
            std::process::exit(CORRUPTION_EXIT);
        }
    }
    stop_signals();
    let c = rseq_core::counters();
    if scenario.mode != Mode::Fallback {
        assert!(
            c.aborts > 0,
            "no section was ever aborted: the abort path did not run"
        );
        assert!(
            HANDLER_OPS.load(Ordering::Relaxed) > 0,
            "no signal handler ran a section"
        );
        assert!(
            fault::header_delays() > 0,
            "no section spun the delay between its header loads"
        );
        assert!(
            HANDLERS_QUIETED.load(Ordering::Relaxed) > 0,
            "no signal landed in the check's quiet window"
        );
    }
    assert!(fault::raise_delays() > 0, "no capacity was ever raised");
    println!("CLEAN");
    std::process::exit(0);
}

/// Stack items per region, and list nodes.
const ITEMS: usize = 2048;
/// Each stack can hold every item of its region, so pushes fail only while stopped
/// or lowered (and a full worker raises the capacity back).
const STACK_CAPACITY: usize = ITEMS;
/// The capacity the drainer lowers a stack to (unless it holds more).
const LOWERED: u32 = (STACK_CAPACITY / 8) as u32;
const SIGNAL_INTERVAL_US: i64 = 200;
/// How long the check spins between its reads of the handler's count and of the
/// words: twenty timer periods of CPU time (several ticks, whatever the HZ).
const QUIET_WINDOW: Duration = Duration::from_micros(20 * SIGNAL_INTERVAL_US as u64);
/// Failed pushes before a thread concludes its items cannot fit anywhere.
const GIVE_BACK_TRIES: u32 = 10_000;
/// Items that could not be put back because stacks were over-full (duplication).
static OVERFLOWS: AtomicUsize = AtomicUsize::new(0);
/// Items a stopped stack held above its capacity: sections committed against a
/// capacity that a racing store raised while the stack was stopped.
static ABOVE_CAPACITY: AtomicUsize = AtomicUsize::new(0);

/// Counts the items a stopped stack holds above its capacity, and raises the
/// capacity to hold them, so that the stop's resume keeps the header consistent
/// and the check, not an assertion, reports the race.
fn admit_above_capacity(parts: &mut StackParts) {
    if parts.top > parts.capacity {
        ABOVE_CAPACITY.fetch_add((parts.top - parts.capacity) as usize, Ordering::Relaxed);
        parts.capacity = parts.top;
    }
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn worker_count() -> usize {
    6 * online_cpus()
}

/// An item of stack region `r` with id `i`, as the pointer value stored.
fn encode(region: usize, id: usize) -> *mut u8 {
    (((region * ITEMS + id) + 1) << 4) as *mut u8
}

fn decode(item: *mut u8) -> Option<(usize, usize)> {
    let value = item as usize;
    if value & 0xf != 0 || value == 0 {
        return None;
    }
    let n = (value >> 4) - 1;
    (n < 2 * ITEMS).then_some((n / ITEMS, n % ITEMS))
}

#[repr(C)]
struct Node {
    link: ListNode,
    id: usize,
}

/// Everything the threads share: the regions and the memory behind them.
struct World {
    stacks: [PerCpu<Stack>; 2],
    list: PerCpu<ListHead>,
    adds: PerCpu<AtomicUsize>,
    swaps: PerCpu<AtomicUsize>,
    nodes: &'static mut [Node],
}

fn leak<T>(values: Vec<T>) -> NonNull<T> {
    NonNull::new(Box::leak(values.into_boxed_slice()).as_mut_ptr()).unwrap()
}

impl World {
    fn new() -> &'static World {
        let cpus = rseq_core::possible_cpus();
        let n = cpus as usize;
        // SAFETY: each region is a leaked (never freed) array of `cpus` slots whose
        // stride is their power-of-two size.
        let world = unsafe {
            World {
                stacks: [
                    PerCpu::new(
                        leak((0..n).map(|_| Stack::new()).collect()),
                        4,
                        cpus,
                        Index::Cpu,
                    ),
                    PerCpu::new(
                        leak((0..n).map(|_| Stack::new()).collect()),
                        4,
                        cpus,
                        Index::ConcurrencyId,
                    ),
                ],
                list: PerCpu::new(
                    leak((0..n).map(|_| ListHead::new()).collect()),
                    3,
                    cpus,
                    Index::Cpu,
                ),
                adds: PerCpu::new(
                    leak((0..n).map(|_| AtomicUsize::new(0)).collect()),
                    3,
                    cpus,
                    Index::Cpu,
                ),
                swaps: PerCpu::new(
                    leak((0..n).map(|_| AtomicUsize::new(0)).collect()),
                    3,
                    cpus,
                    Index::ConcurrencyId,
                ),
                nodes: Box::leak(
                    (0..ITEMS)
                        .map(|id| Node {
                            link: ListNode::new(),
                            id,
                        })
                        .collect(),
                ),
            }
        };
        Box::leak(Box::new(world))
    }

    /// Gives every stack its slots, deals the items round-robin over the CPUs, and
    /// pushes every list node.
    fn seed(&self) {
        let cpus = rseq_core::possible_cpus();
        for (r, stacks) in self.stacks.iter().enumerate() {
            for cpu in 0..cpus {
                let slots =
                    Box::leak(vec![std::ptr::null_mut(); STACK_CAPACITY].into_boxed_slice());
                let mine: Vec<_> = (0..ITEMS)
                    .filter(|id| id % cpus as usize == cpu as usize)
                    .collect();
                stacks
                    .with_stopped(cpu, |parts| {
                        for (slot, &id) in slots.iter_mut().zip(&mine) {
                            *slot = encode(r, id);
                        }
                        parts.slots = slots.as_mut_ptr();
                        parts.capacity = STACK_CAPACITY as u32;
                        parts.top = mine.len() as u32;
                    })
                    .unwrap();
            }
        }
        for node in self.nodes.iter() {
            push_node(&self.list, NonNull::from(&node.link));
        }
    }

    fn run(&'static self, duration: Duration) -> Tally {
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + duration;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..worker_count())
                .map(|seed| scope.spawn(move || self.worker(seed as u64 + 1, deadline)))
                .collect();
            let drainer = scope.spawn(|| self.drainer(&stop));
            let mut tally = Tally::default();
            for worker in workers {
                tally.add(&worker.join().unwrap());
            }
            stop.store(true, Ordering::Relaxed);
            // A stack found above its capacity is counted (`admit_above_capacity`)
            // and reported by the check; any panic here is a failure of its own.
            match drainer.join() {
                Ok(drained) => tally.add(&drained),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            tally
        })
    }

    fn worker(&self, seed: u64, deadline: Instant) -> Tally {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut tally = Tally::default();
        let mut held: [Vec<*mut u8>; 2] = [Vec::with_capacity(64), Vec::with_capacity(64)];
        let mut nodes: Vec<NonNull<ListNode>> = Vec::with_capacity(64);
        let mut batch = [std::ptr::null_mut(); 8];
        let mut swap_guess = 0;
        while Instant::now() < deadline {
            for _ in 0..64 {
                tally.ops += 1;
                let r = (rng.next() & 1) as usize;
                let stacks = &self.stacks[r];
                match rng.next() % 16 {
                    0..=3 => {
                        if let Ok(item) = stacks.pop() {
                            held[r].push(item);
                        }
                    }
                    4..=6 => {
                        if let Some(&item) = held[r].last() {
                            let mut pushed = stacks.push(item);
                            if pushed == Err(OpError::Full) {
                                // As an allocator's overflow does: grow, push again.
                                raise(stacks);
                                pushed = stacks.push(item);
                            }
                            if pushed.is_ok() {
                                held[r].pop();
                            }
                        }
                    }
                    7 => {
                        let want = 1 + (rng.next() % 8) as usize;
                        if let Ok(n) = stacks.pop_batch(&mut batch[..want]) {
                            held[r].extend_from_slice(&batch[..n]);
                        }
                    }
                    8 => {
                        let from = held[r].len().saturating_sub(1 + (rng.next() % 8) as usize);
                        match stacks.push_batch(&held[r][from..]) {
                            Ok(n) => {
                                held[r].drain(from..from + n);
                            }
                            Err(OpError::Full) => raise(stacks),
                            Err(_) => {}
                        }
                    }
                    9 => {
                        if let Ok(node) = self.list.pop() {
                            nodes.push(node);
                        }
                    }
                    10 => {
                        if let Some(node) = nodes.pop() {
                            push_node(&self.list, node);
                        }
                    }
                    11 => {
                        if self.adds.add(1).is_ok() {
                            tally.adds += 1;
                        }
                    }
                    12 => match self.swaps.compare_and_store(swap_guess, swap_guess + 1) {
                        Ok(()) => {
                            tally.swaps += 1;
                            swap_guess += 1;
                        }
                        Err(OpError::Mismatch(actual)) => swap_guess = actual,
                        Err(_) => {}
                    },
                    13 => {
                        // SAFETY: no preconditions.
                        unsafe { libc::sched_yield() };
                    }
                    14 => {
                        if rng.next().is_multiple_of(8) {
                            migrate(&mut rng);
                            tally.migrations += 1;
                        }
                    }
                    _ => {
                        // Keep what a thread holds small, like a cache would.
                        if held[r].len() > 32 {
                            let _ = stacks
                                .push_batch(&held[r][24..])
                                .map(|n| held[r].drain(24..24 + n));
                        }
                    }
                }
            }
        }
        // Give everything back before the check. Every stack can hold all items of
        // its region, so a push fails only while the drainer has it stopped or
        // lowered (a failure raises it back), or when items were duplicated.
        for (r, items) in held.iter_mut().enumerate() {
            let mut failures = 0;
            while let Some(&item) = items.last() {
                if self.stacks[r].push(item).is_ok() {
                    items.pop();
                } else if failures < GIVE_BACK_TRIES {
                    failures += 1;
                    raise(&self.stacks[r]);
                    std::thread::yield_now();
                } else {
                    OVERFLOWS.fetch_add(items.len(), Ordering::Relaxed);
                    items.clear();
                }
            }
        }
        for node in nodes {
            push_node(&self.list, node);
        }
        unpin();
        tally
    }

    /// Stops random CPUs' stacks from afar, in a tight loop: reverses a stack in
    /// place (and, about every other time, at random, lowers its capacity to
    /// the larger of what it holds and [`LOWERED`]), or moves all of one CPU's
    /// items onto another's stack (whose capacity it restores). Each stop is
    /// held for [`HOLD`] (rseq-core's fault injection) before anything changes,
    /// and again before it resumes.
    fn drainer(&self, stop: &AtomicBool) -> Tally {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut tally = Tally::default();
        let cpus = rseq_core::possible_cpus();
        let mut moving: Vec<*mut u8> = Vec::with_capacity(ITEMS);
        while !stop.load(Ordering::Relaxed) {
            let r = (rng.next() & 1) as usize;
            let from = (rng.next() % u64::from(cpus)) as u32;
            let to = (rng.next() % u64::from(cpus)) as u32;
            let reversed = self.stacks[r].with_stopped(from, |parts| {
                admit_above_capacity(parts);
                // SAFETY: the stack is stopped: slots[..top] are ours to read and move.
                let items =
                    unsafe { std::slice::from_raw_parts_mut(parts.slots, parts.top as usize) };
                if rng.next() & 1 == 0 {
                    items.reverse();
                    if rng.next() & 1 == 0 {
                        parts.capacity = parts.top.max(LOWERED);
                    }
                } else {
                    moving.extend_from_slice(items);
                    parts.top = 0;
                }
            });
            tally.stops += 1;
            if reversed.is_err() {
                tally.stop_errors += 1;
            }
            let mut attempts = 0;
            while !moving.is_empty() {
                attempts += 1;
                if attempts > GIVE_BACK_TRIES {
                    // More items than one stack can hold: only duplication does that.
                    OVERFLOWS.fetch_add(moving.len(), Ordering::Relaxed);
                    moving.clear();
                    break;
                }
                let target = (to + attempts) % cpus;
                let moved = self.stacks[r].with_stopped(target, |parts| {
                    parts.capacity = STACK_CAPACITY as u32;
                    let room = parts.capacity.saturating_sub(parts.top) as usize;
                    let n = room.min(moving.len());
                    // SAFETY: stopped; [top, top + n) are free slots below capacity.
                    unsafe {
                        let dst = parts.slots.add(parts.top as usize);
                        std::ptr::copy_nonoverlapping(
                            moving.as_ptr().add(moving.len() - n),
                            dst,
                            n,
                        );
                    }
                    moving.truncate(moving.len() - n);
                    parts.top += n as u32;
                });
                tally.stops += 1;
                if moved.is_err() {
                    tally.stop_errors += 1;
                    std::thread::yield_now();
                }
            }
            // No pause between stops: the next one starts at once.
        }
        tally
    }

    /// Counts every item and node, and sums the counters, with the signal handler
    /// quiet: it would otherwise move list nodes and add to the words under the count.
    fn check(&self, tally: &Tally) -> Check {
        let _quiet = QuietHandler::new();
        let mut check = Check::default();
        let mut seen = vec![0u32; 2 * ITEMS];
        let cpus = rseq_core::possible_cpus();
        for (r, stacks) in self.stacks.iter().enumerate() {
            for cpu in 0..cpus {
                stacks
                    .with_stopped(cpu, |parts| {
                        admit_above_capacity(parts);
                        // SAFETY: stopped, and every thread is joined.
                        let items =
                            unsafe { std::slice::from_raw_parts(parts.slots, parts.top as usize) };
                        for &item in items {
                            match decode(item) {
                                Some((region, id)) if region == r => seen[r * ITEMS + id] += 1,
                                _ => check.foreign += 1,
                            }
                        }
                    })
                    .unwrap();
            }
        }
        let mut nodes_seen = vec![0u32; ITEMS];
        let mut chains = Vec::new();
        for cpu in 0..cpus {
            // SAFETY: every thread is joined, and the signal handler is quiet.
            let mut next = unsafe { self.list.slot(cpu).unwrap().take_all() };
            let mut steps = 0;
            while let Some(link) = next {
                steps += 1;
                if steps > ITEMS {
                    check.foreign += 1; // a cycle
                    break;
                }
                // SAFETY: links are the first field of nodes that live forever.
                let node = unsafe { link.cast::<Node>().as_ref() };
                nodes_seen[node.id] += 1;
                chains.push(link);
                next = node.link.next();
            }
        }
        for link in chains {
            push_node(&self.list, link);
        }
        for count in seen.iter().chain(&nodes_seen) {
            match count {
                0 => check.lost += 1,
                1 => {}
                n => check.duplicated += (n - 1) as usize,
            }
        }
        let sum = |region: &PerCpu<AtomicUsize>| -> usize {
            (0..cpus)
                .map(|cpu| region.slot(cpu).unwrap().load(Ordering::Relaxed))
                .sum()
        };
        let handler_adds = HANDLER_ADDS.load(Ordering::Relaxed) as usize;
        // Hold the window between the two reads open for several timer periods, so
        // that signals land in it in every round and the quiet is what keeps the
        // sums equal (the child asserts that handlers were quieted).
        let window = Instant::now();
        while window.elapsed() < QUIET_WINDOW {
            std::hint::spin_loop();
        }
        check.adds_off = sum(&self.adds).abs_diff(tally.total_adds() + handler_adds);
        check.swaps_off = sum(&self.swaps).abs_diff(tally.total_swaps());
        check.overflowed = OVERFLOWS.swap(0, Ordering::Relaxed);
        check.above_capacity = ABOVE_CAPACITY.swap(0, Ordering::Relaxed);
        check
    }
}

/// Raises the capacity of the calling thread's stack in `stacks` back to
/// [`STACK_CAPACITY`] (after the drainer lowered it), as an allocator's slow path
/// grows a cache that overflows.
fn raise(stacks: &PerCpu<Stack>) {
    let index = stacks.current_index();
    // SAFETY: every stack's slot array holds STACK_CAPACITY pointers (`seed`).
    let _ = unsafe { stacks.raise_capacity(index, |_| STACK_CAPACITY as u32) };
}

/// Pushes a node, retrying while the section gives up.
fn push_node(list: &PerCpu<ListHead>, node: NonNull<ListNode>) {
    // SAFETY: nodes live forever and are on no list while a thread holds them.
    while unsafe { list.push(node) }.is_err() {
        std::thread::yield_now();
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    adds: usize,
    swaps: usize,
    stops: u64,
    stop_errors: u64,
    migrations: u64,
    add_total: usize,
    swap_total: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.add_total += other.adds;
        self.swap_total += other.swaps;
        self.stops += other.stops;
        self.stop_errors += other.stop_errors;
        self.migrations += other.migrations;
    }

    fn total_adds(&self) -> usize {
        ACCUMULATED_ADDS.fetch_add(self.add_total, Ordering::Relaxed) + self.add_total
    }

    fn total_swaps(&self) -> usize {
        ACCUMULATED_SWAPS.fetch_add(self.swap_total, Ordering::Relaxed) + self.swap_total
    }
}

/// Counter totals of earlier rounds (the per-CPU words keep counting across rounds).
static ACCUMULATED_ADDS: AtomicUsize = AtomicUsize::new(0);
static ACCUMULATED_SWAPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Check {
    lost: usize,
    duplicated: usize,
    foreign: usize,
    overflowed: usize,
    above_capacity: usize,
    adds_off: usize,
    swaps_off: usize,
}

impl Check {
    fn is_clean(&self) -> bool {
        self.lost
            + self.duplicated
            + self.foreign
            + self.overflowed
            + self.above_capacity
            + self.adds_off
            + self.swaps_off
            == 0
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "check: {} lost, {} duplicated, {} foreign, {} overflowed, {} above capacity, \
             add sum off by {}, swap sum off by {}",
            self.lost,
            self.duplicated,
            self.foreign,
            self.overflowed,
            self.above_capacity,
            self.adds_off,
            self.swaps_off
        )
    }
}

// ---- faults ----------------------------------------------------------------------

static HANDLER_LIST: AtomicPtr<PerCpu<ListHead>> = AtomicPtr::new(std::ptr::null_mut());
static HANDLER_ADDS_REGION: AtomicPtr<PerCpu<AtomicUsize>> = AtomicPtr::new(std::ptr::null_mut());
static SIGNALS: AtomicU64 = AtomicU64::new(0);
static HANDLER_OPS: AtomicU64 = AtomicU64::new(0);
static HANDLER_ADDS: AtomicU64 = AtomicU64::new(0);
/// Set while the check counts: a handler that starts then leaves at once.
static QUIET: AtomicBool = AtomicBool::new(false);
/// Handlers between their first and last step, on any thread.
static HANDLERS_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Handlers that found the check counting and left.
static HANDLERS_QUIETED: AtomicU64 = AtomicU64::new(0);

/// Keeps the handler quiet while it lives. The timer keeps firing during the check
/// (on the checking thread too), and a handler adding between the check's reads of
/// `HANDLER_ADDS` and of the words made the sums disagree by one. A handler marks
/// itself running before it reads `QUIET`, and `new` sets `QUIET` before it reads
/// the running count (both sequentially consistent): either the handler sees
/// `QUIET`, or `new` sees it running and waits for it to finish.
struct QuietHandler;

impl QuietHandler {
    fn new() -> QuietHandler {
        QUIET.store(true, Ordering::SeqCst);
        while HANDLERS_RUNNING.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        QuietHandler
    }
}

impl Drop for QuietHandler {
    fn drop(&mut self) {
        QUIET.store(false, Ordering::SeqCst);
    }
}

/// SIGPROF: interrupts running threads, often inside a section (which the kernel
/// then aborts). In rseq modes the handler runs sections of its own: it takes a
/// node from its CPU's list and puts it back, and counts on a per-CPU word.
extern "C" fn on_sigprof(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
    HANDLERS_RUNNING.fetch_add(1, Ordering::SeqCst);
    if QUIET.load(Ordering::SeqCst) {
        HANDLERS_QUIETED.fetch_add(1, Ordering::Relaxed);
    } else if rseq_core::mode() != Mode::Fallback {
        // In fallback mode the handler only counts: one that interrupted its own
        // thread inside a CPU's lock gets Unavailable (tests/reentry.rs), and a node
        // it popped could then not go back.
        run_handler_sections();
    }
    HANDLERS_RUNNING.fetch_sub(1, Ordering::SeqCst);
}

/// The handler's own sections: takes a node from its CPU's list and puts it back,
/// and counts on a per-CPU word.
fn run_handler_sections() {
    // SAFETY: both pointers are set before the timer starts and point to leaked data.
    let (list, adds) = unsafe {
        (
            &*HANDLER_LIST.load(Ordering::Relaxed),
            &*HANDLER_ADDS_REGION.load(Ordering::Relaxed),
        )
    };
    if let Ok(node) = list.pop() {
        // SAFETY: we just popped it; it goes straight back.
        while unsafe { list.push(node) }.is_err() {}
        HANDLER_OPS.fetch_add(1, Ordering::Relaxed);
    }
    if adds.add(1).is_ok() {
        HANDLER_ADDS.fetch_add(1, Ordering::Relaxed);
        HANDLER_OPS.fetch_add(1, Ordering::Relaxed);
    }
}

fn install_signal_handler(world: &'static World) {
    HANDLER_LIST.store(&world.list as *const _ as *mut _, Ordering::Relaxed);
    HANDLER_ADDS_REGION.store(&world.adds as *const _ as *mut _, Ordering::Relaxed);
    // SAFETY: installing a handler that only touches atomics and leaked regions, and
    // arming the process's profiling timer.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        assert_eq!(
            libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()),
            0
        );
        let interval = libc::timeval {
            tv_sec: 0,
            tv_usec: SIGNAL_INTERVAL_US,
        };
        let timer = libc::itimerval {
            it_interval: interval,
            it_value: interval,
        };
        assert_eq!(
            libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()),
            0
        );
    }
}

fn stop_signals() {
    // SAFETY: disarming the timer.
    unsafe {
        let zero = libc::itimerval {
            it_interval: std::mem::zeroed(),
            it_value: std::mem::zeroed(),
        };
        libc::setitimer(libc::ITIMER_PROF, &zero, std::ptr::null_mut());
    }
}

/// Pins the thread to one random online CPU (a forced migration).
fn migrate(rng: &mut Rng) {
    let cpu = (rng.next() % online_cpus() as u64) as usize;
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

fn unpin() {
    // SAFETY: a cpu_set_t with every online CPU set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..online_cpus() {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
