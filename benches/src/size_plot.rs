//! `alloc-size.svg`: time of one alloc+free pair against the object size, one
//! line per allocator, from criterion's `pair/<size>` groups of the allocator
//! benchmark (`cargo bench -p cpuslab-bench --bench alloc`); the whiskers are the
//! quartiles of criterion's samples. Written by `--criterion-table`.

use std::path::Path;

use plotters::prelude::*;

use crate::criterion_data::Measure;
use crate::criterion_table::size_of_label;
use crate::plot::{color_of, draw_legend, PlotResult, FONT};

/// `16 B`, `4 KiB`.
fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Writes the plot to `path` when `measures` hold `pair/<size>` groups; returns
/// whether it did.
pub fn plot(measures: &[Measure], allocators: &[&str], path: &Path) -> Result<bool, String> {
    let pairs: Vec<(u64, &Measure)> = measures
        .iter()
        .filter_map(|m| {
            let size = size_of_label(m.group.strip_prefix("pair/")?);
            (size > 0).then_some((size, m))
        })
        .collect();
    if pairs.is_empty() {
        return Ok(false);
    }
    draw(&pairs, allocators, path).map_err(|e| e.to_string())?;
    Ok(true)
}

fn draw(pairs: &[(u64, &Measure)], allocators: &[&str], path: &Path) -> PlotResult {
    let mut sizes: Vec<u64> = pairs.iter().map(|p| p.0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (first, last) = (sizes[0] as f64, sizes[sizes.len() - 1] as f64);
    let max = pairs.iter().map(|p| p.1.ns.high).fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "criterion: one alloc + free pair by object size (median, quartiles)",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (first / 1.5..last * 1.5)
                .log_scale()
                .with_key_points(sizes.iter().map(|&s| s as f64).collect::<Vec<_>>()),
            0.0..max * 1.15,
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| show_size(x.round() as u64))
        .x_desc("object size (log scale)")
        .y_desc("ns per pair")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .draw()?;
    for &name in allocators {
        let mut line: Vec<(f64, &Measure)> = pairs
            .iter()
            .filter(|p| p.1.function == name)
            .map(|&(size, m)| (size as f64, m))
            .collect();
        if line.is_empty() {
            continue;
        }
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = color_of(name);
        let medians = line.iter().map(|&(x, m)| (x, m.ns.median));
        chart
            .draw_series(LineSeries::new(medians.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(medians.map(|p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(line.iter().map(|&(x, m)| {
            ErrorBar::new_vertical(x, m.ns.low, m.ns.median, m.ns.high, color, 6)
        }))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(show_size(16), "16 B");
        assert_eq!(show_size(1024), "1 KiB");
        assert_eq!(show_size(32 << 10), "32 KiB");
        assert_eq!(show_size(1 << 20), "1 MiB");
    }
}
