//! A figure measured more than once: its median and its spread (the range of the
//! repetitions, or the quartiles of criterion's samples), and how the tables
//! write it: `median (low–high)`.

/// The median of some measurements of one figure, and their spread: `low` and
/// `high` are the minimum and maximum ([`Spread::range`]) or the first and third
/// quartiles ([`Spread::quartiles`]), as the table heading says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

impl Spread {
    /// Median and min–max of `values`; `None` when there are none.
    pub fn range(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let sorted = sorted(values)?;
        Some(Spread {
            median: quantile(&sorted, 0.5),
            low: sorted[0],
            high: sorted[sorted.len() - 1],
        })
    }

    /// Median and first–third quartile of `values`; `None` when there are none.
    pub fn quartiles(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let sorted = sorted(values)?;
        Some(Spread {
            median: quantile(&sorted, 0.5),
            low: quantile(&sorted, 0.25),
            high: quantile(&sorted, 0.75),
        })
    }

    /// The same figure in another unit (`f` must be increasing).
    pub fn map(self, f: impl Fn(f64) -> f64) -> Spread {
        Spread {
            median: f(self.median),
            low: f(self.low),
            high: f(self.high),
        }
    }

    /// `median (low–high)`, each number written by `number`, `unit` after the
    /// median; the median alone when the three read the same (one repetition).
    pub fn show(&self, number: impl Fn(f64) -> String, unit: &str) -> String {
        let (median, low, high) = (number(self.median), number(self.low), number(self.high));
        if low == high {
            format!("{median}{unit}")
        } else {
            format!("{median}{unit} ({low}–{high})")
        }
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    Spread::range(values).map(|s| s.median)
}

/// The geometric mean of `values` (all positive); `None` when there are none.
pub fn geometric_mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values.into_iter().map(f64::ln).collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

fn sorted(values: impl IntoIterator<Item = f64>) -> Option<Vec<f64>> {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    (!values.is_empty()).then_some(values)
}

/// The `q` quantile of sorted values, interpolated between neighbours (the median
/// of an even count is the mean of the middle two).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (at - below as f64)
}

/// `value / reference`, when both are known and the ratio is finite.
pub fn ratio(value: Option<f64>, reference: Option<f64>) -> Option<f64> {
    Some(value? / reference?).filter(|r| r.is_finite())
}

/// MiB: two decimals below 10, one above; `n/a` when unknown.
pub fn mib(value: Option<Spread>) -> String {
    value.map_or("n/a".into(), |s| {
        let decimals = if s.median < 10.0 { 2 } else { 1 };
        s.show(|v| format!("{v:.decimals$}"), "")
    })
}

/// Seconds, written in ms below one second; `failed` when unknown (no run
/// succeeded).
pub fn time(seconds: Option<Spread>) -> String {
    match seconds {
        None => "failed".into(),
        Some(s) if s.median < 1.0 => s.map(|v| v * 1e3).show(|v| format!("{v:.1}"), " ms"),
        Some(s) => s.show(|v| format!("{v:.2}"), " s"),
    }
}

/// A ratio as `1.23x (1.20–1.26)`; `n/a` when unknown.
pub fn ratio_text(ratio: Option<Spread>) -> String {
    ratio.map_or("n/a".into(), |r| r.show(|v| format!("{v:.2}"), "x"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_quartiles() {
        let s = Spread::range([3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.low, s.high), (2.5, 1.0, 10.0));
        let q = Spread::quartiles([1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!((q.median, q.low, q.high), (3.0, 2.0, 4.0));
        assert_eq!(Spread::range([]), None);
        assert_eq!(median([5.0]), Some(5.0));
    }

    #[test]
    fn written_with_their_range() {
        let s = Spread::range([0.2177, 0.2150, 0.2201]);
        assert_eq!(time(s), "217.7 ms (215.0–220.1)");
        assert_eq!(ratio_text(Spread::range([1.3])), "1.30x");
        assert_eq!(mib(Spread::range([43.5, 43.1, 44.0])), "43.5 (43.1–44.0)");
        assert_eq!(mib(None), "n/a");
        assert_eq!(time(None), "failed");
    }
}
