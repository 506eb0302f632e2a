//! How deeply a JSON text nests, found in one pass over its bytes before any parsing: a
//! deeply nested body costs the parser stack and time however small it is.

/// The nesting depth first found above `max` (`max + 1`), or `None` when the text stays
/// within it. Brackets inside strings do not count; malformed text is left to the parser.
pub fn too_deep(text: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_arrays_and_objects_but_not_strings() {
        assert_eq!(too_deep(br#"{"a":[1,{"b":2}]}"#, 3), None);
        assert_eq!(too_deep(br#"{"a":[1,{"b":2}]}"#, 2), Some(3));
        assert_eq!(too_deep(br#"{"a":"[[[[[[\"[[["}"#, 1), None);
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(too_deep(deep.as_bytes(), 64), Some(65));
        assert_eq!(too_deep(&deep.as_bytes()[1..deep.len() - 1], 64), None);
    }
}
