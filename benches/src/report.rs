//! The medians of every (workload, allocator) as tables (markdown, printed and
//! written to `summary.md`), CSV files (`runs.csv`: every run; `summary.csv`:
//! medians) and plots.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::child::RunResult;
use crate::memory::Sample;
use crate::preload::Preload;
use crate::workloads::{Kind, Workload};
use crate::{plot, Options};

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

    fn ok_runs(&self, w: usize, a: usize) -> Vec<&RunResult> {
        self.runs
            .iter()
            .filter(|r| (r.w, r.a) == (w, a))
            .filter_map(|r| r.outcome.as_ref().ok())
            .collect()
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// What a ratio compares: a figure of one run.
pub type Metric = fn(&RunResult) -> f64;
pub const SECONDS: Metric = |r| r.seconds;
pub const PEAK_RSS: Metric = |r| r.peak_rss_kib as f64;

/// Medians of one (workload, allocator); memory in MiB. `None`: no successful run,
/// or (allocator figures) the allocator does not tell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cell {
    pub runs: usize,
    pub seconds: Option<f64>,
    pub peak_rss: Option<f64>,
    pub start_rss: Option<f64>,
    pub live: MemCell,
    pub after: MemCell,
}

/// Medians of a [`Sample`], in MiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemCell {
    pub rss: Option<f64>,
    pub allocated: Option<f64>,
    pub resident: Option<f64>,
    pub cached: Option<f64>,
}

fn median_of<T>(runs: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    let values: Option<Vec<f64>> = runs.iter().map(f).collect();
    median(values?)
}

impl MemCell {
    fn of(samples: &[Sample]) -> Self {
        let bytes = |v: Option<u64>| v.map(|v| v as f64 / MIB);
        MemCell {
            rss: median_of(samples, |s| Some(s.rss_kib as f64 / 1024.0)),
            allocated: median_of(samples, |s| bytes(s.allocated)),
            resident: median_of(samples, |s| bytes(s.resident)),
            cached: median_of(samples, |s| bytes(s.cached)),
        }
    }
}

impl Cell {
    fn of(runs: &[&RunResult]) -> Self {
        let lives: Vec<Sample> = runs.iter().map(|r| r.live).collect();
        let afters: Vec<Sample> = runs.iter().map(|r| r.after).collect();
        Cell {
            runs: runs.len(),
            seconds: median_of(runs, |r| Some(r.seconds)),
            peak_rss: median_of(runs, |r| Some(r.peak_rss_kib as f64 / 1024.0)),
            start_rss: median_of(runs, |r| Some(r.start_rss_kib as f64 / 1024.0)),
            live: MemCell::of(&lives),
            after: MemCell::of(&afters),
        }
    }
}

/// A markdown table, padded so that it also reads well in a terminal.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |c: usize| {
            self.rows
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain([self.header[c].chars().count(), 3])
                .max()
                .unwrap_or(3)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (c, w) in widths.iter().enumerate() {
                let cell = cells.get(c).map_or("", String::as_str);
                if c == 0 {
                    let _ = write!(out, " {cell:<w$} |");
                } else {
                    let _ = write!(out, " {cell:>w$} |");
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.header);
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let dashes = "-".repeat(*w);
            if c == 0 {
                let _ = write!(out, ":{dashes}-|");
            } else {
                let _ = write!(out, "-{dashes}:|");
            }
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `value` MiB, or `n/a`.
pub fn mib(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.1}")
        }
    })
}

