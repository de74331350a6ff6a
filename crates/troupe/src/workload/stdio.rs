//! The stdio client protocol: one long-lived program per process, in any language, speaking
//! JSON Lines. troupe writes one request per line on its stdin and reads one answer per line
//! from its stdout:
//!
//! ```text
//! → {"f":"write","key":"k3","value":17,"process":4}
//! ← {"type":"ok"}
//! → {"f":"read","key":"k3","process":4}
//! ← {"type":"ok","value":17}
//! → {"f":"add","value":12,"process":4}
//! ← {"type":"info","error":"timed out waiting for the ack"}
//! ```
//!
//! An answer's `type` is `ok` (with `value` for reads), `fail` (it certainly did not happen)
//! or `info` (unknown); `error` explains the last two. The program gets the node to talk to in
//! its arguments (templates, e.g. `{{ node.urls.client }}`) and `TROUPE_NODE`,
//! `TROUPE_PROCESS` and the run's `TROUPE_*` variables in its environment; what it writes on
//! stderr goes to the workload's client log. A program that answers garbage, exits, or misses
//! the operation's timeout has its call recorded as `info` and is replaced by a fresh one
//! (killed with its whole process group).

use std::os::fd::OwnedFd;
use std::process::Stdio as Pipe;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

use super::client::{BoxFuture, Client, Completion, Context, Target};
use super::generate::Invocation;
use crate::group::GroupLeader;

pub struct Stdio {
    // Dropped first: closing stdin lets a polite program end on its own.
    stdin: pipe::Sender,
    stdout: BufReader<pipe::Receiver>,
    process: u64,
    line: String,
    broken: bool,
    /// Dropping it kills the program's group.
    _leader: GroupLeader,
}

impl Stdio {
    pub async fn spawn(
        command: &[String],
        target: &Target,
        ctx: &Context,
        process: u64,
    ) -> Result<Stdio, String> {
        use std::os::unix::process::CommandExt;
        let tctx = json!({ "node": target.json, "process": process });
        let mut argv = Vec::with_capacity(command.len());
        for a in command {
            argv.push(
                ctx.templates
                    .render(a, &tctx)
                    .map_err(|e| format!("template error in `{a}`: {}", e.message))?,
            );
        }
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..])
            .envs(ctx.env.iter().map(|(k, v)| (k, v)))
            .env("TROUPE_NODE", &target.name)
            .env("TROUPE_PROCESS", process.to_string())
            .stdin(Pipe::piped())
            .stdout(Pipe::piped())
            .process_group(0);
        if let Some(dir) = &ctx.dir {
            c.current_dir(dir);
        }
        match &ctx.log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                c.stderr(f);
            }
            None => {
                c.stderr(Pipe::null());
            }
        }
        let parent = std::process::id();
        // SAFETY: child_setup only makes async-signal-safe calls and does not allocate.
        unsafe {
            c.pre_exec(move || crate::sys::child_setup(parent, None, None));
        }
        let (leader, mut child) = GroupLeader::spawn(&mut c).map_err(|e| {
            let fatal = format!("cannot start `{}`: {e}", argv[0]);
            *ctx.fatal.lock().expect("fatal") = Some(fatal.clone());
            fatal
        })?;
        let stdin: OwnedFd = child.stdin.take().expect("piped stdin").into();
        let stdout: OwnedFd = child.stdout.take().expect("piped stdout").into();
        let stdin = pipe::Sender::from_owned_fd(stdin).map_err(|e| format!("stdin: {e}"))?;
        let stdout = pipe::Receiver::from_owned_fd(stdout).map_err(|e| format!("stdout: {e}"))?;
        Ok(Stdio {
            stdin,
            stdout: BufReader::new(stdout),
            process,
            line: String::new(),
            broken: false,
            _leader: leader,
        })
    }

    async fn run(&mut self, op: &Invocation) -> Completion {
        let mut request = json!({"f": op.f.name(), "process": self.process});
        if let Some(k) = &op.key {
            request["key"] = json!(k);
        }
        if !op.value.is_null() {
            request["value"] = op.value.clone();
        }
        let mut text = request.to_string();
        text.push('\n');
        // Until the request is written, the program has not seen it.
        if let Err(e) = self.stdin.write_all(text.as_bytes()).await {
            self.broken = true;
            return Completion::Fail(format!("the client program's stdin: {e}"));
        }
        self.line.clear();
        match self.stdout.read_line(&mut self.line).await {
            Ok(0) => Completion::Info("the client program exited".into()),
            Ok(_) => parse_answer(&self.line),
            Err(e) => Completion::Info(format!("the client program's stdout: {e}")),
        }
    }
}

/// One answer line; garbage is `info`, since the request was sent.
pub fn parse_answer(line: &str) -> Completion {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Completion::Info(format!(
            "the client program answered {:?}, not a JSON object",
            line.trim_end()
        ));
    };
    let error = || {
        v.get("error")
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    match v.get("type").and_then(Value::as_str) {
        Some("ok") => Completion::Ok(v.get("value").cloned().unwrap_or(Value::Null)),
        Some("fail") => Completion::Fail(error()),
        Some("info") => Completion::Info(error()),
        _ => Completion::Info(format!(
            "the client program answered {}, with no \"type\" of ok, fail or info",
            line.trim_end()
        )),
    }
}

impl Client for Stdio {
    fn call<'a>(&'a mut self, op: &'a Invocation) -> BoxFuture<'a, Completion> {
        Box::pin(self.run(op))
    }

    fn broken(&self) -> bool {
        self.broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_completions() {
        assert_eq!(
            parse_answer("{\"type\":\"ok\",\"value\":17}\n"),
            Completion::Ok(json!(17))
        );
        assert_eq!(
            parse_answer("{\"type\":\"ok\"}"),
            Completion::Ok(Value::Null)
        );
        assert_eq!(
            parse_answer("{\"type\":\"fail\",\"error\":\"no leader\"}"),
            Completion::Fail("no leader".into())
        );
        assert!(
            matches!(parse_answer("hello"), Completion::Info(e) if e.contains("not a JSON object"))
        );
        assert!(
            matches!(parse_answer("{\"type\":\"maybe\"}"), Completion::Info(e) if e.contains("no \"type\""))
        );
    }
}
