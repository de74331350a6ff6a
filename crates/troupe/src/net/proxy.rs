//! Link proxies: one TCP proxy per directed link of a cluster, so each link can be cut,
//! delayed, throttled or reset on its own, without privileges, namespaces or `tc`.
//!
//! This backend is for systems whose peers are configured by address (etcd's
//! `--initial-cluster`, NATS routes, PostgreSQL's `primary_conninfo`): node A is told that peer
//! B lives at the port of the [`LinkProxy`] for A→B, which forwards to B's real port. A
//! partition is then a set of cut links, and a one-way partition is A→B cut while B→A passes.
//!
//! Why it is shaped this way:
//! - **One proxy per directed link, faults switched live.** [`LinkProxy::set`] applies at once
//!   to the connections already open and to those opened later. [`LinkProxy::set_directions`]
//!   treats the two directions of the link's connections apart: *forward* is the bytes A sends
//!   to B, *backward* is B's answers on the same connections.
//! - **[`LinkFault::Cut`] models a partition, not a crash.** TCP hides packet loss, so what an
//!   application sees in a partition is silence: no data, no FIN, no RST. The proxy stops
//!   reading and writing the cut direction; the kernel buffers fill and the sender blocks, as
//!   with an unacknowledged window. Nothing is dropped (dropping bytes from a TCP stream would
//!   show the application a gap no real network can make), so a healed link delivers what
//!   was held, as TCP does after a partition shorter than its retransmission timeout. New
//!   connections are accepted (the listening socket completes the handshake by itself) and
//!   held without a connection to B until the link heals, as a SYN that is retransmitted until
//!   it gets through; while held, a client sees a connected socket that never answers. One
//!   that hung up meanwhile is dropped at the heal, never shown to B.
//!   Limit: the proxy's sockets keep acknowledging, so kernel-level liveness (TCP keepalive,
//!   `TCP_USER_TIMEOUT`, retransmission timeouts) never fires across a cut link; application
//!   heartbeats, which etcd, NATS and PostgreSQL use, do.
//! - **[`LinkFault::Reset`] models a crash or a firewall that rejects**: every open connection
//!   is closed with `SO_LINGER` 0, so both ends get an RST, and new connections are accepted
//!   and reset at once, until the link is healed. It applies to whole connections, whichever
//!   direction it is set on. A target that refuses or resets is passed on the same way.
//! - **[`LinkFault::Degrade`] is precise.** Each chunk is timestamped when it is read and
//!   released at arrival + delay (± jitter), never after a sleep per chunk on tokio's 1 ms
//!   timer (which adds about 1 ms to every setting): a per-direction queue is drained at the
//!   head's due time by a `timerfd`, set early by how late it has been firing and finished by
//!   yielding to the runtime, so releases land within microseconds of their time even where
//!   waking from idle is slow. A round trip through a link degraded both ways adds 2 × delay.
//!   Order is kept: a chunk is never released before the one read before it. A rate limit
//!   models the link's serialization time. See [`Degrade`] for what loss means on TCP.
//! - **[`LinkFault::Pass`] costs little.** Bulk bytes move with `splice(2)` through a pipe,
//!   socket to socket, never copied to user space (a 256 KiB copy loop is the fallback when
//!   splice is unavailable). Small messages are copied through a 64 KiB buffer instead: a
//!   short `read` of a TCP socket shows that it took everything queued, so the proxy can wait
//!   for more at once, where a short splice (which may stop at a full pipe) proves nothing and
//!   needs one more call that fails with `EAGAIN`. A direction switches to splice when a read
//!   fills the buffer, and back when a splice moves less than that. Sockets to both ends have
//!   `TCP_NODELAY`, so the proxy adds no Nagle delay.
//!
//! The proxy runs on the tokio runtime it was started on: one task accepts, one task per
//! connection moves both directions. A connection uses six descriptors (two sockets, a pipe
//! per direction). Dropping the [`LinkProxy`] stops it and closes its connections.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use troupe::net::proxy::{LinkFault, LinkProxy};
//!
//! // Node A reaches node B (127.0.0.1:23380) through 127.0.0.1:23381.
//! let (listen, b) = ("127.0.0.1:23381".parse().unwrap(), "127.0.0.1:23380".parse().unwrap());
//! let a_to_b = LinkProxy::start(listen, b).await?;
//! a_to_b.set(LinkFault::Cut); // partition A from B
//! a_to_b.set(LinkFault::delay(Duration::from_millis(5))); // 5 ms each way, 10 ms a round trip
//! a_to_b.set_directions(LinkFault::Cut, LinkFault::Pass); // A's bytes held, B's answers pass
//! a_to_b.heal();
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long a lost chunk is held back: Linux's minimum TCP retransmission timeout, what a lost
/// segment costs when nothing behind it triggers a fast retransmit.
pub const LOSS_PENALTY: Duration = Duration::from_millis(200);

