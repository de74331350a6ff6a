//! The HTTP client of probes and roles: one HTTP/1.1 request per connection, over plain TCP or
//! over rustls trusting only the run's CA and presenting the node's client certificate.
//!
//! The protocol work (chunked bodies, interim `1xx` responses, bodies that end early) is
//! hyper's low-level client connection, not ours. What is ours is kept deliberately small:
//!
//! - **No pool.** Every request opens its own connection and sends `Connection: close`, so a
//!   restarted server is never hidden behind a connection to its previous life.
//! - **No background task.** The connection is driven inside the request future itself, so a
//!   probe that gives up (it runs under `tokio::time::timeout`) drops the socket with it.
//! - **A bounded body.** Up to [`MAX_BODY`] bytes; a longer body is an error that says so.
//! - **A missing TLS `close_notify` is an end of stream.** Many servers just close the socket.
//!   Bodies framed by `Content-Length` or chunking are still checked for completeness by hyper.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::io;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{text}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 host in `{text}`"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("bad port `{p}` in `{text}`"))?,
            None if https => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(Url {
            https,
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// Largest body read; a longer body is an error that says so, never silently cut.
pub const MAX_BODY: usize = 4 << 20;

/// One request: a GET, or a POST of a JSON body when `post` is Some. Returns the status and the
/// body (lossy UTF-8).
///
/// Over https it needs `tls` (trust the run's CA, present a client cert). Errors are short
/// lowercase strings: `connect: ...`, `TLS handshake: ...`, `TLS: ...` (the server refused us
/// after the handshake, e.g. for want of a client certificate), `request: ...` (no complete
/// response head), `response body: ...`, `body larger than 4 MiB`.
pub async fn request(
    url: &Url,
    post: Option<&str>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(u16, String), String> {
    let request = build_request(url, post)?;
    let tls = match (url.https, tls) {
        (true, None) => return Err("https needs TLS".into()),
        (true, Some(config)) => Some(config.clone()),
        (false, _) => None,
    };
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if let Some(config) = tls {
        let name =
            ServerName::try_from(url.host.clone()).map_err(|e| format!("server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        exchange(CloseNotifyOptional(stream), request).await
    } else {
        exchange(tcp, request).await
    }
}

/// A kept-alive HTTP/1.1 connection, for workloads: many requests, one at a time, over one
/// socket (with TLS when the URL is https). The connection is driven by a task that ends when
/// this is dropped. Unlike [`request`], a restarted server is noticed only when a request on
/// the old socket fails; workloads then open a new connection.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// A request on it failed: its state is unknown, open a new one.
    failed: bool,
    host: HeaderValue,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Connects to `url`'s host and port. An error here means no request was sent.
    pub async fn open(url: &Url, tls: Option<&Arc<ClientConfig>>) -> Result<Connection, String> {
        let host = HeaderValue::try_from(host_header(&url.host, url.port))
            .map_err(|e| format!("bad host `{}`: {e}", url.host))?;
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let builder = hyper::client::conn::http1::Builder::new();
        if url.https {
            let config = tls.ok_or("https needs TLS")?.clone();
            let name =
                ServerName::try_from(url.host.clone()).map_err(|e| format!("server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (sender, conn) = builder
                .handshake::<_, Full<Bytes>>(TokioIo::new(CloseNotifyOptional(stream)))
                .await
                .map_err(|e| format!("http: {}", describe(&e)))?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Connection {
                sender,
                failed: false,
                host,
                driver,
            })
        } else {
            let (sender, conn) = builder
                .handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("http: {}", describe(&e)))?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Connection {
                sender,
                failed: false,
                host,
                driver,
            })
        }
    }

    /// Whether a request failed on it or the server closed it: open a new one.
    pub fn is_broken(&self) -> bool {
        self.failed || self.sender.is_closed()
    }

    /// Sends one request and reads the whole response. An error may come after the request
    /// reached the server: the caller cannot tell whether it took effect.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        // Cancelled halfway (a timeout), the exchange leaves the connection in an unknown
        // state: it counts as failed until the answer is read in full.
        self.failed = true;
        let answer = self.exchange(method, path, body, headers).await;
        self.failed = answer.is_err();
        answer
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| format!("bad method `{method}`: {e}"))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(USER_AGENT, "troupe")
            .header(ACCEPT, "*/*");
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(
                body.unwrap_or_default().as_bytes(),
            )))
            .map_err(|e| format!("bad request for path `{path}`: {e}"))?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {}", describe(&e)))?;
        let response =
            self.sender.send_request(request).await.map_err(|e| {
                tls_error(&e).unwrap_or_else(|| format!("request: {}", describe(&e)))
            })?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    too_large()
                } else {
                    format!("response body: {}", describe(&*e))
                }
            })?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The request, with the headers the hand-written client always sent. `Content-Length` of a