/// A duration in seconds, in ms or s.
pub fn time(seconds: Option<f64>) -> String {
    match seconds {
        None => "failed".into(),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

/// `value / reference` as `1.23x`.
pub fn ratio(value: Option<f64>, reference: Option<f64>) -> Option<f64> {
    Some(value? / reference?).filter(|r| r.is_finite())
}

pub fn show_ratio(ratio: Option<f64>) -> String {
    ratio.map_or("n/a".into(), |r| format!("{r:.2}x"))
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
            median(loads.clone()).unwrap_or(0.0),
            loads.len(),
            crate::BUSY,
            if options.retry_busy { " (after up to 2 retries each, --retry-busy)" } else { "" }
        );
        let _ = writeln!(
            header,
            "Run: {} reps (interleaved, allocator order rotated each rep), scale {}, {} runs in {:.0} s{}; \
             medians; source {}",
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

    /// Ratios peer / reference of `metric`, per workload, per peer (in `peers()`
    /// order): the median over repetitions of the ratio within one repetition.
    /// The two runs of a repetition ran minutes apart at most (interleaving), so
    /// a slow spell of the machine affects both and cancels in their ratio.
    pub fn ratios(&self, metric: Metric) -> Vec<Vec<Option<f64>>> {
        let value = |w: usize, a: usize, rep: usize| {
            self.results
                .runs
                .iter()
                .find(|r| (r.w, r.a, r.rep) == (w, a, rep))
                .and_then(|r| r.outcome.as_ref().ok())
                .map(metric)
        };
        let reps = self
            .results
            .runs
            .iter()
            .map(|r| r.rep + 1)
            .max()
            .unwrap_or(0);
        (0..self.results.workloads.len())
            .map(|w| {
                self.peers()
                    .map(|(a, _)| {
                        let per_rep = (0..reps)
                            .filter_map(|rep| {
                                ratio(value(w, a, rep), value(w, self.reference, rep))
                            })
                            .collect();
                        median(per_rep)
                    })
                    .collect()
            })
            .collect()
    }

    /// The table of `f` (time or peak RSS): the reference's value, then each
    /// peer's ratio to it; a last row with the geometric mean of the ratios.
    fn ratio_table(
        &self,
        metric: Metric,
        f: impl Fn(&Cell) -> Option<f64> + Copy,
        show: impl Fn(Option<f64>) -> String,
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
            cells.extend(ratios.iter().map(|&r| show_ratio(r)));
            table.row(cells);
        }
        let mut geomean = vec!["geometric mean".to_string(), String::new()];
        for p in 0..self.peers().count() {
            let logs: Vec<f64> = ratios.iter().filter_map(|r| r[p]).map(f64::ln).collect();
            let mean =
                (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp());
            geomean.push(show_ratio(mean));
        }
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
            "## Time: {reference}'s median; for each peer, the median over repetitions of peer / {reference} \
             within a repetition (above 1: {reference} is faster)\n"
        );
        out.push_str(&self.ratio_table(SECONDS, |c| c.seconds, time).render());
        let start = median(
            self.cells
                .iter()
                .flatten()
                .filter_map(|c| c.start_rss)
                .collect(),
        );
        let _ = writeln!(
            out,
            "\n## Peak RSS (MiB) of the child process: {reference}'s median; peers as ratios, as above \
             (above 1: {reference} uses less). Each child starts at about {} MiB before its workload.\n",
            mib(start)
        );
        out.push_str(&self.ratio_table(PEAK_RSS, |c| c.peak_rss, mib).render());
        for w in self.memory_workloads() {
            let _ = writeln!(
                out,
                "\n## Memory in `{}` (MiB): RSS and the allocator's own figures at the sample point (working set \
                 live), peak RSS, and after everything was freed\n",
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
        std::fs::write(dir.join("runs.csv"), self.runs_csv())?;
        std::fs::write(dir.join("summary.csv"), self.summary_csv())?;
        plot::all(self, dir).map_err(|e| io::Error::other(format!("plot: {e}")))?;
        if let Some(preload) = self.preload {
            preload
                .plot(dir)
                .map_err(|e| io::Error::other(format!("plot: {e}")))?;
        }
        Ok(())
    }

    fn runs_csv(&self) -> String {
        let mut out = String::from(
            "workload,allocator,rep,seconds,peak_rss_kib,start_rss_kib,live_rss_kib,live_allocated,live_resident,\
             live_cached,after_rss_kib,after_allocated,after_resident,after_cached,checks,cpu_seconds,other_load,error\n",
        );
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        for run in &self.results.runs {
            let (name, allocator) = (
                &self.results.workloads[run.w].0,
                self.results.allocators[run.a],
            );
            let rep = run.rep + 1;
            match &run.outcome {
                Ok(r) => {
                    let _ = writeln!(
                        out,
                        "{name},{allocator},{rep},{:.6},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},",
                        r.seconds,
                        r.peak_rss_kib,
                        r.start_rss_kib,
                        r.live.rss_kib,
                        opt(r.live.allocated),
                        opt(r.live.resident),
                        opt(r.live.cached),
                        r.after.rss_kib,
                        opt(r.after.allocated),
                        opt(r.after.resident),
                        opt(r.after.cached),
                        r.checks,
                        r.cpu_seconds,
                        r.other_load
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "{name},{allocator},{rep},,,,,,,,,,,,,,,\"{}\"",
                        e.replace('"', "'")
                    );
                }
            }
        }
        out
    }

    fn summary_csv(&self) -> String {
        let mut out = String::from(
            "workload,allocator,runs,median_seconds,time_ratio_to_reference,median_peak_rss_mib,peak_rss_ratio_to_reference,\
             live_rss_mib,live_allocated_mib,live_resident_mib,live_cached_mib,after_rss_mib,after_resident_mib\n",
        );
        let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        let (time_ratios, rss_ratios) = (self.ratios(SECONDS), self.ratios(PEAK_RSS));
        // The ratio of allocator `a` (1 for the reference itself).
        let of = |ratios: &[Vec<Option<f64>>], w: usize, a: usize| match a.cmp(&self.reference) {
            std::cmp::Ordering::Less => ratios[w][a],
            std::cmp::Ordering::Equal => Some(1.0),
            std::cmp::Ordering::Greater => ratios[w][a - 1],
        };
        for (w, (name, ..)) in self.results.workloads.iter().enumerate() {
            for (a, allocator) in self.results.allocators.iter().enumerate() {
                let c = &self.cells[w][a];
                let _ = writeln!(
                    out,
                    "{name},{allocator},{},{},{},{},{},{},{},{},{},{},{}",
                    c.runs,
                    f(c.seconds),
                    f(of(&time_ratios, w, a)),
                    f(c.peak_rss),
                    f(of(&rss_ratios, w, a)),
                    f(c.live.rss),
                    f(c.live.allocated),
                    f(c.live.resident),
                    f(c.live.cached),
                    f(c.after.rss),
                    f(c.after.resident)
                );
            }
        }
        out
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
