//! Readiness and gating probes. A check answers *ready*, *not yet* (with what it saw, for the
//! timeout message) or *failed* (it can never pass). Checks are cheap: a TCP connect, one
//! HTTP/1.1 GET, reading the new part of a log, or one command.
//!
//! The HTTP client is deliberately tiny (one request per connection, `Connection: close`): it
//! trusts only the run's CA and presents the node's client certificate, which is exactly what
//! probing an mTLS server needs, and it adds no connection pool whose state could hide a
//! restarted server.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::{Probe, ProbeCheck, Url};

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
            ProbeCheck::Http { url, status, body } => {
                if url.https && self.tls.is_none() {
                    return Check::Failed(
                        "an https probe needs TLS: add a [tls] table to the spec".into(),
                    );
                }
                match http_get(url, self.tls.as_ref()).await {
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
                let out = tokio::process::Command::new(program)
                    .args(args)
                    .envs(self.env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&self.dir)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await;
                match out {
                    Ok(o) if o.status.success() => Check::Ready,
                    Ok(o) => {
                        let err = String::from_utf8_lossy(&o.stderr);
                        let out = String::from_utf8_lossy(&o.stdout);
                        let said = err
                            .lines()
                            .chain(out.lines())
                            .rfind(|l| !l.trim().is_empty())
                            .unwrap_or("");
                        Check::NotYet(format!("{}: {said}", crate::sys::describe_exit(&o.status)))
                    }
                    Err(e) => Check::Failed(format!("cannot run {}: {e}", program.display())),
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

/// One HTTP/1.1 GET. Returns the status and the (de-chunked) body.
pub async fn http_get(url: &Url, tls: Option<&Arc<ClientConfig>>) -> Result<(u16, String), String> {
    http_request(url, None, tls).await
}

/// One HTTP/1.1 request: a GET, or a POST of a JSON body.
pub async fn http_request(
    url: &Url,
    post: Option<&str>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let host = crate::plan::url_host(&url.host);
    let request = match post {
        None => format!(
            "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: troupe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.path, url.port
        ),
        Some(body) => format!(
            "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: troupe\r\nAccept: */*\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            url.path,
            url.port,
            body.len()
        ),
    };
    let raw = if url.https {
        let config = tls.ok_or("https needs TLS")?.clone();
        let name =
            ServerName::try_from(url.host.clone()).map_err(|e| format!("server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        exchange(stream, &request).await?
    } else {
        exchange(tcp, &request).await?
    };
    parse_response(&raw)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> Result<Vec<u8>, String> {
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    s.flush().await.map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // Servers may keep the connection open despite `Connection: close`: stop as
                // soon as the response is complete.
                if response_complete(&buf) || buf.len() > (1 << 20) {
                    break;
                }
            }
            // Servers often close without a TLS close_notify; what arrived still counts.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    Ok(buf)
}

/// Whether `buf` holds a whole response, judged by Content-Length or the last chunk.
fn response_complete(buf: &[u8]) -> bool {
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let body = &buf[split + 4..];
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    // 1xx, 204 and 304 have no body.
    let status = head.split_whitespace().nth(1).unwrap_or("");
    status.starts_with('1') || status == "204" || status == "304"
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "incomplete HTTP response".to_string())?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {status_line}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let (code, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((code, body.as_str()), (200, "ok"));
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5\r\nready\r\n0\r\n\r\n";
        let (code, body) = parse_response(raw).unwrap();
        assert_eq!((code, body.as_str()), (503, "not ready"));
        assert!(parse_response(b"garbage").is_err());
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"
        ));
        assert!(response_complete(raw));
    }
}
