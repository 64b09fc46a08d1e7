//! The memory timeline: the resident set over time while a program allocates,
//! frees everything, idles, allocates and frees again, idles, and asks its
//! allocator to trim, for each allocator (`timeline.svg`, `timeline.csv`, and a
//! table, printed and written to `timeline.md`).
//!
//! Each allocator runs in a child (`cpuslab-bench --timeline-child ALLOCATOR
//! MIB`), called through `&dyn GlobalAlloc` like the workloads. A sampler thread
//! reads VmRSS every 20 ms; the main thread allocates MIB MiB (half in blocks of
//! 16 B to 1 KiB, half in blocks of 16 to 256 KiB, every page touched), frees it
//! all, idles 1.5 s with no allocator call, allocates the same again, frees it,
//! idles 0.5 s, calls the allocator's trim (`trim.rs`; snmalloc has none) and
//! idles 0.3 s. The child prints `mark NAME MS` as each phase ends, `trim-call
//! 0|1`, and `point MS RSS_KIB` for each sample; a mark line also has the RSS
//! read as the phase ended (`mark NAME MS RSS_KIB`).

use std::alloc::Layout;
use std::error::Error;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cpuslab_bench::ALLOCATORS;
use plotters::prelude::*;

use crate::csv_files::{self, TimelineRow};
use crate::memory::proc_status_kib;
use crate::plot::{color_of, draw_legend, FONT};
use crate::spread::Spread;
use crate::table::Table;
use crate::workloads::{Alloc, Rng};

/// The marks a child prints, in order: the start, then the end of each phase.
pub const MARKS: [&str; 8] = [
    "start",
    "allocated",
    "freed",
    "idled",
    "allocated again",
    "freed again",
    "idled again",
    "trimmed",
];
/// The phase after each mark (the last one runs to the end of the samples).
const PHASES: [&str; 8] = [
    "allocate",
    "free",
    "idle",
    "allocate again",
    "free again",
    "idle again",
    "trim",
    "after trim",
];
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const IDLE: Duration = Duration::from_millis(1500);
const IDLE_AGAIN: Duration = Duration::from_millis(500);
const AFTER_TRIM: Duration = Duration::from_millis(300);

/// One allocator's timeline.
#[derive(Debug)]
pub struct Timeline {
    pub allocator: &'static str,
    /// (seconds since start, RSS in MiB).
    pub points: Vec<(f64, f64)>,
    /// When each of [`MARKS`] was reached and the RSS read then: (seconds, MiB).
    pub marks: Vec<(f64, f64)>,
    /// Whether the allocator has a trim call (the trim phase only idles without).
    pub trim_call: bool,
}

impl Timeline {
    /// The RSS read at mark `m` (for `m == MARKS.len()`, the last sample), and
    /// the min–max of that and the samples taken since the mark before.
    fn at_end_of(&self, m: usize) -> Spread {
        let start = m
            .checked_sub(1)
            .and_then(|i| self.marks.get(i))
            .map(|p| p.0);
        let end = self.marks.get(m).copied();
        let value = end.or(self.points.last().copied()).map_or(0.0, |p| p.1);
        let during = self
            .points
            .iter()
            .filter(|p| start.is_none_or(|s| p.0 >= s) && end.is_none_or(|e| p.0 <= e.0));
        let range = Spread::range(during.map(|p| p.1).chain([value])).expect("one value");
        Spread {
            median: value,
            ..range
        }
    }

    /// The samples and the readings at the marks, in time order.
    fn line(&self) -> Vec<(f64, f64)> {
        let mut line: Vec<(f64, f64)> = self.points.iter().chain(&self.marks).copied().collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        line
    }

