//! `--criterion-table [DIR]`: the table of `cargo bench -p cpuslab-bench --bench
//! alloc` from criterion's output folder: the median per case per allocator, and
//! its ratio to the best peer (the fastest allocator other than cpuslab).

use std::path::{Path, PathBuf};

use cpuslab_bench::ALLOCATORS;

use crate::report::Table;

/// `target/criterion`, found from this executable (`target/release/..`).
pub fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("criterion")))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The number after `"key":` in `json`, searching from `from`.
fn number_after(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[at..].trim_start();
    let end =
        rest.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))?;
    rest[..end].parse().ok()
}

/// The string after `"key":`.
fn string_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[at..].trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// One measured case: its criterion id split into case and allocator, the median
/// time per iteration (ns) and the elements per iteration (throughput), if set.
struct Measure {
    case: String,
    allocator: String,
    median_ns: f64,
    elements: Option<f64>,
}

fn read_measure(dir: &Path) -> Option<Measure> {
    let benchmark = std::fs::read_to_string(dir.join("new/benchmark.json")).ok()?;
    let estimates = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
    let (case, allocator) = string_after(&benchmark, "full_id")?.rsplit_once('/')?;
    let median = &estimates[estimates.find("\"median\":")?..];
    Some(Measure {
        case: case.to_string(),
        allocator: allocator.to_string(),
        median_ns: number_after(median, "point_estimate")?,
        elements: number_after(&benchmark, "Elements"),
    })
}

/// Sort key: the case family in the bench's order, then the size or count in it.
fn case_key(case: &str) -> (usize, u64, String) {
    let families = ["pair/", "batch/", "threads/", "producer-consumer/"];
    let family = families
        .iter()
        .position(|f| case.starts_with(f))
        .unwrap_or(families.len());
    let rest = case.split_once('/').map_or("", |(_, r)| r);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let unit = match &rest[digits.len()..] {
        u if u.starts_with("KiB") => 1 << 10,
        u if u.starts_with("MiB") => 1 << 20,
        _ => 1,
    };
    (
        family,
        digits.parse::<u64>().unwrap_or(0) * unit,
        case.to_string(),
    )
}

fn show_ns(ns: f64) -> String {
    if ns < 100.0 {
        format!("{ns:.2} ns")
    } else if ns < 100_000.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// The markdown table from criterion's folder `dir`.
pub fn table(dir: &Path) -> Result<String, String> {
    let mut measures = Vec::new();
    let groups = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for group in groups.flatten() {
        let Ok(functions) = std::fs::read_dir(group.path()) else {
            continue;
        };
        for function in functions.flatten() {
            if let Some(m) = read_measure(&function.path()) {
                if ALLOCATORS.iter().any(|(name, _)| *name == m.allocator) {
                    measures.push(m);
                }
            }
        }
    }
    if measures.is_empty() {
        return Err(
            "no allocator benchmark results (run `cargo bench -p cpuslab-bench --bench alloc`)"
                .into(),
        );
    }
    let mut cases: Vec<String> = measures.iter().map(|m| m.case.clone()).collect();
    cases.sort_by_key(|c| case_key(c));
    cases.dedup();
    let names: Vec<&str> = ALLOCATORS.iter().map(|&(name, _)| name).collect();
    let mut table = Table::new(["case", "per"].into_iter().chain(names.iter().copied()));
    for case in &cases {
        let of = |name: &str| {
            measures
                .iter()
                .find(|m| &m.case == case && m.allocator == name)
        };
        let elements = names.iter().find_map(|n| of(n)).and_then(|m| m.elements);
        let per_element = |m: &Measure| m.median_ns / m.elements.unwrap_or(1.0);
        let best_peer = names
            .iter()
            .filter(|&&n| n != "cpuslab")
            .filter_map(|n| of(n).map(per_element))
            .fold(f64::INFINITY, f64::min);
        let per = match case_key(case).0 {
            0 => "alloc+free pair",
            1 => "block of the batch",
            2 => "step (wall time / all steps)",
            3 => "block (wall time)",
            _ if elements.is_some() => "element",
            _ => "iteration",
        };
        let mut row = vec![case.clone(), per.to_string()];
        for name in &names {
            row.push(of(name).map_or("n/a".into(), |m| {
                let v = per_element(m);
                format!("{} ({:.2}x)", show_ns(v), v / best_peer)
            }));
        }
        table.row(row);
    }
    Ok(table.render())
}
