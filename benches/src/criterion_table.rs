//! `--criterion-table [DIR]`: the table of `cargo bench -p cpuslab-bench --bench
//! alloc` from criterion's output folder: per case and allocator the median time
//! with the interquartile range of criterion's samples, and the ratio of the
//! median to the best peer's (the fastest allocator other than cpuslab).

use std::path::Path;

use cpuslab_bench::ALLOCATORS;

use crate::criterion_data::{self, Measure};
use crate::table::Table;

/// Every measure of the allocator benchmark (ids `<case>/<allocator>`) in `dir`.
pub fn measures(dir: &Path) -> Result<Vec<Measure>, String> {
    let mut measures = criterion_data::read_all(dir, "new")?;
    measures.retain(|m| ALLOCATORS.iter().any(|(name, _)| *name == m.function));
    if measures.is_empty() {
        return Err(
            "no allocator benchmark results (run `cargo bench -p cpuslab-bench --bench alloc`)"
                .into(),
        );
    }
    Ok(measures)
}

/// The size of a case's label (`64B`, `4KiB`, `1000x64B`: the part after the
/// last `x`) in bytes, or its count (`threads/16`); 0 when it has none.
pub fn size_of_label(label: &str) -> u64 {
    let label = label.rsplit('x').next().unwrap_or(label);
    let digits: String = label.chars().take_while(char::is_ascii_digit).collect();
    let unit = match &label[digits.len()..] {
        u if u.starts_with("KiB") => 1 << 10,
        u if u.starts_with("MiB") => 1 << 20,
        _ => 1,
    };
    digits.parse::<u64>().unwrap_or(0) * unit
}

/// Sort key: the case family in the bench's order, then the size or count in it.
fn case_key(case: &str) -> (usize, u64, String) {
    let families = ["pair/", "batch/", "threads/", "producer-consumer/"];
    let family = families
        .iter()
        .position(|f| case.starts_with(f))
        .unwrap_or(families.len());
    let rest = case.split_once('/').map_or("", |(_, r)| r);
    (family, size_of_label(rest), case.to_string())
}

/// ns with a precision that suits the value; the quartiles written alike.
fn show_ns(spread: crate::spread::Spread) -> String {
    let m = spread.median;
    if m < 100.0 {
        spread.show(|v| format!("{v:.2}"), " ns")
    } else if m < 100_000.0 {
        spread.show(|v| format!("{v:.0}"), " ns")
    } else {
        spread.map(|v| v / 1e6).show(|v| format!("{v:.2}"), " ms")
    }
}

/// The markdown table (with a line saying what it shows) from `measures`.
pub fn table(measures: &[Measure]) -> String {
    let mut cases: Vec<&str> = measures.iter().map(|m| m.group.as_str()).collect();
    cases.sort_by_key(|c| case_key(c));
    cases.dedup();
    let names: Vec<&str> = ALLOCATORS.iter().map(|&(name, _)| name).collect();
    let mut table = Table::new(["case", "per"].into_iter().chain(names.iter().copied()));
    for &case in &cases {
        let of = |name: &str| {
            measures
                .iter()
                .find(|m| m.group == case && m.function == name)
        };
        let elements = names.iter().find_map(|n| of(n)).and_then(|m| m.elements);
        let best_peer = names
            .iter()
            .filter(|&&n| n != "cpuslab")
            .filter_map(|n| of(n).map(|m| m.ns_per_element().median))
            .fold(f64::INFINITY, f64::min);
        let per = match case_key(case).0 {
            0 => "alloc+free pair",
            1 => "block of the batch",
            2 => "step (wall time / all steps)",
            3 => "block (wall time)",
            _ if elements.is_some() => "element",
            _ => "iteration",
        };
        let mut row = vec![case.to_string(), per.to_string()];
        for name in &names {
            row.push(of(name).map_or("n/a".into(), |m| {
                let v = m.ns_per_element();
                format!("{}, {:.2}x", show_ns(v), v.median / best_peer)
            }));
        }
        table.row(row);
    }
    format!(
        "Median per case (in parentheses the first and third quartiles of criterion's samples), \
         then the ratio of the median to the best peer's (below 1.00x: cpuslab beats every peer)\n\n{}",
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_labels() {
        assert_eq!(size_of_label("64B"), 64);
        assert_eq!(size_of_label("32KiB"), 32 << 10);
        assert_eq!(size_of_label("1000x64B"), 64);
        assert_eq!(size_of_label("16"), 16);
        assert_eq!(size_of_label("many"), 0);
    }
}
