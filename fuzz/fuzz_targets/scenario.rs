//! `Scenario::from_str` on arbitrary text: parse, validate, and render any error as the CLI does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_spec::scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::from_str("fuzz/scenario.toml", text) {
        Ok(scenario) => {
            let _ = format!("{scenario:?}");
        }
        Err(e) => {
            let _ = troupe_fuzz::render(&e);
        }
    }
});
