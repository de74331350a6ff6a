//! The shell around `troupe`: the bash completion script driven by a real bash (subcommands,
//! and the node names and selectors of a running etcd cluster), the hidden `__complete`
//! query with no cluster at all, the zsh and fish scripts' wiring, and the man pages.

use std::path::{Path, PathBuf};
use std::process::Command;

fn troupe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_troupe"))
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One etcd member, detached, in a temporary state directory; down when dropped.
struct Run {
    _dir: tempfile::TempDir,
    state: PathBuf,
}

impl Run {
    fn up() -> Run {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let spec =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/tests/data/one-etcd.toml");
        stdout_of(
            troupe()
                .args(["up", "--detach", "--state-dir"])
                .arg(&state)
                .arg(spec),
        );
        Run { _dir: dir, state }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = troupe()
            .args(["down", "--kill", "--state-dir"])
            .arg(&self.state)
            .output();
    }
}

/// What bash's completion offers for `line` (the cursor at its end), as bash itself would
/// call the function `complete -F` registered: COMP_WORDS split as bash splits them (at
/// spaces, and at `:`, which is in COMP_WORDBREAKS).
fn bash_complete(script: &Path, line: &str, envs: &[(&str, &Path)]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in line.split(' ') {
        let mut parts = w.split(':').peekable();
        while let Some(p) = parts.next() {
            words.push(p.to_string());
            if parts.peek().is_some() {
                words.push(":".to_string());
            }
        }
    }
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prev = if cword > 0 { &words[cword - 1] } else { "" };
    let program = format!(
        r#"source '{script}'
fn=$(complete -p troupe | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
"$fn" troupe '{cur}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script.display(),
        words = quoted.join(" "),
        cur = words[cword],
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_troupe")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", &program])
        .env("PATH", path)
        .env_remove("TROUPE_STATE_DIR")
        .current_dir(std::env::temp_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "bash: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn bash_script(dir: &Path) -> PathBuf {
    let path = dir.join("troupe.bash");
    std::fs::write(&path, stdout_of(troupe().args(["completions", "bash"]))).unwrap();
    path
}

#[test]
fn bash_completes_subcommands_and_the_running_clusters_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let script = bash_script(tmp.path());

    // Static, from clap: subcommands and options.
    assert_eq!(bash_complete(&script, "troupe ki", &[]), ["kill"]);
    let opts = bash_complete(&script, "troupe kill --st", &[]);
    assert_eq!(opts, ["--state-dir"]);

    // Dynamic: the running cluster's nodes, clusters and selectors.
    let run = Run::up();
    let state: &Path = &run.state;
    let env = [("TROUPE_STATE_DIR", state)];
    let targets = bash_complete(&script, "troupe kill ma", &env);
    for t in [
        "main-1",
        "main",
        "main:leader",
        "main:followers",
        "main:majority",
    ] {
        assert!(targets.contains(&t.to_string()), "{t} in {targets:?}");
    }
    assert_eq!(
        bash_complete(&script, "troupe logs main-", &env),
        ["main-1"]
    );
    // Bash splits `main:le` at the colon: only the part after it is completed.
    assert_eq!(
        bash_complete(&script, "troupe kill main:le", &env),
        ["leader"]
    );
    assert_eq!(
        sorted(bash_complete(&script, "troupe restart main:m", &env)),
        ["majority", "minority"]
    );
    // The same selectors as the engine accepts (it lists them when one is unknown).
    let refused = troupe()
        .args(["kill", "main:none-such"])
        .env("TROUPE_STATE_DIR", state)
        .output()
        .unwrap();
    let hint = String::from_utf8_lossy(&refused.stderr);
    let engine: Vec<String> = hint
        .split("selectors: ")
        .nth(1)
        .and_then(|l| l.lines().next())
        .unwrap_or_else(|| panic!("no selector list in: {hint}"))
        .trim_end_matches(')')
        .split(", ")
        .map(|s| format!("main:{s}"))
        .collect();
    let offered: Vec<String> = bash_complete(&script, "troupe kill main", &env)
        .into_iter()
        .filter(|t| t.starts_with("main:"))
        .collect();
    assert_eq!(
        sorted(offered),
        sorted(engine),
        "update SELECTORS in crates/troupe-cli/src/shell.rs"
    );
    // --state-dir on the command line is passed on to the query.
    let line = format!("troupe stop --state-dir {} main-", state.display());
    assert_eq!(bash_complete(&script, &line, &[]), ["main-1"]);
    // Not a target: an option's value, and commands that take none.
    assert!(bash_complete(&script, "troupe degrade --delay ma", &env).is_empty());
    assert!(!bash_complete(&script, "troupe status ma", &env).contains(&"main-1".to_string()));
}

