//! Authentication, encryption and hostile peers, against the real daemons.

mod common;

use common::*;
use mtcp::proto::frame::{self, Frame};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const SECRET: &str = "secret = \"k8Jf3pQ0zW1xY7vN2mB5cR9tL4hG6dS0\"";
const OTHER_SECRET: &str = "secret = \"a-completely-different-secret-value\"";

struct Bed {
    backend: Backend,
    server: ServerHandle,
    proxy: FaultProxy,
    client: ClientHandle,
}

fn bed(server_extra: &str, client_extra: &str) -> Bed {
    init_logging();
    let backend = Backend::start();
    let server = start_server_toml(&server_toml(backend.addr, 2, server_extra));
    let proxy = FaultProxy::start(server.addr);
    let client = start_client_toml(&client_toml(proxy.addr, 2, true, client_extra));
    Bed {
        backend,
        server,
        proxy,
        client,
    }
}

/// Uploads data full of `marker` and downloads pattern bytes; returns a
/// 64-byte window of the downloaded pattern to look for on the wire.
fn move_marked_data(client: &ClientHandle, marker: &[u8]) -> Vec<u8> {
    let mut app = client.connect();
    app.write_all(b"U").unwrap();
    for _ in 0..1000 {
        app.write_all(marker).unwrap();
    }
    app.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = [0u8; 32];
    app.read_exact(&mut reply).unwrap();
    download(client, 5, MIB);
    let mut pattern = vec![0u8; 4096];
    Pattern::new(5).fill(&mut pattern);
    pattern[1000..1064].to_vec()
}

#[test]
fn encrypted_links_carry_no_plaintext() {
    within(Duration::from_secs(60), || {
        let marker = b"MARKER-7d1f0c2e-the-plaintext-that-must-not-appear-on-the-wire";
        let b = bed(SECRET, SECRET);
        let window = move_marked_data(&b.client, marker);
        assert!(
            !b.proxy.saw(marker),
            "upload plaintext visible on an encrypted link"
        );
        assert!(
            !b.proxy.saw(&window),
            "download plaintext visible on an encrypted link"
        );
        // The same tap does see plaintext when encryption is off, so the
        // check above can fail.
        let plain = bed("", "");
        let window = move_marked_data(&plain.client, marker);
        assert!(
            plain.proxy.saw(marker) && plain.proxy.saw(&window),
            "tap saw nothing"
        );
        // Authenticated but unencrypted, by choice.
        let auth_only = bed(
            &format!("{SECRET}\nencrypt = false"),
            &format!("{SECRET}\nencrypt = false"),
        );
        move_marked_data(&auth_only.client, marker);
        assert!(auth_only.proxy.saw(marker));
    });
}

fn expect_refused(b: &Bed) {
    let mut app = b.client.connect();
    let _ = app.write_all(b"D");
    app.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let start = Instant::now();
    match app.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the application connection to fail, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(6));
    assert_eq!(
        b.backend.accepted.load(Ordering::SeqCst),
        0,
        "backend contacted"
    );
    assert_eq!(
        b.server.monitor.snapshot().link_count(),
        0,
        "a link was accepted"
    );
}

#[test]
fn encrypted_frames_stay_whole_when_a_link_socket_fills() {
    within(Duration::from_secs(120), || {
        // One link far slower than the other: its socket fills, so frames
        // are sealed and then written only in part by the fast path, and the
        // link writer must finish each before the next record.
        let rr = "scheduler = \"round_robin\"";
        let b = bed(&format!("{SECRET}\n{rr}"), &format!("{SECRET}\n{rr}"));
        assert!(
            wait_until(Duration::from_secs(10), || b.proxy.open() == 2
                && b.client.monitor.snapshot().link_count() == 2),
            "pool did not come up"
        );
        assert!(b.proxy.throttle_one(4 * MIB));
        download(&b.client, 11, 24 * MIB);
        upload(&b.client, 12, 24 * MIB);
    });
}

#[test]
fn wrong_secret_is_refused_and_backend_untouched() {
    within(Duration::from_secs(30), || {
        expect_refused(&bed(SECRET, OTHER_SECRET))
    });
}

