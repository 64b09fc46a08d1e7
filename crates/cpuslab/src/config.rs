//! The configuration: one set of options, set from the environment
//! (`CPUSLAB_*`, read once by one parser, without allocating) or from code
//! ([`Config::apply`]). Every option, its values and its default are listed in
//! docs/tuning.md ("Options"); a test checks that list against [`OPTIONS`].
//!
//! The environment is read on the allocator's first use or at load time,
//! whichever comes first; code applies its values on top. An invalid value
//! prints one line on stderr and keeps the default: never an abort, never an
//! allocation. Options that shape what is built on first use (the rseq switch,
//! the cache index) can no longer change once it is built: `apply` says so.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use rseq_core::Index;

use crate::{decay, os};

/// The variables cpuslab reads, in the order docs/tuning.md lists them.
pub const OPTIONS: [&str; 8] = [
    RSEQ_VAR,
    INDEX_VAR,
    "CPUSLAB_DECAY_MS",
    CPU_CACHE_BYTES_VAR,
    "CPUSLAB_HUGE_PAGES",
    BACKGROUND_VAR,
    "CPUSLAB_STATS",
    "CPUSLAB_VERBOSE",
];

const RSEQ_VAR: &str = "CPUSLAB_RSEQ";
const INDEX_VAR: &str = "CPUSLAB_INDEX";
const CPU_CACHE_BYTES_VAR: &str = "CPUSLAB_CPU_CACHE_BYTES";
const BACKGROUND_VAR: &str = "CPUSLAB_BACKGROUND";

/// The most bytes of one class a CPU may cache, once its cache grew: the shelf
/// layout's size (and the default). Caches start at a quarter of it.
pub const MAX_CPU_CACHE_BYTES: usize = 256 * 1024;

/// The allocator's options. Read the current ones with [`config`], change
/// fields, then [`apply`](Config::apply) them.
///
/// ```
/// let mut config = cpuslab::config();
/// config.decay_ms = 250;
/// config.apply().expect("decay can change at any time");
/// assert_eq!(cpuslab::config().decay_ms, 250);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Use rseq (`CPUSLAB_RSEQ`, default on); off runs every per-CPU
    /// operation under per-CPU locks. Fixed once the rseq mode is decided (on
    /// first use).
    pub rseq: bool,
    /// What indexes the per-CPU caches (`CPUSLAB_INDEX`: `cpu` or `mm_cid`, the
    /// default). Fixed once the caches exist (on first use).
    pub index: Index,
    /// The decay interval in milliseconds (`CPUSLAB_DECAY_MS`, default 1000;
    /// `never`: only `trim` returns memory): how long free pages stay committed
    /// and how often the caches are halved.
    pub decay_ms: u64,
    /// The most bytes of free objects one CPU caches per size class
    /// (`CPUSLAB_CPU_CACHE_BYTES`, default and most 256 KiB; 0 turns the
    /// per-CPU tier off). A class's cache starts at a quarter of it and grows
    /// where it misses (docs/tuning.md, "What cpuslab can cache"). The start
    /// applies to caches set up after the change, the bound on growth at once.
    pub cpu_cache_bytes: usize,
    /// Ask for transparent huge pages on fresh large mappings of 4 MiB and more
    /// (`CPUSLAB_HUGE_PAGES`, default off): a program that fills new buffers
    /// takes 512 times fewer page faults, but where the kernel must first find
    /// or clear 2 MiB pages (or, in a VM, get them back from the host) a run can
    /// take several times longer. Applies to mappings made afterwards.
    pub huge_pages: bool,
    /// Run the background decay thread (`CPUSLAB_BACKGROUND`, default off). It
    /// cannot be stopped once started.
    pub background: bool,
    /// Print the statistics report to stderr at exit (`CPUSLAB_STATS`, default
    /// off).
    pub stats_at_exit: bool,
    /// Print one line on stderr at start-up with the version, the rseq mode and
    /// the options (`CPUSLAB_VERBOSE`, default off).
    pub verbose: bool,
}

