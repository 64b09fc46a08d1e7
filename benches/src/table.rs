//! A markdown table, padded so that it also reads well in a terminal: the one
//! table type of every report (comparison run, timeline, preload, criterion).

use std::fmt::Write as _;

/// A markdown table, padded so that it also reads well in a terminal.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |c: usize| {
            self.rows
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain([self.header[c].chars().count(), 3])
                .max()
                .unwrap_or(3)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (c, w) in widths.iter().enumerate() {
                let cell = cells.get(c).map_or("", String::as_str);
                if c == 0 {
                    let _ = write!(out, " {cell:<w$} |");
                } else {
                    let _ = write!(out, " {cell:>w$} |");
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.header);
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let dashes = "-".repeat(*w);
            if c == 0 {
                let _ = write!(out, ":{dashes}-|");
            } else {
                let _ = write!(out, "-{dashes}:|");
            }
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}
