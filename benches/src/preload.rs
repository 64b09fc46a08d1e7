//! `--preload`: the whole-program C benchmarks (`benches/c/run.sh`, whole C
//! programs with each allocator under LD_PRELOAD) folded into the report. The
//! script writes `preload.csv` (benchmark,allocator,rep,seconds,max_rss_kib); this
//! module shows cpuslab's median and min–max, and each peer's ratio to cpuslab
//! within a repetition, median and min–max over the repetitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::Options;
use crate::csv_files::{self, PreloadRow};
use crate::plot;
use crate::spread::{mib, ratio, ratio_text, time, Spread};
use crate::table::Table;

/// Every run of the CSV; benchmarks and allocators in its order of first
/// appearance.
#[derive(Debug)]
pub struct Preload {
    benchmarks: Vec<String>,
    allocators: Vec<String>,
    reference: usize,
    /// The figures of each run by (benchmark, allocator, rep).
    runs: BTreeMap<(usize, usize, usize), Figures>,
    source: PathBuf,
}

/// The figures of one run; `None` where it failed.
#[derive(Clone, Copy, Debug)]
struct Figures {
    seconds: Option<f64>,
    max_rss_mib: Option<f64>,
}

/// Which figure of a run.
#[derive(Clone, Copy, Debug)]
enum Figure {
    Seconds,
    MaxRss,
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
/// any column order; `fail` for the figures of a failed run).
pub fn from_csv(path: &Path) -> Result<Preload, String> {
    let rows: Vec<PreloadRow> = csv_files::read(path).map_err(|e| e.to_string())?;
    let mut benchmarks: Vec<String> = Vec::new();
    let mut allocators: Vec<String> = Vec::new();
    let index = |list: &mut Vec<String>, name: &str| {
        list.iter().position(|n| n == name).unwrap_or_else(|| {
            list.push(name.to_string());
            list.len() - 1
        })
    };
    let mut runs = BTreeMap::new();
    for row in rows {
        let key = (
            index(&mut benchmarks, &row.benchmark),
            index(&mut allocators, &row.allocator),
            row.rep,
        );
        let figures = Figures {
            seconds: row.seconds,
            max_rss_mib: row.max_rss_kib.map(|kib| kib / 1024.0),
        };
        runs.insert(key, figures);
    }
    if benchmarks.is_empty() {
        return Err("no rows".into());
    }
    let reference = allocators
        .iter()
        .position(|a| a == "cpuslab")
        .or_else(|| allocators.iter().position(|a| a.contains("cpuslab")))
        .unwrap_or(0);
    Ok(Preload {
        benchmarks,
        allocators,
        reference,
        runs,
        source: path.to_path_buf(),
    })
}

impl Preload {
    /// `figure` of (benchmark, allocator) in each repetition it succeeded.
    fn per_rep(&self, b: usize, a: usize, figure: Figure) -> BTreeMap<usize, f64> {
        self.runs
            .range((b, a, 0)..=(b, a, usize::MAX))
            .filter_map(|(&(_, _, rep), figures)| {
                let value = match figure {
                    Figure::Seconds => figures.seconds,
                    Figure::MaxRss => figures.max_rss_mib,
                };
                value.map(|v| (rep, v))
            })
            .collect()
    }

    fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.allocators.len()).filter(|&a| a != self.reference)
    }

    /// Ratios peer / reference of `figure` within each repetition, median and
    /// min–max over the repetitions, per benchmark, per peer.
    fn ratios(&self, figure: Figure) -> Vec<Vec<Option<Spread>>> {
        (0..self.benchmarks.len())
            .map(|b| {
                let reference = self.per_rep(b, self.reference, figure);
                self.peers()
                    .map(|a| {
                        let peer = self.per_rep(b, a, figure);
                        Spread::range(
                            peer.iter().filter_map(|(rep, &v)| {
                                ratio(Some(v), reference.get(rep).copied())
                            }),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    fn table(&self, figure: Figure) -> Table {
        let mut table = Table::new(
            [
                "benchmark".to_string(),
                self.allocators[self.reference].clone(),
            ]
            .into_iter()
            .chain(self.peers().map(|a| self.allocators[a].clone())),
        );
        let ratios = self.ratios(figure);
        for (b, name) in self.benchmarks.iter().enumerate() {
            let value = Spread::range(self.per_rep(b, self.reference, figure).into_values());
            let shown = match figure {
                Figure::Seconds => time(value),
                Figure::MaxRss => mib(value),
            };
            let mut row = vec![name.clone(), shown];
            row.extend(ratios[b].iter().map(|&r| ratio_text(r)));
            table.row(row);
        }
        table
    }

    /// Both tables, as markdown.
    pub fn text(&self) -> String {
        let reference = &self.allocators[self.reference];
        format!(
            "## Whole programs under LD_PRELOAD (benches/c/run.sh; from {})\n\n\
             Time: {reference}'s median (min–max over repetitions); peers: peer / {reference} within \
             a repetition, median (min–max) over repetitions (above 1: {reference} is faster)\n\n{}\n\
             Max RSS (MiB): {reference}'s median (min–max); peers as ratios, as above (above 1: \
             {reference} uses less)\n\n{}",
            self.source.display(),
            self.table(Figure::Seconds).render(),
            self.table(Figure::MaxRss).render()
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
            &self.ratios(Figure::Seconds),
        )?;
        plot::ratio_bars(
            &dir.join("preload-rss.svg"),
            &format!("LD_PRELOAD programs: max RSS, ratio to {reference} (right of 1: {reference} uses less)"),
            &rows,
            &peers,
            &self.ratios(Figure::MaxRss),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_within_repetitions() {
        let path = std::env::temp_dir().join(format!(
            "cpuslab-bench-test-{}-fold.csv",
            std::process::id()
        ));
        std::fs::write(
            &path,
            "benchmark,allocator,rep,seconds,max_rss_kib\n\
             pairs,cpuslab,1,1.0,2048\n\
             pairs,glibc,1,2.0,1024\n\
             pairs,cpuslab,2,2.0,2048\n\
             pairs,glibc,2,3.0,fail\n\
             pairs,cpuslab,3,1.0,2048\n\
             pairs,glibc,3,fail,fail\n",
        )
        .unwrap();
        let preload = from_csv(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            preload.ratios(Figure::Seconds),
            [[Some(Spread {
                median: 1.75,
                low: 1.5,
                high: 2.0
            })]]
        );
        assert_eq!(preload.ratios(Figure::MaxRss), [[Spread::range([0.5])]]);
        let text = preload.text();
        assert!(text.contains("1.00 s (1.00–2.00)"), "{text}");
        assert!(text.contains("1.75x (1.50–2.00)"), "{text}");
    }
}
