//! The shell around `troupe`: completion scripts (`troupe completions bash|zsh|fish`), man
//! pages (`troupe man`), and the hidden `troupe __complete nodes` the scripts call.
//!
//! clap_complete writes static scripts from the command line's definition: subcommands,
//! options, value enums. Targets (`main-1`, `main`, `main:leader`) exist only while a cluster
//! runs, so each script gets a small addition that, for the commands taking targets, asks the
//! binary being completed for the running cluster's names. That query never fails loudly: with
//! no run, or one that does not answer at once, it prints nothing and exits 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;
use troupe_spec::control::Request;
use troupe_spec::exit;

use troupe::SELECTORS;

/// The subcommands whose positional arguments (or `--bridge`) are targets or node names.
const TARGET_COMMANDS: [&str; 12] = [
    "kill",
    "stop",
    "start",
    "restart",
    "pause",
    "resume",
    "logs",
    "isolate",
    "cut",
    "reset",
    "degrade",
    "partition",
];

/// Options of those commands whose value is not a target.
const NON_TARGET_OPTIONS: [&str; 8] = [
    "--state-dir",
    "--spec",
    "--delay",
    "--jitter",
    "--loss",
    "--rate",
    "--lines",
    "-n",
];

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write troupe.1 and one troupe-COMMAND.1 per command into DIR instead of printing
    /// troupe.1 to stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct CompleteArgs {
    #[command(flatten)]
    run: crate::ctl::Where,
    /// What to list.
    #[arg(value_enum)]
    what: Complete,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Complete {
    /// Node names, cluster names and CLUSTER:SELECTOR of the running cluster, one a line.
    Nodes,
}

/// `troupe completions SHELL`: clap's script plus the dynamic completion of targets.
pub fn completions(args: CompletionsArgs) -> i32 {
    let mut out = Vec::new();
    write_completions(args.shell, &mut out);
    let _ = std::io::stdout().lock().write_all(&out);
    exit::OK
}

fn write_completions(shell: Shell, out: &mut Vec<u8>) {
    let mut cmd = crate::Cli::command();
    let mut generated = Vec::new();
    clap_complete::generate(shell, &mut cmd, "troupe", &mut generated);
    let script = String::from_utf8_lossy(&generated);
    let targets = TARGET_COMMANDS.join(" ");
    let full = match shell {
        Shell::Bash => {
            let extra = BASH
                .replace("@TARGET_COMMANDS@", &targets.replace(' ', "|"))
                .replace("@NON_TARGET_OPTIONS@", &NON_TARGET_OPTIONS.join("|"));
            format!("{script}{extra}")
        }
        Shell::Fish => format!("{script}{}", FISH.replace("@TARGET_COMMANDS@", &targets)),
        Shell::Zsh => {
            let script = zsh_with_targets(&script);
            // Autoloaded from $fpath, the file is the body of `_troupe` and its last lines call
            // it: `_troupe_targets` must be defined before them.
            let tail = script
                .find("if [ \"$funcstack[1]\" = \"_troupe\" ]")
                .unwrap_or(script.len());
            format!("{}{ZSH}{}", &script[..tail], &script[tail..])
        }
        _ => script.into_owned(),
    };
    out.extend_from_slice(full.as_bytes());
}

