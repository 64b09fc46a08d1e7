//! criterion's output folder (`target/criterion`), read with serde_json: for
//! every benchmark, its id (`benchmark.json`), the median time per iteration
//! (`estimates.json`) and the quartiles of its samples (`sample.json`), from the
//! latest run (`new`) or from a baseline saved with `--save-baseline NAME`.
//!
//! Layout: `<dir>/<group>/<function or value>/<new or NAME>/*.json`, the folder
//! names made file-name-safe by criterion; the ids are read from
//! `benchmark.json`, never from folder names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spread::Spread;

/// `benchmark.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkFile {
    pub group_id: String,
    /// `bench_function("name")`.
    pub function_id: Option<String>,
    /// `BenchmarkId::from_parameter(value)`.
    pub value_str: Option<String>,
    pub full_id: String,
    pub throughput: Option<ThroughputFile>,
}

/// `"throughput": {"Elements": 1000}` (or `Bytes`, ...): only elements are used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputFile {
    #[serde(rename = "Elements", default, skip_serializing_if = "Option::is_none")]
    pub elements: Option<u64>,
}

/// `estimates.json`: the statistics criterion estimated, in ns per iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimatesFile {
    pub mean: Estimate,
    pub median: Estimate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub point_estimate: f64,
    pub confidence_interval: ConfidenceInterval,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    pub confidence_level: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

/// `sample.json`: each sample's iteration count and total time (ns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleFile {
    pub iters: Vec<f64>,
    pub times: Vec<f64>,
}

/// One benchmark's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    /// `pair/64B`, `per-CPU stack`.
    pub group: String,
    /// The function name or parameter value: `cpuslab`, `rseq pop+push pair`.
    pub function: String,
    /// ns per iteration: criterion's median, and the first and third quartiles of
    /// the samples' time per iteration (equal to the median when `sample.json` is
    /// missing).
    pub ns: Spread,
    /// Elements per iteration, when the group set a throughput.
    pub elements: Option<u64>,
}

impl Measure {
    /// ns per element (per iteration when no throughput was set).
    pub fn ns_per_element(&self) -> Spread {
        let elements = self.elements.unwrap_or(1).max(1) as f64;
        self.ns.map(|ns| ns / elements)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The measure in `dir` (a `new` or baseline folder).
pub fn read_measure(dir: &Path) -> Result<Measure, String> {
    let benchmark: BenchmarkFile = read_json(&dir.join("benchmark.json"))?;
    let estimates: EstimatesFile = read_json(&dir.join("estimates.json"))?;
    let median = estimates.median.point_estimate;
    let per_iteration = read_json::<SampleFile>(&dir.join("sample.json"))
        .ok()
        .and_then(|s| Spread::quartiles(s.times.iter().zip(&s.iters).map(|(t, i)| t / i)));
    let ns = Spread {
        median,
        ..per_iteration.unwrap_or(Spread {
            median,
            low: median,
            high: median,
        })
    };
    Ok(Measure {
        group: benchmark.group_id,
        function: benchmark
            .function_id
            .or(benchmark.value_str)
            .unwrap_or_default(),
        ns,
        elements: benchmark.throughput.and_then(|t| t.elements),
    })
}

/// Every benchmark under `dir` with results in `baseline` (`new`: the latest run),
/// in folder order. Folders that cannot be read are skipped.
pub fn read_all(dir: &Path, baseline: &str) -> Result<Vec<Measure>, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let mut measures = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), 0)];
    while let Some((folder, depth)) = pending.pop() {
        let results = folder.join(baseline);
        if results.join("benchmark.json").is_file() {
            match read_measure(&results) {
                Ok(measure) => measures.push(measure),
                Err(e) => eprintln!("cpuslab-bench: skipped {e}"),
            }
            continue;
        }
        // A group, or a function folder of a parameterised group: go down (the
        // html `report` folders hold no results).
        if depth < 4 {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            children.retain(|c| c.is_dir() && !c.ends_with("report"));
            children.sort();
            pending.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        }
    }
    Ok(measures)
}

/// `target/criterion`, found from this executable (`target/release/..`).
pub fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("criterion")))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What criterion 0.8 writes (abridged: fields not read are left out).
    const BENCHMARK: &str = r#"{"group_id":"batch/1000x64B","function_id":null,
        "value_str":"cpuslab","throughput":{"Elements":1000},
        "full_id":"batch/1000x64B/cpuslab","directory_name":"batch_1000x64B/cpuslab",
        "title":"batch/1000x64B/cpuslab"}"#;
    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,
        "lower_bound":8000.0,"upper_bound":8100.0},"point_estimate":8050.0,
        "standard_error":10.0},"median":{"confidence_interval":{"confidence_level":0.95,
        "lower_bound":7990.0,"upper_bound":8040.0},"point_estimate":8030.0,
        "standard_error":9.0},"slope":null}"#;
    const SAMPLE: &str = r#"{"sampling_mode":"Linear","iters":[1.0,2.0,3.0,4.0,5.0],
        "times":[8000.0,16040.0,24090.0,32160.0,40250.0]}"#;

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cpuslab-bench-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn reads_criterion_files() {
        let dir = folder("criterion");
        let results = dir.join("batch_1000x64B/cpuslab/new");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("benchmark.json"), BENCHMARK).unwrap();
        std::fs::write(results.join("estimates.json"), ESTIMATES).unwrap();
        std::fs::write(results.join("sample.json"), SAMPLE).unwrap();
        std::fs::create_dir_all(dir.join("batch_1000x64B/report")).unwrap();
        let measures = read_all(&dir, "new").expect("read");
        assert!(read_all(&dir, "glibc").unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        let [m] = &measures[..] else {
            panic!("one measure: {measures:?}")
        };
        assert_eq!(
            (m.group.as_str(), m.function.as_str()),
            ("batch/1000x64B", "cpuslab")
        );
        assert_eq!(m.elements, Some(1000));
        // Per-iteration sample times 8000, 8020, 8030, 8040, 8050.
        assert_eq!(
            m.ns,
            Spread {
                median: 8030.0,
                low: 8020.0,
                high: 8040.0
            }
        );
        assert_eq!(m.ns_per_element().median, 8.03);
    }

    #[test]
    fn json_round_trips() {
        let benchmark: BenchmarkFile = serde_json::from_str(BENCHMARK).unwrap();
        let again = serde_json::to_string(&benchmark).unwrap();
        assert_eq!(
            serde_json::from_str::<BenchmarkFile>(&again).unwrap(),
            benchmark
        );
        let estimates: EstimatesFile = serde_json::from_str(ESTIMATES).unwrap();
        assert_eq!(estimates.median.point_estimate, 8030.0);
        let again = serde_json::to_string(&estimates).unwrap();
        assert_eq!(
            serde_json::from_str::<EstimatesFile>(&again).unwrap(),
            estimates
        );
        // A function benchmark (rseq.rs) has no value and no throughput.
        let function: BenchmarkFile = serde_json::from_str(
            r#"{"group_id":"cpu id","function_id":"current_cpu()","value_str":null,
                "throughput":null,"full_id":"cpu id/current_cpu()"}"#,
        )
        .unwrap();
        assert_eq!(function.function_id.as_deref(), Some("current_cpu()"));
    }
}
