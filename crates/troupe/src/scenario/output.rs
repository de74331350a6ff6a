//! Commands of scenario steps (through the one command runner, [`crate::command`]) and how
//! their output is judged and shown.

use std::time::Instant;

use troupe_spec::scenario::Expect;

use super::{Ctx, Failure, Runner, fail};

impl Runner<'_> {
    /// Runs a command in its own process group with the run's variables, until `deadline`
    /// or an interrupt; whatever it started goes with it.
    pub(super) fn command(
        &self,
        argv: &[String],
        ctx: &Ctx,
        deadline: Instant,
    ) -> Result<Output, Failure> {
        let Some((program, args)) = argv.split_first() else {
            return fail("empty command");
        };
        let cmd = crate::command::Cmd {
            program: program.into(),
            args: args.to_vec(),
            env: self.env(ctx),
            dir: self.dir.clone(),
        };
        let interrupt = self.interrupt.clone();
        let cancel = async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = interrupt.reached(1) => {}
            }
        };
        match self.rt.block_on(crate::command::run(&cmd, cancel)) {
            Ok(o) => Ok(Output {
                status: o.exit.code(),
                stdout: o.stdout_text(),
                stderr: o.stderr_text(),
            }),
            Err(crate::command::CmdError::Spawn(e)) => fail(format!("cannot run `{program}`: {e}")),
            Err(crate::command::CmdError::Cut { stdout, stderr }) => {
                let why = if self.interrupt.level() > 0 {
                    "interrupted"
                } else {
                    "did not finish before the step's deadline"
                };
                fail(format!(
                    "`{}` {why}{}",
                    short(&argv.join(" ")),
                    tail_of(
                        &String::from_utf8_lossy(&stdout),
                        &String::from_utf8_lossy(&stderr)
                    )
                ))
            }
        }
    }
}

pub(super) struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Expectations see output without its trailing newlines, so `^hello$` matches `hello\n`
/// (Rust's `$` does not match before a final newline).
pub(super) fn check(out: &Output, expect: &Expect) -> Result<(), Failure> {
    let want = expect.status.unwrap_or(0);
    if out.status != Some(want) {
        let got = out.status.map_or("killed by a signal".to_string(), |c| {
            format!("exit status {c}")
        });
        return fail(format!(
            "{got}, expected {want}{}",
            tail_of(&out.stdout, &out.stderr)
        ));
    }
    for (what, re, text) in [
        ("stdout", &expect.stdout, &out.stdout),
        ("stderr", &expect.stderr, &out.stderr),
    ] {
        if let Some(re) = re
            && !regex::Regex::new(re).is_ok_and(|r| r.is_match(text.trim_end_matches(['\n', '\r'])))
        {
            let seen = if text.trim().is_empty() {
                format!(" ({what} was empty)")
            } else {
                String::new()
            };
            return fail(format!(
                "{what} does not match /{re}/{seen}{}",
                tail_of(&out.stdout, &out.stderr)
            ));
        }
    }
    Ok(())
}

pub(super) fn last_line(s: &str) -> String {
    short(s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

pub(super) fn short(s: &str) -> String {
    let one: String = s.trim().replace('\n', "\\n");
    if one.chars().count() > 160 {
        format!("{}…", one.chars().take(160).collect::<String>())
    } else {
        one
    }
}

pub(super) fn tail_of(stdout: &str, stderr: &str) -> String {
    let mut s = String::new();
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            s.push_str(&format!("\n  {name}:"));
            for l in &lines[lines.len().saturating_sub(5)..] {
                s.push_str(&format!("\n    | {}", short(l)));
            }
        }
    }
    s
}
