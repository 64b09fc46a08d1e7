//! `--preload`: the whole-program C benchmarks (`benches/c/run.sh`, whole C
//! programs with each allocator under LD_PRELOAD) folded into the report. The
//! script writes `preload.csv` (benchmark,allocator,rep,seconds,max_rss_kib); this
//! module takes the medians and shows them as ratios to cpuslab.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::report::{median, mib, ratio, show_ratio, time, Table};
use crate::{plot, Options};

/// Medians per (benchmark, allocator), in the CSV's order of first appearance.
#[derive(Debug)]
pub struct Preload {
    benchmarks: Vec<String>,
    allocators: Vec<String>,
    reference: usize,
    /// (median seconds, median max RSS in MiB) per (benchmark, allocator).
    medians: BTreeMap<(usize, usize), (Option<f64>, Option<f64>)>,
    source: PathBuf,
}

/// The script, found next to this crate's sources.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("c")
        .join("run.sh")
}

/// Runs `benches/c/run.sh [--quick] [--reps N] --out <out>/preload` (its output
/// goes to stderr, as progress; `--reps` only when given to us, else the script's
/// own default) and reads its CSV. `None` (with a message) when the script is
/// missing or produced no CSV.
pub fn run(options: &Options) -> Option<Preload> {
    let script = script();
    if !script.exists() {
        eprintln!(
            "cpuslab-bench: --preload: {} does not exist; skipped",
            script.display()
        );
        return None;
    }
    let out = options.out.join("preload");
    let mut command = Command::new("bash");
    command.arg(&script);
    if options.quick {
        command.arg("--quick");
    }
    if options.reps_given {
        command.args(["--reps", &options.reps.to_string()]);
    }
    command.arg("--out").arg(&out);
    eprintln!("cpuslab-bench: running {command:?}");
    let status = command.stdout(Stdio::from(std::io::stderr())).status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("cpuslab-bench: {} exited with {status}", script.display()),
        Err(e) => eprintln!("cpuslab-bench: cannot run {}: {e}", script.display()),
    }
    let csv = out.join("preload.csv");
    match from_csv(&csv) {
        Ok(preload) => Some(preload),
        Err(e) => {
            eprintln!("cpuslab-bench: --preload: {}: {e}", csv.display());
            None
        }
    }
}

/// Reads a `preload.csv` (header: benchmark,allocator,rep,seconds,max_rss_kib, in
/// any column order).
pub fn from_csv(path: &Path) -> Result<Preload, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))
    };
    let (b, a, s, r) = (
        column("benchmark")?,
        column("allocator")?,
        column("seconds")?,
        column("max_rss_kib")?,
    );
    let mut benchmarks: Vec<String> = Vec::new();
    let mut allocators: Vec<String> = Vec::new();
    let mut values: BTreeMap<(usize, usize), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let index = |list: &mut Vec<String>, name: &str| {
        list.iter().position(|n| n == name).unwrap_or_else(|| {
            list.push(name.to_string());
            list.len() - 1
        })
    };
    for line in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(bench), Some(alloc)) = (fields.get(b), fields.get(a)) else {
            continue;
        };
        let key = (index(&mut benchmarks, bench), index(&mut allocators, alloc));
        let entry = values.entry(key).or_default();
        if let Some(seconds) = fields.get(s).and_then(|v| v.parse().ok()) {
            entry.0.push(seconds);
        }
        if let Some(rss) = fields.get(r).and_then(|v| v.parse::<f64>().ok()) {
            entry.1.push(rss / 1024.0);
        }
    }
    if benchmarks.is_empty() {
        return Err("no rows".into());
    }
    let reference = allocators
        .iter()
        .position(|a| a == "cpuslab")
        .or_else(|| allocators.iter().position(|a| a.contains("cpuslab")))
        .unwrap_or(0);
    let medians = values
        .into_iter()
        .map(|(k, (s, r))| (k, (median(s), median(r))))
        .collect();
    Ok(Preload {
        benchmarks,
        allocators,
        reference,
        medians,
        source: path.to_path_buf(),
    })
}

impl Preload {
    fn get(&self, b: usize, a: usize) -> (Option<f64>, Option<f64>) {
        self.medians.get(&(b, a)).copied().unwrap_or((None, None))
    }

    fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.allocators.len()).filter(|&a| a != self.reference)
    }

    /// Ratios peer / reference per benchmark, of time (`memory == false`) or RSS.
    fn ratios(&self, memory: bool) -> Vec<Vec<Option<f64>>> {
        let pick = |v: (Option<f64>, Option<f64>)| if memory { v.1 } else { v.0 };
        (0..self.benchmarks.len())
            .map(|b| {
                self.peers()
                    .map(|a| ratio(pick(self.get(b, a)), pick(self.get(b, self.reference))))
                    .collect()
            })
            .collect()
    }

    fn table(&self, memory: bool) -> Table {
        let mut table = Table::new(
            [
                "benchmark".to_string(),
                self.allocators[self.reference].clone(),
            ]
            .into_iter()
            .chain(self.peers().map(|a| self.allocators[a].clone())),
        );
        let ratios = self.ratios(memory);
        for (b, name) in self.benchmarks.iter().enumerate() {
            let (seconds, rss) = self.get(b, self.reference);
            let mut row = vec![name.clone(), if memory { mib(rss) } else { time(seconds) }];
            row.extend(ratios[b].iter().map(|&r| show_ratio(r)));
            table.row(row);
        }
        table
    }

    /// Both tables, as markdown.
    pub fn text(&self) -> String {
        let reference = &self.allocators[self.reference];
        format!(
            "## Whole programs under LD_PRELOAD (benches/c/run.sh; medians from {})\n\n\
             Time: {reference}'s median, peers as a ratio to it (above 1: {reference} is faster)\n\n{}\n\
             Max RSS (MiB): {reference}'s median, peers as a ratio to it (above 1: {reference} uses less)\n\n{}",
            self.source.display(),
            self.table(false).render(),
            self.table(true).render()
        )
    }

    /// `preload-time.svg` and `preload-rss.svg` in `dir`.
    pub fn plot(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let reference = &self.allocators[self.reference];
        let rows: Vec<&str> = self.benchmarks.iter().map(String::as_str).collect();
        let peers: Vec<&str> = self.peers().map(|a| self.allocators[a].as_str()).collect();
        plot::ratio_bars(
            &dir.join("preload-time.svg"),
            &format!("LD_PRELOAD programs: time, ratio to {reference} (right of 1: {reference} is faster)"),
            &rows,
            &peers,
            &self.ratios(false),
        )?;
        plot::ratio_bars(
            &dir.join("preload-rss.svg"),
            &format!("LD_PRELOAD programs: max RSS, ratio to {reference} (right of 1: {reference} uses less)"),
            &rows,
            &peers,
            &self.ratios(true),
        )
    }
}
