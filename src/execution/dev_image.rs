//! Development images: with no image provider configured (a first run without keys), an
//! `image_generation` task answers with deterministic SVG tiles that name their subject, so the
//! `menu` pipeline's image cells visibly fill in. Recorded as the `development` provider, like
//! the development answers of `prompt`.

use base64::Engine;
use serde_json::{Value, json};

use super::prompt_type::{DEVELOPMENT_MODEL, DEVELOPMENT_PROVIDER};

/// Longest subject drawn on a tile.
const MAX_LABEL: usize = 40;

/// `count` tiles for `subject`, as an image task's result (`source` is `search` or
/// `generated`); each is a `data:` URL, so a page shows it with no fetch. `enabling` names the
/// variables that would give real images; the result's `note` says so.
pub fn development_images(subject: &str, count: u32, source: &str, enabling: &[&str]) -> Value {
    let images: Vec<Value> = (0..count)
        .map(|n| {
            let svg = tile(subject, n);
            let data = base64::engine::general_purpose::STANDARD.encode(svg);
            json!({
                "url": format!("data:image/svg+xml;base64,{data}"),
                "description": format!("[development] {}", label(subject)),
                "width": 320,
                "height": 200,
            })
        })
        .collect();
    json!({
        "images": images,
        "source": source,
        "provider": DEVELOPMENT_PROVIDER,
        "model": DEVELOPMENT_MODEL,
        "note": format!(
            "development tiles: no {} provider is configured (set {})",
            if source == "search" { "image search" } else { "image generation" },
            enabling.join(" or ")
        ),
    })
}

/// A 320x200 tile whose colour comes from the subject (and the image's number), labelled
/// with the subject.
fn tile(subject: &str, n: u32) -> String {
    let hue = fnv1a(subject.as_bytes()).wrapping_add(n.wrapping_mul(47)) % 360;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"200\" \
         viewBox=\"0 0 320 200\"><rect width=\"320\" height=\"200\" \
         fill=\"hsl({hue},55%,62%)\"/><text x=\"160\" y=\"108\" font-family=\"sans-serif\" \
         font-size=\"16\" text-anchor=\"middle\" fill=\"#fff\">{}</text></svg>",
        xml_escape(&label(subject))
    )
}

fn label(subject: &str) -> String {
    let line = subject.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(MAX_LABEL).collect();
    if line.chars().count() > MAX_LABEL {
        out.push('…');
    }
    out
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A small stable hash (FNV-1a), so a subject keeps its colour across runs and builds.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svg_of(image: &Value) -> String {
        let url = image["url"].as_str().unwrap();
        let data = url.strip_prefix("data:image/svg+xml;base64,").unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn tiles_are_deterministic_and_name_their_subject() {
        let a = development_images("Fried chicken", 2, "search", &["K"]);
        assert_eq!(a, development_images("Fried chicken", 2, "search", &["K"]));
        assert_eq!(a["images"].as_array().unwrap().len(), 2);
        assert_eq!(a["source"], "search");
        assert_eq!(a["provider"], DEVELOPMENT_PROVIDER);
        assert_eq!(
            a["note"],
            "development tiles: no image search provider is configured (set K)"
        );
        let svg = svg_of(&a["images"][0]);
        assert!(svg.contains(">Fried chicken</text>"), "{svg}");
        assert_ne!(svg, svg_of(&a["images"][1]), "each image its own colour");
    }

    #[test]
    fn markup_in_the_subject_is_escaped_and_long_subjects_cut() {
        let a = development_images("<script>alert('x')</script> & more", 1, "generated", &["K"]);
        let svg = svg_of(&a["images"][0]);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(&apos;x&apos;)"), "{svg}");
        let long = "唐".repeat(100);
        let b = development_images(&long, 1, "generated", &["K"]);
        assert_eq!(
            b["images"][0]["description"],
            format!("[development] {}…", "唐".repeat(MAX_LABEL))
        );
    }
}