/// Why [`Config::apply`] refused a configuration (nothing of it was applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The option shapes what the allocator built on its first use, which has
    /// happened: set it in the environment, or from code before any
    /// allocation (a constructor in `.init_array`, see docs/tuning.md).
    TooLate(&'static str),
    /// The value is outside the option's range.
    OutOfRange(&'static str),
    /// The background thread could not be started.
    NoThread,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::TooLate(name) => {
                write!(f, "{name} cannot change after the allocator's first use")
            }
            ConfigError::OutOfRange(name) => write!(f, "{name} is out of range"),
            ConfigError::NoThread => write!(f, "the background thread could not start"),
        }
    }
}

// --- the stored options ----------------------------------------------------------

static RSEQ: AtomicBool = AtomicBool::new(true);
static INDEX_CPU: AtomicBool = AtomicBool::new(false);
static CPU_CACHE_BYTES: AtomicUsize = AtomicUsize::new(MAX_CPU_CACHE_BYTES);
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);
static BACKGROUND: AtomicBool = AtomicBool::new(false);
static STATS_AT_EXIT: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static ENVIRONMENT: AtomicU8 = AtomicU8::new(UNREAD);

/// The options now (the environment read first, if it was not yet).
pub fn config() -> Config {
    load();
    Config {
        rseq: rseq_enabled(),
        index: cache_index(),
        decay_ms: decay::interval_ms(),
        cpu_cache_bytes: cpu_cache_bytes(),
        huge_pages: huge_pages(),
        background: BACKGROUND.load(Ordering::Relaxed) || decay::background_running(),
        stats_at_exit: stats_at_exit(),
        verbose: verbose(),
    }
}

