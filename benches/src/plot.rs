//! SVG plots of a report (plotters, SVG backend: no system libraries, text left
//! to the SVG viewer's fonts). Every bar and point shows its median, and a
//! whisker its min–max over the repetitions:
//! * `time.svg`, `peak-rss.svg`: per workload, each peer's ratio to cpuslab (log
//!   scale with ticks on both sides of 1x; the line at 1 is cpuslab);
//! * `threads.svg`: time of the `threads-<n>` workloads by thread count;
//! * `threads-throughput.svg`: their throughput (steps per second) by thread
//!   count;
//! * `memory-<workload>.svg` (oversubscribed, server): RSS and the allocators' own
//!   figures with the working set live.
//!
//! The shared pieces (allocator colors, ratio bars, legend, category axes) are
//! used by the other plots too (preload, timeline, object sizes).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use crate::report::{self, Cell, Report};
use crate::spread::Spread;
use crate::workloads::Kind;

pub type PlotResult = Result<(), Box<dyn Error>>;

pub const FONT: &str = "sans-serif";

/// A fixed color per allocator, the same in every plot. `mimalloc3` (the LD_PRELOAD
/// programs' mimalloc 3) has the color of `mimalloc`, the Rust comparison's, which
/// is mimalloc 3 too; `mimalloc2` is Debian's mimalloc 2.0.
pub fn color_of(allocator: &str) -> RGBColor {
    match allocator {
        "cpuslab" => RGBColor(214, 39, 40),
        "glibc" => RGBColor(127, 127, 127),
        "jemalloc" => RGBColor(31, 119, 180),
        "mimalloc" | "mimalloc3" => RGBColor(44, 160, 44),
        "mimalloc2" => RGBColor(188, 189, 34),
        "snmalloc" => RGBColor(148, 103, 189),
        "tcmalloc" => RGBColor(255, 127, 14),
        _ => RGBColor(140, 86, 75),
    }
}

pub fn all(report: &Report, dir: &Path) -> PlotResult {
    let names = report.workload_names();
    let peers = report.peer_names();
    let reference = report.reference_allocator();
    ratio_bars(
        &dir.join("time.svg"),
        &format!("Time, ratio to {reference} (median, min–max; right of 1: {reference} is faster)"),
        &names,
        &peers,
        &report.ratios(report::SECONDS),
    )?;
    ratio_bars(
        &dir.join("peak-rss.svg"),
        &format!(
            "Peak RSS, ratio to {reference} (median, min–max; right of 1: {reference} uses less)"
        ),
        &names,
        &peers,
        &report.ratios(report::PEAK_RSS),
    )?;
    let cpus = crate::cpus();
    by_threads(
        report,
        &dir.join("threads.svg"),
        &format!("threads-<n>: the same total work split over n threads ({cpus} CPUs)"),
        "time (ms; median, min–max)",
        |c| c.seconds.map(|s| s.map(|v| v * 1e3)),
    )?;
    by_threads(
        report,
        &dir.join("threads-throughput.svg"),
        &format!("threads-<n>: throughput by thread count ({cpus} CPUs)"),
        "million steps per second (median, min–max)",
        |c| c.throughput.map(|s| s.map(|v| v / 1e6)),
    )?;
    for w in report.memory_workload_indexes() {
        memory_view(report, w, &dir.join(format!("memory-{}.svg", names[w])))?;
    }
    Ok(())
}

/// Horizontal bars, one group per row, one bar per peer: the median ratio to the
/// reference, drawn from 1 on a log axis, with a whisker over its min–max.
pub fn ratio_bars(
    path: &Path,
    title: &str,
    rows: &[&str],
    peers: &[&str],
    ratios: &[Vec<Option<Spread>>],
) -> PlotResult {
    let n = rows.len();
    let spreads = || ratios.iter().flatten().flatten();
    // Always room for the ticks below 1 (0.5x, 0.75x), so that a peer's win reads
    // off the axis as well as a loss.
    let lo = spreads().map(|s| s.low).fold(0.45f64, f64::min) / 1.1;
    // Room on the right for the legend.
    let hi = spreads().map(|s| s.high).fold(1.25f64, f64::max) * 1.6;
    // The legend goes to the right corner whose rows have the shorter bars.
    let reach = |rows: &[Vec<Option<Spread>>]| {
        rows.iter()
            .flatten()
            .flatten()
            .fold(1.0f64, |m, s| m.max(s.high))
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
            (lo..hi).log_scale().with_key_points(ratio_ticks(lo, hi)),
            -0.5f64..n as f64 - 0.5,
        )?;
    let label = |y: &f64| category_label(*y, |i| (i < n).then(|| rows[n - 1 - i].to_string()));
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&label)
        .x_label_formatter(&|x| show_ratio_tick(*x))
        .x_desc("ratio (log scale)")
        .label_style((FONT, 13))
        .draw()?;
    let bar = 0.8 / peers.len().max(1) as f64;
    // The bar of row `i`, peer `p`: its bottom edge.
    let bottom = |i: usize, p: usize| (n - 1 - i) as f64 + 0.4 - (p + 1) as f64 * bar;
    for (p, &peer) in peers.iter().enumerate() {
        let color = color_of(peer);
        chart
            .draw_series(ratios.iter().enumerate().filter_map(|(i, row)| {
                let y = bottom(i, p);
                row[p].map(|r| {
                    Rectangle::new([(1.0, y + bar * 0.1), (r.median, y + bar)], color.filled())
                })
            }))?
            .label(peer)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(ratios.iter().enumerate().filter_map(|(i, row)| {
            let y = bottom(i, p) + bar * 0.55;
            row[p].map(|r| ErrorBar::new_horizontal(y, r.low, r.median, r.high, BLACK, 5))
        }))?;
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
pub fn draw_legend<'a, DB, CT>(
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
pub fn category_label(x: f64, name: impl Fn(usize) -> Option<String>) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 {
        name(i as usize).unwrap_or_default()
    } else {
        String::new()
    }
}

