//! `--preload`: the whole-program C benchmarks (`benches/c/run.sh`, whole C
//! programs with each allocator under LD_PRELOAD) folded into the report. The
//! script writes `preload.csv` (benchmark,allocator,rep,seconds,max_rss_kib); this
//! module shows cpuslab's median and min–max, and each peer's ratio to cpuslab
//! within a repetition, median and min–max over the repetitions.
//!
//! The script runs its multi-threaded programs at several thread counts (its
//! `--threads`, 1, 2, 4, 8 and 16 by default), each as a case named
//! `<program>-<n>t` with the same total work at every count: [`split_case`] reads
//! the count back, and the scaling table and `preload-scaling.svg` show each
//! program's throughput by thread count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plotters::prelude::*;

use crate::cli::Options;
use crate::csv_files::{self, PreloadRow};
use crate::plot::{self, category_label, color_of, draw_legend, FONT};
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

/// A case of the script split into its program and thread count: `larson-4t` is
/// (`larson`, 4); a name without a `-<n>t` suffix (`batch`, or a case of an older
/// CSV) is a program of its own, with no count.
pub fn split_case(name: &str) -> (&str, Option<usize>) {
    name.rsplit_once('-')
        .and_then(|(program, suffix)| {
            let digits = suffix.strip_suffix('t')?;
            // All digits: `parse` alone would take `+4`.
            if program.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((program, digits.parse().ok()?))
        })
        .map_or((name, None), |(program, n)| (program, Some(n)))
}

