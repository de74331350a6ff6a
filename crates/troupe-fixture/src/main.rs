//! `troupe-fixture`: a tiny server with scripted, hostile behaviours, for testing troupe itself
//! against process behaviours real servers will not show on demand.
//!
//! ```text
//! troupe-fixture [--listen HOST:PORT] [--ready-after MS] [--exit-after MS] [--exit-code N]
//!                [--ignore-sigterm] [--fork-grandchild] [--say TEXT]
//! ```
//! - `--listen`: after `--ready-after`, accept TCP connections and answer each with
//!   `HTTP/1.1 200 OK` and body `ok` (printing `fixture got POST /path body=...` for a POST);
//!   without it the fixture never becomes ready to a probe.
//! - `--ready-after MS`: print `fixture ready` (and start listening) after MS milliseconds.
//! - `--exit-after MS` / `--exit-code N`: exit with N (default 1) after MS milliseconds.
//! - `--ignore-sigterm`: ignore SIGTERM (and SIGINT), so only SIGKILL stops it.
//! - `--fork-grandchild`: fork a child that sleeps forever; prints `grandchild pid N`.
//! - `--say TEXT`: print TEXT at start (to test rendered args).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    let mut ready_after = 0u64;
    let mut exit_after = None;
    let mut exit_code = 1;
    let mut ignore_term = false;
    let mut fork = false;
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--listen" => listen = Some(value()),
            "--ready-after" => {
                ready_after = value().parse().unwrap_or_else(|_| die("bad --ready-after"))
            }
            "--exit-after" => {
                exit_after = Some(
                    value()
                        .parse::<u64>()
                        .unwrap_or_else(|_| die("bad --exit-after")),
                )
            }
            "--exit-code" => exit_code = value().parse().unwrap_or_else(|_| die("bad --exit-code")),
            "--ignore-sigterm" => ignore_term = true,
            "--fork-grandchild" => fork = true,
            "--say" => println!("{}", value()),
            other => die(&format!("unknown argument {other}")),
        }
    }
    println!("fixture started, pid {}", std::process::id());
    if ignore_term {
        // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::signal(libc::SIGINT, libc::SIG_IGN);
        }
        println!("ignoring SIGTERM");
    }
    if fork {
        // SAFETY: single-threaded at this point; the child only sleeps.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            p if p > 0 => println!("grandchild pid {p}"),
            _ => die("fork failed"),
        }
    }
    let _ = std::io::stdout().flush();
    if let Some(ms) = exit_after {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            println!("fixture exiting with code {exit_code}");
            let _ = std::io::stdout().flush();
            std::process::exit(exit_code);
        });
    }
    std::thread::sleep(Duration::from_millis(ready_after));
    match listen {
        Some(addr) => {
            let listener =
                TcpListener::bind(&addr).unwrap_or_else(|e| die(&format!("bind {addr}: {e}")));
            println!("fixture ready");
            let _ = std::io::stdout().flush();
            for conn in listener.incoming().flatten() {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).unwrap_or(0);
                // A POST is logged with its body, so tests can see what reached the node.
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = text.lines().next().filter(|l| l.starts_with("POST ")) {
                    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    println!("fixture got {line} body={body}");
                    let _ = std::io::stdout().flush();
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        }
        None => {
            if ready_after > 0 {
                println!("fixture ready");
                let _ = std::io::stdout().flush();
            }
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("troupe-fixture: {msg}");
    std::process::exit(2);
}
