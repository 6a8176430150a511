//! JSON nesting depth, measured by one byte scan before any parse.
//!
//! serde_json keeps `params` as raw text (no recursion limit applies to it), so a body nested
//! 100k levels deep would be forwarded to the upstream as is. Scanning the bytes is cheaper than a
//! second full parse: brackets are counted outside strings only, and inside a string a backslash
//! skips the next byte, so `"[\"]"` is depth 0. Invalid JSON is not this module's business: the
//! parser after it refuses it.

/// The body nests deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The configured limit.
    pub limit: usize,
}

/// Checks that no `[`/`{` nests deeper than `limit` levels (the top-level array or object is
/// level 1). Stops at the first byte past the limit.
pub fn check_depth(bytes: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            // Unbalanced closers are the parser's to refuse; never underflow.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of(s: &str) -> usize {
        (0..=s.len() + 1).find(|&l| check_depth(s.as_bytes(), l).is_ok()).unwrap_or(usize::MAX)
    }

    #[test]
    fn counts_arrays_and_objects() {
        assert_eq!(depth_of(r#"1"#), 0);
        assert_eq!(depth_of(r#"[]"#), 1);
        assert_eq!(depth_of(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(depth_of(r#"[[],[],[[]]]"#), 3, "siblings do not add up");
        assert_eq!(depth_of(&format!("{}{}", "[".repeat(500), "]".repeat(500))), 500);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(depth_of(r#"["[[[[{{{{"]"#), 1);
        assert_eq!(depth_of(r#"{"[[[":"}}}{{{"}"#), 1);
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        // The string is `\"[[[` then ends; the brackets are inside it.
        assert_eq!(depth_of(r#"["\"[[[", 1]"#), 1);
        // An escaped backslash before the quote: the string ends there, the brackets count.
        assert_eq!(depth_of(r#"["\\", [[1]]]"#), 3);
        // Three backslashes: an escaped backslash then an escaped quote, still in the string.
        assert_eq!(depth_of(r#"["\\\"[[", []]"#), 2);
        // A unicode escape is ordinary string content.
        assert_eq!(depth_of(r#"["\u005b\u005b", {}]"#), 2);
    }

    #[test]
    fn stops_at_the_limit_without_reading_the_rest() {
        let deep = "[".repeat(100_000);
        assert_eq!(check_depth(deep.as_bytes(), 128), Err(TooDeep { limit: 128 }));
        assert!(check_depth(&deep.as_bytes()[..128], 128).is_ok());
    }

    #[test]
    fn malformed_input_never_underflows_or_panics() {
        assert!(check_depth(b"]]]]}}}}[", 1).is_ok());
        assert!(check_depth(b"\"unterminated [[[[", 1).is_ok());
        assert!(check_depth(b"\\\\\"[", 1).is_ok());
        assert!(check_depth(&[0xff, b'[', 0x00, b'{'], 2).is_ok());
        assert!(check_depth(&[0xff, b'[', 0x00, b'{'], 1).is_err());
    }
}
