//! CI gates: `efficiency<0.9`, `wasted>20MB`, `size>300MB`.

use crate::model::Report;

/// Why a gate expression does not parse.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No comparison operator.
    #[error("invalid gate {expr:?}: expected METRIC<VALUE or METRIC>VALUE (also <=, >=)")]
    NoOperator {
        /// The expression.
        expr: String,
    },
    /// An unknown metric.
    #[error(
        "invalid gate {expr:?}: unknown metric {metric:?} (known: efficiency, wasted, shadowed, duplicate, size, compressed, final, layers)"
    )]
    Metric {
        /// The expression.
        expr: String,
        /// The metric.
        metric: String,
    },
    /// A value that is not a number (with an optional size unit).
    #[error(
        "invalid gate {expr:?}: {value:?} is not a number or a size (B, kB, MB, GB, KiB, MiB, GiB)"
    )]
    Value {
        /// The expression.
        expr: String,
        /// The value.
        value: String,
    },
}

/// What a gate measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `efficiency`: final bytes / shipped bytes.
    Efficiency,
    /// `wasted`: shadowed + duplicate bytes.
    Wasted,
    /// `shadowed`: bytes of overwritten or deleted file versions.
    Shadowed,
    /// `duplicate`: bytes of duplicate content.
    Duplicate,
    /// `size`: uncompressed layer bytes.
    Size,
    /// `compressed`: compressed layer bytes.
    Compressed,
    /// `final`: content bytes of the final file system.
    Final,
    /// `layers`: number of layers.
    Layers,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Efficiency => "efficiency",
            Metric::Wasted => "wasted",
            Metric::Shadowed => "shadowed",
            Metric::Duplicate => "duplicate",
            Metric::Size => "size",
            Metric::Compressed => "compressed",
            Metric::Final => "final",
            Metric::Layers => "layers",
        }
    }

    fn is_bytes(self) -> bool {
        !matches!(self, Metric::Efficiency | Metric::Layers)
    }

    fn value(self, report: &Report) -> f64 {
        let t = &report.totals;
        match self {
            Metric::Efficiency => t.efficiency,
            Metric::Wasted => t.wasted_bytes as f64,
            Metric::Shadowed => t.shadowed_bytes as f64,
            Metric::Duplicate => t.duplicate_bytes as f64,
            Metric::Size => t.uncompressed_bytes as f64,
            Metric::Compressed => t.compressed_bytes as f64,
            Metric::Final => t.final_bytes as f64,
            Metric::Layers => t.layers as f64,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// One `--fail-on` condition: the gate fails when `metric op threshold` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The expression as written.
    pub expr: String,
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub op: Op,
    /// The threshold (bytes for sizes).
    pub threshold: f64,
}

impl std::str::FromStr for Gate {
    type Err = GateError;

    fn from_str(expr: &str) -> Result<Gate, GateError> {
        let at = expr
            .find(['<', '>'])
            .ok_or_else(|| GateError::NoOperator { expr: expr.into() })?;
        let (metric, rest) = expr.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let metric = match metric.trim().to_ascii_lowercase().as_str() {
            "efficiency" => Metric::Efficiency,
            "wasted" | "waste" => Metric::Wasted,
            "shadowed" => Metric::Shadowed,
            "duplicate" | "duplicates" => Metric::Duplicate,
            "size" => Metric::Size,
            "compressed" => Metric::Compressed,
            "final" => Metric::Final,
            "layers" => Metric::Layers,
            other => {
                return Err(GateError::Metric {
                    expr: expr.into(),
                    metric: other.into(),
                });
            }
        };
        let threshold = if metric.is_bytes() {
            // Compared with the sizes the report prints: kB, MB, GB are powers of 1000.
            rbuild_options::size::parse(value.trim(), rbuild_options::size::Rule::Decimal)
                .ok()
                .map(|bytes| bytes as f64)
        } else {
            let v = value.trim();
            match v.strip_suffix('%') {
                Some(pct) => pct.trim().parse::<f64>().ok().map(|p| p / 100.0),
                None => v.parse().ok(),
            }
        }
        .ok_or_else(|| GateError::Value {
            expr: expr.into(),
            value: value.trim().into(),
        })?;
        Ok(Gate {
            expr: expr.to_string(),
            metric,
            op,
            threshold,
        })
    }
}

impl Gate {
    /// When the gate fails on `report`: why, naming the measured value.
    pub fn check(&self, report: &Report) -> Option<String> {
        let value = self.metric.value(report);
        let crossed = match self.op {
            Op::Lt => value < self.threshold,
            Op::Le => value <= self.threshold,
            Op::Gt => value > self.threshold,
            Op::Ge => value >= self.threshold,
        };
        if !crossed {
            return None;
        }
        let shown = if self.metric.is_bytes() {
            format!(
                "{} ({} bytes)",
                rbuild_options::size::image(value as u64),
                value as u64
            )
        } else if self.metric == Metric::Efficiency {
            format!("{value:.4}")
        } else {
            format!("{value}")
        };
        Some(format!(
            "--fail-on {:?}: {} is {shown}",
            self.expr,
            self.metric.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gates_and_sizes() {
        let g: Gate = "wasted>20MB".parse().unwrap();
        assert_eq!(
            (g.metric, g.op, g.threshold),
            (Metric::Wasted, Op::Gt, 20e6)
        );
        let g: Gate = "efficiency<0.9".parse().unwrap();
        assert_eq!(
            (g.metric, g.op, g.threshold),
            (Metric::Efficiency, Op::Lt, 0.9)
        );
        let g: Gate = "efficiency <= 90%".parse().unwrap();
        assert_eq!((g.op, g.threshold), (Op::Le, 0.9));
        let g: Gate = "size>=1.5GiB".parse().unwrap();
        assert_eq!(g.threshold, 1.5 * 1024.0 * 1024.0 * 1024.0);
        assert!(matches!(
            "size=3".parse::<Gate>(),
            Err(GateError::NoOperator { .. })
        ));
        assert!(matches!(
            "bigness>3".parse::<Gate>(),
            Err(GateError::Metric { .. })
        ));
        assert!(matches!(
            "size>3XB".parse::<Gate>(),
            Err(GateError::Value { .. })
        ));
    }
}
