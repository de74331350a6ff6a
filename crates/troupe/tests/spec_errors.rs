//! Snapshots of the errors for a corpus of broken specs (`tests/broken-specs`, one file per
//! mistake, named after what it reproduces), rendered as `troupe` shows them. Every spec error must
//! name the file, line, column and dotted key, and say how to fix it.

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme};
use troupe_spec::{InvalidSpec, Spec};

/// Errors that cannot name a key: the TOML does not parse.
const WITHOUT_KEY: [&str; 2] = ["not-utf8", "toml-syntax-error"];

fn load(path: &str) -> Result<Spec, InvalidSpec> {
    let spec = Spec::from_path(path)?;
    troupe::plan::check(&spec)?;
    Ok(spec)
}

fn render(err: &InvalidSpec) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, err)
        .expect("rendering into a String cannot fail");
    out
}

#[test]
fn broken_specs_are_explained() {
    let mut files: Vec<_> = std::fs::read_dir("tests/broken-specs")
        .expect("tests/broken-specs exists")
        .map(|e| {
            e.expect("readable directory entry")
                .file_name()
                .into_string()
                .unwrap()
        })
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus is empty");

    // Every file is snapshotted before any property is asserted, so that one run shows all of
    // them.
    let mut problems = Vec::new();
    for file in files {
        let path = format!("tests/broken-specs/{file}");
        let name = Path::new(&file)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let err = match load(&path) {
            Ok(_) => {
                problems.push(format!("{path} is accepted but should be refused"));
                continue;
            }
            Err(e) => e,
        };
        let rendered = render(&err);
        let mut settings = insta::Settings::clone_current();
        settings.set_input_file(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path));
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!(name.as_str(), rendered));

        if err.errors.is_empty() {
            problems.push(format!("{path}: an error without problems"));
        }
        for e in &err.errors {
            if e.file != Path::new(&path) {
                problems.push(format!("{path}: error names another file: {e:?}"));
            }
            if e.line == 0 || e.column == 0 {
                problems.push(format!("{path}: no line and column: {e:?}"));
            }
            if e.help.is_none() {
                problems.push(format!("{path}: no hint: {e:?}"));
            }
            if e.key.is_none() && !WITHOUT_KEY.contains(&name.as_str()) {
                problems.push(format!("{path}: no key: {e:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
