//! Links behind a load balancer, without one installed: what the client and
//! server do so that a balancer in front of several servers can keep every
//! session on one of them (README, Scale out). `tests/fleet.rs` runs the
//! same with a real HAProxy.
//!
//! - The session id sits at offset 11 of every link's first bytes, on plain
//!   and secured links alike: a balancer routes by it.
//! - A session starts with one link alone; the others follow once it is
//!   welcomed, each saying in its HELLO that it joins (so a stick table has
//!   learnt the session's server before they arrive).
//! - A joining link that reaches a server which does not know the session is
//!   refused there, and the client tries again instead of losing the session.
//! - A draining server refuses new connections at once (a balancer then
//!   sends them elsewhere) while its open streams go on.

mod common;

use common::*;
use mtcp::proto::frame::{self, Frame, HELLO_JOIN, SESSION_ID_OFFSET};
use mtcp::proto::handshake::{self, PeerLimits};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const SECRET: &str = "secret = \"balancer-test-secret-0123456789\"";
/// Bytes a balancer must have seen to route a link: the session id's end.
const ROUTING_BYTES: usize = SESSION_ID_OFFSET + 8;

/// The first bytes of a connection and the server it was sent to.
type Routed = ([u8; ROUTING_BYTES], usize);

/// A balancer with no stickiness at all: each new connection goes to the
/// next server in turn. It records the first [`ROUTING_BYTES`] of every
/// connection and which server it went to.
struct RoundRobin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Routed>>>,
}

impl RoundRobin {
    fn start(servers: Vec<SocketAddr>) -> RoundRobin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind balancer");
        let addr = listener.local_addr().expect("balancer addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let next = AtomicUsize::new(0);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut inbound) = conn else { continue };
                let mut head = [0u8; ROUTING_BYTES];
                let _ = inbound.set_read_timeout(Some(Duration::from_secs(10)));
                if inbound.read_exact(&mut head).is_err() {
                    continue;
                }
                let _ = inbound.set_read_timeout(None);
                let to = next.fetch_add(1, Ordering::SeqCst) % servers.len();
                record.lock().unwrap().push((head, to));
                let Ok(mut outbound) = TcpStream::connect(servers[to]) else {
                    continue;
                };
                if outbound.write_all(&head).is_ok() {
                    std::thread::spawn(move || relay(inbound, outbound));
                }
            }
        });
        RoundRobin { addr, seen }
    }

    /// The session id at offset 11 of each connection, and its server.
    fn routed(&self) -> Vec<(u64, usize)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(head, to)| (session_id_at_offset(head), *to))
            .collect()
    }
}

fn session_id_at_offset(head: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[SESSION_ID_OFFSET..SESSION_ID_OFFSET + 8]);
    u64::from_be_bytes(id)
}

/// Two servers behind a round-robin balancer and a client of 4 links: the
/// links that land on the wrong server are refused there and tried again,
/// until the whole session is on the server its first link reached.
fn astray_links_are_retried(secured: bool) {
    let extra = if secured { SECRET } else { "" };
    let backend = Backend::start();
    let servers = [
        start_server_toml(&server_toml(backend.addr, 4, extra)),
        start_server_toml(&server_toml(backend.addr, 4, extra)),
    ];
    let balancer = RoundRobin::start(servers.iter().map(|s| s.addr).collect());
    let client = start_client_toml(&client_toml(
        balancer.addr,
        4,
        true,
        &format!("{extra}\nreconnect_min_ms = 20\nreconnect_max_ms = 100"),
    ));
    let all_links_up = wait_until(Duration::from_secs(20), || {
        client.monitor.snapshot().link_count() == 4
    });
    assert!(all_links_up, "{:?}", client.monitor.snapshot());
    let id = client.monitor.snapshot().sessions[0].id;
    let home = servers
        .iter()
        .position(|s| s.monitor.snapshot().sessions.iter().any(|x| x.id == id))
        .expect("no server holds the session");
    // The server counts a link up a moment after the client does.
    wait_until(Duration::from_secs(10), || {
        servers[home].monitor.snapshot().link_count() == 4
    });
    let (home_snap, other_snap) = (
        servers[home].monitor.snapshot(),
        servers[1 - home].monitor.snapshot(),
    );
    assert_eq!(home_snap.link_count(), 4, "{home_snap:?}");
    assert!(
        other_snap.sessions.is_empty(),
        "a second half of the session started on the other server: {other_snap:?}"
    );
    let routed = balancer.routed();
    assert!(
        routed.iter().all(|(seen, _)| *seen == id),
        "a link carried another id at offset {SESSION_ID_OFFSET} than its session {id:016x}: {routed:x?}"
    );
    assert!(
        routed.iter().any(|(_, to)| *to != home),
        "the balancer never sent a link astray, so nothing was tested: {routed:?}"
    );
    assert!(
        !log_lines(&[
            &format!("session {id:016x}"),
            "sent the link to another one"
        ])
        .is_empty(),
        "the client did not say why a link was refused"
    );
    upload(&client, 21, 16 * MIB);
    download(&client, 22, 16 * MIB);
}

