//! The command line, parsed by clap (derive): [`Cli`] is what was typed;
//! [`Cli::action`] turns it into what to do, with the defaults that depend on
//! `--quick` or on a narrowed run filled in ([`Options`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cpuslab_bench::ALLOCATORS;

use crate::workloads;

/// cpuslab against glibc, jemalloc, mimalloc and snmalloc: every workload with
/// every allocator, each run in a child process, repetitions interleaved; tables on
/// stdout, tables, CSV files and plots in the results folder (docs/benchmarks.md).
#[derive(Debug, Parser)]
#[command(
    name = "cpuslab-bench",
    version,
    override_usage = "cargo run --release -p cpuslab-bench -- [OPTIONS]",
    after_help = "Both `--opt value` and `--opt=value` work. docs/benchmarks.md explains the method."
)]
pub struct Cli {
    /// Half the work per run and 3 repetitions (about a minute)
    #[arg(long)]
    pub quick: bool,

    /// Repetitions of every (workload, allocator) [default: 5; --quick: 3]
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    pub reps: Option<usize>,

    /// Allocators to run, comma-separated [default: all]; ratios are to cpuslab,
    /// or to the first one named when cpuslab is left out
    #[arg(long, value_name = "A,B,..", value_delimiter = ',', value_parser = allocator_name)]
    pub allocators: Option<Vec<&'static str>>,

    /// Workloads by name or name prefix, comma-separated (e.g. pair,server)
    /// [default: all; --list shows them]
    #[arg(long, value_name = "W,P,..", value_delimiter = ',', value_parser = workload_filter)]
    pub workloads: Option<Vec<String>>,

    /// Work per run, 1.0 = default [default: 1.0; --quick: 0.5]
    #[arg(long, value_name = "F", value_parser = positive_number)]
    pub scale: Option<f64>,

    /// Results folder
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,

    /// Run benches/c/run.sh (whole C programs under LD_PRELOAD, its own peers:
    /// glibc, jemalloc, mimalloc 2 and 3, snmalloc, tcmalloc; minutes, --quick:
    /// seconds)
    /// and fold its tables into the report [default: on, unless --workloads or
    /// --allocators narrows the run]
    #[arg(long, overrides_with = "no_preload")]
    pub preload: bool,

    /// Do not run benches/c/run.sh
    #[arg(long, overrides_with = "preload")]
    pub no_preload: bool,

    /// Fold an existing preload.csv (from benches/c/run.sh) instead of running it
    #[arg(long, value_name = "FILE")]
    pub preload_csv: Option<PathBuf>,

    /// Skip the memory timeline (RSS over time while each allocator allocates,
    /// frees, idles, allocates and frees again, idles and trims) [it runs by
    /// default, unless --workloads or --allocators narrows the run]
    #[arg(long, conflicts_with = "timeline_only")]
    pub no_timeline: bool,

    /// Run only the memory timeline (about 5 s per allocator)
    #[arg(long)]
    pub timeline_only: bool,

    /// MiB the timeline allocates [default: 512; --quick: 128]
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    pub timeline_mib: Option<usize>,

    /// Run a child again (twice at most) when other processes kept more than 0.3
    /// CPU busy during it; keep the quietest attempt
    #[arg(long)]
    pub retry_busy: bool,

    /// Seconds one child may run before it is killed
    #[arg(long, value_name = "S", default_value_t = 120, value_parser = at_least_one::<u64>)]
    pub timeout: u64,

    /// List the workloads and allocators, then exit
    #[arg(long, conflicts_with_all = ["criterion_table", "rseq_table"])]
    pub list: bool,