/// POST is added by hyper.
fn build_request(url: &Url, post: Option<&str>) -> Result<Request<Full<Bytes>>, String> {
    let host = HeaderValue::try_from(host_header(&url.host, url.port))
        .map_err(|e| format!("bad host `{}`: {e}", url.host))?;
    let builder = Request::builder()
        .uri(url.path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, "troupe")
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close");
    let built = match post {
        None => builder.method(Method::GET).body(Full::new(Bytes::new())),
        Some(json) => builder
            .method(Method::POST)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(json.as_bytes()))),
    };
    built.map_err(|e| format!("bad request for path `{}`: {e}", url.path))
}

/// `host:port`, with an IPv6 address in brackets.
fn host_header(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// How an exchange failed, before the connection's own error is known.
enum Failure {
    Request(hyper::Error),
    Body(Box<dyn StdError + Send + Sync>),
    TooLarge,
}

fn too_large() -> String {
    format!("body larger than {} MiB", MAX_BODY >> 20)
}

/// Sends `request` over `io` and reads the whole response, driving the connection in this
/// future (no spawned task outlives it).
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| format!("http: {}", describe(&e)))?;
    let response = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(Failure::Request)?;
        let status = response.status().as_u16();
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(Failure::TooLarge);
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    Failure::TooLarge
                } else {
                    Failure::Body(e)
                }
            })?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };

    // Poll the connection and the response side by side. Once the connection is done it is
    // dropped, which closes every channel to the response side, so that side always finishes.
    let mut conn = Some(conn);
    let mut conn_error = None;
    let mut response = pin!(response);
    let result = poll_fn(|cx| {
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(r) = Pin::new(c).poll(cx)
        {
            conn = None;
            conn_error = r.err();
        }
        response.as_mut().poll(cx)
    })
    .await;
    result.map_err(|failure| match failure {
        Failure::TooLarge => too_large(),
        Failure::Request(e) => {
            tls_error(&e).unwrap_or_else(|| format!("request: {}", describe(&e)))
        }
        // hyper tells the body only "connection error"; the connection has the cause.
        Failure::Body(e) => match &conn_error {
            Some(cause) => {
                tls_error(cause).unwrap_or_else(|| format!("response body: {}", describe(cause)))
            }
            None => format!("response body: {}", describe(&*e)),
        },
    })
}

/// An error and its sources, joined by `: `.
fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// `TLS: <rustls error>` if a TLS error is somewhere in the chain (an io::Error shows its
/// inner error but does not return it as its source, so look inside).
fn tls_error(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(e);
    while let Some(e) = current {
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(tls) = e.downcast_ref::<rustls::Error>().or(inner) {
            return Some(format!("TLS: {tls}"));
        }
        current = e.source();
    }
    None
}

