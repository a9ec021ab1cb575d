//! Samples, their median and 90th percentile, and the report's rows.

use std::fmt::Write as _;
use std::time::Duration;

/// Timings of one measured operation.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos() as u64);
    }

    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    fn sorted(&self) -> Vec<u64> {
        let mut v = self.nanos.clone();
        v.sort_unstable();
        v
    }

    /// The value below which `q` (0..=1) of the samples fall (nearest rank).
    pub fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1] as f64
    }

    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    pub fn p90(&self) -> f64 {
        self.quantile(0.9)
    }
}

/// A duration in nanoseconds, in a unit that suits it.
pub fn time(ns: f64) -> String {
    if ns.is_nan() {
        "-".into()
    } else if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e7 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.1} ms", ns / 1e6)
    }
}

pub fn bytes(b: f64) -> String {
    if b.abs() < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// One line of the report.
pub struct Row {
    pub id: String,
    pub what: String,
    pub n: String,
    pub median: String,
    pub p90: String,
    pub ratio: String,
}

/// The report: rows, printed as a markdown table, then the verdicts.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    verdicts: Vec<(String, String, bool)>,
    notes: Vec<String>,
}

impl Report {
    /// A timing row; `against` is the median it is compared with, if any.
    pub fn timing(&mut self, id: &str, what: &str, s: &Samples, against: Option<(&str, f64)>) {
        let ratio = match against {
            Some((name, base)) => format!("{:.2}x {name}", s.median() / base),
            None => String::new(),
        };
        self.rows.push(Row {
            id: id.into(),
            what: what.into(),
            n: s.len().to_string(),
            median: time(s.median()),
            p90: time(s.p90()),
            ratio,
        });
        eprintln!("  {id:<4} {what:<62} median {:>10}  p90 {:>10}", time(s.median()), time(s.p90()));
    }

    /// A row that is not a timing (throughput, memory).
    pub fn value(&mut self, id: &str, what: &str, n: &str, median: String, ratio: String) {
        eprintln!("  {id:<4} {what:<62} {median} {ratio}");
        self.rows.push(Row { id: id.into(), what: what.into(), n: n.into(), median, p90: String::new(), ratio });
    }

    /// A target: what it asks, what was measured, and whether it holds.
    pub fn verdict(&mut self, target: &str, measured: String, holds: bool) {
        self.verdicts.push((target.into(), measured, holds));
    }

    pub fn note(&mut self, note: String) {
        eprintln!("  note: {note}");
        self.notes.push(note);
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| # | layer | n | median | p90 | ratio |\n|---|---|--:|--:|--:|---|\n");
        for r in &self.rows {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", r.id, r.what, r.n, r.median, r.p90, r.ratio);
        }
        if !self.verdicts.is_empty() {
            out.push_str("\n| target | measured | holds |\n|---|---|---|\n");
            for (target, measured, holds) in &self.verdicts {
                let _ = writeln!(out, "| {target} | {measured} | {} |", if *holds { "yes" } else { "**no**" });
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}