impl Config {
    /// Applies every field that differs from the options now, or none of them
    /// (except [`ConfigError::NoThread`], which comes after the other fields
    /// took effect: the thread is started last).
    pub fn apply(self) -> Result<(), ConfigError> {
        let now = config();
        if self.cpu_cache_bytes > MAX_CPU_CACHE_BYTES {
            return Err(ConfigError::OutOfRange(CPU_CACHE_BYTES_VAR));
        }
        let built = crate::cpu_cache::region().is_some();
        if self.index != now.index && built {
            return Err(ConfigError::TooLate(INDEX_VAR));
        }
        if self.background != now.background && now.background {
            return Err(ConfigError::TooLate(BACKGROUND_VAR));
        }
        if self.rseq && !now.rseq && rseq_core::mode_if_decided().is_some() {
            return Err(ConfigError::TooLate(RSEQ_VAR));
        }
        // Turning rseq off decides the mode now (the fallback), or fails if it
        // was decided already: the last check, so nothing is half applied.
        if !self.rseq && now.rseq && !rseq_core::disable_rseq() {
            return Err(ConfigError::TooLate(RSEQ_VAR));
        }
        RSEQ.store(self.rseq, Ordering::Relaxed);
        INDEX_CPU.store(self.index == Index::Cpu, Ordering::Relaxed);
        decay::set_interval_ms(self.decay_ms);
        CPU_CACHE_BYTES.store(self.cpu_cache_bytes, Ordering::Relaxed);
        HUGE_PAGES.store(self.huge_pages, Ordering::Relaxed);
        STATS_AT_EXIT.store(self.stats_at_exit, Ordering::Relaxed);
        if self.stats_at_exit {
            crate::first_use::print_stats_at_exit();
        }
        let report = self.verbose && !now.verbose;
        VERBOSE.store(self.verbose, Ordering::Relaxed);
        if report {
            print_report();
        }
        if self.background && !now.background {
            if !crate::start_background() {
                return Err(ConfigError::NoThread);
            }
            BACKGROUND.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Whether rseq may be used.
pub(crate) fn rseq_enabled() -> bool {
    load();
    RSEQ.load(Ordering::Relaxed)
}

/// What indexes the per-CPU caches.
pub(crate) fn cache_index() -> Index {
    load();
    if INDEX_CPU.load(Ordering::Relaxed) {
        Index::Cpu
    } else {
        Index::ConcurrencyId
    }
}

/// Bytes of one class a CPU caches.
#[inline]
pub(crate) fn cpu_cache_bytes() -> usize {
    CPU_CACHE_BYTES.load(Ordering::Relaxed)
}

/// Whether fresh large mappings ask for transparent huge pages.
pub(crate) fn huge_pages() -> bool {
    load();
    HUGE_PAGES.load(Ordering::Relaxed)
}

/// Whether the environment (or code) asked for the background thread.
pub(crate) fn background_wanted() -> bool {
    load();
    BACKGROUND.load(Ordering::Relaxed)
}

/// Whether the report is printed at exit.
pub(crate) fn stats_at_exit() -> bool {
    load();
    STATS_AT_EXIT.load(Ordering::Relaxed)
}

/// Whether the start-up line is printed.
pub(crate) fn verbose() -> bool {
    load();
    VERBOSE.load(Ordering::Relaxed)
}

// --- the environment ----------------------------------------------------------------

/// Reads the environment once. A thread that comes here while another reads it
/// (or the reading thread, reentered) goes on with the defaults.
pub(crate) fn load() {
    if ENVIRONMENT.load(Ordering::Acquire) == READ {
        return;
    }
    if ENVIRONMENT
        .compare_exchange(UNREAD, READING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    os::for_each_env(|name, value| {
        if let Some(name) = name.strip_prefix(b"CPUSLAB_") {
            set_from_env(name, value);
        }
    });
    ENVIRONMENT.store(READ, Ordering::Release);
}

/// One `CPUSLAB_<name>=<value>`: stored when valid, else one line on stderr.
fn set_from_env(name: &[u8], value: &[u8]) {
    let valid = match name {
        b"RSEQ" => parse_switch(value).map(|on| RSEQ.store(on, Ordering::Relaxed)),
        b"INDEX" => parse_index(value).map(|index| {
            INDEX_CPU.store(index == Index::Cpu, Ordering::Relaxed);
        }),
        b"DECAY_MS" => parse_ms(value).map(decay::set_interval_ms),
        b"CPU_CACHE_BYTES" => parse_bytes(value)
            .filter(|&bytes| bytes <= MAX_CPU_CACHE_BYTES)
            .map(|bytes| CPU_CACHE_BYTES.store(bytes, Ordering::Relaxed)),
        b"HUGE_PAGES" => parse_switch(value).map(|on| HUGE_PAGES.store(on, Ordering::Relaxed)),
        b"BACKGROUND" => parse_switch(value).map(|on| BACKGROUND.store(on, Ordering::Relaxed)),
        b"STATS" => parse_switch(value).map(|on| STATS_AT_EXIT.store(on, Ordering::Relaxed)),
        b"VERBOSE" => parse_switch(value).map(|on| VERBOSE.store(on, Ordering::Relaxed)),
        _ => {
            let mut line = os::BufferedWriter::stderr();
            let _ = writeln!(
                line,
                "cpuslab: ignoring unknown variable CPUSLAB_{} (docs/tuning.md lists the options)",
                Text(name)
            );
            return;
        }
    };
    if valid.is_none() {
        let expected = match name {
            b"INDEX" => "cpu or mm_cid",
            b"DECAY_MS" => "milliseconds, or never",
            b"CPU_CACHE_BYTES" => "bytes up to 262144 (k and KiB suffixes allowed)",
            _ => "1/on/yes/true or 0/off/no/false",
        };
        let mut line = os::BufferedWriter::stderr();
        let _ = writeln!(
            line,
            "cpuslab: ignoring CPUSLAB_{}={}: expected {expected}; keeping the default",
            Text(name),
            Text(value)
        );
    }
}

/// `1`, `on`, `yes`, `true` or `0`, `off`, `no`, `false`, in any case.
fn parse_switch(value: &[u8]) -> Option<bool> {
    const ON: [&[u8]; 4] = [b"1", b"on", b"yes", b"true"];
    const OFF: [&[u8]; 4] = [b"0", b"off", b"no", b"false"];
    if ON.iter().any(|word| value.eq_ignore_ascii_case(word)) {
        Some(true)
    } else if OFF.iter().any(|word| value.eq_ignore_ascii_case(word)) {
        Some(false)
    } else {
        None
    }
}

/// `cpu` (or `cpu_id`) and `mm_cid` (or `cid`).
fn parse_index(value: &[u8]) -> Option<Index> {
    match value {
        b"cpu" | b"cpu_id" => Some(Index::Cpu),
        b"mm_cid" | b"cid" => Some(Index::ConcurrencyId),
        _ => None,
    }
}

/// Decimal milliseconds, or `never` (`u64::MAX`).
fn parse_ms(value: &[u8]) -> Option<u64> {
    if value.eq_ignore_ascii_case(b"never") {
        return Some(u64::MAX);
    }
    parse_decimal(value)
}

/// Decimal bytes with an optional `k`/`K`/`KiB` suffix (times 1024).
fn parse_bytes(value: &[u8]) -> Option<usize> {
    let (digits, unit) = match value.iter().position(|b| !b.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, &b""[..]),
    };
    let scale: u64 = match unit {
        b"" => 1,
        b"k" | b"K" | b"KiB" => 1024,
        _ => return None,
    };
    usize::try_from(parse_decimal(digits)?.checked_mul(scale)?).ok()
}

/// A non-empty run of decimal digits that fits a `u64`.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Bytes from the environment, printed as text (invalid UTF-8 as `?`).
struct Text<'a>(&'a [u8]);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char('?')?;
            }
        }
        Ok(())
    }
}