/// Ticks of a ratio axis (log scale) from `lo` to `hi`: 1x and the powers of 2 on
/// both sides, and 0.75x, 1.5x, 3x, 6x between them unless the range is so wide
/// that they would crowd the axis.
pub fn ratio_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const BETWEEN: [f64; 4] = [0.75, 1.5, 3.0, 6.0];
    let mut ticks: Vec<f64> = (-10..=10).map(|e| 2f64.powi(e)).collect();
    if hi / lo < 200.0 {
        ticks.extend(BETWEEN);
    }
    ticks.retain(|&t| t >= lo && t <= hi);
    ticks.sort_by(f64::total_cmp);
    ticks
}

/// `0.75x`, `2x`; `1/64x` below 0.1.
fn show_ratio_tick(x: f64) -> String {
    if x < 0.1 {
        format!("1/{:.0}x", 1.0 / x)
    } else {
        format!("{x}x")
    }
}

/// One line per allocator over the `threads-<n>` workloads (x: thread count), of
/// the figure `value` picks from a cell, with min–max whiskers.
fn by_threads(
    report: &Report,
    path: &Path,
    caption: &str,
    y_desc: &str,
    value: impl Fn(&Cell) -> Option<Spread>,
) -> PlotResult {
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
    let at = |w: usize, a: usize| value(&report.cells[w][a]);
    let allocators = report.allocators();
    let max = points
        .iter()
        .flat_map(|&(w, _)| (0..allocators.len()).filter_map(move |a| at(w, a)))
        .fold(1e-9f64, |m, s| m.max(s.high));
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 18))
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
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .draw()?;
    for (a, &name) in allocators.iter().enumerate() {
        let color = color_of(name);
        let line: Vec<(f64, Spread)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, &(w, _))| at(w, a).map(|v| (i as f64, v)))
            .collect();
        let medians = line.iter().map(|&(x, s)| (x, s.median));
        chart
            .draw_series(LineSeries::new(medians.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(medians.map(|p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(
            line.iter()
                .map(|&(x, s)| ErrorBar::new_vertical(x, s.low, s.median, s.high, color, 6)),
        )?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// A bar series: label, color, value per allocator index.
type Series<'a> = (
    &'static str,
    RGBColor,
    Box<dyn Fn(usize) -> Option<Spread> + 'a>,
);

/// One group per allocator: RSS and the allocator's own figures at the sample
/// point (bars missing where the allocator does not tell), with min–max whiskers.
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
        .fold(1.0f64, |m, s| m.max(s.high));
    let m = allocators.len();
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let name = report.workload_names()[w];
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: memory with the working set live (MiB; median, min–max)"),
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
        let left = |a: usize| a as f64 - 0.4 + s as f64 * bar;
        chart
            .draw_series((0..m).filter_map(|a| {
                value(a).map(|v| {
                    Rectangle::new(
                        [
                            (left(a) + bar * 0.05, 0.0),
                            (left(a) + bar * 0.95, v.median),
                        ],
                        color.filled(),
                    )
                })
            }))?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series((0..m).filter_map(|a| {
            let x = left(a) + bar * 0.5;
            value(a).map(|v| ErrorBar::new_vertical(x, v.low, v.median, v.high, BLACK, 4))
        }))?;
        // Where the allocator does not tell: say so instead of leaving a gap.
        chart.draw_series(
            (0..m)
                .filter(|&a| value(a).is_none())
                .map(|a| Text::new("n/a", (left(a) + bar * 0.1, max * 0.04), (FONT, 11))),
        )?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_ticks_on_both_sides_of_one() {
        assert_eq!(ratio_ticks(0.4, 4.5), [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]);
        // A wide range (a peer at 19x) keeps the ticks below 1.
        let wide = ratio_ticks(0.4, 31.0);
        assert!(wide.contains(&0.5) && wide.contains(&0.75) && wide.contains(&16.0));
        // A very wide one keeps the powers of 2 only.
        assert_eq!(
            ratio_ticks(0.2, 100.0),
            [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
        );
        assert_eq!(show_ratio_tick(0.75), "0.75x");
        assert_eq!(show_ratio_tick(1.0 / 64.0), "1/64x");
    }
}
