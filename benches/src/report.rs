//! The figures of every (workload, allocator), median and min–max over the
//! repetitions, as tables (markdown, printed and written to `summary.md`), CSV
//! files (`runs.csv`: every run; `summary.csv`: per workload and allocator) and
//! plots.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::child::RunResult;
use crate::cli::Options;
use crate::csv_files::{self, RunRow, SummaryRow};
use crate::memory::Sample;
use crate::plot;
use crate::preload::Preload;
use crate::spread::{geometric_mean, median, mib, ratio, ratio_text, time, Spread};
use crate::table::Table;
use crate::workloads::{Kind, Workload};

const MIB: f64 = 1024.0 * 1024.0;

/// Every run of the session, in the order they ran.
pub struct Results {
    pub workloads: Vec<(String, Kind, String)>,
    pub allocators: Vec<&'static str>,
    runs: Vec<Run>,
}

/// One run: workload and allocator (indexes), repetition, outcome.
struct Run {
    w: usize,
    a: usize,
    rep: usize,
    outcome: Result<RunResult, String>,
}

impl Results {
    pub fn new(workloads: &[Workload], allocators: &[&'static str]) -> Self {
        Results {
            workloads: workloads
                .iter()
                .map(|w| (w.name.clone(), w.kind, w.about.clone()))
                .collect(),
            allocators: allocators.to_vec(),
            runs: Vec::new(),
        }
    }

    pub fn add(
        &mut self,
        workload: &str,
        allocator: &str,
        rep: usize,
        outcome: Result<RunResult, String>,
    ) {
        let w = self
            .workloads
            .iter()
            .position(|(name, ..)| name == workload)
            .expect("known workload");
        let a = self
            .allocators
            .iter()
            .position(|name| *name == allocator)
            .expect("known allocator");
        self.runs.push(Run { w, a, rep, outcome });
    }

    pub fn failures(&self) -> usize {
        self.runs.iter().filter(|r| r.outcome.is_err()).count()
    }

    /// Repetitions run (the highest repetition number seen).
    pub fn reps(&self) -> usize {
        self.runs.iter().map(|r| r.rep + 1).max().unwrap_or(0)
    }

    fn ok_runs(&self, w: usize, a: usize) -> Vec<&RunResult> {
        self.runs
            .iter()
            .filter(|r| (r.w, r.a) == (w, a))
            .filter_map(|r| r.outcome.as_ref().ok())
            .collect()
    }
}

/// What a ratio compares: a figure of one run.
pub type Metric = fn(&RunResult) -> f64;
pub const SECONDS: Metric = |r| r.seconds;
pub const PEAK_RSS: Metric = |r| r.peak_rss_kib as f64;

/// One (workload, allocator) over its successful runs: median and min–max of
/// each figure; memory in MiB. `None`: no successful run, or (allocator figures)
/// the allocator does not tell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cell {
    pub runs: usize,
    pub seconds: Option<Spread>,
    pub peak_rss: Option<Spread>,
    pub start_rss: Option<Spread>,
    /// Pattern checks per second; for `threads-<n>`, steps per second.
    pub throughput: Option<Spread>,
    pub live: MemCell,
    pub after: MemCell,
}

/// A [`Sample`] over the runs, in MiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemCell {
    pub rss: Option<Spread>,
    pub allocated: Option<Spread>,
    pub resident: Option<Spread>,
    pub cached: Option<Spread>,
}

