//! Stage payload templates: a JSON value whose strings may hold `{{item.field}}` and
//! `{{stage.field}}` placeholders, rendered for one item from its data and the results of
//! the stages before. A string that is exactly one placeholder becomes the value it names
//! (an object stays an object); elsewhere values are written into the text (strings as they
//! are, others as JSON). A name that is absent renders as nothing (`null` alone).

use serde_json::{Map, Value};

/// The root every template may read besides the stages.
pub const ITEM: &str = "item";

/// One `{{root.path}}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// `item` or a stage name.
    pub root: String,
    /// Field names below the root (may be empty: the whole value).
    pub path: Vec<String>,
}

/// Every placeholder in `template`, or an error naming a malformed one.
pub fn placeholders(template: &Value) -> Result<Vec<Placeholder>, String> {
    let mut out = Vec::new();
    walk(template, &mut |s| {
        for part in split(s)? {
            if let Part::Slot(p) = part {
                out.push(p);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn walk(v: &Value, f: &mut impl FnMut(&str) -> Result<(), String>) -> Result<(), String> {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().try_for_each(|x| walk(x, f)),
        Value::Object(m) => m.values().try_for_each(|x| walk(x, f)),
        _ => Ok(()),
    }
}

enum Part<'a> {
    Text(&'a str),
    Slot(Placeholder),
}

/// A string cut into text and placeholders.
fn split(s: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder in {s:?}"))?;
        let name = after[..close].trim();
        let mut names = name.split('.').map(str::trim);
        let root = names.next().unwrap_or_default();
        let path: Vec<String> = names.map(str::to_owned).collect();
        let ok = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !ok(root) || !path.iter().all(|p| ok(p)) {
            return Err(format!(
                "placeholder {{{{{name}}}}} must be item, item.field, a stage or stage.field"
            ));
        }
        parts.push(Part::Slot(Placeholder {
            root: root.to_owned(),
            path,
        }));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// `template` rendered with `lookup`, which answers a placeholder's root (`item` or a
/// stage) with its value. Templates are checked when the definition loads, so a malformed
/// placeholder here is left as it is.
pub fn render(template: &Value, lookup: &dyn Fn(&str) -> Option<Value>) -> Value {
    match template {
        Value::String(s) => render_str(s, lookup),
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, lookup)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render(v, lookup)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

fn render_str(s: &str, lookup: &dyn Fn(&str) -> Option<Value>) -> Value {
    let Ok(parts) = split(s) else {
        return Value::String(s.to_owned());
    };
    let resolve = |p: &Placeholder| {
        let mut v = lookup(&p.root)?;
        for key in &p.path {
            v = v.get(key)?.clone();
        }
        Some(v)
    };
    if let [Part::Slot(p)] = parts.as_slice() {
        return resolve(p).unwrap_or(Value::Null);
    }
    let mut out = String::with_capacity(s.len());
    for part in &parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Slot(p) => match resolve(p) {
                Some(Value::String(v)) => out.push_str(&v),
                Some(Value::Null) | None => {}
                Some(v) => out.push_str(&v.to_string()),
            },
        }
    }
    Value::String(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_placeholders_and_refuses_malformed_ones() {
        let t = json!({"prompt": "Describe {{item.name}} ({{translation.text}})", "n": [1, "{{item}}"]});
        let roots: Vec<String> = placeholders(&t)
            .unwrap()
            .into_iter()
            .map(|p| p.root)
            .collect();
        assert_eq!(roots.len(), 3);
        assert!(roots.contains(&"translation".to_owned()));
        assert!(
            placeholders(&json!("{{item.name"))
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(placeholders(&json!("{{ a b }}")).is_err());
        assert!(placeholders(&json!("{{}}")).is_err());
    }

    #[test]
    fn renders_values_whole_or_into_text() {
        let item = json!({"id": "m1", "name": "唐揚げ", "price": 680});
        let translation = json!({"text": "Fried chicken"});
        let lookup = |root: &str| match root {
            "item" => Some(item.clone()),
            "translation" => Some(translation.clone()),
            _ => None,
        };
        let t = json!({
            "prompt": "{{item.name}} = {{translation.text}}, {{item.price}} yen{{item.missing}}",
            "whole": "{{translation}}",
            "absent": "{{item.nothing}}",
            "kept": 5
        });
        assert_eq!(
            render(&t, &lookup),
            json!({
                "prompt": "唐揚げ = Fried chicken, 680 yen",
                "whole": {"text": "Fried chicken"},
                "absent": null,
                "kept": 5
            })
        );
    }
}