/// The start-up line: version, rseq mode, index and every option.
pub(crate) fn print_report() {
    // The rseq switch first: reading the mode below decides it.
    crate::first_use::ensure();
    let config = config();
    let mut line = os::BufferedWriter::stderr();
    let _ = write!(
        line,
        "cpuslab {}: rseq mode {:?}, caches indexed by {:?}, decay ",
        env!("CARGO_PKG_VERSION"),
        rseq_core::mode(),
        config.index.effective(),
    );
    let _ = match config.decay_ms {
        u64::MAX => write!(line, "never"),
        ms => write!(line, "{ms} ms"),
    };
    let _ = writeln!(
        line,
        ", {} bytes per class per CPU, huge pages {}, background {}, stats at exit {}",
        config.cpu_cache_bytes,
        on_off(config.huge_pages),
        on_off(config.background),
        on_off(config.stats_at_exit),
    );
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_the_same_words_in_any_case() {
        for on in ["1", "on", "YES", "True"] {
            assert_eq!(parse_switch(on.as_bytes()), Some(true), "{on}");
        }
        for off in ["0", "OFF", "no", "FALSE"] {
            assert_eq!(parse_switch(off.as_bytes()), Some(false), "{off}");
        }
        for bad in ["", "2", "enable", "onn"] {
            assert_eq!(parse_switch(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(parse_ms(b"250"), Some(250));
        assert_eq!(parse_ms(b"never"), Some(u64::MAX));
        assert_eq!(parse_ms(b""), None);
        assert_eq!(parse_ms(b"-1"), None);
        assert_eq!(parse_ms(b"99999999999999999999"), None);
        assert_eq!(parse_bytes(b"32768"), Some(32768));
        assert_eq!(parse_bytes(b"16k"), Some(16384));
        assert_eq!(parse_bytes(b"64KiB"), Some(65536));
        assert_eq!(parse_bytes(b"1M"), None);
        assert_eq!(parse_bytes(b"k"), None);
        assert_eq!(parse_index(b"cpu"), Some(Index::Cpu));
        assert_eq!(parse_index(b"mm_cid"), Some(Index::ConcurrencyId));
        assert_eq!(parse_index(b"CPU0"), None);
    }
}