    /// Print the table of the criterion allocator benchmark (`cargo bench -p
    /// cpuslab-bench --bench alloc`) from DIR [default: target/criterion], write
    /// its plot of time against object size (alloc-size.svg) into --out, then exit
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with = "rseq_table")]
    pub criterion_table: Option<Option<PathBuf>>,

    /// Print the table of the rseq micro-benchmarks (`cargo bench -p cpuslab-bench
    /// --bench rseq -- --save-baseline MODE`, MODE glibc, fallback or own; without
    /// such baselines, the latest run) from DIR [default: target/criterion], then exit
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub rseq_table: Option<Option<PathBuf>>,

    /// Internal: run one workload in this process and print its result line
    #[arg(long, hide = true, num_args = 3, value_names = ["WORKLOAD", "ALLOCATOR", "SCALE"])]
    pub child: Option<Vec<String>>,

    /// Internal: run one allocator's memory timeline in this process
    #[arg(long, hide = true, num_args = 2, value_names = ["ALLOCATOR", "MIB"])]
    pub timeline_child: Option<Vec<String>>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// The comparison run (or the timeline alone, `--timeline-only`).
    Run(Options),
    List,
    CriterionTable {
        dir: Option<PathBuf>,
        out: PathBuf,
    },
    RseqTable {
        dir: Option<PathBuf>,
    },
    /// `--child WORKLOAD ALLOCATOR SCALE` (the parent runs these).
    Child(Vec<String>),
    /// `--timeline-child ALLOCATOR MIB`.
    TimelineChild(Vec<String>),
}

/// The options of a run, every default filled in.
#[derive(Debug)]
pub struct Options {
    pub quick: bool,
    pub reps: usize,
    /// Whether `--reps` was given (else the preload script keeps its own default).
    pub reps_given: bool,
    pub allocators: Vec<&'static str>,
    /// Workload names or prefixes; empty: every workload.
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

impl Cli {
    pub fn action(self) -> Action {
        if let Some(args) = self.child {
            return Action::Child(args);
        }
        if let Some(args) = self.timeline_child {
            return Action::TimelineChild(args);
        }
        if self.list {
            return Action::List;
        }
        if let Some(dir) = self.criterion_table {
            let out = self.out;
            return Action::CriterionTable { dir, out };
        }
        if let Some(dir) = self.rseq_table {
            return Action::RseqTable { dir };
        }
        Action::Run(self.options())
    }

    fn options(self) -> Options {
        let quick = self.quick;
        // A narrowed run (some workloads or allocators) skips the preload
        // benchmarks and the timeline unless asked for.
        let narrowed = self.allocators.is_some() || self.workloads.is_some();
        let preload = match (self.preload, self.no_preload) {
            (true, _) => true,
            (_, true) => false,
            _ => !narrowed,
        };
        Options {
            quick,
            reps: self.reps.unwrap_or(if quick { 3 } else { 5 }),
            reps_given: self.reps.is_some(),
            allocators: self
                .allocators
                .unwrap_or_else(|| ALLOCATORS.iter().map(|&(name, _)| name).collect()),
            workload_filter: self.workloads.unwrap_or_default(),
            scale: self.scale.unwrap_or(if quick { 0.5 } else { 1.0 }),
            out: self.out,
            preload,
            preload_csv: self.preload_csv,
            timeout: Duration::from_secs(self.timeout),
            retry_busy: self.retry_busy,
            timeline: !self.no_timeline && !narrowed,
            timeline_only: self.timeline_only,
            timeline_mib: self.timeline_mib.unwrap_or(if quick { 128 } else { 512 }),
        }
    }
}

/// A name from `ALLOCATORS`.
fn allocator_name(name: &str) -> Result<&'static str, String> {
    ALLOCATORS
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|&(name, _)| name)
        .ok_or_else(|| {
            let names: Vec<&str> = ALLOCATORS.iter().map(|&(name, _)| name).collect();
            format!("unknown allocator (known: {})", names.join(", "))
        })
}

/// A workload name or the prefix of one.
fn workload_filter(filter: &str) -> Result<String, String> {
    let matches = workloads::all(crate::cpus())
        .iter()
        .any(|w| w.name.starts_with(filter));
    if matches && !filter.is_empty() {
        Ok(filter.to_string())
    } else {
        Err("no workload has this name or prefix (--list shows them)".into())
    }
}

