//! What provider calls cost: a price table per provider, applied to the tokens it reports.

use std::str::FromStr;

use super::Usage;
use crate::domain::Micros;

/// A provider's prices, in micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_mtok: Micros,
    /// Per million generated tokens.
    pub output_per_mtok: Micros,
    /// Per call, whatever its size (image generation, search).
    pub per_call: Micros,
}

impl Price {
    /// A price of `input` and `output` dollars per million tokens.
    pub fn per_mtok(input: i64, output: i64) -> Self {
        Self {
            input_per_mtok: Micros(input),
            output_per_mtok: Micros(output),
            per_call: Micros(0),
        }
    }

    /// Whether calls cost anything.
    pub fn is_free(&self) -> bool {
        *self == Self::default()
    }

    /// The cost of a call that used `usage`, rounded up to the next micro-dollar.
    pub fn cost(&self, usage: Usage) -> Micros {
        let tokens = |n: u64, per_m: Micros| -> i64 {
            let total = i128::from(n) * i128::from(per_m.0.max(0));
            ((total + 999_999) / 1_000_000).min(i128::from(i64::MAX)) as i64
        };
        Micros(
            tokens(usage.input_tokens, self.input_per_mtok)
                .saturating_add(tokens(usage.output_tokens, self.output_per_mtok))
                .saturating_add(self.per_call.0.max(0)),
        )
    }

    /// The most a call estimated at `usage` can cost: what is reserved before it.
    pub fn estimate(&self, usage: Usage) -> Micros {
        self.cost(usage)
    }
}

impl FromStr for Price {
    type Err = String;

    /// Parses `input=0.15,output=0.60,call=0.04` (dollars per million tokens, and per call);
    /// missing parts are free.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut price = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=dollars"))?;
            let amount = Micros::parse_usd(value).map_err(|e| e.to_string())?;
            match key.trim() {
                "input" => price.input_per_mtok = amount,
                "output" => price.output_per_mtok = amount,
                "call" => price.per_call = amount,
                other => {
                    return Err(format!(
                        "unknown price part {other:?}; expected input, output or call"
                    ));
                }
            }
        }
        Ok(price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_tokens_and_calls_rounding_up() {
        let p: Price = "input=0.15,output=0.60,call=0.01".parse().unwrap();
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
        };
        // 1000 * 0.15/1M = 150 µ$, 500 * 0.60/1M = 300 µ$, plus 10,000 µ$ a call.
        assert_eq!(p.cost(usage), Micros(10_450));
        let tiny = Usage {
            input_tokens: 1,
            output_tokens: 0,
        };
        assert_eq!(p.cost(tiny), Micros(10_001), "a token is never free");
        assert!(Price::default().is_free());
        assert!("input".parse::<Price>().is_err());
        assert!("speed=1".parse::<Price>().is_err());
    }
}
