//! `cargo run --release -p cpuslab-bench`: cpuslab against its peers, in one
//! command. Every (workload, allocator, repetition) runs in its own child process
//! (peak RSS is per process); repetitions are interleaved (repetition 1 of every
//! workload and allocator, then repetition 2, ...); the medians are printed as
//! ratios to cpuslab and written, with plots, into the results folder.
//!
//! `--help` lists the options; docs/benchmarks.md explains the method.

mod child;
mod criterion_table;
mod memory;
mod plot;
mod preload;
mod report;
mod timeline;
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cpuslab_bench::ALLOCATORS;

const USAGE: &str = "\
cpuslab-bench: cpuslab against glibc, jemalloc, mimalloc, snmalloc

usage: cargo run --release -p cpuslab-bench -- [OPTIONS]

  --quick               half the work per run and 3 repetitions (about a minute)
  --reps N              repetitions of every (workload, allocator) (default 5, quick 3)
  --allocators A,B,..   allocators to run (default: all; ratios are to cpuslab,
                        or to the first one named when cpuslab is left out)
  --workloads W,P,..    workloads by name or name prefix (e.g. pair,server)
  --scale F             work per run, 1.0 = default (quick: 0.5)
  --out DIR             results folder (default results)
  --preload             run benches/c/run.sh (whole C programs under LD_PRELOAD, its own
                        peers: glibc, jemalloc, mimalloc, tcmalloc; about 1.5 minutes,
                        quick: seconds) and fold its tables into the report; on by
                        default unless --workloads or --allocators narrows the run
  --no-preload          do not run it
  --preload-csv FILE    fold an existing preload.csv (from benches/c/run.sh) instead
  --no-timeline         skip the memory timeline (RSS over time while each allocator
                        allocates, frees, idles and allocates again; on by default
                        unless --workloads or --allocators narrows the run)
  --timeline-only       run only the memory timeline (about 5 s per allocator)
  --timeline-mib N      MiB the timeline allocates (default 512, quick 128)
  --retry-busy          run a child again (twice at most) when other processes kept
                        more than 0.3 CPU busy during it; keep the quietest attempt
  --timeout S           seconds one child may run before it is killed (default 120)
  --list                list the workloads and allocators, then exit
  --criterion-table [DIR]
                        print the table of the criterion allocator benchmark from
                        DIR (default: target/criterion), then exit
  -h, --help            this text
";

/// The command-line options.
#[derive(Debug)]
pub struct Options {
    pub quick: bool,
    pub reps: usize,
    /// Whether `--reps` was given (else the preload script keeps its own default).
    pub reps_given: bool,
    pub allocators: Vec<&'static str>,
    pub workload_filter: Vec<String>,
    pub scale: f64,
    pub out: PathBuf,
    pub preload: bool,
    pub preload_csv: Option<PathBuf>,
    pub timeout: Duration,
    pub retry_busy: bool,
    pub timeline: bool,
    pub timeline_only: bool,
    pub timeline_mib: usize,
}

/// CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn fail(message: &str) -> ! {
    eprintln!("cpuslab-bench: {message}\n\n{USAGE}");
    std::process::exit(2)
}