/// Segment size of the modelled network (Ethernet MSS), for turning per-segment loss into
/// per-chunk loss.
const SEGMENT: usize = 1448;
/// Pipe size asked for the splice path. Without `CAP_SYS_RESOURCE`, pipes past
/// `fs.pipe-user-pages-soft` get the default size: slower, still correct.
const PIPE_SIZE: libc::c_int = 1 << 20;
/// Buffer of the copy loop used when splice is unavailable.
const COPY_BUFFER: usize = 256 << 10;
/// Buffer for small messages, and the read size past which a direction uses splice.
const SMALL_BUFFER: usize = 64 << 10;
/// Largest read of a degraded direction.
const CHUNK: usize = 64 << 10;
/// Longest delay and jitter: longer settings count as this (a held chunk's due time must stay
/// a valid `Instant`).
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most bytes a degraded direction holds before it stops reading (and the sender blocks):
/// about what Linux lets a TCP connection have in flight.
const MAX_HELD: usize = 8 << 20;

/// What a link does to the bytes crossing it, in one direction or both.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LinkFault {
    /// Forward everything as fast as possible.
    #[default]
    Pass,
    /// A partition: nothing crosses and nothing is closed. Held bytes and held new connections
    /// go through when the link heals (see the module documentation).
    Cut,
    /// Reset every connection of the link (both ends get an RST), and every new one, until
    /// the link is healed. Applies to whole connections even when set on one direction.
    Reset,
    /// A slow or flaky link.
    Degrade(Degrade),
}

impl LinkFault {
    /// A link that only adds `delay`, per direction it is set on.
    pub fn delay(delay: Duration) -> LinkFault {
        LinkFault::Degrade(Degrade {
            delay,
            ..Degrade::default()
        })
    }
}

/// A degraded link. `Degrade::default()` forwards everything without delay (through the
/// queue, so it is slower than [`LinkFault::Pass`]).
///
/// A new setting applies to bytes read after it; bytes already held keep their release time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Degrade {
    /// Added to every chunk's trip through this direction (at most a day).
    pub delay: Duration,
    /// Each chunk's delay varies uniformly within ± `jitter` (never below zero). Order is
    /// kept, so a chunk due before the one ahead of it waits for it: in a busy stream the
    /// effective jitter is one-sided.
    pub jitter: Duration,
    /// Probability that a segment is lost, 0.0 to 1.0. TCP retransmits what a network loses,
    /// so loss cannot show up as missing bytes (that would corrupt the stream); it shows up as
    /// a stall. A chunk of `n` bytes counts as `n / 1448` segments, and if any is lost the
    /// chunk, and everything behind it, waits [`LOSS_PENALTY`] more. Use [`LinkFault::Cut`]
    /// for a dead link.
    pub loss: f64,
    /// Link capacity in bytes per second: each chunk takes its serialization time on the
    /// link before its delay starts, and the proxy holds only about the link's bandwidth-delay
    /// product, so the sender is slowed down too. `Some(0)` counts as 1 byte/s.
    pub rate: Option<u64>,
    /// Seeds the randomness of jitter and loss, so a run can be repeated; `None` draws a
    /// fresh seed. Each direction of each connection starts from this seed.
    pub seed: Option<u64>,
}

/// The faults of both directions of a link.
#[derive(Clone, Debug, Default, PartialEq)]
struct Faults {
    forward: LinkFault,
    backward: LinkFault,
}

impl Faults {
    fn resets(&self) -> bool {
        self.forward == LinkFault::Reset || self.backward == LinkFault::Reset
    }

    fn cuts(&self) -> bool {
        self.forward == LinkFault::Cut || self.backward == LinkFault::Cut
    }
}

#[derive(Clone, Copy, Debug)]
enum Dir {
    Forward,
    Backward,
}

impl Dir {
    fn of(self, faults: &Faults) -> &LinkFault {
        match self {
            Dir::Forward => &faults.forward,
            Dir::Backward => &faults.backward,
        }
    }
}

