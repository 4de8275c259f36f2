//! The Prometheus endpoint (`metrics_listen`): a small HTTP/1.1 listener
//! that answers `GET /metrics` with the daemon's counters (see
//! [`exposition`]) and `GET /` with a link to them.
//!
//! It is an operator's door, not a web server, and it is built to be
//! boring under abuse:
//!
//! - only `GET` and `HEAD` of `/` and `/metrics`; everything else is a 404
//!   or 405, and every connection carries exactly one request
//!   (`Connection: close`);
//! - a request head larger than [`MAX_REQUEST`] is answered 431 without
//!   reading further, and one that is not complete within
//!   [`REQUEST_DEADLINE`] is answered 408 — a slow or idle client holds a
//!   connection for that long at most;
//! - at most [`MAX_CONNECTIONS`] connections are served at once, each on a
//!   thread of its own; more are closed at accept. A flood can keep the
//!   endpoint busy, never the tunnel: the endpoint shares nothing with the
//!   data path but the monitor's snapshot.
//!
//! Why not `tiny_http`: it starts a thread per waiting connection without a
//! limit and has no read deadline, so idle connections would grow threads
//! without bound. The request head is parsed by `httparse` (hyper's
//! parser); the response is a few fixed lines.

pub mod exposition;

use crate::rt::monitor::Monitor;
use crate::util::shutdown::Shutdown;
use crate::util::thread::{self, ThreadCount};
use exposition::Identity;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// A request must be complete this soon after its connection was accepted.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 16;
/// Writing a response may block this long before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's remaining bytes.
const DRAIN_TIME: Duration = Duration::from_millis(200);
/// Headers parsed at most; a request with more is answered 431.
const MAX_HEADERS: usize = 32;

/// What the endpoint reports on: the daemon's monitor and what it is.
#[derive(Clone)]
pub struct Source {
    /// The running daemon's sessions and counters.
    pub monitor: Monitor,
    /// Role, cipher, authentication, for `mtcp_build_info`.
    pub identity: Identity,
}

/// A running endpoint. Dropping it (or [`stop`](Self::stop)) closes the
/// listener; connections being served finish within their deadline.
pub struct MetricsServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    conns: ThreadCount,
    accept: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and starts serving. Warns when the address is not
    /// loopback: the series name peers, session ids and traffic volumes.
    pub fn start(addr: SocketAddr, source: Source) -> io::Result<MetricsServer> {
        let listener = crate::util::net::listen(addr)?;
        let local = listener.local_addr()?;
        let shutdown = Shutdown::new();
        // The waker and the accept loop are counted apart from connections,
        // whose count is the cap.
        let own = ThreadCount::default();
        crate::util::net::wake_on_shutdown(&own, &shutdown, local)?;
        let (sd, conns) = (shutdown.clone(), ThreadCount::default());
        let counted = conns.clone();
        let accept = thread::spawn_task(&own, "metrics-accept".into(), move || {
            accept_loop(&listener, &sd, &source, &counted);
        });
        let accept = match accept {
            Ok(j) => j,
            Err(e) => {
                shutdown.trigger();
                return Err(e);
            }
        };
        log::info!("metrics endpoint on http://{local}/metrics");
        if !local.ip().is_loopback() {
            log::warn!(
                "metrics endpoint listens on {local}, not on loopback: anyone who reaches it sees \
                 peer addresses, session ids and traffic volumes; bind metrics_listen to \
                 127.0.0.1 or firewall the port"
            );
        }
        Ok(MetricsServer {
            addr: local,
            shutdown,
            conns,
            accept: Some(accept),
        })
    }

    /// The address it listens on (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections being served now (at most [`MAX_CONNECTIONS`]).
    pub fn connections(&self) -> usize {
        self.conns.live()
    }

    /// Closes the listener and waits until it is closed, so the address can
    /// be bound again at once (a SIGHUP that moves the endpoint).
    pub fn stop(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.shutdown.trigger();
        if let Some(j) = self.accept.take() {
            let _ = j.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.close();
    }
}

fn accept_loop(listener: &TcpListener, shutdown: &Shutdown, source: &Source, conns: &ThreadCount) {
    for conn in listener.incoming() {
        if shutdown.is_triggered() {
            return;
        }
        let sock = match conn {
            Ok(s) => s,
            Err(e) => {
                log::debug!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if conns.live() >= MAX_CONNECTIONS {
            log::debug!("metrics: {MAX_CONNECTIONS} connections open, closing a new one");
            continue;
        }
        let source = source.clone();
        let spawned = thread::spawn_task(conns, "metrics-http".into(), move || {
            serve(sock, &source);
        });
        if let Err(e) = spawned {
            log::debug!("metrics: cannot start a connection thread: {e}");
        }
    }
}

/// One HTTP response: status, content type and body.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
            allow: false,
        }
    }
}