/// A program that ran at thread counts: its name and its cases as (thread count,
/// benchmark index), by count.
struct Scaling<'a> {
    program: &'a str,
    cases: Vec<(usize, usize)>,
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

    /// The programs run at thread counts (`<program>-<n>t` cases), in the order
    /// of their first case.
    fn scaling(&self) -> Vec<Scaling<'_>> {
        let mut programs: Vec<Scaling> = Vec::new();
        for (b, name) in self.benchmarks.iter().enumerate() {
            let (program, Some(threads)) = split_case(name) else {
                continue;
            };
            match programs.iter_mut().find(|s| s.program == program) {
                Some(s) => s.cases.push((threads, b)),
                None => programs.push(Scaling {
                    program,
                    cases: vec![(threads, b)],
                }),
            }
        }
        for s in &mut programs {
            s.cases.sort_unstable();
        }
        programs
    }

    /// The throughput of one program by thread count, per allocator: the
    /// reference's median time at the program's lowest count divided by the time
    /// of each repetition (every count does the same work, so this is work per
    /// second, 1 = the reference at the lowest count), median and min–max.
    /// Indexed [allocator][case of `s`].
    fn throughput(&self, s: &Scaling) -> Vec<Vec<Option<Spread>>> {
        let base = s.cases.first().and_then(|&(_, b)| {
            Spread::range(
                self.per_rep(b, self.reference, Figure::Seconds)
                    .into_values(),
            )
        });
        (0..self.allocators.len())
            .map(|a| {
                s.cases
                    .iter()
                    .map(|&(_, b)| {
                        let base = base?.median;
                        Spread::range(
                            self.per_rep(b, a, Figure::Seconds)
                                .into_values()
                                .filter_map(|seconds| ratio(Some(base), Some(seconds))),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// The allocators, reference first.
    fn reference_first(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.reference).chain(self.peers())
    }

    /// The scaling table (markdown): one row per program and allocator, one
    /// column per thread count; `None` when no program ran at thread counts.
    fn scaling_table(&self) -> Option<String> {
        let programs = self.scaling();
        if programs.is_empty() {
            return None;
        }
        let mut counts: Vec<usize> = programs
            .iter()
            .flat_map(|s| s.cases.iter().map(|&(n, _)| n))
            .collect();
        counts.sort_unstable();
        counts.dedup();
        let mut table = Table::new(
            ["program".to_string(), "allocator".to_string()]
                .into_iter()
                .chain(counts.iter().map(|&n| match n {
                    1 => "1 thread".to_string(),
                    n => format!("{n} threads"),
                })),
        );
        for s in &programs {
            let throughput = self.throughput(s);
            for a in self.reference_first() {
                let mut row = vec![s.program.to_string(), self.allocators[a].clone()];
                row.extend(counts.iter().map(|n| {
                    match s.cases.iter().position(|&(count, _)| count == *n) {
                        Some(i) => ratio_text(throughput[a][i]),
                        None => "-".into(),
                    }
                }));
                table.row(row);
            }
        }
        Some(table.render())
    }

    /// The tables, as markdown.
    pub fn text(&self) -> String {
        let reference = &self.allocators[self.reference];
        let scaling = self.scaling_table().map_or(String::new(), |table| {
            format!(
                "\nThroughput by thread count: each program does the same work at every count; \
                 {reference}'s median time at the program's lowest count divided by the time of each \
                 repetition, median (min–max): work per second, 1 = {reference} at the lowest count \
                 (above 1: more; -: not run)\n\n{table}"
            )
        });
        format!(
            "## Whole programs under LD_PRELOAD (benches/c/run.sh; from {})\n\n\
             Time: {reference}'s median (min–max over repetitions); peers: peer / {reference} within \
             a repetition, median (min–max) over repetitions (above 1: {reference} is faster)\n\n{}\n\
             Max RSS (MiB): {reference}'s median (min–max); peers as ratios, as above (above 1: \
             {reference} uses less)\n\n{}{scaling}",
            self.source.display(),
            self.table(Figure::Seconds).render(),
            self.table(Figure::MaxRss).render()
        )
    }

    /// `preload-time.svg`, `preload-rss.svg` and, when programs ran at thread
    /// counts, `preload-scaling.svg` in `dir`.
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
        )?;
        self.plot_scaling(&dir.join("preload-scaling.svg"))
    }

    /// One panel per program run at thread counts, two panels a row: its
    /// throughput by thread count ([`Preload::throughput`]), one line per
    /// allocator, with min–max whiskers; the legend in the first panel.
    fn plot_scaling(&self, path: &Path) -> plot::PlotResult {
        let programs = self.scaling();
        if programs.is_empty() {
            return Ok(());
        }
        let reference = &self.allocators[self.reference];
        let columns = programs.len().min(2);
        let rows = programs.len().div_ceil(columns);
        let root = SVGBackend::new(path, (520 * columns as u32, 60 + 320 * rows as u32))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "LD_PRELOAD programs: throughput by thread count, the same work at every count \
                 (1 = {reference} at the lowest count; median, min–max; {} CPUs)",
                crate::cpus()
            ),
            (FONT, 17),
        )?;
        let panels = root.split_evenly((rows, columns));
        for (p, (s, area)) in programs.iter().zip(panels.iter()).enumerate() {
            let throughput = self.throughput(s);
            let k = s.cases.len();
            let max = throughput
                .iter()
                .flatten()
                .flatten()
                .fold(1e-9f64, |m, v| m.max(v.high));
            let mut chart = ChartBuilder::on(area)
                .caption(s.program, (FONT, 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(50)
                .build_cartesian_2d(-0.3f64..k as f64 - 0.7, 0.0..max * 1.15)?;
            let label = |x: &f64| category_label(*x, |i| s.cases.get(i).map(|c| c.0.to_string()));
            chart
                .configure_mesh()
                .x_labels(k + 1)
                .x_label_formatter(&label)
                .disable_x_mesh()
                .x_desc("threads")
                .y_desc("throughput")
                .y_label_formatter(&|v| format!("{v:.1}"))
                .label_style((FONT, 12))
                .draw()?;
            for a in self.reference_first() {
                let name = self.allocators[a].as_str();
                let color = color_of(name);
                let line: Vec<(f64, Spread)> = throughput[a]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
                    .collect();
                let medians = line.iter().map(|&(x, v)| (x, v.median));
                chart
                    .draw_series(LineSeries::new(medians.clone(), color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                    });
                chart.draw_series(medians.map(|point| Circle::new(point, 3, color.filled())))?;
                chart.draw_series(
                    line.iter().map(|&(x, v)| {
                        ErrorBar::new_vertical(x, v.low, v.median, v.high, color, 5)
                    }),
                )?;
            }
            // The reference's line again, over the peers' (the legend keeps it first).
            let color = color_of(reference);
            let medians = throughput[self.reference]
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64, v.median)));
            chart.draw_series(LineSeries::new(medians, color.stroke_width(2)))?;
            if p == 0 {
                draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
            }
        }
        root.present()?;
        Ok(())
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
        // No case at thread counts: no scaling table, no scaling plot.
        assert!(!text.contains("Throughput by thread count"), "{text}");
        assert!(preload.scaling().is_empty());
    }

    #[test]
    fn cases_split_into_program_and_threads() {
        assert_eq!(split_case("larson-4t"), ("larson", Some(4)));
        assert_eq!(split_case("prodcons-16t"), ("prodcons", Some(16)));
        assert_eq!(split_case("a-b-2t"), ("a-b", Some(2)));
        for name in [
            "batch", "large", "pairs", "x-t", "x-+4t", "-4t", "x-4", "pair-16B",
        ] {
            assert_eq!(split_case(name), (name, None), "{name}");
        }
    }

    #[test]
    fn throughput_by_thread_count() {
        let dir =
            std::env::temp_dir().join(format!("cpuslab-bench-test-{}-scaling", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("preload.csv");
        std::fs::write(
            &path,
            "benchmark,allocator,rep,seconds,max_rss_kib\n\
             pairs-1t,cpuslab,1,2.0,2048\n\
             pairs-1t,glibc,1,4.0,2048\n\
             batch,cpuslab,1,1.0,2048\n\
             batch,glibc,1,1.0,2048\n\
             pairs-2t,cpuslab,1,1.0,2048\n\
             pairs-2t,glibc,1,fail,fail\n\
             xmalloc-2t,cpuslab,1,1.0,2048\n\
             xmalloc-2t,glibc,1,0.5,2048\n\
             pairs-1t,cpuslab,2,2.0,2048\n\
             pairs-1t,glibc,2,2.0,2048\n\
             pairs-2t,cpuslab,2,0.5,2048\n\
             pairs-2t,glibc,2,2.0,2048\n",
        )
        .unwrap();
        let preload = from_csv(&path).expect("read");
        let programs = preload.scaling();
        let names: Vec<&str> = programs.iter().map(|s| s.program).collect();
        assert_eq!(names, ["pairs", "xmalloc"]);
        assert_eq!(programs[0].cases, [(1, 0), (2, 2)]);
        // 1 = cpuslab's median time at 1 thread (2.0 s) per second of each run.
        let pairs = preload.throughput(&programs[0]);
        assert_eq!(pairs[0], [Spread::range([1.0]), Spread::range([2.0, 4.0])]);
        assert_eq!(pairs[1], [Spread::range([0.5, 1.0]), Spread::range([1.0])]);
        // xmalloc's lowest count is 2: its base is cpuslab there.
        let xmalloc = preload.throughput(&programs[1]);
        assert_eq!(xmalloc[1], [Spread::range([2.0])]);
        let text = preload.text();
        assert!(text.contains("Throughput by thread count"), "{text}");
        assert!(
            text.contains("1 thread |") && text.contains("2 threads |"),
            "{text}"
        );
        assert!(text.contains("3.00x (2.00–4.00)"), "{text}");
        preload.plot(&dir).expect("plot");
        let svg = std::fs::read_to_string(dir.join("preload-scaling.svg")).expect("svg");
        assert!(svg.contains("xmalloc") && svg.contains("glibc"), "{svg}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
