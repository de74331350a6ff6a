//! `Spec::from_str` on arbitrary text: parse, validate, and render any error as the CLI does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match troupe_spec::Spec::from_str("fuzz/cluster.toml", text) {
        Ok(spec) => {
            let _ = format!("{spec:?}");
        }
        Err(e) => {
            let _ = troupe_fuzz::render(&e);
        }
    }
});
