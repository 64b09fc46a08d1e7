//! The CSV files of the results folder, one row type per file, written and read
//! with csv + serde (quoting and escaping are csv's): `runs.csv` (every run),
//! `summary.csv` (per workload and allocator), `timeline.csv` (the memory
//! timeline's samples), and `preload.csv`, which benches/c/run.sh writes and the
//! report reads. An unknown figure is an empty field.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Writes `rows` to `path`, the header from the row type's field names.
pub fn write<T: Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> csv::Result<()> {
    let mut writer = csv::Writer::from_path(path)?;
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads every row of `path`; columns by header name, in any order, surrounding
/// spaces ignored.
pub fn read<T: DeserializeOwned>(path: &Path) -> csv::Result<Vec<T>> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)?
        .deserialize()
        .collect()
}

/// `value` to 6 decimals: what the files keep of a figure (no float noise such as
/// `0.013933000000000001`).
pub fn rounded(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// `runs.csv`: one run of a workload with an allocator (`error` set and the
/// figures empty when it failed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub workload: String,
    pub allocator: String,
    /// From 1.
    pub rep: usize,
    pub seconds: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    pub start_rss_kib: Option<u64>,
    pub live_rss_kib: Option<u64>,
    /// Bytes, as the allocator reports them (empty where it does not).
    pub live_allocated: Option<u64>,
    pub live_resident: Option<u64>,
    pub live_cached: Option<u64>,
    pub after_rss_kib: Option<u64>,
    pub after_allocated: Option<u64>,
    pub after_resident: Option<u64>,
    pub after_cached: Option<u64>,
    pub checks: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub other_load: Option<f64>,
    pub error: Option<String>,
}

/// `summary.csv`: one workload with one allocator over all repetitions: medians,
/// with the minimum and maximum of time, peak RSS and the ratios; ratios are to
/// the reference allocator (1 for itself), the median over repetitions of the
/// ratio within a repetition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub workload: String,
    pub allocator: String,
    pub runs: usize,
    pub median_seconds: Option<f64>,
    pub min_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
    pub time_ratio_to_reference: Option<f64>,
    pub min_time_ratio: Option<f64>,
    pub max_time_ratio: Option<f64>,
    pub median_peak_rss_mib: Option<f64>,
    pub min_peak_rss_mib: Option<f64>,
    pub max_peak_rss_mib: Option<f64>,
    pub peak_rss_ratio_to_reference: Option<f64>,
    pub min_peak_rss_ratio: Option<f64>,
    pub max_peak_rss_ratio: Option<f64>,
    pub live_rss_mib: Option<f64>,
    pub live_allocated_mib: Option<f64>,
    pub live_resident_mib: Option<f64>,
    pub live_cached_mib: Option<f64>,
    pub after_rss_mib: Option<f64>,
    pub after_resident_mib: Option<f64>,
}

/// `timeline.csv`: one RSS sample of an allocator's memory timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineRow {
    pub allocator: String,
    pub seconds: f64,
    pub rss_mib: f64,
    /// The phase under way (`allocate`, `free`, `idle`, ..., `trim`, `after
    /// trim`), or for the reading taken as a phase ended, its mark (`allocated`,
    /// `freed`, `idled`, ..., `trimmed`).
    pub phase: String,
}

/// `preload.csv` (benches/c/run.sh): one run of a C program; a failed run has
/// `fail` in its figures, read as unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreloadRow {
    pub benchmark: String,
    pub allocator: String,
    pub rep: usize,
    #[serde(deserialize_with = "csv::invalid_option")]
    pub seconds: Option<f64>,
    #[serde(deserialize_with = "csv::invalid_option")]
    pub max_rss_kib: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned>(name: &str, rows: &[T]) -> Vec<T> {
        let path = std::env::temp_dir().join(format!(
            "cpuslab-bench-test-{}-{name}.csv",
            std::process::id()
        ));
        write(&path, rows).expect("write");
        let back = read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        back
    }

    #[test]
    fn runs_round_trip_with_quotes_and_commas_in_errors() {
        let rows = vec![
            RunRow {
                workload: "pair-16B".into(),
                allocator: "cpuslab".into(),
                rep: 1,
                seconds: Some(0.2177),
                peak_rss_kib: Some(4578),
                live_allocated: Some(123_456),
                cpu_seconds: Some(0.25),
                other_load: Some(0.0),
                checks: Some(20_000_000),
                ..RunRow::default()
            },
            RunRow {
                workload: "server".into(),
                allocator: "glibc".into(),
                rep: 2,
                error: Some("signal 6: block 0x10 (\"seed\", word 3), expected 0x0\nthen".into()),
                ..RunRow::default()
            },
        ];
        assert_eq!(round_trip("runs", &rows), rows);
    }

    #[test]
    fn summary_and_timeline_round_trip() {
        let summary = vec![SummaryRow {
            workload: "threads-2".into(),
            allocator: "mimalloc".into(),
            runs: 5,
            median_seconds: Some(0.1),
            time_ratio_to_reference: Some(1.12),
            min_time_ratio: Some(1.05),
            max_time_ratio: Some(1.2),
            ..SummaryRow::default()
        }];
        assert_eq!(round_trip("summary", &summary), summary);
        let timeline = vec![TimelineRow {
            allocator: "jemalloc".into(),
            seconds: 1.25,
            rss_mib: 509.4,
            phase: "idle".into(),
        }];
        assert_eq!(round_trip("timeline", &timeline), timeline);
    }

    #[test]
    fn preload_csv_as_run_sh_writes_it() {
        let path = std::env::temp_dir().join(format!(
            "cpuslab-bench-test-{}-preload.csv",
            std::process::id()
        ));
        // Columns in another order than the row type, spaces, a failed run.
        std::fs::write(
            &path,
            "allocator, benchmark,rep,max_rss_kib,seconds\n\
             cpuslab,pairs,1,2150,0.97\n\
             glibc,pairs,1,fail,fail\n",
        )
        .unwrap();
        let rows: Vec<PreloadRow> = read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            rows,
            [
                PreloadRow {
                    benchmark: "pairs".into(),
                    allocator: "cpuslab".into(),
                    rep: 1,
                    seconds: Some(0.97),
                    max_rss_kib: Some(2150.0),
                },
                PreloadRow {
                    benchmark: "pairs".into(),
                    allocator: "glibc".into(),
                    rep: 1,
                    seconds: None,
                    max_rss_kib: None,
                },
            ]
        );
        assert_eq!(round_trip("preload", &rows), rows);
    }
}