/// The spread of `f` over `runs`; `None` if any run lacks the figure.
fn spread_of<T>(runs: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<Spread> {
    let values: Option<Vec<f64>> = runs.iter().map(f).collect();
    Spread::range(values?)
}

impl MemCell {
    fn of(samples: &[Sample]) -> Self {
        let bytes = |v: Option<u64>| v.map(|v| v as f64 / MIB);
        MemCell {
            rss: spread_of(samples, |s| Some(s.rss_kib as f64 / 1024.0)),
            allocated: spread_of(samples, |s| bytes(s.allocated)),
            resident: spread_of(samples, |s| bytes(s.resident)),
            cached: spread_of(samples, |s| bytes(s.cached)),
        }
    }
}

impl Cell {
    fn of(runs: &[&RunResult]) -> Self {
        let lives: Vec<Sample> = runs.iter().map(|r| r.live).collect();
        let afters: Vec<Sample> = runs.iter().map(|r| r.after).collect();
        Cell {
            runs: runs.len(),
            seconds: spread_of(runs, |r| Some(r.seconds)),
            peak_rss: spread_of(runs, |r| Some(r.peak_rss_kib as f64 / 1024.0)),
            start_rss: spread_of(runs, |r| Some(r.start_rss_kib as f64 / 1024.0)),
            throughput: spread_of(runs, |r| {
                (r.seconds > 0.0).then(|| r.checks as f64 / r.seconds)
            }),
            live: MemCell::of(&lives),
            after: MemCell::of(&afters),
        }
    }
}

/// Everything the session found, ready to print and write.
pub struct Report<'a> {
    results: &'a Results,
    /// `cells[workload][allocator]`.
    pub cells: Vec<Vec<Cell>>,
    /// Index of the allocator the ratios are to (cpuslab).
    pub reference: usize,
    header: String,
    preload: Option<&'a Preload>,
}

impl<'a> Report<'a> {
    pub fn new(
        results: &'a Results,
        options: &Options,
        wall: Duration,
        preload: Option<&'a Preload>,
    ) -> Self {
        let cells = (0..results.workloads.len())
            .map(|w| {
                (0..results.allocators.len())
                    .map(|a| Cell::of(&results.ok_runs(w, a)))
                    .collect()
            })
            .collect();
        let reference = results
            .allocators
            .iter()
            .position(|&a| a == "cpuslab")
            .unwrap_or(0);
        let mut header = String::new();
        let _ = writeln!(header, "Machine: {}", machine().join(", "));
        let loads: Vec<f64> = results
            .runs
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .map(|r| r.other_load)
            .collect();
        let busy = loads.iter().filter(|&&l| l > crate::BUSY).count();
        let _ = writeln!(
            header,
            "Other processes during the runs: median {:.2} CPU busy; {busy} of {} runs above {} CPU{}",
            median(loads.iter().copied()).unwrap_or(0.0),
            loads.len(),
            crate::BUSY,
            if options.retry_busy { " (after up to 2 retries each, --retry-busy)" } else { "" }
        );
        let _ = writeln!(
            header,
            "Run: {} reps (interleaved, allocator order rotated each rep), scale {}, {} runs in {:.0} s{}; \
             medians (min–max); source {}",
            options.reps,
            options.scale,
            results.runs.len(),
            wall.as_secs_f64(),
            if options.quick { ", --quick" } else { "" },
            git_commit()
        );
        Report {
            results,
            cells,
            reference,
            header,
            preload,
        }
    }

    fn reference_name(&self) -> &str {
        self.results.allocators[self.reference]
    }

