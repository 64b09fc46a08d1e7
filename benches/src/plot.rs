//! SVG plots of a report (plotters, SVG backend: no system libraries, text left
//! to the SVG viewer's fonts):
//! * `time.svg`, `peak-rss.svg`: per workload, each peer's median as a ratio to
//!   cpuslab (log scale; the line at 1 is cpuslab);
//! * `threads.svg`: median time of the `threads-<n>` workloads by thread count;
//! * `memory-<workload>.svg` (oversubscribed, server): RSS and the allocators' own
//!   figures with the working set live.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use crate::report::{self, Report};
use crate::workloads::Kind;

type PlotResult = Result<(), Box<dyn Error>>;

const FONT: &str = "sans-serif";

/// A fixed color per allocator, the same in every plot.
pub fn color_of(allocator: &str) -> RGBColor {
    match allocator {
        "cpuslab" => RGBColor(214, 39, 40),
        "glibc" => RGBColor(127, 127, 127),
        "jemalloc" => RGBColor(31, 119, 180),
        "mimalloc" => RGBColor(44, 160, 44),
        "snmalloc" => RGBColor(148, 103, 189),
        _ => RGBColor(255, 127, 14),
    }
}

pub fn all(report: &Report, dir: &Path) -> PlotResult {
    let names = report.workload_names();
    let peers = report.peer_names();
    let reference = report.reference_allocator();
    ratio_bars(
        &dir.join("time.svg"),
        &format!("Time, ratio to {reference} (median; right of 1: {reference} is faster)"),
        &names,
        &peers,
        &report.ratios(report::SECONDS),
    )?;
    ratio_bars(
        &dir.join("peak-rss.svg"),
        &format!("Peak RSS, ratio to {reference} (median; right of 1: {reference} uses less)"),
        &names,
        &peers,
        &report.ratios(report::PEAK_RSS),
    )?;
    threads(report, &dir.join("threads.svg"))?;
    for w in report.memory_workload_indexes() {
        memory_view(report, w, &dir.join(format!("memory-{}.svg", names[w])))?;
    }
    Ok(())
}

/// Horizontal bars, one group per row, one bar per peer: the ratio to the
/// reference, drawn from 1 on a log axis.
pub fn ratio_bars(
    path: &Path,
    title: &str,
    rows: &[&str],
    peers: &[&str],
    ratios: &[Vec<Option<f64>>],
) -> PlotResult {
    let n = rows.len();
    let values = ratios.iter().flatten().flatten().copied();
    let lo = values.clone().fold(0.8f64, f64::min) / 1.15;
    // Room on the right for the legend.
    let hi = values.fold(1.25f64, f64::max) * 1.6;
    // The legend goes to the right corner whose rows have the shorter bars.
    let reach = |rows: &[Vec<Option<f64>>]| {
        rows.iter()
            .flatten()
            .flatten()
            .fold(1.0f64, |m, &r| m.max(r))
    };
    let corner = 4.min(n);
    let legend = if reach(&ratios[..corner]) <= reach(&ratios[n - corner..]) {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::LowerRight
    };
    let group = 14 * peers.len().max(1) as u32 + 10;
    let root = SVGBackend::new(path, (960, 110 + group * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(120)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            -0.5f64..n as f64 - 0.5,
        )?;
    let label = |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            rows[n - 1 - i as usize].to_string()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&label)
        .x_label_formatter(&|x| format!("{x}x"))
        .x_desc("ratio (log scale)")
        .label_style((FONT, 13))
        .draw()?;
    let bar = 0.8 / peers.len().max(1) as f64;
    for (p, &peer) in peers.iter().enumerate() {
        let color = color_of(peer);
        chart
            .draw_series(ratios.iter().enumerate().filter_map(|(i, row)| {
                let y = (n - 1 - i) as f64 + 0.4 - (p + 1) as f64 * bar;
                row[p].map(|r| Rectangle::new([(1.0, y + bar * 0.1), (r, y + bar)], color.filled()))
            }))?
            .label(peer)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart.draw_series(LineSeries::new(
        [(1.0, -0.5), (1.0, n as f64 - 0.5)],
        BLACK.stroke_width(2),
    ))?;
    draw_legend(&mut chart, legend)?;
    root.present()?;
    Ok(())
}

/// The series legend, drawn the same way in every plot.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> PlotResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .position(position)
        .draw()?;
    Ok(())
}

