//! Readiness and gating probes. A check answers *ready*, *not yet* (with what it saw, for the
//! timeout message) or *failed* (it can never pass). Checks are cheap: a TCP connect, one
//! HTTP/1.1 GET, reading the new part of a log, or one command.
//!
//! HTTP goes through [`crate::http`], commands through [`crate::command`] (their own process
//! group, killed whole when an attempt is cut off).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::command::{Cmd, CmdError};

use crate::resolved::{Probe, ProbeCheck};

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Ready,
    NotYet(String),
    Failed(String),
}

/// A rustls client config that trusts `ca` and, if given, presents `cert`/`key`.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("reading {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("adding {} as a root: {e}", ca.display()))?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("reading {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("reading {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Runs the checks of one node. Log probes only look at what was written after `log_offset`,
/// so a restarted node is not judged by its previous life.
pub struct Prober {
    tls: Option<Arc<ClientConfig>>,
    log: PathBuf,
    log_offset: u64,
    log_partial: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Prober {
    pub fn new(
        tls: Option<Arc<ClientConfig>>,
        log: PathBuf,
        log_offset: u64,
        env: Vec<(String, String)>,
        dir: PathBuf,
    ) -> Prober {
        Prober {
            tls,
            log,
            log_offset,
            log_partial: String::new(),
            env,
            dir,
        }
    }

    pub async fn check(&mut self, probe: &Probe) -> Check {
        match &probe.check {
            ProbeCheck::Tcp { host, port } => {
                match TcpStream::connect((host.as_str(), *port)).await {
                    Ok(_) => Check::Ready,
                    Err(e) => Check::NotYet(format!("connect: {e}")),
                }
            }
            ProbeCheck::Http {
                url,
                status,
                body,
                post,
            } => {
                if url.https && self.tls.is_none() {
                    return Check::Failed(
                        "an https probe needs TLS: add a [tls] table to the spec".into(),
                    );
                }
                match crate::http::request(url, post.as_deref(), self.tls.as_ref()).await {
                    Ok((code, text)) => {
                        if code != *status {
                            Check::NotYet(format!("HTTP {code}: {}", first_line(&text)))
                        } else if let Some(re) = body
                            && !re.is_match(&text)
                        {
                            Check::NotYet(format!(
                                "HTTP {code}, body does not match /{re}/: {}",
                                first_line(&text)
                            ))
                        } else {
                            Check::Ready
                        }
                    }
                    Err(e) => Check::NotYet(e),
                }
            }
            ProbeCheck::Log { regex } => match self.new_log_lines() {
                Ok(lines) => {
                    if lines.iter().any(|l| regex.is_match(l)) {
                        Check::Ready
                    } else {
                        Check::NotYet(format!("no log line matches /{regex}/ yet"))
                    }
                }
                Err(e) => Check::NotYet(format!("reading {}: {e}", self.log.display())),
            },
            ProbeCheck::Command { program, args } => {
                let cmd = Cmd {
                    program: program.clone(),
                    args: args.clone(),
                    env: self.env.clone(),
                    dir: self.dir.clone(),
                };
                match crate::command::run(&cmd, std::future::pending()).await {
                    Ok(o) if o.exit.success() => Check::Ready,
                    Ok(o) => {
                        let (err, out) = (o.stderr_text(), o.stdout_text());
                        let said = err
                            .lines()
                            .chain(out.lines())
                            .rfind(|l| !l.trim().is_empty())
                            .unwrap_or("");
                        Check::NotYet(format!("{}: {said}", o.exit))
                    }
                    Err(CmdError::Spawn(e)) => {
                        Check::Failed(format!("cannot run {}: {e}", program.display()))
                    }
                    Err(CmdError::Cut { .. }) => Check::NotYet("cut off".into()),
                }
            }
        }
    }

    /// Complete lines appended to the log since the last call.
    fn new_log_lines(&mut self) -> std::io::Result<Vec<String>> {
        let mut f = match std::fs::File::open(&self.log) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(self.log_offset))?;
        let mut buf = Vec::new();
        f.take(4 << 20).read_to_end(&mut buf)?;
        self.log_offset += buf.len() as u64;
        self.log_partial.push_str(&String::from_utf8_lossy(&buf));
        let mut lines: Vec<String> = self.log_partial.split('\n').map(str::to_string).collect();
        self.log_partial = lines.pop().unwrap_or_default();
        Ok(lines)
    }
}

fn first_line(s: &str) -> String {
    let l = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if l.chars().count() > 200 {
        format!("{}…", l.chars().take(200).collect::<String>())
    } else {
        l.to_string()
    }
}

/// The last `n` lines of a file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Time to wait between attempts, never longer than what is left.
pub fn attempt_timeout(remaining: Duration) -> Duration {
    remaining.clamp(Duration::from_millis(50), Duration::from_secs(2))
}
