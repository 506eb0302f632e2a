//! Entry points for the fuzz targets of `fuzz/` (`cargo fuzz`, libFuzzer) and for
//! `tests/fuzz_corpus.rs`, which replays the committed corpus on stable Rust.
//!
//! Each takes the fuzzer's bytes and calls the service's own decoding code: the HTTP JSON
//! bodies into domain requests, gRPC messages into domain requests, bearer tokens and JWKS
//! documents, each provider adapter's answers and event streams, and article extraction.
//! None may panic, whatever the bytes; a panic is a bug in the service (or in a dependency
//! it does not guard against). Not part of the service's API.
//!
//! Inputs whose first byte picks a variant (which adapter, which message) read it as
//! `data[0] - b'0'`, so corpus files can start with a digit.

mod extract;
mod inputs;
mod jwt;
mod providers;

pub use extract::{EXTRACT_THREAD, extract_article, extract_html};
pub use inputs::{grpc_request, http_json};
pub use jwt::{FUZZ_AUDIENCE, FUZZ_ISSUER, FUZZ_SECRET, jwt};
pub use providers::{FUZZ_API_KEY, provider_body, provider_stream};

/// The variant an input picks (`data[0] - b'0'`, modulo `variants`) and the rest of it.
fn pick(data: &[u8], variants: u8) -> Option<(u8, &[u8])> {
    let (first, rest) = data.split_first()?;
    Some((first.wrapping_sub(b'0') % variants, rest))
}