    fn peers(&self) -> impl Iterator<Item = (usize, &'static str)> + '_ {
        let reference = self.reference;
        self.results
            .allocators
            .iter()
            .copied()
            .enumerate()
            .filter(move |&(a, _)| a != reference)
    }

    /// The ratio peer / reference of `metric` in each repetition where both ran,
    /// per workload, per peer (in `peers()` order). The two runs of a repetition
    /// ran minutes apart at most (interleaving), so a slow spell of the machine
    /// affects both and cancels in their ratio.
    fn ratios_per_rep(&self, metric: Metric) -> Vec<Vec<Vec<(usize, f64)>>> {
        let value = |w: usize, a: usize, rep: usize| {
            self.results
                .runs
                .iter()
                .find(|r| (r.w, r.a, r.rep) == (w, a, rep))
                .and_then(|r| r.outcome.as_ref().ok())
                .map(metric)
        };
        let reps = self.results.reps();
        (0..self.results.workloads.len())
            .map(|w| {
                self.peers()
                    .map(|(a, _)| {
                        (0..reps)
                            .filter_map(|rep| {
                                ratio(value(w, a, rep), value(w, self.reference, rep))
                                    .map(|r| (rep, r))
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Ratios peer / reference of `metric`, per workload, per peer (in `peers()`
    /// order): median and min–max over repetitions of the ratio within one
    /// repetition.
    pub fn ratios(&self, metric: Metric) -> Vec<Vec<Option<Spread>>> {
        self.ratios_per_rep(metric)
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|per_rep| Spread::range(per_rep.into_iter().map(|(_, r)| r)))
                    .collect()
            })
            .collect()
    }

    /// Per peer: the geometric mean over workloads of the ratios of one
    /// repetition, median and min–max over repetitions.
    fn geometric_means(&self, metric: Metric) -> Vec<Option<Spread>> {
        let per_rep = self.ratios_per_rep(metric);
        (0..self.peers().count())
            .map(|p| {
                let means = (0..self.results.reps()).filter_map(|rep| {
                    geometric_mean(
                        per_rep
                            .iter()
                            .flat_map(|row| row[p].iter())
                            .filter(|&&(r, _)| r == rep)
                            .map(|&(_, ratio)| ratio),
                    )
                });
                Spread::range(means)
            })
            .collect()
    }

    /// The table of `f` (time or peak RSS): the reference's value, then each
    /// peer's ratio to it; a last row with the geometric means of the ratios.
    fn ratio_table(
        &self,
        metric: Metric,
        f: impl Fn(&Cell) -> Option<Spread>,
        show: impl Fn(Option<Spread>) -> String,
    ) -> Table {
        let mut table = Table::new(
            ["workload".to_string(), self.reference_name().to_string()]
                .into_iter()
                .chain(self.peers().map(|(_, name)| name.to_string())),
        );
        let ratios = self.ratios(metric);
        for ((name, ..), (row, ratios)) in self
            .results
            .workloads
            .iter()
            .zip(self.cells.iter().zip(&ratios))
        {
            let mut cells = vec![name.clone(), show(f(&row[self.reference]))];
            cells.extend(ratios.iter().map(|&r| ratio_text(r)));
            table.row(cells);
        }
        let mut geomean = vec!["geometric mean".to_string(), String::new()];
        geomean.extend(self.geometric_means(metric).into_iter().map(ratio_text));
        table.row(geomean);
        table
    }

    /// The allocators' own view of memory for one workload.
    fn memory_table(&self, w: usize) -> Table {
        let mut table = Table::new([
            "allocator",
            "live RSS",
            "allocated",
            "resident",
            "cached",
            "peak RSS",
            "RSS after free",
            "resident after free",
        ]);
        for (a, name) in self.results.allocators.iter().enumerate() {
            let c = &self.cells[w][a];
            table.row(vec![
                name.to_string(),
                mib(c.live.rss),
                mib(c.live.allocated),
                mib(c.live.resident),
                mib(c.live.cached),
                mib(c.peak_rss),
                mib(c.after.rss),
                mib(c.after.resident),
            ]);
        }
        table
    }

    fn memory_workloads(&self) -> impl Iterator<Item = usize> + '_ {
        let kinds = [Kind::Oversubscribed, Kind::Server];
        kinds.into_iter().flat_map(|kind| {
            self.results
                .workloads
                .iter()
                .enumerate()
                .filter(move |(_, w)| w.1 == kind)
                .map(|(i, _)| i)
        })
    }

    /// The report as markdown (also printed).
    pub fn text(&self) -> String {
        let reference = self.reference_name();
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.header);
        let _ = writeln!(
            out,
            "## Time: {reference}'s median (min–max over repetitions); for each peer, the median over \
             repetitions of peer / {reference} within a repetition, with its min–max (above 1: \
             {reference} is faster). Geometric mean: over the workloads of one repetition, median \
             and min–max over repetitions\n"
        );
        out.push_str(&self.ratio_table(SECONDS, |c| c.seconds, time).render());
        let start = median(
            self.cells
                .iter()
                .flatten()
                .filter_map(|c| c.start_rss.map(|s| s.median)),
        );
        let _ = writeln!(
            out,
            "\n## Peak RSS (MiB) of the child process: {reference}'s median (min–max); peers as ratios, \
             as above (above 1: {reference} uses less). Each child starts at about {} MiB before its \
             workload.\n",
            start.map_or("n/a".into(), |s| format!("{s:.1}"))
        );
        out.push_str(&self.ratio_table(PEAK_RSS, |c| c.peak_rss, mib).render());
        for w in self.memory_workloads() {
            let _ = writeln!(
                out,
                "\n## Memory in `{}` (MiB, median and min–max over repetitions): RSS and the \
                 allocator's own figures at the sample point (working set live), peak RSS, and after \
                 everything was freed\n",
                self.results.workloads[w].0
            );
            out.push_str(&self.memory_table(w).render());
        }
        if let Some(preload) = self.preload {
            out.push('\n');
            out.push_str(&preload.text());
        }
        let failed: Vec<String> = self
            .results
            .runs
            .iter()
            .filter_map(|r| {
                r.outcome.as_ref().err().map(|e| {
                    format!(
                        "- {} / {} (rep {}): {e}",
                        self.results.workloads[r.w].0,
                        self.results.allocators[r.a],
                        r.rep + 1
                    )
                })
            })
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\n## FAILED runs\n\n{}", failed.join("\n"));
        }
        out
    }

    /// Writes summary.md, runs.csv, summary.csv and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let mut md = String::from("# cpuslab-bench results\n");
        md.push_str(&self.text());
        md.push_str("\n## Workloads\n\n");
        let mut table = Table::new(["workload", "what one run does"]);
        for (name, _, about) in &self.results.workloads {
            table.row(vec![name.clone(), about.clone()]);
        }
        md.push_str(&table.render());
        std::fs::write(dir.join("summary.md"), md)?;
        csv_files::write(&dir.join("runs.csv"), self.run_rows()).map_err(io::Error::other)?;
        csv_files::write(&dir.join("summary.csv"), self.summary_rows())
            .map_err(io::Error::other)?;
        plot::all(self, dir).map_err(|e| io::Error::other(format!("plot: {e}")))?;
        if let Some(preload) = self.preload {
            preload
                .plot(dir)
                .map_err(|e| io::Error::other(format!("plot: {e}")))?;
        }
        Ok(())
    }

    /// The rows of `runs.csv`: every run, in the order they ran.
    fn run_rows(&self) -> Vec<RunRow> {
        let rows = self.results.runs.iter().map(|run| {
            let row = RunRow {
                workload: self.results.workloads[run.w].0.clone(),
                allocator: self.results.allocators[run.a].to_string(),
                rep: run.rep + 1,
                ..RunRow::default()
            };
            match &run.outcome {
                Ok(r) => RunRow {
                    seconds: Some(r.seconds),
                    peak_rss_kib: Some(r.peak_rss_kib),
                    start_rss_kib: Some(r.start_rss_kib),
                    live_rss_kib: Some(r.live.rss_kib),
                    live_allocated: r.live.allocated,
                    live_resident: r.live.resident,
                    live_cached: r.live.cached,
                    after_rss_kib: Some(r.after.rss_kib),
                    after_allocated: r.after.allocated,
                    after_resident: r.after.resident,
                    after_cached: r.after.cached,
                    checks: Some(r.checks),
                    cpu_seconds: Some(r.cpu_seconds),
                    other_load: Some(csv_files::rounded(r.other_load)),
                    ..row
                },
                Err(e) => RunRow {
                    error: Some(e.clone()),
                    ..row
                },
            }
        });
        rows.collect()
    }

    /// The rows of `summary.csv`: every (workload, allocator).
    fn summary_rows(&self) -> Vec<SummaryRow> {
        let (time_ratios, rss_ratios) = (self.ratios(SECONDS), self.ratios(PEAK_RSS));
        // The ratio of allocator `a` (1 for the reference itself).
        let of = |ratios: &[Vec<Option<Spread>>], w: usize, a: usize| match a.cmp(&self.reference) {
            std::cmp::Ordering::Less => ratios[w][a],
            std::cmp::Ordering::Equal => Spread::range([1.0]),
            std::cmp::Ordering::Greater => ratios[w][a - 1],
        };
        let median = |s: Option<Spread>| s.map(|s| csv_files::rounded(s.median));
        let low = |s: Option<Spread>| s.map(|s| csv_files::rounded(s.low));
        let high = |s: Option<Spread>| s.map(|s| csv_files::rounded(s.high));
        let mut rows = Vec::new();
        for (w, (name, ..)) in self.results.workloads.iter().enumerate() {
            for (a, allocator) in self.results.allocators.iter().enumerate() {
                let c = &self.cells[w][a];
                let (time, rss) = (of(&time_ratios, w, a), of(&rss_ratios, w, a));
                rows.push(SummaryRow {
                    workload: name.clone(),
                    allocator: allocator.to_string(),
                    runs: c.runs,
                    median_seconds: median(c.seconds),
                    min_seconds: low(c.seconds),
                    max_seconds: high(c.seconds),
                    time_ratio_to_reference: median(time),
                    min_time_ratio: low(time),
                    max_time_ratio: high(time),
                    median_peak_rss_mib: median(c.peak_rss),
                    min_peak_rss_mib: low(c.peak_rss),
                    max_peak_rss_mib: high(c.peak_rss),
                    peak_rss_ratio_to_reference: median(rss),
                    min_peak_rss_ratio: low(rss),
                    max_peak_rss_ratio: high(rss),
                    live_rss_mib: median(c.live.rss),
                    live_allocated_mib: median(c.live.allocated),
                    live_resident_mib: median(c.live.resident),
                    live_cached_mib: median(c.live.cached),
                    after_rss_mib: median(c.after.rss),
                    after_resident_mib: median(c.after.resident),
                });
            }
        }
        rows
    }

    pub fn workload_names(&self) -> Vec<&str> {
        self.results
            .workloads
            .iter()
            .map(|(name, ..)| name.as_str())
            .collect()
    }

    pub fn workload_kinds(&self) -> Vec<Kind> {
        self.results.workloads.iter().map(|w| w.1).collect()
    }

    pub fn allocators(&self) -> &[&'static str] {
        &self.results.allocators
    }

    pub fn peer_names(&self) -> Vec<&'static str> {
        self.peers().map(|(_, name)| name).collect()
    }

    pub fn reference_allocator(&self) -> &'static str {
        self.results.allocators[self.reference]
    }

    pub fn memory_workload_indexes(&self) -> Vec<usize> {
        self.memory_workloads().collect()
    }
}

/// The machine in one line: CPU model, CPUs, kernel, glibc.
pub fn machine() -> Vec<String> {
    let model = std::process::Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |k| k.trim().to_string());
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let glibc = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned();
    vec![
        format!("CPU {model}"),
        format!("{} CPUs", crate::cpus()),
        format!("Linux {kernel}"),
        format!("glibc {glibc}"),
        format!("cpuslab rseq mode {:?}", rseq_core::mode()),
    ]
}

/// `git describe`-like: the short commit, `+dirty` with local changes.
fn git_commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-C", dir])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{commit}{}", if dirty { "+dirty" } else { "" })
        }
        None => "unknown".into(),
    }
}
