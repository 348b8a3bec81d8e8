#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| jupyter_xnat_webhook_fuzz::user_options::check(bytes));