#[test]
fn with_no_running_cluster_completion_offers_no_target_and_says_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = troupe()
        .args(["__complete", "nodes", "--state-dir"])
        .arg(tmp.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // Nor from a directory without any run (no ./.troupe/).
    let out = troupe()
        .args(["__complete", "nodes"])
        .current_dir(tmp.path())
        .env_remove("TROUPE_STATE_DIR")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());

    let script = bash_script(tmp.path());
    assert!(bash_complete(&script, "troupe kill ma", &[]).is_empty());
    // A state directory whose run has ended (its descriptor is still there).
    let run = Run::up();
    let state = run.state.clone();
    stdout_of(troupe().args(["down", "--state-dir"]).arg(&state));
    assert!(state.join("cluster.json").exists());
    let out = troupe()
        .args(["__complete", "nodes", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn zsh_and_fish_scripts_ask_troupe_for_targets() {
    let zsh = stdout_of(troupe().args(["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef troupe"), "{zsh}");
    assert!(zsh.contains("__complete nodes"));
    assert!(zsh.contains("'*::targets -- Nodes, clusters"));
    assert!(
        zsh.lines()
            .filter(|l| l.contains("*::targets"))
            .all(|l| l.ends_with(":_troupe_targets' \\")),
        "{zsh}"
    );
    let fish = stdout_of(troupe().args(["completions", "fish"]));
    assert!(fish.contains("complete -c troupe"));
    assert!(fish.contains("__fish_seen_subcommand_from kill stop start restart pause resume logs"));
    assert!(fish.contains("__complete nodes"));
    // Where the shells are installed, the scripts must at least parse.
    for (shell, script, check) in [("zsh", &zsh, "-n"), ("fish", &fish, "--no-execute")] {
        if Command::new(shell).arg("--version").output().is_ok() {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), script).unwrap();
            let out = Command::new(shell)
                .arg(check)
                .arg(tmp.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn man_pages_render() {
    let page = stdout_of(troupe().arg("man"));
    assert!(page.contains(".TH troupe 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS", ".SH VERSION"] {
        assert!(page.contains(section), "{section} missing:\n{page}");
    }
    assert!(page.contains("troupe\\-kill(1)"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let listed = stdout_of(troupe().args(["man", "--dir"]).arg(dir.path()));
    let kill = dir.path().join("troupe-kill.1");
    assert!(listed.contains(&kill.display().to_string()), "{listed}");
    assert!(dir.path().join("troupe.1").exists());
    assert!(dir.path().join("troupe-completions.1").exists());
    assert!(
        !dir.path().join("troupe-__complete.1").exists(),
        "hidden commands get no page"
    );

    let roff = std::fs::read_to_string(&kill).unwrap();
    assert!(roff.contains(".TH troupe-kill 1"), "{roff}");
    // Rendered by man itself where it is installed, as a reader would see it.
    if Command::new("man").arg("--version").output().is_ok() {
        let out = Command::new("man")
            .arg("-l")
            .arg(&kill)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("troupe-kill - SIGKILL the targets"), "{text}");
        assert!(text.contains("--state-dir"), "{text}");
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
