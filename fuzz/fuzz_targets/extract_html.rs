#![no_main]

use std::sync::Once;

use ai_integration_service::fuzzing::{EXTRACT_THREAD, extract_html};

static HOOK: Once = Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts on any panic, even one the service catches. Readability
    // runs on a blocking thread whose panic the service turns into a task error (tested in
    // tests/fuzz_corpus.rs), so a panic there is not a crash; anywhere else it is.
    HOOK.call_once(|| {
        if std::env::var_os("FUZZ_EXTRACT_STRICT").is_some() {
            return;
        }
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(EXTRACT_THREAD) {
                abort_hook(info);
            }
        }));
    });
    extract_html(data);
});
