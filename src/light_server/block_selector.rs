//! The `block` param of `interop_getBlockHashByNumber`, read as op-interop-filter reads it
//! (`filter/block_selector.go`): the string `"latest"`, a JSON number, a quoted decimal string or
//! a quoted `0x` hex string. Its Go client sends `rpc.BlockNumber`, which marshals as hex or
//! `"latest"`. Other tags (`safe`, `finalized`, `pending`, `earliest`) are refused.

use serde_json::Value;

/// Which block to answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSelector {
    /// The chain's current head.
    Latest,
    /// The canonical block at this height.
    Number(u64),
}

impl BlockSelector {
    /// Reads the param; the error says what was wrong (for -32602).
    pub fn parse(v: Option<&Value>) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Err("missing value for required argument 1".into()),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Self::Number)
                .ok_or_else(|| format!("invalid block selector {n}: not a block number")),
            Some(Value::String(s)) => Self::parse_str(s),
            Some(other) => Err(format!("invalid block selector {other}")),
        }
    }

    fn parse_str(s: &str) -> Result<Self, String> {
        if s == "latest" {
            return Ok(Self::Latest);
        }
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u64::from_str_radix(hex, 16).ok()
            }
            Some(_) => None,
            None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            None if s.bytes().all(|b| b.is_ascii_alphabetic()) && !s.is_empty() => {
                return Err(format!(
                    "unsupported block tag {s:?}: only \"latest\" and block numbers are supported"
                ))
            }
            None => None,
        };
        parsed.map(Self::Number).ok_or_else(|| format!("invalid block selector {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<BlockSelector, String> {
        BlockSelector::parse(Some(&v))
    }

    #[test]
    fn reads_every_form_op_interop_filter_reads() {
        assert_eq!(parse(json!("latest")), Ok(BlockSelector::Latest));
        assert_eq!(parse(json!(123)), Ok(BlockSelector::Number(123)));
        assert_eq!(parse(json!("123")), Ok(BlockSelector::Number(123)));
        assert_eq!(parse(json!("0x7b")), Ok(BlockSelector::Number(123)));
        assert_eq!(parse(json!("0X7B")), Ok(BlockSelector::Number(123)));
        assert_eq!(parse(json!(0)), Ok(BlockSelector::Number(0)));
        assert_eq!(parse(json!("0xffffffffffffffff")), Ok(BlockSelector::Number(u64::MAX)));
    }

    #[test]
    fn refuses_other_tags_and_garbage() {
        for tag in ["safe", "finalized", "pending", "earliest"] {
            let e = parse(json!(tag)).unwrap_err();
            assert!(e.contains("unsupported block tag"), "{e}");
        }
        for bad in [
            json!(""),
            json!("0x"),
            json!("0xg1"),
            json!("-1"),
            json!("1.5"),
            json!("0x1ffffffffffffffff"),
            json!("18446744073709551616"),
            json!(-1),
            json!(1.5),
            json!(true),
            json!({}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert!(BlockSelector::parse(None).is_err());
        assert!(BlockSelector::parse(Some(&Value::Null)).is_err());
    }
}