/// Reads one request head within the deadline and answers it.
fn serve(mut sock: TcpStream, source: &Source) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    if sock.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let (response, head_only) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break (
                Response::text(408, "Request Timeout", "request timeout"),
                false,
            );
        }
        match sock.read(&mut buf[len..]) {
            Ok(0) => return,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if crate::util::net::is_timeout(&e) => {
                break (
                    Response::text(408, "Request Timeout", "request timeout"),
                    false,
                );
            }
            Err(_) => return,
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("");
                let path = req.path.unwrap_or("");
                break (route(method, path, source), method == "HEAD");
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                let r = Response::text(431, "Request Header Fields Too Large", "request too large");
                break (r, false);
            }
            Err(_) => break (Response::text(400, "Bad Request", "bad request"), false),
        }
    };
    let _ = write_response(&mut sock, &response, head_only);
    let _ = sock.shutdown(Direction::Write);
    drain(&mut sock);
}

/// Reads (a bounded amount of) what the client sent beyond its request
/// head before the socket closes: closing with unread bytes makes the kernel
/// send a reset, which can destroy the response before the client reads it.
fn drain(sock: &mut TcpStream) {
    const LIMIT: usize = 64 * 1024;
    let mut sink = [0u8; 4096];
    let mut total = 0;
    let until = Instant::now() + DRAIN_TIME;
    while total < LIMIT {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match sock.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// What a request for `path` with `method` gets.
fn route(method: &str, path: &str, source: &Source) -> Response {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path != "/" && path != "/metrics" {
        return Response::text(404, "Not Found", "not found: try /metrics");
    }
    if method != "GET" && method != "HEAD" {
        let mut r = Response::text(405, "Method Not Allowed", "only GET");
        r.allow = true;
        return r;
    }
    if path == "/" {
        return Response {
            status: 200,
            reason: "OK",
            content_type: "text/html; charset=utf-8",
            body: INDEX.into(),
            allow: false,
        };
    }
    match exposition::render(&source.monitor.snapshot(), &source.identity) {
        Ok(body) => Response {
            status: 200,
            reason: "OK",
            content_type: exposition::CONTENT_TYPE,
            body,
            allow: false,
        },
        Err(e) => {
            log::warn!("metrics: cannot render the exposition: {e}");
            Response::text(500, "Internal Server Error", "cannot render metrics")
        }
    }
}

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>MTCP</title></head>\
<body><h1>MTCP</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

fn write_response(sock: &mut TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        r.status,
        r.reason,
        r.content_type,
        r.body.len()
    );
    if r.allow {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes())?;
    if !head_only {
        sock.write_all(r.body.as_bytes())?;
    }
    sock.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn source() -> Source {
        Source {
            monitor: Monitor::new(),
            identity: Identity {
                role: Role::Server,
                cipher: "none",
                authenticated: false,
            },
        }
    }

    #[test]
    fn routes() {
        let s = source();
        assert_eq!(route("GET", "/metrics", &s).status, 200);
        assert_eq!(route("GET", "/metrics?x=1", &s).status, 200);
        assert!(
            route("GET", "/metrics", &s)
                .body
                .contains("mtcp_sessions 0")
        );
        assert_eq!(route("HEAD", "/", &s).status, 200);
        assert!(route("GET", "/", &s).body.contains("href=\"/metrics\""));
        assert_eq!(route("GET", "/metricsx", &s).status, 404);
        assert_eq!(route("GET", "/../etc/passwd", &s).status, 404);
        let post = route("POST", "/metrics", &s);
        assert_eq!((post.status, post.allow), (405, true));
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = sock.write_all(request);
        let mut answer = String::new();
        let _ = sock.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn serves_and_refuses_over_a_socket() {
        let server =
            MetricsServer::start("127.0.0.1:0".parse().expect("addr"), source()).expect("start");
        let addr = server.local_addr();
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.contains("\r\n\r\n# HELP "), "{ok}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        let bad = exchange(addr, b"\x16\x03\x01garbage\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let mut huge = b"GET /".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 3 * MAX_REQUEST));
        let big = exchange(addr, &huge);
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let hdrs = exchange(addr, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert!(hdrs.starts_with("HTTP/1.1 431 "), "{hdrs}");
        server.stop();
        // The port is free again at once.
        let again = MetricsServer::start(addr, source()).expect("rebind");
        drop(again);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }
}