#[test]
fn client_without_secret_is_refused() {
    within(Duration::from_secs(30), || expect_refused(&bed(SECRET, "")));
}

#[test]
fn server_without_secret_is_refused_by_client() {
    within(Duration::from_secs(30), || expect_refused(&bed("", SECRET)));
}

#[test]
fn replayed_link_bytes_are_refused_and_closed_at_once() {
    within(Duration::from_secs(60), || {
        // A handshake deadline far beyond the wait below: a replay must be
        // refused for what it is, not left to time out.
        let b = bed(&format!("{SECRET}\nhandshake_timeout_ms = 30000"), SECRET);
        upload(&b.client, 9, 64 * 1024);
        assert_eq!(b.backend.accepted.load(Ordering::SeqCst), 1);
        let session = only_session(&b.server);
        for i in 0..2 {
            let recorded = b.proxy.tapped_upstream(i);
            assert!(recorded.len() > 100, "nothing recorded on link {i}");
            let mut replay = TcpStream::connect(b.server.addr).unwrap();
            let me = replay.local_addr().unwrap().to_string();
            let start = Instant::now();
            // The server answers the first handshake message (it cannot
            // tell a replay yet), then fails to authenticate the records
            // that follow, refuses and closes: the rest of our bytes may
            // meet a reset.
            if let Err(e) = replay.write_all(&recorded) {
                assert!(
                    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                    "replay {i}: writing failed otherwise than by a close: {e}"
                );
            }
            assert!(
                closed_by_server(&mut replay, Duration::from_secs(10)),
                "replay {i} was not closed"
            );
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "replay {i} closed only after {:?}",
                start.elapsed()
            );
            assert!(
                wait_log(
                    Duration::from_secs(5),
                    &[&format!("link from {me} refused: authentication failed")]
                )
                .is_some(),
                "replay {i}: the server did not say it refused the replay"
            );
        }
        // The session still has exactly its own two links: no replay joined.
        let links = session_links(&b.server, session);
        assert_eq!(links, 2, "session {session:016x} has {links} links");
        assert_eq!(
            b.backend.accepted.load(Ordering::SeqCst),
            1,
            "a replay reached the backend"
        );
        upload(&b.client, 10, 64 * 1024);
    });
}

/// The id of the server's only session.
fn only_session(server: &ServerHandle) -> u64 {
    let snap = server.monitor.snapshot();
    assert_eq!(snap.sessions.len(), 1, "{snap:?}");
    snap.sessions[0].id
}

/// Links the server holds for `session` now.
fn session_links(server: &ServerHandle, session: u64) -> usize {
    server
        .monitor
        .snapshot()
        .sessions
        .iter()
        .filter(|s| s.id == session)
        .map(|s| s.links.len())
        .sum()
}

/// A hand-made link: plain HELLO for slot `index` of `session`; returns
/// the socket and the server's answer (type byte, then body).
fn raw_hello(server: SocketAddr, session: u64, index: u16) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    frame::encode(
        &Frame::Hello(frame::Hello {
            version: frame::VERSION,
            flags: 0,
            session_id: session,
            link_index: index,
            max_payload: 65536,
            window: 1 << 20,
        }),
        &mut out,
    );
    s.write_all(&out).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    s.read_exact(&mut body).unwrap();
    (s, body)
}

/// A hand-made link that the server welcomed into `session`.
fn raw_link(server: SocketAddr, session: u64) -> TcpStream {
    let (s, answer) = raw_hello(server, session, 0);
    assert_eq!(answer[0], 0x02, "expected WELCOME, got {answer:?}");
    s
}