    /// The phase under way at `t` seconds.
    fn phase_at(&self, t: f64) -> &'static str {
        match self.marks.iter().filter(|m| m.0 <= t).count() {
            0 => "before start",
            n => PHASES[(n - 1).min(PHASES.len() - 1)],
        }
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
        let mark = |name: &str| {
            let rss = proc_status_kib("VmRSS").unwrap_or(0);
            println!("mark {name} {:.1} {rss}", ms());
        };
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
        std::thread::sleep(IDLE_AGAIN);
        mark(MARKS[6]);
        let trim_call = crate::trim::trim(allocator);
        mark(MARKS[7]);
        println!("trim-call {}", u8::from(trim_call));
        std::thread::sleep(AFTER_TRIM);
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
        trim_call: false,
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
            // The name has spaces: the numbers are the last two fields.
            let mut fields = rest.rsplit(' ');
            let rss = fields.next().and_then(|v| v.parse::<f64>().ok());
            let t = fields.next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(t), Some(rss)) = (t, rss) {
                timeline.marks.push((t / 1e3, rss / 1024.0));
            }
        } else if let Some(rest) = line.strip_prefix("trim-call ") {
            timeline.trim_call = rest.trim() == "1";
        }
    }
    timeline
}

/// Writes `timeline.csv`, `timeline.svg` and `timeline.md` into `dir`; returns
/// the table (markdown).
pub fn write(timelines: &[Timeline], mib: usize, dir: &Path) -> Result<String, Box<dyn Error>> {
    let rows = timelines.iter().flat_map(|timeline| {
        let row = |(seconds, rss_mib): (f64, f64), phase: &str| TimelineRow {
            allocator: timeline.allocator.to_string(),
            seconds: csv_files::rounded(seconds),
            rss_mib: csv_files::rounded(rss_mib),
            phase: phase.to_string(),
        };
        let samples = timeline
            .points
            .iter()
            .map(move |&p| row(p, timeline.phase_at(p.0)));
        let marks = timeline
            .marks
            .iter()
            .zip(MARKS)
            .map(move |(&p, name)| row(p, name));
        let mut rows: Vec<TimelineRow> = samples.chain(marks).collect();
        rows.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        rows
    });
    csv_files::write(&dir.join("timeline.csv"), rows)?;
    plot(timelines, mib, &dir.join("timeline.svg"))?;
    let table = table(timelines, mib);
    std::fs::write(dir.join("timeline.md"), &table)?;
    Ok(table)
}

/// RSS (MiB) at the end of each phase, per allocator, with the min–max during
/// the phase.
fn table(timelines: &[Timeline], mib: usize) -> String {
    let mut table = Table::new([
        "allocator",
        "start",
        "allocated",
        "freed",
        "after 1.5 s idle",
        "allocated again",
        "freed again",
        "after 0.5 s idle",
        "trimmed",
        "0.3 s later",
    ]);
    for timeline in timelines {
        let mut row = vec![timeline.allocator.to_string()];
        for m in 0..=MARKS.len() {
            let cell = timeline.at_end_of(m).show(|v| format!("{v:.1}"), "");
            let no_trim = m == MARKS.len() - 1 && !timeline.trim_call;
            row.push(if no_trim {
                format!("{cell} (no trim call)")
            } else {
                cell
            });
        }
        table.row(row);
    }
    format!(
        "Memory timeline ({mib} MiB allocated, freed, 1.5 s idle, allocated and freed again, \
         0.5 s idle, the allocator's trim call, 0.3 s idle): resident set in MiB as each phase \
         ends, in parentheses the min–max during the phase (samples every 20 ms)\n\n{}",
        table.render()
    )
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
            format!("Resident set: {mib} MiB allocated, freed, idle; again; idle, trim (dots: phase ends)"),
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end * 1.02, 0.0..top * 1.4)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("RSS (MiB)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .draw()?;
    for timeline in timelines {
        let color = color_of(timeline.allocator);
        chart
            .draw_series(LineSeries::new(timeline.line(), color.stroke_width(2)))?
            .label(timeline.allocator)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(
            timeline
                .marks
                .iter()
                .skip(1)
                .map(|&p| Circle::new(p, 3, color.filled())),
        )?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}
