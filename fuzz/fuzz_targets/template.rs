//! `Templates::render` on arbitrary template text against a fixed context (see
//! `troupe_fuzz::template_context`); errors are explained (`explain`, `missing_name`), which
//! slices the text by minijinja's ranges, so this covers troupe's code as well as minijinja's.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use troupe::template::Templates;

static TEMPLATES: LazyLock<Templates> = LazyLock::new(Templates::new);
static CONTEXT: LazyLock<Json> = LazyLock::new(troupe_fuzz::template_context);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = TEMPLATES.render(text, &CONTEXT) {
        // What the engine does with the range: show that part of the template.
        if let Some(r) = e.range {
            assert!(
                text.get(r.clone()).is_some(),
                "error range {r:?} is not a slice of the template"
            );
        }
        let _ = format!("{} {:?} {:?}", e.message, e.help, e.snippet);
    }
});