#[test]
fn plain_links_a_balancer_sends_astray_are_retried_on_the_sessions_server() {
    within(Duration::from_secs(90), || astray_links_are_retried(false));
}

#[test]
fn secured_links_a_balancer_sends_astray_are_retried_on_the_sessions_server() {
    within(Duration::from_secs(90), || astray_links_are_retried(true));
}

/// Reads one plain handshake frame (a HELLO) from a client's link.
fn read_hello(sock: &mut TcpStream) -> frame::Hello {
    let mut buf = [0u8; handshake::HANDSHAKE_BUF_LEN];
    sock.read_exact(&mut buf[..4]).expect("HELLO length");
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    sock.read_exact(&mut buf[4..4 + len]).expect("HELLO body");
    match handshake::decode_frame(&buf[..4 + len]) {
        Ok(Frame::Hello(h)) => h,
        other => panic!("expected HELLO, got {other:?}"),
    }
}

fn welcome(sock: &mut TcpStream) {
    let limits = PeerLimits {
        max_payload: 65536,
        window: 1 << 20,
    };
    let mut out = Vec::new();
    frame::encode(&handshake::welcome(limits), &mut out);
    sock.write_all(&out).expect("WELCOME");
}

/// The next connection of session `id` that `server` accepts, with its
/// HELLO, within `limit`; `None` if none came. A connection of another
/// session (another test's client retrying a port this listener took over
/// after its server closed) is dropped.
fn accept_of(server: &TcpListener, id: u64, limit: Duration) -> Option<(TcpStream, frame::Hello)> {
    server.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match server.accept() {
            Ok((mut sock, _)) => {
                sock.set_nonblocking(false).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let hello = read_hello(&mut sock);
                if hello.session_id == id {
                    return Some((sock, hello));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}

#[test]
fn a_session_starts_with_one_link_and_the_others_join_once_it_is_welcomed() {
    within(Duration::from_secs(30), || {
        // A stand-in server that answers by hand, to see the order.
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = start_client_toml(&client_toml(server.local_addr().unwrap(), 4, true, ""));
        let mut id = None;
        assert!(wait_until(Duration::from_secs(10), || {
            id = client.monitor.snapshot().sessions.first().map(|s| s.id);
            id.is_some()
        }));
        let id = id.unwrap_or_default();
        let (mut first, opening) =
            accept_of(&server, id, Duration::from_secs(10)).expect("no link came");
        assert_eq!(
            opening.flags & HELLO_JOIN,
            0,
            "the first link must start the session"
        );
        // Until it is welcomed, no other link may race it to a balancer.
        if let Some((_, h)) = accept_of(&server, id, Duration::from_millis(500)) {
            panic!("slot {} came before WELCOME", h.link_index);
        }
        welcome(&mut first);
        let mut slots = vec![opening.link_index];
        // Held open: a link closed here would come back through its slot.
        let mut held = Vec::new();
        for _ in 0..3 {
            let (mut link, h) =
                accept_of(&server, id, Duration::from_secs(10)).expect("a slot never came");
            assert_eq!(
                h.flags & HELLO_JOIN,
                HELLO_JOIN,
                "slot {} must join",
                h.link_index
            );
            slots.push(h.link_index);
            welcome(&mut link);
            held.push(link);
        }
        slots.sort_unstable();
        assert_eq!(slots, [0, 1, 2, 3]);
        drop(client);
    });
}

#[test]
fn a_draining_server_refuses_new_connections_at_once_and_finishes_its_streams() {
    within(Duration::from_secs(60), || {
        let mut t = Tunnel::start_with(2, true, "drain_timeout_ms = 20000", "");
        let mut held = t.client.connect();
        held.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        held.read_exact(&mut four).unwrap();
        t.server.shutdown.trigger();
        let refused = wait_until(Duration::from_secs(5), || {
            matches!(
                TcpStream::connect(t.server.addr),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused
            )
        });
        assert!(refused, "the draining server still takes connections");
        // The open stream still carries data both ways.
        held.write_all(b"more").unwrap();
        held.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"more");
        drop(held);
        t.server.stop();
    });
}