/// clap's zsh script completes free-form arguments with `_default`; for the commands that take
/// targets, their positional arguments complete with `_troupe_targets` instead.
fn zsh_with_targets(script: &str) -> String {
    let mut current: Option<&str> = None;
    let mut lines = Vec::new();
    for line in script.lines() {
        let trimmed = line.trim_start();
        // clap_complete opens each subcommand's arguments with `(NAME)` inside `case $line[1]`.
        if let Some(name) = trimmed
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .filter(|n| !n.contains(' '))
        {
            current = Some(name).filter(|n| TARGET_COMMANDS.contains(n));
        }
        let is_target_arg = current.is_some()
            && line.ends_with(":_default' \\")
            && NON_TARGET_OPTIONS
                .iter()
                .all(|o| !line.contains(&format!("'{o}=")) && !line.contains(&format!("'{o}+")));
        if is_target_arg {
            lines.push(line.replace(":_default' \\", ":_troupe_targets' \\"));
        } else {
            lines.push(line.to_string());
        }
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

const BASH: &str = r#"
# Targets of the running cluster (node names, clusters, CLUSTER:SELECTOR) for the commands that
# take them, from `troupe __complete nodes`; everything else is clap's `_troupe` above.
_troupe_targets() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local cur="${line##*[[:space:]]}"
    local prev="" sub="" w i
    local -a where=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in
            --state-dir|--spec) where+=("$w" "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --state-dir=*|--spec=*) where+=("$w") ;;
            -*) ;;
            *) [[ -z "$sub" && "$w" != ":" ]] && sub="$w" ;;
        esac
    done
    local before="${line%"$cur"}"
    before="${before%"${before##*[![:space:]]}"}"
    prev="${before##*[[:space:]]}"
    case "$sub" in
        @TARGET_COMMANDS@)
            case "$cur" in -*) ;; *)
                case "$prev" in @NON_TARGET_OPTIONS@) ;; *)
                    local names
                    names="$("${COMP_WORDS[0]}" __complete nodes "${where[@]}" 2>/dev/null)"
                    local IFS=$'\n'
                    COMPREPLY=($(compgen -W "$names" -- "$cur"))
                    # Bash splits words at `:`: complete only what follows the last one.
                    if [[ "$cur" == *:* ]]; then
                        local colon="${cur%"${cur##*:}"}"
                        COMPREPLY=("${COMPREPLY[@]#"$colon"}")
                    fi
                    return 0 ;;
                esac ;;
            esac ;;
    esac
    _troupe "$@"
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _troupe_targets -o nosort -o bashdefault -o default troupe
else
    complete -F _troupe_targets -o bashdefault -o default troupe
fi
"#;

const ZSH: &str = r#"# Targets of the running cluster (node names, clusters, CLUSTER:SELECTOR), from
# `troupe __complete nodes`, for the commands that take them.
_troupe_targets() {
    # `words` holds only this argument's part of the line here: read the whole line instead.
    local -a line_words where names
    local i
    line_words=(${(z)LBUFFER})
    for ((i = 2; i <= $#line_words; i++)); do
        case "${line_words[i]}" in
            --state-dir|--spec) where+=("${line_words[i]}" "${(Q)line_words[i+1]}") ;;
            --state-dir=*|--spec=*) where+=("${(Q)line_words[i]}") ;;
        esac
    done
    names=(${(f)"$(troupe __complete nodes "${where[@]}" 2>/dev/null)"})
    compadd -a names
}

"#;

const FISH: &str = r#"
# Targets of the running cluster (node names, clusters, CLUSTER:SELECTOR), from
# `troupe __complete nodes`, for the commands that take them.
function __troupe_targets
    set -l words (commandline -opc)
    set -l where
    for i in (seq 2 (count $words))
        switch $words[$i]
            case --state-dir --spec
                set -a where $words[$i] $words[(math $i + 1)]
            case '--state-dir=*' '--spec=*'
                set -a where $words[$i]
        end
    end
    $words[1] __complete nodes $where 2>/dev/null
end
complete -c troupe -n "__fish_seen_subcommand_from @TARGET_COMMANDS@" -f -a "(__troupe_targets)"
"#;

/// `troupe __complete nodes`: the running cluster's names, or nothing.
pub fn complete(args: CompleteArgs) -> i32 {
    match args.what {
        Complete::Nodes => {
            let mut out = std::io::stdout().lock();
            for name in running_targets(&args.run) {
                let _ = writeln!(out, "{name}");
            }
        }
    }
    exit::OK
}

/// Every node, every cluster, and every CLUSTER:SELECTOR of the run at `w`, if one runs and
/// answers within a second; else nothing.
fn running_targets(w: &crate::ctl::Where) -> Vec<String> {
    let Ok(dir) = w.resolve() else {
        return Vec::new();
    };
    if !troupe::state::is_live(&dir) {
        return Vec::new();
    }
    let status = troupe::control::Client::connect(&dir)
        .and_then(|mut c| c.request(&Request::Status, Duration::from_secs(1)));
    let Some(d) = status.ok().and_then(|r| r.status) else {
        return Vec::new();
    };
    let mut names: Vec<String> = d.nodes.iter().map(|n| n.name.clone()).collect();
    let mut clusters: Vec<&str> = d.nodes.iter().map(|n| n.cluster.as_str()).collect();
    clusters.dedup();
    for c in clusters {
        names.push(c.to_string());
        names.extend(SELECTORS.iter().map(|s| format!("{c}:{s}")));
    }
    names
}

/// `troupe man [--dir DIR]`: roff man pages from the command line's definition.
pub fn man(args: ManArgs) -> i32 {
    let cmd = crate::Cli::command();
    let Some(dir) = args.dir else {
        let mut out = Vec::new();
        if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
            return crate::report_io("render the man page", e);
        }
        let _ = std::io::stdout().lock().write_all(&out);
        return exit::OK;
    };
    match write_man_pages(cmd, &dir) {
        Ok(written) => {
            for p in written {
                println!("{}", p.display());
            }
            exit::OK
        }
        Err(e) => crate::report_io(&format!("write man pages into {}", dir.display()), e),
    }
}

/// troupe.1, and troupe-COMMAND.1 for each visible command; returns the files written.
fn write_man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    let mut write = |name: String, page: clap::Command| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out)?;
        written.push(path);
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write(format!("troupe-{}", sub.get_name()), sub.clone())?;
    }
    write("troupe".to_string(), cmd)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn every_target_command_exists() {
        let cmd = crate::Cli::command();
        for name in TARGET_COMMANDS {
            assert!(
                cmd.find_subcommand(name).is_some(),
                "`{name}` is no subcommand"
            );
        }
    }

    #[test]
    fn zsh_completes_targets_of_kill_but_not_the_state_dir() {
        let mut out = Vec::new();
        write_completions(Shell::Zsh, &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains(":_troupe_targets' \\"), "{script}");
        assert!(
            !script
                .lines()
                .any(|l| l.contains("--state-dir=") && l.contains("_troupe_targets")),
            "{script}"
        );
    }
}
