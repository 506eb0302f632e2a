#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ai_integration_service::fuzzing::jwt(data));