/// A TLS stream that reads a close without `close_notify` as a plain end of stream, as most
/// HTTP clients do. hyper still rejects a body that ends before its `Content-Length` or last
/// chunk; only a body delimited by the close itself cannot be checked.
struct CloseNotifyOptional<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for CloseNotifyOptional<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CloseNotifyOptional<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::ServerConfig;
    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    /// Reads one request (head, then a `Content-Length` body) and returns it as text.
    async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.expect("read request");
            assert!(n > 0, "client closed before a whole request head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + length {
            let n = s.read(&mut chunk).await.expect("read request body");
            assert!(n > 0, "client closed before a whole request body");
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    }

    /// A server for one connection: reads the request, writes `parts` one after the other
    /// (each read by the client on its own), then closes. The handle gives back the request it read.
    async fn serve_once(parts: Vec<Vec<u8>>) -> (Url, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let request = read_request(&mut tcp).await;
            for part in parts {
                // The client may rightly hang up early (a body over the limit).
                if tcp.write_all(&part).await.is_err() || tcp.flush().await.is_err() {
                    break;
                }
                // On the test's single-threaded runtime, yielding lets the client read this
                // part on its own before the next one is written (a deferred wake runs after
                // the I/O driver has been polled).
                tokio::task::yield_now().await;
            }
            let _ = tcp.shutdown().await;
            request
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/health")).unwrap();
        (url, server)
    }

    async fn get_once(parts: Vec<Vec<u8>>) -> Result<(u16, String), String> {
        let (url, server) = serve_once(parts).await;
        let result = request(&url, None, None).await;
        server.await.unwrap();
        result
    }

    fn chunked(head: &str, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = head.as_bytes().to_vec();
        for c in chunks {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn chunk_whose_data_holds_the_last_chunk_marker_is_read_whole() {
        // The first chunk's encoding, `4\r\nx0\r\n\r\n`, ends in `0\r\n\r\n`: the old client
        // took that for the end of the body.
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let first = [head.as_bytes(), b"4\r\nx0\r\n\r\n"].concat();
        let rest = b"4\r\nmore\r\n0\r\n\r\n".to_vec();
        let (code, body) = get_once(vec![first, rest]).await.unwrap();
        assert_eq!((code, body.as_str()), (200, "x0\r\nmore"));
    }

    #[tokio::test]
    async fn body_over_one_mib_is_not_cut() {
        let body = "a".repeat(2 << 20);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (code, got) = get_once(vec![response.into_bytes()]).await.unwrap();
        assert_eq!(code, 200);
        assert!(got == body, "got {} bytes, not {}", got.len(), body.len());

        let chunk = vec![b'b'; 64 << 10];
        let chunks: Vec<&[u8]> = (0..32).map(|_| chunk.as_slice()).collect();
        let response = chunked(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &chunks,
        );
        let (_, got) = get_once(vec![response]).await.unwrap();
        assert_eq!(got.len(), 2 << 20);
    }

    #[tokio::test]
    async fn body_of_exactly_the_limit_is_read() {
        let response = [
            format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY}\r\n\r\n").into_bytes(),
            vec![b'c'; MAX_BODY],
        ]
        .concat();
        let (_, got) = get_once(vec![response]).await.unwrap();
        assert_eq!(got.len(), MAX_BODY);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_an_error_naming_it() {
        // Chunked: found out while reading.
        let chunk = vec![b'd'; 1 << 20];
        let chunks: Vec<&[u8]> = (0..5).map(|_| chunk.as_slice()).collect();
        let response = chunked(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &chunks,
        );
        let err = get_once(vec![response]).await.unwrap_err();
        assert_eq!(err, "body larger than 4 MiB");

        // Declared: refused before reading it.
        let response = [
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 5 << 20).into_bytes(),
            vec![b'e'; 5 << 20],
        ]
        .concat();
        let err = get_once(vec![response]).await.unwrap_err();
        assert_eq!(err, "body larger than 4 MiB");
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let response =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (code, body) = get_once(vec![response.to_vec()]).await.unwrap();
        assert_eq!((code, body.as_str()), (200, "ok"));

        // Two interim responses, one with headers, each in its own write.
        let parts = vec![
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n".to_vec(),
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nnot ready".to_vec(),
        ];
        let (code, body) = get_once(parts).await.unwrap();
        assert_eq!((code, body.as_str()), (503, "not ready"));
    }

    #[tokio::test]
    async fn no_content_has_an_empty_body() {
        let (code, body) = get_once(vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()])
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (204, ""));
    }

    #[tokio::test]
    async fn body_delimited_by_close_is_read_to_the_end() {
        let response = b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec();
        let (code, body) = get_once(vec![response]).await.unwrap();
        assert_eq!((code, body.as_str()), (200, "until the end"));
    }

    #[tokio::test]
    async fn server_closing_mid_body_is_an_error() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..".to_vec();
        let err = get_once(vec![response]).await.unwrap_err();
        assert!(err.starts_with("response body: "), "{err}");

        let response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec();
        let err = get_once(vec![response]).await.unwrap_err();
        assert!(err.starts_with("response body: "), "{err}");
    }

    #[tokio::test]
    async fn server_closing_before_a_response_is_an_error() {
        let err = get_once(vec![]).await.unwrap_err();
        assert_eq!(err, "request: connection closed before message completed");
        let err = get_once(vec![b"HTTP/1.1 20".to_vec()]).await.unwrap_err();
        assert!(err.starts_with("request: "), "{err}");
        let err = get_once(vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()])
            .await
            .unwrap_err();
        assert!(err.starts_with("request: "), "{err}");
    }

    #[tokio::test]
    async fn get_sends_the_headers_of_the_old_client() {
        let (url, server) = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ])
        .await;
        request(&url, None, None).await.unwrap();
        let sent = server.await.unwrap();
        let expected = format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: troupe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.port
        );
        assert_eq!(sent, expected);
    }

    #[tokio::test]
    async fn post_sends_the_json_body_and_its_type() {
        let (mut url, server) = serve_once(vec![
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone".to_vec(),
        ])
        .await;
        url.path = "/v3/kv/put?x=1".into();
        let json = r#"{"key":"Zm9v","value":"YmFy"}"#;
        let (code, body) = request(&url, Some(json), None).await.unwrap();
        assert_eq!((code, body.as_str()), (201, "done"));
        let sent = server.await.unwrap();
        let (head, body) = sent.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("POST /v3/kv/put?x=1 HTTP/1.1"));
        let headers: Vec<&str> = lines.collect();
        for h in [
            format!("Host: 127.0.0.1:{}", url.port),
            "User-Agent: troupe".into(),
            "Accept: */*".into(),
            "Connection: close".into(),
            "Content-Type: application/json".into(),
            format!("Content-Length: {}", json.len()),
        ] {
            assert!(
                headers.contains(&h.as_str()),
                "{h} missing from {headers:?}"
            );
        }
        assert_eq!(body, json);
    }

    #[tokio::test]
    async fn refused_connection_says_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = request(&url, None, None).await.unwrap_err();
        assert!(err.starts_with("connect: "), "{err}");
    }

    #[tokio::test]
    async fn dropping_the_request_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (got_request, request_seen) = oneshot::channel();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            read_request(&mut tcp).await;
            got_request.send(()).unwrap();
            // Never answer; the client's side must go away on its own.
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            rest.len()
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        tokio::select! {
            r = request(&url, None, None) => panic!("the server never answers, yet got {r:?}"),
            _ = request_seen => {}
        }
        // The request future is dropped: the server sees the connection close.
        assert_eq!(server.await.unwrap(), 0);
    }

    #[test]
    fn request_future_is_send() {
        fn send<T: Send>(_: &T) {}
        let url = Url::parse("http://127.0.0.1:1/").unwrap();
        send(&request(&url, None, None));
    }

    #[test]
    fn request_target_is_checked_before_connecting() {
        let mut url = Url::parse("http://127.0.0.1:1/").unwrap();
        url.path = "/a b".into();
        let err = build_request(&url, None).unwrap_err();
        assert_eq!(err, "bad request for path `/a b`: invalid uri character");
        // A fragment is never sent.
        url.path = "/health?x=1#top".into();
        let uri = build_request(&url, None).unwrap().uri().to_string();
        assert_eq!(uri, "/health?x=1");
    }

    #[test]
    fn host_header_brackets_ipv6() {
        assert_eq!(host_header("::1", 2379), "[::1]:2379");
        assert_eq!(host_header("127.0.0.1", 80), "127.0.0.1:80");
        assert_eq!(host_header("localhost", 443), "localhost:443");
    }

    #[test]
    fn parses_urls() {
        let u = Url::parse("https://127.0.0.1:2379/health").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "127.0.0.1", 2379, "/health")
        );
        let u = Url::parse("http://[::1]:80").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", "/"));
        let u = Url::parse("https://[fe80::1]/a/b?c=d").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("fe80::1", 443, "/a/b?c=d")
        );
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!((u.https, u.port, u.path.as_str()), (false, 80, "/"));
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("localhost:80").is_err());
        assert!(Url::parse("http://h:notaport/").is_err());
        assert!(Url::parse("http://h:70000/").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("https:///x").is_err());
        assert!(Url::parse("http://[::1/").is_err());
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, made with rcgen.
    struct Pki {
        ca: CertificateDer<'static>,
        server: (CertificateDer<'static>, PrivateKeyDer<'static>),
        client: (CertificateDer<'static>, PrivateKeyDer<'static>),
    }

    fn pki() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |sans: Vec<String>, eku| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![eku];
            let cert = params.signed_by(&key, &issuer).unwrap();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (cert.der().clone(), key)
        };
        Pki {
            ca: ca.der().clone(),
            server: leaf(
                vec!["127.0.0.1".into()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            client: leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth),
        }
    }

    fn roots(pki: &Pki) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        Arc::new(roots)
    }

    fn server_config(pki: &Pki) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(pki), provider.clone())
            .build()
            .unwrap();
        let (cert, key) = (pki.server.0.clone(), pki.server.1.clone_key());
        Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![cert], key)
                .unwrap(),
        )
    }

    fn client_config(pki: &Pki, with_identity: bool) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(pki));
        let config = if with_identity {
            let (cert, key) = (pki.client.0.clone(), pki.client.1.clone_key());
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }

    /// How the TLS test server ends a connection after writing its response.
    #[derive(Clone, Copy)]
    enum Close {
        WithCloseNotify,
        WithoutCloseNotify,
    }

    /// An mTLS server for one connection. The handle says whether the handshake succeeded and,
    /// if so, gives the request it read.
    async fn serve_tls_once(
        config: Arc<ServerConfig>,
        response: &'static [u8],
        close: Close,
    ) -> (Url, JoinHandle<Result<String, String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let accepted = tokio_rustls::TlsAcceptor::from(config)
                .accept(tcp)
                .into_fallible()
                .await;
            let mut tls = match accepted {
                Ok(tls) => tls,
                Err((e, mut tcp)) => {
                    // Drain what the client still sends, so that closing sends a FIN after
                    // the alert rather than a reset that could overtake it.
                    let _ = tcp.read_to_end(&mut Vec::new()).await;
                    return Err(e.to_string());
                }
            };
            let request = read_request(&mut tls).await;
            tls.write_all(response).await.unwrap();
            tls.flush().await.unwrap();
            match close {
                Close::WithCloseNotify => tls.shutdown().await.unwrap(),
                Close::WithoutCloseNotify => {
                    let (mut tcp, _) = tls.into_inner();
                    tcp.shutdown().await.unwrap();
                }
            }
            Ok(request)
        });
        let url = Url::parse(&format!("https://127.0.0.1:{port}/health")).unwrap();
        (url, server)
    }

    #[tokio::test]
    async fn https_with_a_client_certificate_works() {
        let pki = pki();
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (url, server) =
            serve_tls_once(server_config(&pki), response, Close::WithCloseNotify).await;
        let got = request(&url, None, Some(&client_config(&pki, true))).await;
        let sent = server.await.unwrap().unwrap();
        assert!(sent.starts_with("GET /health HTTP/1.1\r\n"), "{sent}");
        assert_eq!(got.unwrap(), (200, "ok".to_string()));
    }

    #[tokio::test]
    async fn https_response_without_close_notify_still_counts() {
        let pki = pki();
        let client = client_config(&pki, true);
        for response in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nok",
        ] {
            let (url, server) =
                serve_tls_once(server_config(&pki), response, Close::WithoutCloseNotify).await;
            let got = request(&url, None, Some(&client)).await;
            server.await.unwrap().unwrap();
            assert_eq!(got, Ok((200, "ok".to_string())));
        }
        // Still, a framed body that ends early is an error.
        let (url, server) = serve_tls_once(
            server_config(&pki),
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok",
            Close::WithoutCloseNotify,
        )
        .await;
        let err = request(&url, None, Some(&client)).await.unwrap_err();
        server.await.unwrap().unwrap();
        assert!(err.starts_with("response body: "), "{err}");
    }

    #[tokio::test]
    async fn https_without_a_client_certificate_is_a_tls_error() {
        let pki = pki();
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (url, server) =
            serve_tls_once(server_config(&pki), response, Close::WithCloseNotify).await;
        let err = request(&url, None, Some(&client_config(&pki, false)))
            .await
            .unwrap_err();
        let refused = server.await.unwrap().unwrap_err();
        assert!(refused.contains("certificate"), "{refused}");
        assert!(err.starts_with("TLS"), "{err}");
    }

    #[tokio::test]
    async fn https_server_of_another_ca_fails_the_handshake() {
        let (ours, theirs) = (pki(), pki());
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (url, server) =
            serve_tls_once(server_config(&theirs), response, Close::WithCloseNotify).await;
        let err = request(&url, None, Some(&client_config(&ours, true)))
            .await
            .unwrap_err();
        assert!(server.await.unwrap().is_err());
        assert!(err.starts_with("TLS handshake: "), "{err}");
    }

    #[tokio::test]
    async fn https_without_a_tls_config_is_an_error() {
        // Checked before connecting: never a plain-text request to an https URL.
        let url = Url::parse("https://127.0.0.1:1/").unwrap();
        assert_eq!(
            request(&url, None, None).await.unwrap_err(),
            "https needs TLS"
        );
    }
}