fn parse_options(args: &[String]) -> Options {
    let mut options = Options {
        quick: false,
        reps: 0,
        reps_given: false,
        allocators: ALLOCATORS.iter().map(|&(name, _)| name).collect(),
        workload_filter: Vec::new(),
        scale: 0.0,
        out: PathBuf::from("results"),
        preload: false,
        preload_csv: None,
        timeout: Duration::from_secs(120),
        retry_busy: false,
        timeline: true,
        timeline_only: false,
        timeline_mib: 0,
    };
    let mut timeline = None;
    let mut preload = None;
    let mut narrowed = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |what: &str| -> String {
            args.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{arg} needs {what}")))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--reps" => {
                options.reps = value("a number")
                    .parse()
                    .unwrap_or_else(|_| fail("--reps N"));
                options.reps_given = true;
            }
            "--scale" => {
                options.scale = value("a number")
                    .parse()
                    .unwrap_or_else(|_| fail("--scale F"))
            }
            "--timeout" => {
                options.timeout = Duration::from_secs(
                    value("seconds")
                        .parse()
                        .unwrap_or_else(|_| fail("--timeout S")),
                )
            }
            "--out" => options.out = PathBuf::from(value("a folder")),
            "--preload" => preload = Some(true),
            "--no-preload" => preload = Some(false),
            "--retry-busy" => options.retry_busy = true,
            "--no-timeline" => timeline = Some(false),
            "--timeline-only" => options.timeline_only = true,
            "--timeline-mib" => {
                options.timeline_mib = value("a number")
                    .parse()
                    .unwrap_or_else(|_| fail("--timeline-mib N"))
            }
            "--preload-csv" => options.preload_csv = Some(PathBuf::from(value("a file"))),
            "--allocators" => {
                narrowed = true;
                options.allocators = value("names")
                    .split(',')
                    .map(|name| {
                        ALLOCATORS
                            .iter()
                            .find(|(candidate, _)| *candidate == name)
                            .map(|&(name, _)| name)
                            .unwrap_or_else(|| fail(&format!("unknown allocator {name}")))
                    })
                    .collect()
            }
            "--workloads" => {
                narrowed = true;
                options.workload_filter = value("names").split(',').map(str::to_string).collect()
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0)
            }
            other => fail(&format!("unknown option {other}")),
        }
    }
    options.preload = preload.unwrap_or(!narrowed);
    options.timeline = timeline.unwrap_or(!narrowed);
    if options.timeline_mib == 0 {
        options.timeline_mib = if options.quick { 128 } else { 512 };
    }
    if options.reps == 0 {
        options.reps = if options.quick { 3 } else { 5 };
    }
    if options.scale <= 0.0 {
        options.scale = if options.quick { 0.5 } else { 1.0 };
    }
    options
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let action = args
        .iter()
        .position(|a| a == "--list" || a == "--criterion-table");
    if args.first().is_some_and(|a| a == "--child") {
        child::child_main(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--timeline-child") {
        timeline::child_main(&args[1..]);
    }
    match action.map(|i| (i, args[i].as_str())) {
        Some((_, "--list")) => {
            for workload in workloads::all(cpus()) {
                println!("{:16} {}", workload.name, workload.about);
            }
            let names: Vec<_> = ALLOCATORS.iter().map(|&(name, _)| name).collect();
            println!("\nallocators: {}", names.join(", "));
            return;
        }
        Some((i, _)) => {
            let dir = args
                .get(i + 1)
                .map(PathBuf::from)
                .unwrap_or_else(criterion_table::default_dir);
            match criterion_table::table(&dir) {
                Ok(table) => print!("{table}"),
                Err(e) => fail(&format!("criterion table from {}: {e}", dir.display())),
            }
            return;
        }
        None => {}
    }
    let options = parse_options(&args);
    if options.timeline_only {
        std::fs::create_dir_all(&options.out)
            .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", options.out.display())));
        run_timeline(&options);
        return;
    }
    let workloads: Vec<_> = workloads::all(cpus())
        .into_iter()
        .filter(|w| {
            options.workload_filter.is_empty()
                || options
                    .workload_filter
                    .iter()
                    .any(|f| w.name == *f || w.name.starts_with(f.as_str()))
        })
        .collect();
    if workloads.is_empty() {
        fail("no workload matches --workloads");
    }
    std::fs::create_dir_all(&options.out)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", options.out.display())));

    let (results, wall) = run_all(&options, &workloads);
    let preload = match &options.preload_csv {
        Some(csv) => preload::from_csv(csv)
            .map_err(|e| eprintln!("cpuslab-bench: {}: {e}", csv.display()))
            .ok(),
        None if options.preload => preload::run(&options),
        None => None,
    };
    let report = report::Report::new(&results, &options, wall, preload.as_ref());
    print!("{}", report.text());
    if let Err(e) = report.write(&options.out) {
        eprintln!("cpuslab-bench: writing results: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "cpuslab-bench: tables and plots in {}",
        options.out.display()
    );
    if options.timeline {
        run_timeline(&options);
    }
    if results.failures() > 0 {
        eprintln!(
            "cpuslab-bench: {} runs FAILED (see above)",
            results.failures()
        );
        std::process::exit(1);
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