/// A whole number, 1 or more.
fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        Ok(_) => Err("must be 1 or more".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number above 0.
fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must be above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cpuslab-bench").chain(args.iter().copied()))
    }

    fn run(args: &[&str]) -> Options {
        match parse(args).expect("valid").action() {
            Action::Run(options) => options,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn the_command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let o = run(&[]);
        assert_eq!((o.reps, o.scale, o.timeline_mib), (5, 1.0, 512));
        assert!(o.preload && o.timeline && !o.reps_given && !o.quick);
        assert_eq!(o.allocators.len(), ALLOCATORS.len());
        assert_eq!(o.out, PathBuf::from("results"));
        assert_eq!(o.timeout, Duration::from_secs(120));
        let q = run(&["--quick"]);
        assert_eq!((q.reps, q.scale, q.timeline_mib), (3, 0.5, 128));
    }

    #[test]
    fn both_value_forms() {
        for args in [
            &[
                "--scale",
                "0.25",
                "--reps",
                "2",
                "--out",
                "x",
                "--timeout",
                "9",
            ][..],
            &["--scale=0.25", "--reps=2", "--out=x", "--timeout=9"][..],
        ] {
            let o = run(args);
            assert_eq!((o.scale, o.reps, o.reps_given), (0.25, 2, true));
            assert_eq!(o.out, PathBuf::from("x"));
            assert_eq!(o.timeout, Duration::from_secs(9));
        }
    }

    #[test]
    fn nonsense_is_rejected() {
        for args in [
            &["--scale", "0"][..],
            &["--scale=-1"],
            &["--scale", "inf"],
            &["--scale", "lots"],
            &["--reps", "0"],
            &["--timeline-mib=0"],
            &["--timeout", "0"],
            &["--allocators", "cpuslab,tcmalloc"],
            &["--workloads", "nothing-like-this"],
            &["--no-such-option"],
            &["--no-timeline", "--timeline-only"],
        ] {
            let e = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_ne!(e.kind(), ErrorKind::DisplayHelp, "{args:?}");
        }
        let e = parse(&["--scale", "0"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("must be above 0"), "{e}");
        let e = parse(&["--reps=0"]).unwrap_err();
        assert!(e.to_string().contains("must be 1 or more"), "{e}");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        assert_eq!(parse(&["-h"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
    }

    #[test]
    fn narrowing_turns_off_preload_and_timeline() {
        let o = run(&["--allocators=cpuslab,glibc", "--workloads", "pair,server"]);
        assert_eq!(o.allocators, ["cpuslab", "glibc"]);
        assert_eq!(o.workload_filter, ["pair", "server"]);
        assert!(!o.preload && !o.timeline);
        assert!(run(&["--workloads=pair", "--preload"]).preload);
        // The last of --preload and --no-preload wins.
        assert!(!run(&["--preload", "--no-preload"]).preload);
        assert!(run(&["--no-preload", "--preload"]).preload);
        assert!(!run(&["--no-timeline"]).timeline);
    }

    #[test]
    fn actions() {
        let action = |args: &[&str]| parse(args).expect("valid").action();
        assert!(matches!(action(&["--list"]), Action::List));
        assert!(matches!(
            action(&["--criterion-table"]),
            Action::CriterionTable { dir: None, .. }
        ));
        let Action::CriterionTable { dir, out } =
            action(&["--criterion-table=target/c", "--out", "r"])
        else {
            panic!("not the criterion table");
        };
        assert_eq!(dir, Some(PathBuf::from("target/c")));
        assert_eq!(out, PathBuf::from("r"));
        assert!(matches!(
            action(&["--rseq-table", "d"]),
            Action::RseqTable { dir: Some(_) }
        ));
        let Action::Child(args) = action(&["--child", "pair-16B", "glibc", "0.5"]) else {
            panic!("not a child");
        };
        assert_eq!(args, ["pair-16B", "glibc", "0.5"]);
        assert!(matches!(
            action(&["--timeline-child", "glibc", "16"]),
            Action::TimelineChild(_)
        ));
    }
}