/// Reads frames from a hand-made link until `want` accepts one (PINGs are
/// answered on the way, so the server keeps the link); `None` if the link
/// ends or `limit` passes first.
fn next_frame_where(
    s: &mut TcpStream,
    limit: Duration,
    mut want: impl FnMut(&Frame<'_>) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Ok(Some((f, used))) = frame::decode(&buf, 1 << 20) {
            if want(&f) {
                return Some(buf[..used].to_vec());
            }
            if let Frame::Ping { token } = f {
                send(s, Frame::Pong { token });
            }
            buf.drain(..used);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn send(s: &mut TcpStream, f: Frame<'_>) {
    let mut out = Vec::new();
    frame::encode(&f, &mut out);
    let _ = s.write_all(&out);
}

/// True when the server closed `s` (EOF or reset) within `limit`.
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

fn hostile_bed() -> (Backend, ServerHandle, ClientHandle) {
    hostile_bed_with(
        "handshake_timeout_ms = 2000\nkeepalive_interval_ms = 200\nkeepalive_timeout_ms = 1000",
    )
}

/// Settings of every hostile bed: streams a hostile test leaves open must
/// not hold the server's shutdown for the default 10 s.
const HOSTILE_DRAIN: &str = "drain_timeout_ms = 500";

fn hostile_bed_with(server_extra: &str) -> (Backend, ServerHandle, ClientHandle) {
    init_logging();
    let backend = Backend::start();
    let server = start_server_toml(&server_toml(
        backend.addr,
        2,
        &format!("{HOSTILE_DRAIN}\n{server_extra}"),
    ));
    let client = start_client_toml(&client_toml(server.addr, 2, true, ""));
    (backend, server, client)
}

/// How long the decoder's refusal may take to close a connection: far
/// below the handshake and keepalive deadlines of [`undecodable_bed`], so
/// only the refusal itself can close it in time.
const AT_ONCE: Duration = Duration::from_secs(3);

/// A bed whose deadlines (30 s) cannot close a connection within [`AT_ONCE`].
fn undecodable_bed() -> (Backend, ServerHandle, ClientHandle) {
    hostile_bed_with("handshake_timeout_ms = 30000\nkeepalive_timeout_ms = 30000")
}

/// Sends `bytes` on `s`, then expects the server to close it within
/// [`AT_ONCE`] and to log a line with `me` and `why`.
fn expect_closed_because(s: &mut TcpStream, bytes: &[u8], what: &str, why: &str) {
    let me = s.local_addr().unwrap().to_string();
    let start = Instant::now();
    let _ = s.write_all(bytes);
    assert!(closed_by_server(s, AT_ONCE), "{what}: not closed");
    assert!(
        start.elapsed() < AT_ONCE,
        "{what}: closed only after {:?}",
        start.elapsed()
    );
    assert!(
        wait_log(Duration::from_secs(5), &[&me, why]).is_some(),
        "{what}: no log line with {me} and {why:?}"
    );
}

#[test]
fn undecodable_bytes_close_that_link_at_once_and_say_why() {
    within(Duration::from_secs(60), || {
        let (_backend, server, client) = undecodable_bed();
        let mut junk = vec![0u8; 64 * 1024];
        Pattern::new(77).fill(&mut junk);
        expect_closed_because(
            &mut TcpStream::connect(server.addr).unwrap(),
            &junk,
            "random bytes",
            &format!(
                "bad handshake: handshake frame length {}",
                u32::from_be_bytes(junk[..4].try_into().unwrap())
            ),
        );
        expect_closed_because(
            &mut TcpStream::connect(server.addr).unwrap(),
            &[0xff, 0xff, 0xff, 0xff, 0x11],
            "a 0xFFFFFFFF length before HELLO",
            "bad handshake: handshake frame length 4294967295",
        );
        // The same after the handshake, inside a session: the link's
        // decoder refuses the length before buffering anything.
        expect_closed_because(
            &mut raw_link(server.addr, 0xdead_0001),
            &[0xff, 0xff, 0xff, 0xff, 0x11],
            "a 0xFFFFFFFF length in a session",
            "bad frame: frame length 4294967295 exceeds limit",
        );
        upload(&client, 1, MIB);
    });
}

#[test]
fn frames_for_foreign_or_broken_streams_do_not_hurt_others() {
    within(Duration::from_secs(60), || {
        let (backend, server, client) = hostile_bed();
        let mut link = raw_link(server.addr, 0xdead_0002);
        send(
            &mut link,
            Frame::Ack {
                stream: 77,
                delivered: 1 << 40,
            },
        );
        send(
            &mut link,
            Frame::Rst {
                stream: 78,
                reason: frame::RstReason::Reset,
            },
        );
        send(
            &mut link,
            Frame::Fin {
                stream: 3_000_000_000,
                offset: 5,
            },
        );
        // Data far beyond the window: the stream is reset on the wire
        // (RST, reason 3: protocol error), nothing buffered.
        send(
            &mut link,
            Frame::Data {
                stream: 9,
                offset: 1 << 50,
                data: b"x",
            },
        );
        let rst = next_frame_where(&mut link, Duration::from_secs(10), |f| {
            matches!(f, Frame::Rst { stream: 9, .. })
        });
        assert_eq!(
            rst.as_deref(),
            Some(&[0, 0, 0, 6, 0x13, 0, 0, 0, 9, 3][..]),
            "no RST (protocol error) for data beyond the window"
        );
        // Data for a stream the server then resets must never re-open it.
        send(
            &mut link,
            Frame::Data {
                stream: 9,
                offset: 0,
                data: b"D",
            },
        );
        upload(&client, 2, MIB);
        assert!(
            backend.accepted.load(Ordering::SeqCst) <= 3,
            "hostile frames opened {} backend connections",
            backend.accepted.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn idle_handshakes_past_the_limit_are_closed_at_once_and_the_rest_by_the_deadline() {
    within(Duration::from_secs(60), || {
        const LIMIT: usize = 16;
        const DEADLINE: Duration = Duration::from_millis(4000);
        let (backend, server, client) = hostile_bed_with(&format!(
            "max_pending_handshakes = {LIMIT}\nhandshake_timeout_ms = {}",
            DEADLINE.as_millis()
        ));
        assert!(
            wait_until(Duration::from_secs(10), || server
                .monitor
                .snapshot()
                .link_count()
                == 2),
            "the good client's pool did not come up"
        );
        // Connections that never say anything take every handshake slot.
        let idle: Vec<TcpStream> = (0..LIMIT)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        let filled = Instant::now();
        // Past the limit, each new one is closed at once, and the server
        // says why: for the first few of a burst (then, throttled, it
        // counts them in its next line instead of one line each).
        for i in 0..8 {
            let mut extra = TcpStream::connect(server.addr).unwrap();
            let me = extra.local_addr().unwrap().to_string();
            let start = Instant::now();
            assert!(
                closed_by_server(&mut extra, DEADLINE),
                "connection {} past the limit was not closed",
                LIMIT + i
            );
            assert!(
                start.elapsed() < DEADLINE / 2,
                "connection {} past the limit was closed only after {:?}",
                LIMIT + i,
                start.elapsed()
            );
            if i < mtcp::util::throttle::DEFAULT_BURST as usize {
                assert!(
                    wait_log(
                        Duration::from_secs(5),
                        &["too many handshakes in progress", &me]
                    )
                    .is_some(),
                    "no log line says why {me} was closed"
                );
            }
        }
        // The idle ones are still open (they were counted, not the extras).
        assert!(filled.elapsed() < DEADLINE, "too slow to tell");
        for s in &idle {
            s.set_nonblocking(true).unwrap();
            let e = (&*s).read(&mut [0u8; 1]).expect_err("an idle one closed");
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "an idle one ended: {e}");
            s.set_nonblocking(false).unwrap();
        }
        // Established sessions do not need a handshake slot.
        upload(&client, 3, MIB);
        // A new client gets in once the deadline frees the slots.
        let late = start_client_toml(&client_toml(
            server.addr,
            2,
            true,
            "reconnect_min_ms = 50\nreconnect_max_ms = 200",
        ));
        assert!(
            wait_until(DEADLINE + Duration::from_secs(10), || late
                .monitor
                .any_link_up()),
            "a good client never got in"
        );
        upload(&late, 4, MIB);
        // And every idle one was closed by the deadline.
        for (i, mut s) in idle.into_iter().enumerate() {
            assert!(
                closed_by_server(&mut s, DEADLINE.saturating_sub(filled.elapsed()) + AT_ONCE),
                "idle handshake {i} left open past the deadline"
            );
        }
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_peer_that_never_reads_is_cut_off() {
    within(Duration::from_secs(60), || {
        let (backend, server, client) = hostile_bed();
        let mut link = raw_link(server.addr, 0xdead_0003);
        link.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Sixteen downloads of 1 GiB: together their windows hold more than
        // the socket buffers, so the server's writes must stall.
        let mut cmd = b"D".to_vec();
        cmd.extend_from_slice(&(1u64 << 30).to_be_bytes());
        cmd.extend_from_slice(&7u64.to_be_bytes());
        for stream in 1..=16 {
            send(&mut link, Frame::Open { stream });
            send(
                &mut link,
                Frame::Data {
                    stream,
                    offset: 0,
                    data: &cmd,
                },
            );
        }
        assert!(wait_until(Duration::from_secs(5), || backend
            .accepted
            .load(Ordering::SeqCst)
            == 16));
        // We never read, but keep talking (PINGs), so only the server's
        // write deadline can notice: its writes stall, and the link must be
        // dropped rather than buffered without bound.
        let mut pinger = link.try_clone().unwrap();
        std::thread::spawn(move || {
            for token in 0..50u64 {
                let mut out = Vec::new();
                frame::encode(&Frame::Ping { token }, &mut out);
                if pinger.write_all(&out).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let ours = || {
            server
                .monitor
                .snapshot()
                .sessions
                .iter()
                .filter(|s| s.id == 0xdead_0003)
                .map(|s| s.links.len())
                .sum::<usize>()
        };
        assert!(
            wait_until(Duration::from_secs(10), || ours() == 0),
            "server kept a link whose peer never reads"
        );
        upload(&client, 5, MIB);
        drop(link);
    });
}

fn hold_echo(client: &ClientHandle) -> TcpStream {
    let mut app = client.connect();
    app.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    app.write_all(b"Eping").unwrap();
    let mut four = [0u8; 4];
    app.read_exact(&mut four).expect("echo through the tunnel");
    app
}

/// A stream over a limit must be refused with a reset the application
/// sees at once: a stream that merely hangs, or ends cleanly, is not
/// refused.
fn expect_stream_reset(client: &ClientHandle, what: &str) {
    expect_reset(client.connect(), what);
}

/// Writes a request on `app` and expects a reset: on the write, if the
/// reset came first (the write then takes the error), else on the read.
fn expect_reset(mut app: TcpStream, what: &str) {
    app.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let end = match app.write_all(b"Eping") {
        Err(e) => Err(e),
        Ok(()) => app.read(&mut [0u8; 4]),
    };
    match end {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!(
            "{what}: expected a reset, got {other:?} after {:?}",
            start.elapsed()
        ),
    }
}

#[test]
fn stream_limits_reset_extra_streams_and_keep_serving() {
    within(Duration::from_secs(60), || {
        init_logging();
        let backend = Backend::start();
        let server = start_server_toml(&server_toml(
            backend.addr,
            2,
            "max_streams = 2\nmax_total_streams = 3",
        ));
        let a = start_client_toml(&client_toml(server.addr, 2, true, ""));
        let b = start_client_toml(&client_toml(server.addr, 2, true, ""));
        let a1 = hold_echo(&a);
        let a2 = hold_echo(&a);
        expect_stream_reset(&a, "a third stream in one session");
        let b1 = hold_echo(&b);
        expect_stream_reset(&b, "a fourth stream on the server");
        assert_eq!(
            backend.accepted.load(Ordering::SeqCst),
            3,
            "a refused stream reached the backend"
        );
        drop((a1, a2, b1));
        // Freed streams make room again.
        assert!(wait_until(Duration::from_secs(10), || {
            server.monitor.snapshot().stream_count() == 0
        }));
        drop(hold_echo(&b));
    });
}

#[test]
fn the_clients_max_streams_counts_all_its_streams() {
    within(Duration::from_secs(60), || {
        let t = Tunnel::start_with(2, true, "", "max_streams = 2");
        let held = (hold_echo(&t.client), hold_echo(&t.client));
        // Refused before it sends anything, so that a plain close (a clean
        // end) cannot pass for a reset caused by unread bytes.
        let third = t.client.connect();
        let me = third.local_addr().unwrap().to_string();
        assert!(
            wait_log(
                Duration::from_secs(10),
                &[&format!("application connection from {me} refused")]
            )
            .is_some(),
            "the third connection was not refused"
        );
        expect_reset(third, "a third stream of a client with max_streams = 2");
        assert_eq!(
            t.backend.accepted.load(Ordering::SeqCst),
            2,
            "the client opened a stream beyond its max_streams"
        );
        drop(held);
        assert!(wait_until(Duration::from_secs(10), || {
            t.client.monitor.snapshot().stream_count() == 0
        }));
        drop(hold_echo(&t.client));
    });
}

/// The REFUSE frame with `reason` as the README's protocol table gives it.
fn refuse_frame(reason: u8) -> Vec<u8> {
    vec![0x03, reason]
}

#[test]
fn a_session_past_max_sessions_is_refused_with_reason_5() {
    within(Duration::from_secs(30), || {
        let (backend, server, client) = hostile_bed_with("max_sessions = 1");
        assert!(wait_until(Duration::from_secs(10), || client
            .monitor
            .any_link_up()));
        let (mut s, answer) = raw_hello(server.addr, 0xdead_0005, 0);
        assert_eq!(
            answer,
            refuse_frame(5),
            "expected REFUSE(too many sessions)"
        );
        assert!(closed_by_server(&mut s, AT_ONCE), "refused link left open");
        assert_eq!(server.monitor.snapshot().sessions.len(), 1);
        upload(&client, 6, MIB);
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn links_past_the_servers_connection_pool_size_are_refused_with_reason_4() {
    within(Duration::from_secs(30), || {
        // hostile_bed's server allows 2 links per session.
        let (_backend, server, _client) = hostile_bed();
        let session = 0xdead_0004;
        let (_a, first) = raw_hello(server.addr, session, 0);
        let (_b, second) = raw_hello(server.addr, session, 1);
        assert_eq!((first[0], second[0]), (0x02, 0x02), "expected WELCOMEs");
        let (mut c, third) = raw_hello(server.addr, session, 2);
        assert_eq!(third, refuse_frame(4), "expected REFUSE(too many links)");
        assert!(closed_by_server(&mut c, AT_ONCE), "refused link left open");
        // (A welcomed link joins its session just after WELCOME.)
        assert!(wait_until(Duration::from_secs(5), || session_links(
            &server, session
        ) == 2));
        // Links that arrive together are counted as strictly.
        let together = 0xdead_0044;
        let answers: Vec<_> = (0..6u16)
            .map(|i| std::thread::spawn(move || raw_hello(server.addr, together, i)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let welcomed = answers.iter().filter(|(_, a)| a[0] == 0x02).count();
        assert_eq!(welcomed, 2, "{welcomed} of 6 concurrent links welcomed");
        assert!(wait_until(Duration::from_secs(5), || session_links(
            &server, together
        ) == 2));
    });
}

#[test]
fn ends_that_disagree_on_encrypt_are_refused_both_ways() {
    within(Duration::from_secs(60), || {
        for (server_encrypt, client_encrypt) in [(true, false), (false, true)] {
            let b = bed(
                &format!("{SECRET}\nencrypt = {server_encrypt}"),
                &format!("{SECRET}\nencrypt = {client_encrypt}"),
            );
            expect_refused(&b);
            assert!(
                wait_log(
                    Duration::from_secs(5),
                    &[
                        &format!("cannot connect to {}", b.proxy.addr),
                        "disagree on `encrypt`"
                    ]
                )
                .is_some(),
                "the client does not say why (server encrypt = {server_encrypt})"
            );
        }
    });
}

#[test]
fn a_server_listening_beyond_loopback_without_a_secret_warns_at_start() {
    within(Duration::from_secs(30), || {
        let backend = Backend::start();
        let open = start_server_toml(
            &server_toml(backend.addr, 1, "")
                .replace("listen_ip = \"127.0.0.1\"", "listen_ip = \"0.0.0.0\""),
        );
        let warning = format!("no secret configured and listening on {}", open.addr);
        assert!(
            wait_log(Duration::from_secs(10), &["WARN", &warning]).is_some(),
            "no start-up warning for {}",
            open.addr
        );
        // Neither on loopback nor with a secret.
        let quiet = [
            start_server_toml(&server_toml(backend.addr, 1, "")),
            start_server_toml(
                &server_toml(backend.addr, 1, SECRET)
                    .replace("listen_ip = \"127.0.0.1\"", "listen_ip = \"0.0.0.0\""),
            ),
        ];
        for s in &quiet {
            let listening = format!("server listening on {}", s.addr);
            assert!(wait_log(Duration::from_secs(10), &[&listening]).is_some());
            let warned = log_lines(&[&format!("listening on {}", s.addr), "no secret"]);
            assert!(warned.is_empty(), "{warned:?}");
        }
    });
}

#[test]
fn a_peer_opening_a_stream_after_the_servers_goaway_gets_a_reset() {
    within(Duration::from_secs(30), || {
        let (backend, mut server, _client) = hostile_bed();
        let mut link = raw_link(server.addr, 0xdead_0006);
        // One stream open, so that the server's drain waits for it.
        send(&mut link, Frame::Open { stream: 1 });
        send(
            &mut link,
            Frame::Data {
                stream: 1,
                offset: 0,
                data: b"E",
            },
        );
        assert!(wait_until(Duration::from_secs(10), || backend
            .accepted
            .load(Ordering::SeqCst)
            == 1));
        server.shutdown.trigger();
        assert!(
            next_frame_where(&mut link, Duration::from_secs(10), |f| matches!(
                f,
                Frame::GoAway(_)
            ))
            .is_some(),
            "no GOAWAY from a draining server"
        );
        // A peer that ignores it is refused: RST (reason 4), no backend.
        send(&mut link, Frame::Open { stream: 3 });
        send(
            &mut link,
            Frame::Data {
                stream: 3,
                offset: 0,
                data: b"E",
            },
        );
        let rst = next_frame_where(&mut link, Duration::from_secs(10), |f| {
            matches!(f, Frame::Rst { stream: 3, .. })
        });
        assert_eq!(
            rst.as_deref(),
            Some(&[0, 0, 0, 6, 0x13, 0, 0, 0, 3, 4][..]),
            "a stream opened after GOAWAY was not refused"
        );
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
        drop(link);
        server.stop();
    });
}

#[test]
fn the_clients_max_streams_counts_a_retiring_sessions_streams_too() {
    within(Duration::from_secs(60), || {
        // A session whose server said GOAWAY keeps its streams while a new
        // session takes the new ones; max_streams is the client's total.
        init_logging();
        let backend = Backend::start();
        let mut old = start_server_toml(&server_toml(backend.addr, 2, "drain_timeout_ms = 30000"));
        let proxy = FaultProxy::start(old.addr);
        let client = start_client_toml(&client_toml(proxy.addr, 2, true, "max_streams = 2"));
        let first = hold_echo(&client);
        let session = format!("{:016x}", client.monitor.snapshot().sessions[0].id);
        let new = start_server_toml(&server_toml(backend.addr, 2, ""));
        proxy.set_target(new.addr);
        old.shutdown.trigger();
        assert!(
            wait_log(
                Duration::from_secs(10),
                &[&format!("session {session}: peer going away")]
            )
            .is_some(),
            "the client never heard GOAWAY"
        );
        let second = hold_echo(&client);
        assert_eq!(client.monitor.snapshot().sessions.len(), 2);
        let third = client.connect();
        let me = third.local_addr().unwrap().to_string();
        assert!(
            wait_log(
                Duration::from_secs(10),
                &[&format!("application connection from {me} refused")]
            )
            .is_some(),
            "a third stream was let in beside the retiring session's"
        );
        expect_reset(third, "a third stream of a client with max_streams = 2");
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
        drop((first, second));
        old.stop();
    });
}

/// A front for `server` that behaves as a server of this protocol version
/// from before AEGIS-256X2: it refuses a secured link whose preamble names
/// cipher 3 with a plain REFUSE(protocol) and closes it, and relays the
/// others. Returns its address and the cipher byte of every link, in order.
fn server_without_aegis(
    server: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut inbound) = conn else { continue };
            let mut head = [0u8; 6];
            if inbound.read_exact(&mut head).is_err() {
                continue;
            }
            log.lock().unwrap().push(head[5]);
            if &head[..4] == b"MTCS" && head[5] == 3 {
                let mut refuse = 2u32.to_be_bytes().to_vec();
                refuse.extend_from_slice(&refuse_frame(8));
                let _ = inbound.write_all(&refuse);
                continue;
            }
            let Ok(mut outbound) = TcpStream::connect(server) else {
                continue;
            };
            if outbound.write_all(&head).is_ok() {
                std::thread::spawn(move || relay(inbound, outbound));
            }
        }
    });
    (addr, seen)
}

#[test]
fn a_client_falls_back_to_aes_gcm_with_a_server_that_predates_aegis() {
    use mtcp::rt::secure::{Cipher, preferred_cipher};
    if preferred_cipher() != Cipher::Aegis256X2 {
        return skip(
            "a_client_falls_back_to_aes_gcm_with_a_server_that_predates_aegis",
            "this CPU has no AES instructions, so links propose ChaCha20-Poly1305",
        );
    }
    within(Duration::from_secs(60), || {
        init_logging();
        let backend = Backend::start();
        let server = start_server_toml(&server_toml(backend.addr, 2, SECRET));
        let (front, ciphers) = server_without_aegis(server.addr);
        let client = start_client_toml(&client_toml(front, 2, true, SECRET));
        download(&client, 11, 4 * MIB);
        upload(&client, 12, 4 * MIB);
        let said = wait_log(
            Duration::from_secs(5),
            &[
                "refused the record cipher aegis-256x2",
                "propose aes-256-gcm",
            ],
        );
        assert!(said.is_some(), "the fallback was not logged");
        let ciphers = ciphers.lock().unwrap().clone();
        assert_eq!(
            ciphers.first(),
            Some(&3),
            "the first link proposed {ciphers:?}"
        );
        assert_eq!(
            ciphers.iter().filter(|&&c| c == 3).count(),
            1,
            "links went on proposing AEGIS after the refusal: {ciphers:?}"
        );
        assert!(ciphers[1..].iter().all(|&c| c == 2), "{ciphers:?}");
        // A server of this version takes AEGIS: the same client setup
        // straight to it proposes nothing else.
        let direct = start_client_toml(&client_toml(server.addr, 2, true, SECRET));
        download(&direct, 13, MIB);
    });
}

/// The cipher bytes of the secured links a proxy relayed that carried more
/// than `least` bytes downstream.
fn ciphers_of_busy_links(proxy: &FaultProxy, least: u64) -> Vec<u8> {
    let counts = proxy.relayed_counts(true);
    (0..counts.len())
        .filter(|&i| counts[i] > least)
        .map(|i| proxy.tapped_upstream(i))
        .filter(|up| up.starts_with(b"MTCS") && up.len() > 5)
        .map(|up| up[5])
        .collect()
}

#[test]
fn a_servers_cipher_setting_admits_that_cipher_only() {
    within(Duration::from_secs(60), || {
        let server_extra = format!("{SECRET}\ncipher = \"chacha20-poly1305\"");
        // A client left to choose ends on the server's cipher, whatever it
        // proposed first.
        let b = bed(&server_extra, SECRET);
        download(&b.client, 21, 4 * MIB);
        let busy = ciphers_of_busy_links(&b.proxy, MIB / 2);
        assert!(
            !busy.is_empty() && busy.iter().all(|&c| c == 1),
            "busy links' ciphers {busy:?}, want ChaCha20-Poly1305 (1)"
        );
        // A client that names another cipher is refused, and says why.
        let pinned = bed(
            &server_extra,
            &format!("{SECRET}\ncipher = \"aes-256-gcm\""),
        );
        expect_refused(&pinned);
        assert!(
            wait_log(
                Duration::from_secs(5),
                &[
                    "the client proposes the record cipher aes-256-gcm",
                    "chacha20-poly1305"
                ],
            )
            .is_some(),
            "the server did not say why it refused"
        );
        // The client that names the server's cipher gets it.
        let same = bed(
            &server_extra,
            &format!("{SECRET}\ncipher = \"chacha20-poly1305\""),
        );
        download(&same.client, 22, MIB);
    });
}