/// A TCP proxy for one directed link: connections to [`local_addr`](Self::local_addr) are
/// forwarded to the target, with the fault set by [`set`](Self::set).
///
/// Dropping it stops accepting and closes every connection it forwards.
#[derive(Debug)]
pub struct LinkProxy {
    local_addr: SocketAddr,
    target: SocketAddr,
    faults: watch::Sender<Faults>,
    task: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `target`, on the current tokio
    /// runtime.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> io::Result<LinkProxy> {
        let listener = TcpListener::bind(listen).await?;
        Self::from_listener(listener, target)
    }

    /// Forwards the connections of an already bound listener to `target`, on the current
    /// tokio runtime (panics outside one).
    pub fn from_listener(listener: TcpListener, target: SocketAddr) -> io::Result<LinkProxy> {
        let local_addr = listener.local_addr()?;
        let (faults, receiver) = watch::channel(Faults::default());
        let task = tokio::spawn(serve(listener, target, receiver));
        Ok(LinkProxy {
            local_addr,
            target,
            faults,
            task,
        })
    }

    /// Where the proxy listens: the address to give the link's source.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Applies `fault` to both directions of the link, on open and new connections.
    pub fn set(&self, fault: LinkFault) {
        self.set_directions(fault.clone(), fault);
    }

    /// Applies `forward` to the bytes the link's source sends to the target and `backward` to
    /// the target's answers on the same connections. New connections are held while either
    /// direction is [`Cut`](LinkFault::Cut) (a handshake needs both).
    pub fn set_directions(&self, forward: LinkFault, backward: LinkFault) {
        self.faults.send_replace(Faults { forward, backward });
    }

    /// Back to [`LinkFault::Pass`] both ways.
    pub fn heal(&self) {
        self.set(LinkFault::Pass);
    }

    /// The faults in force: (forward, backward).
    pub fn faults(&self) -> (LinkFault, LinkFault) {
        let faults = self.faults.borrow();
        (faults.forward.clone(), faults.backward.clone())
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks; aborting it drops them and their sockets.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, faults: watch::Receiver<Faults>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(connection(client, target, faults.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!("link proxy to {target} failed to accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Why a direction stopped before its end of stream.
enum Stop {
    /// The link was set to [`LinkFault::Reset`].
    Reset,
    /// The proxy was dropped.
    Closed,
    /// A socket failed (a reset from one end, most often).
    Io(io::Error),
}

/// Why a forwarding loop returned.
enum Step {
    /// The faults changed: look again.
    Changed,
    /// The source ended and everything read from it was written.
    Eof,
    /// Nothing is held any more (after a degraded period).
    Drained,
}

async fn connection(client: TcpStream, target: SocketAddr, mut faults: watch::Receiver<Faults>) {
    let mut held = false;
    loop {
        let (resets, cuts) = {
            let faults = faults.borrow_and_update();
            (faults.resets(), faults.cuts())
        };
        if resets {
            reset(&client);
            return;
        }
        if !cuts {
            break;
        }
        held = true;
        if faults.changed().await.is_err() {
            return;
        }
    }
    if held && hung_up(&client) {
        // The client gave up during the cut, as its SYNs would never have arrived.
        return;
    }
    let server = match TcpStream::connect(target).await {
        Ok(server) => server,
        Err(e) => {
            tracing::debug!("link proxy failed to connect to {target}: {e}; resetting the client");
            reset(&client);
            return;
        }
    };
    // Forward each chunk as it comes; the endpoints choose their own Nagle.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let forward = pump(&client, &server, faults.clone(), Dir::Forward);
    let backward = pump(&server, &client, faults, Dir::Backward);
    match tokio::try_join!(forward, backward) {
        Ok(_) | Err(Stop::Closed) => {}
        Err(Stop::Reset) => {
            reset(&client);
            reset(&server);
        }
        Err(Stop::Io(e)) => {
            // One end reset or failed: the other end sees a reset too, as without the proxy.
            tracing::debug!("link proxy connection to {target} failed: {e}");
            reset(&client);
            reset(&server);
        }
    }
}

/// Whether the peer of a held connection has gone: closed with nothing sent, or reset.
/// A peek, so the bytes (and tokio's readiness) stay as they are.
fn hung_up(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: peeks at most one byte into a one-byte buffer.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        1.. => false,
        _ => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
    }
}

/// Makes the coming close send an RST instead of a FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Moves one direction of a connection until its end of stream, a reset or an error.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    mut faults: watch::Receiver<Faults>,
    dir: Dir,
) -> Result<(), Stop> {
    let mut pass = Passthrough::default();
    let mut held = Held::default();
    loop {
        let fault = {
            let faults = faults.borrow_and_update();
            if faults.resets() {
                return Err(Stop::Reset);
            }
            dir.of(&faults).clone()
        };
        let step = match fault {
            LinkFault::Reset => return Err(Stop::Reset),
            LinkFault::Cut => {
                faults.changed().await.map_err(|_| Stop::Closed)?;
                continue;
            }
            LinkFault::Pass if held.queue.is_empty() => pass.run(src, dst, &mut faults).await?,
            // Bytes still held keep their release time; newer bytes queue behind them.
            LinkFault::Pass => {
                held.run(src, dst, &mut faults, &Degrade::default(), true)
                    .await?
            }
            LinkFault::Degrade(degrade) => {
                pass.hand_over(&mut held, &degrade).map_err(Stop::Io)?;
                held.run(src, dst, &mut faults, &degrade, false).await?
            }
        };
        match step {
            Step::Changed | Step::Drained => {}
            Step::Eof => {
                // Pass the half-close on.
                // SAFETY: shutdown on a socket we own; it only changes the socket's state.
                unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
                return Ok(());
            }
        }
    }
}

/// Whether the faults changed since last looked at; `Closed` once the proxy is dropped.
fn check(faults: &watch::Receiver<Faults>) -> Result<bool, Stop> {
    faults.has_changed().map_err(|_| Stop::Closed)
}

/// Waits for `ready` (a socket's readiness) or a change of the faults, which wins a tie;
/// true when the faults changed.
async fn ready_or_changed(
    faults: &mut watch::Receiver<Faults>,
    ready: impl std::future::Future<Output = io::Result<()>>,
) -> Result<bool, Stop> {
    tokio::select! {
        biased;
        changed = faults.changed() => {
            changed.map_err(|_| Stop::Closed)?;
            Ok(true)
        }
        ready = ready => ready.map(|()| false).map_err(Stop::Io),
    }
}

/// The fast path: small messages copied through a buffer, bulk spliced socket → pipe →
/// socket (a copy loop where splice is unavailable).
#[derive(Debug, Default)]
struct Passthrough {
    pipe: Option<Pipe>,
    /// Splice failed or is unavailable: use `buf`.
    copy: bool,
    /// Reads are large: splice them (when `pipe` is there).
    bulk: bool,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Passthrough {
    fn pending(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.held) + (self.end - self.start)
    }

    async fn run(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        faults: &mut watch::Receiver<Faults>,
    ) -> Result<Step, Stop> {
        if self.pipe.is_none() && !self.copy {
            match Pipe::new() {
                Ok(pipe) => self.pipe = Some(pipe),
                Err(_) => self.copy = true,
            }
        }
        loop {
            if check(faults)? {
                return Ok(Step::Changed);
            }
            if self.pending() > 0 {
                match self.flush(dst) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if ready_or_changed(faults, dst.writable()).await? {
                            return Ok(Step::Changed);
                        }
                    }
                    Err(e) => return Err(Stop::Io(e)),
                }
                continue;
            }
            match self.fill(src) {
                Ok(0) => return Ok(Step::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if ready_or_changed(faults, src.readable()).await? {
                        return Ok(Step::Changed);
                    }
                }
                Err(e) => return Err(Stop::Io(e)),
            }
        }
    }

    /// Reads once from `src`. Only called with nothing pending: splice from a socket into a
    /// pipe that is not empty may fail with EAGAIN because the *pipe* is full, which would
    /// wrongly clear the socket's readiness.
    fn fill(&mut self, src: &TcpStream) -> io::Result<usize> {
        if let Some(pipe) = self.pipe.as_mut().filter(|_| self.bulk) {
            let (from, to, len) = (src.as_raw_fd(), pipe.write.as_raw_fd(), pipe.size);
            match src.try_io(Interest::READABLE, || splice(from, to, len)) {
                Ok(n) => {
                    pipe.held = n;
                    self.bulk = n >= SMALL_BUFFER;
                    return Ok(n);
                }
                Err(e) if unsupported(&e) => {
                    tracing::debug!("splice unavailable ({e}); link proxy copies instead");
                    self.pipe = None;
                    self.copy = true;
                    self.buf = Vec::new();
                }
                Err(e) => return Err(e),
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0; if self.copy { COPY_BUFFER } else { SMALL_BUFFER }];
        }
        let (fd, buf) = (src.as_raw_fd(), &mut self.buf);
        let mut drained = None;
        let read = src.try_io(Interest::READABLE, || {
            let n = recv(fd, buf)?;
            if n > 0 && n < buf.len() {
                // TCP returns less than asked only when nothing more is queued: report
                // WouldBlock so tokio clears the readiness it saw (data arriving meanwhile
                // sets it again), and keep the count.
                drained = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match drained {
            Some(n) => n,
            None => read?,
        };
        self.bulk = n == self.buf.len() && self.pipe.is_some();
        self.start = 0;
        self.end = n;
        Ok(n)
    }

    /// Writes some of what is pending to `dst`.
    fn flush(&mut self, dst: &TcpStream) -> io::Result<()> {
        let n = match &mut self.pipe {
            Some(pipe) if pipe.held > 0 => {
                let (from, to, len) = (pipe.read.as_raw_fd(), dst.as_raw_fd(), pipe.held);
                let n = dst.try_io(Interest::WRITABLE, || splice(from, to, len))?;
                pipe.held -= n;
                n
            }
            _ => {
                let n = dst.try_write(&self.buf[self.start..self.end])?;
                self.start += n;
                n
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(())
    }

    /// Moves what is pending into `held`, as arrived now (the fault turned to Degrade).
    fn hand_over(&mut self, held: &mut Held, degrade: &Degrade) -> io::Result<()> {
        let now = Instant::now();
        if self.end > self.start {
            held.push(self.buf[self.start..self.end].to_vec(), now, degrade);
            (self.start, self.end) = (0, 0);
        }
        if let Some(pipe) = &mut self.pipe {
            while pipe.held > 0 {
                let mut data = vec![0; pipe.held.min(CHUNK)];
                // SAFETY: reads into a buffer of the given length.
                let n = unsafe {
                    libc::read(pipe.read.as_raw_fd(), data.as_mut_ptr().cast(), data.len())
                };
                if n <= 0 {
                    return Err(if n == 0 {
                        io::ErrorKind::UnexpectedEof.into()
                    } else {
                        io::Error::last_os_error()
                    });
                }
                data.truncate(n as usize);
                pipe.held -= n as usize;
                held.push(data, now, degrade);
            }
        }
        Ok(())
    }
}

/// A non-blocking pipe for splice, and how many bytes it holds.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
    held: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failing to grow the pipe is fine.
        let size = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        if size <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            size: size as usize,
            held: 0,
        })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: splice between two descriptors we own, without offsets.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// The degraded path: chunks timestamped on arrival, released at their due time.
#[derive(Debug, Default)]
struct Held {
    queue: VecDeque<Chunk>,
    /// Bytes in `queue`.
    bytes: usize,
    /// A read buffer of `CHUNK` bytes, kept between reads.
    spare: Option<Vec<u8>>,
    timer: Option<Timer>,
    rng: Rng,
    /// The seed `rng` was last started from.
    seeded: Option<u64>,
    /// When the modelled link has finished sending what it was given (rate limit).
    link_free: Option<Instant>,
    /// Due time of the newest chunk: no chunk overtakes another.
    last_due: Option<Instant>,
    eof: bool,
}

#[derive(Debug)]
struct Chunk {
    due: Instant,
    data: Vec<u8>,
    pos: usize,
}

impl Held {
    /// Queues bytes that arrived at `arrival`, due when `degrade` says.
    fn push(&mut self, data: Vec<u8>, arrival: Instant, degrade: &Degrade) {
        if let Some(seed) = degrade.seed
            && self.seeded != Some(seed)
        {
            self.rng = Rng::seeded(seed);
            self.seeded = Some(seed);
        }
        let n = data.len();
        let mut sent = arrival;
        if let Some(rate) = degrade.rate {
            let start = self.link_free.map_or(arrival, |free| free.max(arrival));
            sent = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            self.link_free = Some(sent);
        }
        let mut due = sent + degrade.delay.min(MAX_DELAY);
        let jitter = degrade.jitter.min(MAX_DELAY).as_nanos() as u64;
        if jitter > 0 {
            let offset = self.rng.below(2 * jitter + 1);
            due = if offset >= jitter {
                due + Duration::from_nanos(offset - jitter)
            } else {
                due.checked_sub(Duration::from_nanos(jitter - offset))
                    .map_or(sent, |d| d.max(sent))
            };
        }
        if degrade.loss > 0.0 {
            let segments = n.div_ceil(SEGMENT).min(i32::MAX as usize) as i32;
            let delivered = (1.0 - degrade.loss.min(1.0)).powi(segments);
            if self.rng.unit() >= delivered {
                due += LOSS_PENALTY;
            }
        }
        if let Some(last) = self.last_due {
            due = due.max(last);
        }
        self.last_due = Some(due);
        self.bytes += n;
        self.queue.push_back(Chunk { due, data, pos: 0 });
    }

    fn recycle(&mut self, mut data: Vec<u8>) {
        if self.spare.is_none() && data.capacity() >= CHUNK {
            data.resize(CHUNK, 0);
            self.spare = Some(data);
        }
    }

    /// Reads `src` (timestamping each chunk) and writes due chunks to `dst` until the faults
    /// change, the source ends and all is written, or (with `until_empty`) nothing is held.
    async fn run(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        faults: &mut watch::Receiver<Faults>,
        degrade: &Degrade,
        until_empty: bool,
    ) -> Result<Step, Stop> {
        let limit = hold_limit(degrade);
        let read_size = read_size(degrade);
        if self.timer.is_none() {
            self.timer = Some(Timer::new().map_err(Stop::Io)?);
        }
        loop {
            // Release what is due, oldest first.
            let now = Instant::now();
            let mut blocked = false;
            while let Some(head) = self.queue.front_mut() {
                if head.due > now {
                    break;
                }
                match dst.try_write(&head.data[head.pos..]) {
                    Ok(0) => return Err(Stop::Io(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        head.pos += n;
                        self.bytes -= n;
                        if head.pos == head.data.len() {
                            let done = self.queue.pop_front().expect("the head is there");
                            self.recycle(done.data);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) => return Err(Stop::Io(e)),
                }
            }
            if self.queue.is_empty() {
                if self.eof {
                    return Ok(Step::Eof);
                }
                if until_empty {
                    return Ok(Step::Drained);
                }
            }
            if check(faults)? {
                return Ok(Step::Changed);
            }
            // Take in what has arrived, timestamped as it is read.
            let mut took = false;
            while !self.eof && self.bytes < limit {
                let mut buf = self.spare.take().unwrap_or_else(|| vec![0; CHUNK]);
                let want = read_size.min(limit - self.bytes);
                match src.try_read(&mut buf[..want]) {
                    Ok(0) => {
                        self.eof = true;
                        self.spare = Some(buf);
                        took = true;
                    }
                    Ok(n) => {
                        let arrival = Instant::now();
                        let data = if n <= CHUNK / 2 {
                            let small = buf[..n].to_vec();
                            self.spare = Some(buf);
                            small
                        } else {
                            buf.truncate(n);
                            buf
                        };
                        self.push(data, arrival, degrade);
                        took = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.spare = Some(buf);
                        break;
                    }
                    Err(e) => return Err(Stop::Io(e)),
                }
            }
            if took {
                continue;
            }
            // Wait for the head's due time, room in `dst`, bytes from `src` or new faults.
            let due = if blocked {
                None
            } else {
                self.queue.front().map(|c| c.due)
            };
            let timer = self.timer.as_mut().expect("made above");
            if let Some(due) = due {
                timer.arm(due).map_err(Stop::Io)?;
            }
            let readable = !self.eof && self.bytes < limit;
            tokio::select! {
                biased;
                changed = faults.changed() => {
                    changed.map_err(|_| Stop::Closed)?;
                    return Ok(Step::Changed);
                }
                ready = dst.writable(), if blocked => ready.map_err(Stop::Io)?,
                fired = timer.wait(), if due.is_some() => fired.map_err(Stop::Io)?,
                ready = src.readable(), if readable => ready.map_err(Stop::Io)?,
            }
        }
    }
}

/// How many bytes a degraded direction holds at most: with a rate limit, about the link's
/// bandwidth-delay product (so the sender feels the limit), else `MAX_HELD`.
fn hold_limit(degrade: &Degrade) -> usize {
    match degrade.rate {
        None => MAX_HELD,
        Some(rate) => {
            let window = degrade.delay + degrade.jitter + Duration::from_millis(50);
            ((rate as f64 * window.as_secs_f64()) as usize).clamp(CHUNK, MAX_HELD)
        }
    }
}

/// Largest read: with a rate limit, 10 ms of the link's time, so a slow link trickles rather
/// than releasing bursts.
fn read_size(degrade: &Degrade) -> usize {
    match degrade.rate {
        None => CHUNK,
        Some(rate) => ((rate / 100) as usize).clamp(1, CHUNK),
    }
}

/// Waits until an [`Instant`] to within microseconds, where tokio's timer rounds up to the
/// next millisecond.
///
/// A one-shot `timerfd` on CLOCK_MONOTONIC (the clock of [`Instant`]) does most of the wait.
/// A timerfd has no slack, but waking a thread from idle still takes time: tens of
/// microseconds on bare metal, over a hundred in a small VM. So the timer learns how late it
/// fires (a moving average), is set that much early, and the rest of the wait, if any, is
/// spent yielding to the runtime until the instant. The spin costs at most that lateness per
/// wait, and nothing where timers are punctual.
#[derive(Debug)]
struct Timer {
    fd: AsyncFd<OwnedFd>,
    /// The instant waited for.
    due: Option<Instant>,
    /// When the timerfd is set to fire, if it is.
    fire_at: Option<Instant>,
    /// How late the timerfd fires, on average, in nanoseconds.
    lateness: u64,
}

/// Bound on the learned lateness, so a stall of the whole machine cannot make the timer spin
/// for long.
const MAX_LATENESS: Duration = Duration::from_micros(500);

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: creates a descriptor that we own at once.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd keeps the descriptor open, and the same, for the AsyncFd's life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Timer {
            fd,
            due: None,
            fire_at: None,
            lateness: 0,
        })
    }

    /// Sets the timer for `due` (at once if it has passed).
    fn arm(&mut self, due: Instant) -> io::Result<()> {
        if self.due == Some(due) {
            return Ok(());
        }
        self.due = Some(due);
        self.fire_at = None;
        let now = Instant::now();
        let Some(fire_at) = due.checked_sub(Duration::from_nanos(self.lateness)) else {
            return Ok(());
        };
        if fire_at <= now {
            return Ok(()); // close enough to spin
        }
        // Relative to now: the kernel's now is later than ours, so it never fires early.
        let left = fire_at - now;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: left.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            },
        };
        // Setting the timer also drops expirations of an earlier setting.
        // SAFETY: valid descriptor and itimerspec; no old value asked for.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        self.fire_at = Some(fire_at);
        Ok(())
    }

    /// Waits until the armed instant. Cancel-safe: a later call goes on waiting for it.
    async fn wait(&mut self) -> io::Result<()> {
        let Some(due) = self.due else { return Ok(()) };
        if let Some(fire_at) = self.fire_at {
            loop {
                let mut guard = self.fd.readable().await?;
                let read = guard.try_io(|fd| {
                    let mut ticks = [0u8; 8];
                    // SAFETY: reads the 8-byte expiry count into a buffer of 8 bytes.
                    let n = unsafe { libc::read(fd.as_raw_fd(), ticks.as_mut_ptr().cast(), 8) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                match read {
                    Ok(read) => {
                        read?;
                        // One-shot: nothing more until the next setting, which makes a new
                        // edge. Clearing now saves a read that would fail.
                        guard.clear_ready();
                        break;
                    }
                    // Readiness left from an earlier setting.
                    Err(_would_block) => continue,
                }
            }
            let late = Instant::now()
                .saturating_duration_since(fire_at)
                .min(MAX_LATENESS);
            let late = late.as_nanos() as i64;
            let average = self.lateness as i64;
            self.lateness = (average + (late - average) / 8) as u64;
            self.fire_at = None;
        }
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
        self.due = None;
        Ok(())
    }
}

/// xorshift64*: enough randomness for jitter and loss, no dependency.
#[derive(Debug)]
struct Rng(u64);

impl Default for Rng {
    fn default() -> Rng {
        Rng(RandomState::new().hash_one(0x5eed_u64) | 1)
    }
}

impl Rng {
    fn seeded(seed: u64) -> Rng {
        // Spread the seed's bits (splitmix64) so that small seeds start well; never zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in 0..n (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    /// Generous bound for things that must happen.
    const DEADLINE: Duration = Duration::from_secs(10);
    /// How long something that must not happen is given to happen anyway.
    const QUIET: Duration = Duration::from_millis(300);

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// A proxy to a listener the test accepts from, a client, and the accepted server side.
    async fn linked() -> (LinkProxy, TcpListener, TcpStream, TcpStream) {
        let target = TcpListener::bind(any_port()).await.unwrap();
        let proxy = LinkProxy::start(any_port(), target.local_addr().unwrap())
            .await
            .unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (mut server, _) = timeout(DEADLINE, target.accept()).await.unwrap().unwrap();
        client.write_all(b"a").await.unwrap();
        assert_eq!(read_byte(&mut server).await, b'a');
        server.write_all(b"z").await.unwrap();
        assert_eq!(read_byte(&mut client).await, b'z');
        (proxy, target, client, server)
    }

    async fn read_byte(stream: &mut TcpStream) -> u8 {
        let mut one = [0];
        timeout(DEADLINE, stream.read_exact(&mut one))
            .await
            .unwrap()
            .unwrap();
        one[0]
    }

    async fn expect_reset(stream: &mut TcpStream) {
        let mut buf = [0; 16];
        let read = timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("no reset in time");
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
    }

    async fn echo_round_trip(stream: &mut TcpStream) -> Duration {
        let start = Instant::now();
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        timeout(DEADLINE, stream.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping");
        start.elapsed()
    }

    /// Sends `len` patterned bytes through an echo behind `proxy` while reading them back.
    async fn echo_unchanged(proxy: &LinkProxy, len: usize) {
        let pattern: Vec<u8> = (0..len)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (mut r, mut w) = client.into_split();
        let sent = pattern.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::with_capacity(len);
        timeout(DEADLINE, r.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        writer.await.unwrap();
        assert!(
            back == pattern,
            "{} bytes came back, not the {} sent, or changed",
            back.len(),
            len
        );
    }

    #[tokio::test]
    async fn bytes_pass_through_unchanged_both_ways() {
        let proxy = LinkProxy::start(any_port(), echo_server().await)
            .await
            .unwrap();
        echo_unchanged(&proxy, 8 << 20).await;
        echo_unchanged(&proxy, 1).await;
    }

    /// Small messages are copied, bulk is spliced: one connection that alternates between
    /// them switches both ways and never stalls or changes a byte.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_messages_and_bulk_alternate_on_one_connection() {
        let proxy = LinkProxy::start(any_port(), echo_server().await)
            .await
            .unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        client.set_nodelay(true).unwrap();
        for round in 0..3u8 {
            for i in 0..50u8 {
                let msg = [round, i, 7, 7];
                client.write_all(&msg).await.unwrap();
                let mut back = [0u8; 4];
                timeout(DEADLINE, client.read_exact(&mut back))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(back, msg, "round {round}, message {i}");
            }
            let bulk: Vec<u8> = (0..4usize << 20).map(|i| (i % 253) as u8 ^ round).collect();
            let (mut r, mut w) = client.split();
            let (wrote, back) = tokio::join!(w.write_all(&bulk), async {
                let mut back = vec![0u8; bulk.len()];
                timeout(DEADLINE, r.read_exact(&mut back))
                    .await
                    .unwrap()
                    .unwrap();
                back
            });
            wrote.unwrap();
            assert!(back == bulk, "round {round}: the bulk came back changed");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_keep_their_order_through_jitter_and_loss() {
        let proxy = LinkProxy::start(any_port(), echo_server().await)
            .await
            .unwrap();
        proxy.set(LinkFault::Degrade(Degrade {
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0001,
            rate: None,
            seed: Some(1),
        }));
        echo_unchanged(&proxy, 4 << 20).await;
    }

    #[tokio::test]
    async fn bytes_survive_switching_faults_mid_stream() {
        let proxy = LinkProxy::start(any_port(), echo_server().await)
            .await
            .unwrap();
        let pattern: Vec<u8> = (0..(4usize << 20)).map(|i| (i % 253) as u8).collect();
        let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (mut r, mut w) = client.into_split();
        let sent = pattern.clone();
        let writer = tokio::spawn(async move {
            for part in sent.chunks(64 << 10) {
                w.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        let mut buf = vec![0; 64 << 10];
        let faults = [
            LinkFault::delay(Duration::from_micros(300)),
            LinkFault::Cut,
            LinkFault::Pass,
        ];
        let mut i = 0;
        loop {
            let n = timeout(DEADLINE, r.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
            // Cut only briefly: set the next fault right after.
            proxy.set(faults[i % 3].clone());
            if faults[i % 3] == LinkFault::Cut {
                proxy.heal();
            }
            i += 1;
        }
        writer.await.unwrap();
        assert!(
            back == pattern,
            "{} bytes came back of {}, or changed",
            back.len(),
            pattern.len()
        );
    }

    #[tokio::test]
    async fn cut_holds_data_both_ways_and_heal_delivers_it() {
        let (proxy, _target, mut client, mut server) = linked().await;
        proxy.set(LinkFault::Cut);
        client.write_all(b"b").await.unwrap();
        server.write_all(b"c").await.unwrap();
        let mut one = [0];
        assert!(
            timeout(QUIET, server.read_exact(&mut one)).await.is_err(),
            "a byte crossed a cut link"
        );
        assert!(
            timeout(QUIET, client.read_exact(&mut one)).await.is_err(),
            "a byte crossed a cut link"
        );
        proxy.heal();
        assert_eq!(read_byte(&mut server).await, b'b');
        assert_eq!(read_byte(&mut client).await, b'c');
    }

    #[tokio::test]
    async fn cut_holds_new_connections_until_healed() {
        let (proxy, target, _client, _server) = linked().await;
        proxy.set(LinkFault::Cut);
        let mut late = TcpStream::connect(proxy.local_addr()).await.unwrap();
        late.write_all(b"d").await.unwrap();
        let gave_up = TcpStream::connect(proxy.local_addr()).await.unwrap();
        drop(gave_up);
        assert!(
            timeout(QUIET, target.accept()).await.is_err(),
            "a connection crossed a cut link"
        );
        proxy.heal();
        let (mut server, _) = timeout(DEADLINE, target.accept()).await.unwrap().unwrap();
        assert_eq!(read_byte(&mut server).await, b'd');
        server.write_all(b"e").await.unwrap();
        assert_eq!(read_byte(&mut late).await, b'e');
        let forwarded = timeout(QUIET, target.accept()).await;
        assert!(
            forwarded.is_err(),
            "a connection closed during the cut reached the target after it"
        );
    }

    #[tokio::test]
    async fn one_way_cut_stops_only_its_direction() {
        let (proxy, _target, mut client, mut server) = linked().await;
        proxy.set_directions(LinkFault::Cut, LinkFault::Pass);
        client.write_all(b"b").await.unwrap();
        server.write_all(b"c").await.unwrap();
        assert_eq!(read_byte(&mut client).await, b'c');
        let mut one = [0];
        assert!(
            timeout(QUIET, server.read_exact(&mut one)).await.is_err(),
            "a byte crossed a cut direction"
        );
        proxy.heal();
        assert_eq!(read_byte(&mut server).await, b'b');
    }

    #[tokio::test]
    async fn reset_resets_open_and_new_connections_until_healed() {
        let (proxy, target, mut client, mut server) = linked().await;
        proxy.set(LinkFault::Reset);
        expect_reset(&mut client).await;
        expect_reset(&mut server).await;
        let mut late = TcpStream::connect(proxy.local_addr()).await.unwrap();
        expect_reset(&mut late).await;
        proxy.heal();
        let mut healed = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (mut server, _) = timeout(DEADLINE, target.accept()).await.unwrap().unwrap();
        healed.write_all(b"f").await.unwrap();
        assert_eq!(read_byte(&mut server).await, b'f');
    }

    #[tokio::test]
    async fn a_refusing_target_resets_the_client() {
        let closed = TcpListener::bind(any_port()).await.unwrap();
        let target = closed.local_addr().unwrap();
        drop(closed);
        let proxy = LinkProxy::start(any_port(), target).await.unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        expect_reset(&mut client).await;
    }

    #[tokio::test]
    async fn delay_adds_to_each_direction_of_a_round_trip() {
        let proxy = LinkProxy::start(any_port(), echo_server().await)
            .await
            .unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        echo_round_trip(&mut client).await;
        let delay = Duration::from_millis(50);
        proxy.set(LinkFault::delay(delay));
        let rtt = echo_round_trip(&mut client).await;
        assert!(
            rtt >= 2 * delay,
            "round trip {rtt:?} with {delay:?} each way"
        );
        proxy.set_directions(LinkFault::delay(delay), LinkFault::Pass);
        let rtt = echo_round_trip(&mut client).await;
        assert!(rtt >= delay, "round trip {rtt:?} with {delay:?} one way");
        proxy.heal();
        echo_round_trip(&mut client).await;
    }

    #[tokio::test]
    async fn rate_limit_slows_a_transfer() {
        let target = TcpListener::bind(any_port()).await.unwrap();
        let proxy = LinkProxy::start(any_port(), target.local_addr().unwrap())
            .await
            .unwrap();
        let rate = 1_000_000;
        let len = 300_000;
        proxy.set(LinkFault::Degrade(Degrade {
            rate: Some(rate),
            ..Degrade::default()
        }));
        let start = Instant::now();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let writer = tokio::spawn(async move {
            client.write_all(&vec![7; len]).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let (mut server, _) = timeout(DEADLINE, target.accept()).await.unwrap().unwrap();
        let mut got = Vec::new();
        timeout(DEADLINE, server.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let elapsed = start.elapsed();
        writer.await.unwrap();
        assert_eq!(got.len(), len);
        let floor = Duration::from_secs_f64(len as f64 / rate as f64);
        assert!(
            elapsed >= floor,
            "{len} bytes at {rate} B/s took {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let (proxy, _target, mut client, mut server) = linked().await;
        drop(proxy);
        let mut buf = [0; 16];
        let read = timeout(DEADLINE, client.read(&mut buf))
            .await
            .expect("still open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let read = timeout(DEADLINE, server.read(&mut buf))
            .await
            .expect("still open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
