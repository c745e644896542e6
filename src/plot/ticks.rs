//! Axis ranges and tick values. A log axis is drawn in log₁₀ space, so
//! every range and tick here is in the coordinates that are drawn: a
//! value v on a log axis sits at log₁₀ v.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// A drawn axis: its range, labelled ticks and unlabelled grid lines, in
/// drawn coordinates, with the labels of the labelled ticks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ticks {
    /// Low end of the drawn range.
    pub lo: f64,
    /// High end of the drawn range.
    pub hi: f64,
    /// Labelled ticks (bold grid lines).
    pub major: Vec<f64>,
    /// Grid lines without labels.
    pub minor: Vec<f64>,
    /// The label of each labelled tick.
    pub labels: Vec<String>,
}

impl Ticks {
    /// The label of the labelled tick nearest `v` (a tick's own position).
    pub fn label_at(&self, v: f64) -> String {
        self.major
            .iter()
            .zip(&self.labels)
            .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// A drawn axis is a plotters coordinate whose key points are our ticks:
/// the labelled ones bold, the others light.
impl Ranged for Ticks {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        let t = if t.is_finite() {
            t.clamp(-1.0, 2.0)
        } else {
            0.5
        };
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Superscript digits and minus, for 10ᵏ labels.
fn superscript(k: i64) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut s = String::new();
    if k < 0 {
        s.push('⁻');
    }
    for c in k.unsigned_abs().to_string().chars() {
        s.push(DIGITS[c.to_digit(10).unwrap_or(0) as usize]);
    }
    s
}

/// `value` written with `decimals` decimals (trailing zeros dropped when
/// `trim`), or as m×10ᵏ when it is too large or too small to read that way.
fn number(value: f64, decimals: usize, trim: bool) -> String {
    if value == 0.0 {
        return if trim {
            "0".into()
        } else {
            format!("{:.decimals$}", 0.0)
        };
    }
    let a = value.abs();
    if !(1e-4..1e6).contains(&a) {
        let k = a.log10().floor() as i64;
        let m = value / 10f64.powi(k as i32);
        let m = trim_zeros(&format!("{m:.2}"));
        return if m == "1" {
            format!("10{}", superscript(k))
        } else if m == "-1" {
            format!("−10{}", superscript(k))
        } else {
            format!("{}×10{}", m.replace('-', "−"), superscript(k))
        };
    }
    let s = format!("{value:.decimals$}");
    if trim { trim_zeros(&s) } else { s }.replace('-', "−")
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A linear axis over data from `lo` to `hi` (finite, `lo ≤ hi`): a step of
/// 1, 2 or 5 × 10ᵏ giving 4 to 10 ticks, the range widened to whole steps;
/// zero is included when the data are all on one side of it and reach
/// within half their size of it.
pub(crate) fn linear(lo: f64, hi: f64) -> Ticks {
    let (mut lo, mut hi) = (lo, hi);
    if lo >= 0.0 && lo <= 0.5 * hi {
        lo = 0.0;
    } else if hi <= 0.0 && hi >= 0.5 * lo {
        hi = 0.0;
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1e-300) {
        let pad = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let raw = (hi - lo) / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| (hi - lo) / s <= 7.0)
        .unwrap_or(10.0 * p);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let count = (last - first) as i64;
    let major: Vec<f64> = (0..=count).map(|i| (first + i as f64) * step).collect();
    let minor = (0..count)
        .map(|i| (first + i as f64 + 0.5) * step)
        .collect();
    let labels = major.iter().map(|&v| number(v, decimals, false)).collect();
    Ticks {
        lo: first * step,
        hi: last * step,
        major,
        minor,
        labels,
    }
}

/// A log axis over positive data from `lo` to `hi` (given in data units,
/// drawn in log₁₀ units). Spanning three decades or more: labelled ticks at
/// the decades (every second or more decade past twelve), written 10ᵏ, the
/// range widened to whole decades. Less: ticks at 1, 2 and 5 × 10ᵏ written
/// as numbers, the range widened to those.
pub(crate) fn log(lo: f64, hi: f64) -> Ticks {
    let (mut a, mut b) = (lo.log10(), hi.log10());
    if b - a < 1e-9 {
        (a, b) = (a - 0.5, b + 0.5);
    }
    let (d0, d1) = (a.floor() as i64, b.ceil() as i64);
    let mut minor = vec![];
    if d1 - d0 >= 3 {
        let every = ((d1 - d0) as f64 / 12.0).ceil().max(1.0) as i64;
        let d0 = d0.div_euclid(every) * every;
        let d1 = d1 + (every - d1.rem_euclid(every)) % every;
        let major: Vec<f64> = (d0..=d1)
            .step_by(every as usize)
            .map(|d| d as f64)
            .collect();
        if every == 1 && d1 - d0 <= 6 {
            for d in d0..d1 {
                minor.extend((2..10).map(|m| d as f64 + (m as f64).log10()));
            }
        }
        let labels = major
            .iter()
            .map(|&d| format!("10{}", superscript(d as i64)))
            .collect();
        return Ticks {
            lo: d0 as f64,
            hi: d1 as f64,
            major,
            minor,
            labels,
        };
    }
    // 1-2-5 steps: the tick at or below a, the tick at or above b.
    let steps: Vec<(f64, f64)> = (d0 - 1..=d1)
        .flat_map(|d| [1.0, 2.0, 5.0].map(move |m| (m * 10f64.powi(d as i32), d as f64)))
        .collect();
    let eps = 1e-9;
    let lo_i = steps
        .iter()
        .rposition(|s| s.0.log10() <= a + eps)
        .unwrap_or(0);
    let hi_i = steps
        .iter()
        .position(|s| s.0.log10() >= b - eps)
        .unwrap_or(steps.len() - 1);
    let chosen = &steps[lo_i..=hi_i];
    let major: Vec<f64> = chosen.iter().map(|s| s.0.log10()).collect();
    let labels = chosen
        .iter()
        .map(|&(v, d)| number(v, (-d).max(0.0) as usize, true))
        .collect();
    let (lo, hi) = (major[0], major[major.len() - 1]);
    for d in d0 - 1..=d1 {
        for m in [3.0, 4.0, 6.0, 7.0, 8.0, 9.0] {
            let v = d as f64 + f64::log10(m);
            if v > lo && v < hi {
                minor.push(v);
            }
        }
    }
    Ticks {
        lo,
        hi,
        major,
        minor,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_are_written_as_powers_of_ten() {
        let t = log(0.05, 3e7);
        assert_eq!(t.lo, -2.0);
        assert_eq!(t.hi, 8.0);
        assert_eq!(t.labels.first().unwrap(), "10⁻²");
        assert_eq!(t.labels.last().unwrap(), "10⁸");
        assert_eq!(t.major.len(), 11);
    }

    #[test]
    fn a_narrow_log_range_gets_one_two_five_ticks() {
        let t = log(0.3, 2.5);
        assert_eq!(t.labels, ["0.2", "0.5", "1", "2", "5"]);
        let t = log(1.0, 1.0);
        assert!(t.major.len() >= 2, "{t:?}");
    }

    #[test]
    fn many_decades_thin_out() {
        let t = log(1e-20, 1e20);
        assert!(t.major.len() <= 13, "{t:?}");
        assert!(t.lo <= -20.0 && t.hi >= 20.0);
    }

    #[test]
    fn linear_ticks_are_round_and_cover_the_data() {
        let t = linear(0.07, 0.31);
        assert_eq!(t.lo, 0.0);
        assert!(t.hi >= 0.31);
        assert!(t.labels.contains(&"0.10".to_string()), "{t:?}");
        let t = linear(5.0, 5.0);
        assert!(t.lo < 5.0 && t.hi > 5.0);
        let t = linear(-3.0, -2.0);
        assert!(
            t.labels.iter().all(|l| l.starts_with('−') || l == "0"),
            "{t:?}"
        );
        let t = linear(0.0, 3e8);
        assert!(t.labels.iter().any(|l| l.contains("×10⁸")), "{t:?}");
    }
}