/// The label of a categorical axis at `x`: category `i` sits at x = i; positions
/// between categories (and past the last) get no label.
fn category_label(x: f64, name: impl Fn(usize) -> Option<String>) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 {
        name(i as usize).unwrap_or_default()
    } else {
        String::new()
    }
}

/// Ticks of a ratio axis: powers of 2 (and 1.5x steps when the range is narrow).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let narrow = hi / lo < 8.0;
    let mut ticks = Vec::new();
    let mut tick = 1.0 / 64.0;
    while tick <= hi {
        for t in [tick, tick * 1.5] {
            if t >= lo && t <= hi && (narrow || t == tick) {
                ticks.push(t);
            }
        }
        tick *= 2.0;
    }
    ticks
}

/// Median time by thread count, one line per allocator.
fn threads(report: &Report, path: &Path) -> PlotResult {
    let points: Vec<(usize, usize)> = report
        .workload_kinds()
        .iter()
        .enumerate()
        .filter_map(|(w, kind)| match kind {
            Kind::Threads(n) => Some((w, *n)),
            _ => None,
        })
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let k = points.len();
    let ms = |w: usize, a: usize| report.cells[w][a].seconds.map(|s| s * 1e3);
    let allocators = report.allocators();
    let max = points
        .iter()
        .flat_map(|&(w, _)| (0..allocators.len()).filter_map(move |a| ms(w, a)))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "threads-<n>: the same total work split over n threads ({} CPUs)",
                crate::cpus()
            ),
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.3f64..k as f64 - 0.7, 0.0..max * 1.1)?;
    let label = |x: &f64| category_label(*x, |i| points.get(i).map(|p| p.1.to_string()));
    chart
        .configure_mesh()
        .x_labels(k + 1)
        .x_label_formatter(&label)
        .disable_x_mesh()
        .x_desc("threads")
        .y_desc("median time (ms)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .draw()?;
    for (a, &name) in allocators.iter().enumerate() {
        let color = color_of(name);
        let line: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, &(w, _))| ms(w, a).map(|v| (i as f64, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// A bar series: label, color, value per allocator index.
type Series<'a> = (
    &'static str,
    RGBColor,
    Box<dyn Fn(usize) -> Option<f64> + 'a>,
);

/// One group per allocator: RSS and the allocator's own figures at the sample
/// point (bars missing where the allocator does not tell).
fn memory_view(report: &Report, w: usize, path: &Path) -> PlotResult {
    let allocators = report.allocators();
    let cells = &report.cells[w];
    let series: [Series; 4] = [
        (
            "RSS (process)",
            RGBColor(60, 60, 60),
            Box::new(|a| cells[a].live.rss),
        ),
        (
            "resident (allocator)",
            RGBColor(31, 119, 180),
            Box::new(|a| cells[a].live.resident),
        ),
        (
            "allocated (allocator)",
            RGBColor(44, 160, 44),
            Box::new(|a| cells[a].live.allocated),
        ),
        (
            "cached free (allocator)",
            RGBColor(214, 39, 40),
            Box::new(|a| cells[a].live.cached),
        ),
    ];
    let max = (0..allocators.len())
        .flat_map(|a| series.iter().filter_map(move |s| (s.2)(a)))
        .fold(1.0f64, f64::max);
    let m = allocators.len();
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let name = report.workload_names()[w];
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: memory with the working set live (median, MiB)"),
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..m as f64 - 0.5, 0.0..max * 1.15)?;
    let label = |x: &f64| category_label(*x, |i| allocators.get(i).map(|a| a.to_string()));
    chart
        .configure_mesh()
        .x_labels(m + 1)
        .x_label_formatter(&label)
        .disable_x_mesh()
        .y_desc("MiB")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .draw()?;
    let bar = 0.8 / series.len() as f64;
    for (s, (label, color, value)) in series.iter().enumerate() {
        let color = *color;
        chart
            .draw_series((0..m).filter_map(|a| {
                let x = a as f64 - 0.4 + s as f64 * bar;
                value(a).map(|v| {
                    Rectangle::new([(x + bar * 0.05, 0.0), (x + bar * 0.95, v)], color.filled())
                })
            }))?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        // Where the allocator does not tell: say so instead of leaving a gap.
        chart.draw_series((0..m).filter(|&a| value(a).is_none()).map(|a| {
            let x = a as f64 - 0.4 + s as f64 * bar;
            Text::new("n/a", (x + bar * 0.1, max * 0.04), (FONT, 11))
        }))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}
