//! Snapshots of the errors for a corpus of broken scenarios (`tests/broken-scenarios`, one file
//! per mistake, named after it). Each is refused by the check that runs before anything starts,
//! with the scenario's (or the broken spec's) file, line and column, and a hint.

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme};

fn render(errs: &[troupe_spec::InvalidSpec]) -> String {
    let mut out = String::new();
    for err in errs {
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .render_report(&mut out, err)
            .expect("rendering into a String cannot fail");
    }
    out
}

#[test]
fn broken_scenarios_are_refused_before_anything_starts() {
    let dir = Path::new("tests/broken-scenarios");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("tests/broken-scenarios exists")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is too small: {files:?}");
    let mut problems = Vec::new();
    for file in files {
        let path = dir.join(&file);
        let name = file.trim_end_matches(".toml").to_string();
        let errs = match troupe::scenario::load(&path) {
            Ok(_) => {
                problems.push(format!(
                    "{} is accepted but should be refused",
                    path.display()
                ));
                continue;
            }
            Err(e) => e,
        };
        let rendered = render(&errs);
        let mut settings = insta::Settings::clone_current();
        settings.set_input_file(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_suffix("scenario");
        settings.bind(|| insta::assert_snapshot!(name.as_str(), rendered));
        for e in errs.iter().flat_map(|i| &i.errors) {
            if e.line == 0 || e.column == 0 {
                problems.push(format!("{file}: no line and column: {e:?}"));
            }
            if e.help.as_deref().is_none_or(str::is_empty) {
                problems.push(format!("{file}: no hint: {e:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_examples_pass_the_check() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for dir in std::fs::read_dir(&examples).unwrap() {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if f.extension().is_some_and(|e| e == "toml") && text.contains("[[step]]") {
                if let Err(e) = troupe::scenario::load(&f) {
                    panic!("{} is refused:\n{}", f.display(), render(&e));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} example scenarios found");
}
