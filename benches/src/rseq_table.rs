//! `--rseq-table [DIR]`: the table of docs/rseq-bench.md from the rseq
//! micro-benchmarks (`benches/benches/rseq.rs`) run once per rseq mode, each
//! saved as a criterion baseline named after the mode:
//!
//! ```sh
//! cargo bench -p cpuslab-bench --bench rseq -- --save-baseline glibc
//! CPUSLAB_RSEQ=0 cargo bench -p cpuslab-bench --bench rseq -- --save-baseline fallback
//! GLIBC_TUNABLES=glibc.pthread.rseq=0 cargo bench -p cpuslab-bench --bench rseq -- --save-baseline own
//! ```
//!
//! Without any of those baselines, one column from the latest run (`new`).

use std::path::Path;

use crate::criterion_data::{self, Measure};
use crate::spread::Spread;
use crate::table::Table;

/// The modes: baseline name and column heading.
const MODES: [(&str, &str); 3] = [
    ("glibc", "glibc area (`Glibc`)"),
    ("fallback", "fallback (`CPUSLAB_RSEQ=0`)"),
    ("own", "own area (`GLIBC_TUNABLES=glibc.pthread.rseq=0`)"),
];

/// The cases in the document's order: (group, function, row label).
const CASES: [(&str, &str, &str); 5] = [
    (
        "per-CPU stack",
        "rseq pop+push pair",
        "rseq pop+push pair (`PerCpu::pop/push`)",
    ),
    (
        "per-CPU stack",
        "fallback pop+push pair",
        "fallback pop+push pair (`rseq_core::fallback`)",
    ),
    (
        "per-CPU stack",
        "lock cmpxchg pop+push pair",
        "lock cmpxchg pop+push pair",
    ),
    ("cpu id", "current_cpu()", "current_cpu()"),
    ("cpu id", "libc::sched_getcpu()", "libc::sched_getcpu()"),
];

/// The row the pairs are compared with.
const BASELINE_CASE: usize = 2;

/// The markdown table (with a line saying what it shows) from criterion's
/// folder `dir`.
pub fn table(dir: &Path) -> Result<String, String> {
    let mut columns: Vec<(&str, Vec<Measure>)> = Vec::new();
    for (baseline, heading) in MODES {
        let measures = criterion_data::read_all(dir, baseline)?;
        if !measures.is_empty() {
            columns.push((heading, measures));
        }
    }
    if columns.is_empty() {
        columns.push(("latest run", criterion_data::read_all(dir, "new")?));
    }
    let find = |measures: &[Measure], case: usize| -> Option<Spread> {
        let (group, function, _) = CASES[case];
        measures
            .iter()
            .find(|m| m.group == group && m.function == function)
            .map(|m| m.ns)
    };
    if columns
        .iter()
        .all(|(_, m)| (0..CASES.len()).all(|c| find(m, c).is_none()))
    {
        return Err(
            "no rseq benchmark results (run `cargo bench -p cpuslab-bench --bench rseq`)".into(),
        );
    }
    let mut table = Table::new(["case"].into_iter().chain(columns.iter().map(|c| c.0)));
    for (case, &(group, _, label)) in CASES.iter().enumerate() {
        let mut row = vec![label.to_string()];
        for (_, measures) in &columns {
            let value = find(measures, case);
            let reference = find(measures, BASELINE_CASE).map(|s| s.median);
            row.push(value.map_or("n/a".into(), |v| {
                let ns = v.show(|x| format!("{x:.2}"), "");
                match reference {
                    Some(r) if group == "per-CPU stack" => format!("{ns}, {:.2}", v.median / r),
                    _ => ns,
                }
            }));
        }
        table.row(row);
    }
    Ok(format!(
        "Median ns per iteration (in parentheses the first and third quartiles of criterion's \
         samples); for the pairs, then the ratio to the lock cmpxchg pair of the same run\n\n{}",
        table.render()
    ))
}
