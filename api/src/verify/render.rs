//! The text form of a [`Report`]: what `flashsale verify` prints. The JSON form is the
//! report's `Serialize` derive.

use std::fmt::Write as _;

use super::Report;

/// How many offending ids the text report prints per check (the JSON keeps more).
const SHOWN_OFFENDERS: usize = 20;

impl Report {
    /// The report as text: a header with the figures, one line per check, offenders
    /// under each failed check, and the verdict last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "flashsale verify: sale {} ({})",
            self.sale_id, self.name
        );
        let redis = match &self.redis {
            Some(s) => format!(
                "available {} + held {} + sold {} = {} (total {})",
                s.available,
                s.held,
                s.sold,
                s.available + s.held + s.sold,
                s.total
            ),
            None => "no state".to_owned(),
        };
        let _ = writeln!(
            out,
            "  postgres: total {} · orders {} · units sold {} · oversold {} · lost {}",
            self.total, self.orders, self.units_sold, self.oversold, self.lost
        );
        let _ = writeln!(out, "  redis:    {redis}");
        if self.variants.len() > 1 {
            for v in &self.variants {
                let _ = writeln!(
                    out,
                    "  variant {}: total {} · units sold {} · oversold {}",
                    v.sku, v.total, v.units_sold, v.oversold
                );
            }
        }
        let _ = writeln!(
            out,
            "  pipeline: {} after {:.1} s",
            if self.drained {
                "drained"
            } else {
                "NOT drained"
            },
            self.waited_ms as f64 / 1000.0
        );
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let verdict = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(
                out,
                "  {verdict} {:width$}  {}",
                check.name,
                check.detail,
                width = width
            );
            if !check.passed {
                let _ = writeln!(out, "         invariant: {}", check.invariant);
            }
            if check.offender_count > 0 {
                let shown: Vec<&str> = check
                    .offenders
                    .iter()
                    .take(SHOWN_OFFENDERS)
                    .map(String::as_str)
                    .collect();
                let more = check.offender_count - shown.len();
                let _ = writeln!(
                    out,
                    "         {} offender(s): {}{}",
                    check.offender_count,
                    shown.join(", "),
                    if more > 0 {
                        format!(", … and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
        }
        let failed = self.failures().count();
        if failed == 0 {
            let _ = writeln!(out, "PASS: {} checks hold", self.checks.len());
        } else {
            let _ = writeln!(
                out,
                "FAIL: {failed} of {} checks violated",
                self.checks.len()
            );
        }
        out
    }
}
