//! The memory timeline: the resident set over time while a program allocates,
//! frees everything, idles, and allocates again, for each allocator
//! (`timeline.svg`, `timeline.csv`, and a table in the report).
//!
//! Each allocator runs in a child (`cpuslab-bench --timeline-child ALLOCATOR
//! MIB`), called through `&dyn GlobalAlloc` like the workloads. A sampler thread
//! reads VmRSS every 20 ms; the main thread allocates MIB MiB (half in blocks of
//! 16 B to 1 KiB, half in blocks of 16 to 256 KiB, every page touched), frees it
//! all, idles 1.5 s with no allocator call, allocates the same again, frees it,
//! and idles 0.5 s. The child prints `mark NAME MS` at each phase and
//! `point MS RSS_KIB` for each sample.

use std::alloc::Layout;
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cpuslab_bench::ALLOCATORS;
use plotters::prelude::*;

use crate::memory::proc_status_kib;
use crate::workloads::{Alloc, Rng};

/// The phases, in order: the marks a child prints.
pub const MARKS: [&str; 6] = [
    "start",
    "allocated",
    "freed",
    "idled",
    "allocated again",
    "freed again",
];
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const IDLE: Duration = Duration::from_millis(1500);
const TAIL: Duration = Duration::from_millis(500);

/// One allocator's timeline.
#[derive(Debug)]
pub struct Timeline {
    pub allocator: &'static str,
    /// (seconds since start, RSS in MiB).
    pub points: Vec<(f64, f64)>,
    /// When each of [`MARKS`] was reached, in seconds.
    pub marks: Vec<f64>,
}

impl Timeline {
    /// The RSS at the first sample taken at or after `t` (the last sample if
    /// none was).
    fn rss_after(&self, t: f64) -> f64 {
        self.points
            .iter()
            .find(|p| p.0 >= t)
            .or(self.points.last())
            .map_or(0.0, |p| p.1)
    }

    /// The RSS as phase `m` ended: the first sample after its mark.
    fn at_mark(&self, m: usize) -> f64 {
        self.marks.get(m).map_or(0.0, |&t| self.rss_after(t))
    }

    /// The last sample's RSS (0.5 s after the last free).
    fn at_end(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.1)
    }
}

// ---- the child ------------------------------------------------------------------

/// The child's side: `--timeline-child ALLOCATOR MIB`.
pub fn child_main(args: &[String]) -> ! {
    let [allocator, mib] = args else {
        eprintln!("usage: cpuslab-bench --timeline-child ALLOCATOR MIB");
        std::process::exit(2);
    };
    let Some(&(_, alloc)) = ALLOCATORS.iter().find(|(name, _)| name == allocator) else {
        eprintln!("unknown allocator {allocator}");
        std::process::exit(2);
    };
    let bytes = mib.parse::<usize>().expect("MiB is a number") << 20;
    let began = Instant::now();
    let ms = move || began.elapsed().as_secs_f64() * 1e3;
    let stop = AtomicBool::new(false);
    let points = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut points = Vec::with_capacity(1024);
            while !stop.load(Ordering::Relaxed) {
                points.push((ms(), proc_status_kib("VmRSS").unwrap_or(0)));
                std::thread::sleep(SAMPLE_EVERY);
            }
            points
        });
        let mark = |name: &str| println!("mark {name} {:.1}", ms());
        mark(MARKS[0]);
        let blocks = allocate(alloc, bytes);
        mark(MARKS[1]);
        free(alloc, blocks);
        mark(MARKS[2]);
        std::thread::sleep(IDLE);
        mark(MARKS[3]);
        let blocks = allocate(alloc, bytes);
        mark(MARKS[4]);
        free(alloc, blocks);
        mark(MARKS[5]);
        std::thread::sleep(TAIL);
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler")
    });
    for (t, rss) in points {
        println!("point {t:.1} {rss}");
    }
    std::process::exit(0)
}

