//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every crash the fuzzers
//! found (`fuzz/regressions/<target>/`) through the fuzz targets' entry points
//! (`ai_integration_service::fuzzing`), on stable Rust: none may panic. The fuzzing itself
//! (nightly, `cargo fuzz`) is `scripts/fuzz.sh`; see docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ai_integration_service::domain::ErrorClass;
use ai_integration_service::fuzzing;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// Every input of `target`'s corpus and regressions through `entry`; fails naming each input
/// that panicked.
fn replay(target: &str, entry: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&fuzz.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
    let regressions = files(&fuzz.join("regressions").join(target));
    let panicked: Vec<String> = corpus
        .iter()
        .chain(&regressions)
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable corpus file");
            catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "{target} panicked on {panicked:?}");
}

#[test]
fn http_json() {
    replay("http_json", fuzzing::http_json);
}

#[test]
fn grpc_request() {
    replay("grpc_request", fuzzing::grpc_request);
}

#[test]
fn jwt() {
    replay("jwt", fuzzing::jwt);
}

#[test]
fn provider_body() {
    replay("provider_body", fuzzing::provider_body);
}

#[test]
fn provider_stream() {
    replay("provider_stream", fuzzing::provider_stream);
}

#[test]
fn extract_html() {
    replay("extract_html", fuzzing::extract_html);
}

/// Pages on which the HTML extractor (a dependency) panicked: the task fails for good with a
/// clear error, and nothing panics on the caller's side. (The mapping itself is unit-tested in
/// `execution::extract`.)
#[test]
fn a_page_that_crashes_the_extractor_is_a_non_retryable_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/extract_html");
    for page in files(&dir) {
        let html = std::fs::read(&page).expect("a readable reproducer");
        let err =
            fuzzing::extract_article(&html).expect_err(&format!("{} must fail", page.display()));
        assert_eq!(err.class, ErrorClass::NonRetryable, "{}", page.display());
        assert!(
            err.message.contains("could not be parsed"),
            "{}",
            err.message
        );
    }
}

/// The seeds are what they say: a well-formed article is extracted.
#[test]
fn the_seed_article_is_extracted() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/extract_html");
    let html = std::fs::read(fuzz.join("seed-article.bin")).expect("the seed article");
    let article = fuzzing::extract_article(&html).expect("an article");
    assert!(article["text"].as_str().unwrap().contains("market square"));
}
