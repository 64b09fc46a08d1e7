//! `cargo run --release -p cpuslab-bench`: cpuslab against its peers, in one
//! command. Every (workload, allocator, repetition) runs in its own child process
//! (peak RSS is per process); repetitions are interleaved (repetition 1 of every
//! workload and allocator, then repetition 2, ...); the medians and their
//! min–max are printed as ratios to cpuslab and written, with CSV files and plots,
//! into the results folder.
//!
//! `--help` lists the options (`cli.rs`); docs/benchmarks.md explains the method.
//! `scripts/regenerate-docs.sh` regenerates every figure the documents show.

mod child;
mod cli;
mod criterion_data;
mod criterion_table;
mod csv_files;
mod memory;
mod plot;
mod preload;
mod report;
mod rseq_table;
mod size_plot;
mod spread;
mod table;
mod timeline;
mod trim;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use cpuslab_bench::ALLOCATORS;

use crate::cli::{Action, Cli, Options};

/// CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Ends the program with `message` on stderr (exit status 1).
fn fail(message: &str) -> ! {
    eprintln!("cpuslab-bench: {message}");
    std::process::exit(1)
}

fn create_dir(dir: &Path) {
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", dir.display())));
}

/// Other processes' load (CPUs busy on average) above which a run counts as
/// disturbed.
pub const BUSY: f64 = 0.3;

/// One run in a child; with `--retry-busy`, up to two more when other processes
/// loaded the machine, keeping the attempt they disturbed least.
fn run_quietest(
    options: &Options,
    workload: &str,
    allocator: &str,
) -> Result<child::RunResult, String> {
    let attempts = if options.retry_busy { 3 } else { 1 };
    let mut best: Option<child::RunResult> = None;
    for _ in 0..attempts {
        let result = child::run_child(workload, allocator, options.scale, options.timeout)?;
        if best.is_none_or(|b| result.other_load < b.other_load) {
            best = Some(result);
        }
        if result.other_load <= BUSY {
            break;
        }
    }
    Ok(best.expect("at least one attempt"))
}

fn main() {
    match Cli::parse().action() {
        Action::Child(args) => child::child_main(&args),
        Action::TimelineChild(args) => timeline::child_main(&args),
        Action::List => {
            for workload in workloads::all(cpus()) {
                println!("{:16} {}", workload.name, workload.about);
            }
            let names: Vec<_> = ALLOCATORS.iter().map(|&(name, _)| name).collect();
            println!("\nallocators: {}", names.join(", "));
        }
        Action::CriterionTable { dir, out } => criterion_table_and_plot(dir, &out),
        Action::RseqTable { dir } => {
            let dir = dir.unwrap_or_else(criterion_data::default_dir);
            match rseq_table::table(&dir) {
                Ok(table) => print!("{table}"),
                Err(e) => fail(&format!("rseq table from {}: {e}", dir.display())),
            }
        }
        Action::Run(options) if options.timeline_only => {
            create_dir(&options.out);
            run_timeline(&options);
        }
        Action::Run(options) => run(&options),
    }
}

/// `--criterion-table`: prints the table, writes `alloc-size.svg` into `out`.
fn criterion_table_and_plot(dir: Option<PathBuf>, out: &Path) {
    let dir = dir.unwrap_or_else(criterion_data::default_dir);
    let measures = criterion_table::measures(&dir)
        .unwrap_or_else(|e| fail(&format!("criterion table from {}: {e}", dir.display())));
    print!("{}", criterion_table::table(&measures));
    create_dir(out);
    let names: Vec<&str> = ALLOCATORS.iter().map(|&(name, _)| name).collect();
    let path = out.join("alloc-size.svg");
    match size_plot::plot(&measures, &names, &path) {
        Ok(true) => eprintln!("cpuslab-bench: wrote {}", path.display()),
        Ok(false) => eprintln!(
            "cpuslab-bench: no pair/<size> results: no {}",
            path.display()
        ),
        Err(e) => fail(&format!("{}: {e}", path.display())),
    }
}

/// The comparison run: every workload with every allocator, the report, the
/// preload benchmarks and the timeline as the options say.
fn run(options: &Options) {
    let workloads: Vec<_> = workloads::all(cpus())
        .into_iter()
        .filter(|w| {
            options.workload_filter.is_empty()
                || options
                    .workload_filter
                    .iter()
                    .any(|f| w.name.starts_with(f.as_str()))
        })
        .collect();
    create_dir(&options.out);

    let (results, wall) = run_all(options, &workloads);
    let preload = match &options.preload_csv {
        Some(csv) => preload::from_csv(csv)
            .map_err(|e| eprintln!("cpuslab-bench: {}: {e}", csv.display()))
            .ok(),
        None if options.preload => preload::run(options),
        None => None,
    };
    let report = report::Report::new(&results, options, wall, preload.as_ref());
    print!("{}", report.text());
    if let Err(e) = report.write(&options.out) {
        fail(&format!("writing results: {e}"));
    }
    eprintln!(
        "cpuslab-bench: tables and plots in {}",
        options.out.display()
    );
    if options.timeline {
        run_timeline(options);
    }
    if results.failures() > 0 {
        fail(&format!("{} runs FAILED (see above)", results.failures()));
    }
}

/// Every (workload, allocator, repetition), repetition-major, each in a child,
/// with a progress line per run on stderr.
fn run_all(options: &Options, workloads: &[workloads::Workload]) -> (report::Results, Duration) {
    let total = options.reps * workloads.len() * options.allocators.len();
    eprintln!(
        "cpuslab-bench: {} workloads x {} allocators x {} reps = {total} runs (scale {}), results in {}",
        workloads.len(),
        options.allocators.len(),
        options.reps,
        options.scale,
        options.out.display()
    );
    let mut results = report::Results::new(workloads, &options.allocators);
    let began = Instant::now();
    let mut done = 0;
    for rep in 0..options.reps {
        for workload in workloads {
            // Rotate the allocator order every repetition: none always runs first.
            let n = options.allocators.len();
            for k in 0..n {
                let allocator = options.allocators[(k + rep) % n];
                let outcome = run_quietest(options, &workload.name, allocator);
                done += 1;
                let elapsed = began.elapsed().as_secs_f64();
                let eta = elapsed / done as f64 * (total - done) as f64;
                let what = match &outcome {
                    Ok(r) => format!(
                        "{:9.1} ms  peak RSS {:7.1} MiB{}",
                        r.seconds * 1e3,
                        r.peak_rss_kib as f64 / 1024.0,
                        if r.other_load > BUSY {
                            format!("  (other load {:.1} CPU)", r.other_load)
                        } else {
                            String::new()
                        }
                    ),
                    Err(e) => format!("FAILED: {e}"),
                };
                eprintln!(
                    "[{done:4}/{total}] rep {}/{} {:16} {:9} {what}  (eta {:.0} s)",
                    rep + 1,
                    options.reps,
                    workload.name,
                    allocator,
                    eta
                );
                results.add(&workload.name, allocator, rep, outcome);
            }
        }
    }
    let wall = began.elapsed();
    eprintln!("cpuslab-bench: {total} runs in {:.0} s", wall.as_secs_f64());
    (results, wall)
}

/// Runs the memory timeline of every allocator, writes its CSV and plot, and
/// prints its table.
fn run_timeline(options: &Options) {
    let timelines = timeline::run_all(&options.allocators, options.timeline_mib);
    match timeline::write(&timelines, options.timeline_mib, &options.out) {
        Ok(table) => print!("\n{table}"),
        Err(e) => eprintln!("cpuslab-bench: writing the timeline: {e}"),
    }
}