fn allocate(alloc: Alloc, bytes: usize) -> Vec<(*mut u8, Layout)> {
    let mut rng = Rng::new(17);
    let mut blocks = Vec::with_capacity(bytes / 256);
    let mut total = 0;
    while total < bytes {
        let size = if total < bytes / 2 {
            16 + rng.below(1009)
        } else {
            (16 << 10) + rng.below(240 << 10)
        };
        let layout = Layout::from_size_align(size, 8).expect("layout");
        // SAFETY: a non-zero size.
        let p = unsafe { alloc.alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        for offset in (0..size).step_by(4096) {
            // SAFETY: offset < size: inside the block.
            unsafe { p.add(offset).write(1) };
        }
        blocks.push((p, layout));
        total += size;
    }
    blocks
}

fn free(alloc: Alloc, blocks: Vec<(*mut u8, Layout)>) {
    for (p, layout) in blocks {
        // SAFETY: allocated by `allocate` with this layout, freed once.
        unsafe { alloc.dealloc(p, layout) };
    }
}

// ---- the parent -----------------------------------------------------------------

/// Runs every allocator's timeline child; a child that fails is reported and left
/// out.
pub fn run_all(allocators: &[&'static str], mib: usize) -> Vec<Timeline> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut timelines = Vec::new();
    for &allocator in allocators {
        eprintln!("cpuslab-bench: memory timeline of {allocator} ({mib} MiB)");
        let output = Command::new(&exe)
            .args(["--timeline-child", allocator, &mib.to_string()])
            .output();
        let output = match output {
            Ok(output) if output.status.success() => output,
            Ok(output) => {
                eprintln!(
                    "cpuslab-bench: timeline of {allocator} FAILED: {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                continue;
            }
            Err(e) => {
                eprintln!("cpuslab-bench: timeline of {allocator}: {e}");
                continue;
            }
        };
        timelines.push(parse(allocator, &String::from_utf8_lossy(&output.stdout)));
    }
    timelines
}

fn parse(allocator: &'static str, out: &str) -> Timeline {
    let mut timeline = Timeline {
        allocator,
        points: Vec::new(),
        marks: Vec::new(),
    };
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("point ") {
            let mut fields = rest.split_whitespace();
            let t = fields.next().and_then(|v| v.parse::<f64>().ok());
            let rss = fields.next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(t), Some(rss)) = (t, rss) {
                timeline.points.push((t / 1e3, rss / 1024.0));
            }
        } else if let Some(rest) = line.strip_prefix("mark ") {
            if let Some(t) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                timeline.marks.push(t / 1e3);
            }
        }
    }
    timeline
}

/// Writes `timeline.csv` and `timeline.svg` into `dir`; returns the report's
/// table (markdown).
pub fn write(timelines: &[Timeline], mib: usize, dir: &Path) -> Result<String, Box<dyn Error>> {
    let mut csv = String::from("allocator,seconds,rss_mib\n");
    for timeline in timelines {
        for &(t, rss) in &timeline.points {
            writeln!(csv, "{},{t:.3},{rss:.1}", timeline.allocator)?;
        }
    }
    std::fs::write(dir.join("timeline.csv"), csv)?;
    plot(timelines, mib, &dir.join("timeline.svg"))?;
    Ok(table(timelines, mib))
}

/// RSS (MiB) at the end of each phase, per allocator.
fn table(timelines: &[Timeline], mib: usize) -> String {
    let mut out = format!(
        "Memory timeline ({mib} MiB allocated, freed, 1.5 s idle, allocated and freed \
         again, 0.5 s idle): resident set in MiB as each phase ends (the first sample \
         after it; samples every 20 ms)\n\n\
         | allocator | start | allocated | freed | after 1.5 s idle | allocated again | freed again | 0.5 s later |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for timeline in timelines {
        let _ = write!(out, "| {} |", timeline.allocator);
        for m in 0..MARKS.len() {
            let _ = write!(out, " {:.1} |", timeline.at_mark(m));
        }
        let _ = writeln!(out, " {:.1} |", timeline.at_end());
    }
    out
}

fn plot(timelines: &[Timeline], mib: usize, path: &Path) -> Result<(), Box<dyn Error>> {
    let end = timelines
        .iter()
        .flat_map(|t| t.points.last().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let top = timelines
        .iter()
        .flat_map(|t| t.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Resident set over time: {mib} MiB allocated, freed, idle, again"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end * 1.02, 0.0..top * 1.08)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("RSS (MiB)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()?;
    for timeline in timelines {
        let color = crate::plot::color_of(timeline.allocator);
        chart
            .draw_series(LineSeries::new(
                timeline.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(timeline.allocator)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
