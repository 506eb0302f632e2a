//! The items of a session as a caller sends them: JSON objects with a unique string `id`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::domain::DomainError;
use crate::domain::payload::kind_of;

/// Longest item id.
pub const MAX_ITEM_ID: usize = 200;
/// Largest item, as JSON.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;

/// One item: its id and its fields (the id among them), as given.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    /// Unique in its session.
    pub id: String,
    /// The whole object, which stage templates read as `{{item.field}}`.
    pub data: Value,
}

/// Checks a request's `items`: 1 to `max` objects, each with a unique non-empty string `id`
/// and at most [`MAX_ITEM_BYTES`]. Errors name the item at fault (`items[3].id ...`).
pub fn parse_items(items: Vec<Value>, max: usize) -> Result<Vec<NewItem>, DomainError> {
    if items.is_empty() {
        return Err(DomainError::Invalid(
            "items must list at least one item".into(),
        ));
    }
    if items.len() > max {
        return Err(DomainError::Invalid(format!(
            "at most {max} items per call (batch_size), got {}; add more with \
             POST /api/v1/pipeline-sessions/{{id}}/items",
            items.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, data) in items.into_iter().enumerate() {
        let Value::Object(fields) = &data else {
            return Err(DomainError::Invalid(format!(
                "items[{i}] must be a JSON object, got {}",
                kind_of(&data)
            )));
        };
        let id = match fields.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_ITEM_ID => s.clone(),
            Some(Value::String(_)) => {
                return Err(DomainError::Invalid(format!(
                    "items[{i}].id must be 1-{MAX_ITEM_ID} bytes"
                )));
            }
            Some(other) => {
                return Err(DomainError::Invalid(format!(
                    "items[{i}].id must be a string, got {}",
                    kind_of(other)
                )));
            }
            None => return Err(DomainError::Invalid(format!("items[{i}].id is required"))),
        };
        let size = serde_json::to_vec(&data).map_or(usize::MAX, |v| v.len());
        if size > MAX_ITEM_BYTES {
            return Err(DomainError::TooLarge(format!(
                "items[{i}] is {size} bytes; the limit is {MAX_ITEM_BYTES}"
            )));
        }
        if !seen.insert(id.clone()) {
            return Err(DomainError::Invalid(format!(
                "items[{i}].id {id:?} appears twice"
            )));
        }
        out.push(NewItem { id, data });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_need_unique_string_ids_within_the_batch_size() {
        let ok = parse_items(vec![json!({"id": "m1", "name": "唐揚げ"})], 2).unwrap();
        assert_eq!(ok[0].id, "m1");
        let cases = [
            (vec![], "at least one"),
            (vec![json!({"id": "a"}); 3], "at most 2 items"),
            (vec![json!([1])], "items[0] must be a JSON object"),
            (vec![json!({"name": "x"})], "items[0].id is required"),
            (vec![json!({"id": 7})], "items[0].id must be a string"),
            (
                vec![json!({"id": "a"}), json!({"id": "a"})],
                "appears twice",
            ),
        ];
        for (items, want) in cases {
            let err = parse_items(items, 2).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
