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
fn replayed_link_bytes_are_refused() {
    within(Duration::from_secs(60), || {
        let b = bed(SECRET, SECRET);
        upload(&b.client, 9, 64 * 1024);
        assert_eq!(b.backend.accepted.load(Ordering::SeqCst), 1);
        for i in 0..2 {
            let recorded = b.proxy.tapped_upstream(i);
            assert!(recorded.len() > 100, "nothing recorded on link {i}");
            let mut replay = TcpStream::connect(b.server.addr).unwrap();
            replay
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = replay.write_all(&recorded);
            // The server answers the first handshake message, then fails to
            // authenticate what follows and closes the connection.
            let mut sink = Vec::new();
            let _ = replay.read_to_end(&mut sink);
        }
        assert_eq!(
            b.backend.accepted.load(Ordering::SeqCst),
            1,
            "a replay reached the backend"
        );
        upload(&b.client, 10, 64 * 1024);
    });
}

/// A hand-made link: plain HELLO for a fresh session, WELCOME read back.
fn raw_link(server: SocketAddr, session: u64) -> TcpStream {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    frame::encode(
        &Frame::Hello(frame::Hello {
            version: frame::VERSION,
            flags: 0,
            session_id: session,
            link_index: 0,
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
    assert_eq!(body[0], 0x02, "expected WELCOME");
    s
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
    init_logging();
    let backend = Backend::start();
    let server = start_server_toml(&server_toml(
        backend.addr,
        2,
        "handshake_timeout_ms = 2000\nkeepalive_interval_ms = 200\nkeepalive_timeout_ms = 1000",
    ));
    let client = start_client_toml(&client_toml(server.addr, 2, true, ""));
    (backend, server, client)
}

#[test]
fn garbage_and_oversized_frames_close_only_that_link() {
    within(Duration::from_secs(60), || {
        let (_backend, server, client) = hostile_bed();
        let mut junk = vec![0u8; 64 * 1024];
        Pattern::new(77).fill(&mut junk);
        let mut random = TcpStream::connect(server.addr).unwrap();
        let _ = random.write_all(&junk);
        assert!(
            closed_by_server(&mut random, Duration::from_secs(5)),
            "random bytes not refused"
        );

        let mut huge = TcpStream::connect(server.addr).unwrap();
        let _ = huge.write_all(&[0xff, 0xff, 0xff, 0xff, 0x11]);
        assert!(
            closed_by_server(&mut huge, Duration::from_secs(5)),
            "0xFFFFFFFF length not refused"
        );

        // The same after the handshake, inside a session.
        let mut link = raw_link(server.addr, 0xdead_0001);
        let _ = link.write_all(&[0xff, 0xff, 0xff, 0xff, 0x11]);
        assert!(
            closed_by_server(&mut link, Duration::from_secs(5)),
            "oversized frame after handshake"
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
        // Data far beyond the window: the stream is reset, nothing buffered.
        send(
            &mut link,
            Frame::Data {
                stream: 9,
                offset: 1 << 50,
                data: b"x",
            },
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
fn a_thousand_idle_handshakes_do_not_lock_out_a_good_client() {
    within(Duration::from_secs(90), || {
        let (_backend, server, client) = hostile_bed();
        let idle: Vec<TcpStream> = (0..1000)
            .filter_map(|_| TcpStream::connect(server.addr).ok())
            .collect();
        assert!(
            idle.len() >= 900,
            "could only open {} connections",
            idle.len()
        );
        // A new client must get in while they wait out the handshake deadline.
        let late = start_client_toml(&client_toml(server.addr, 2, true, ""));
        upload(&late, 3, MIB);
        upload(&client, 4, MIB);
        // And every idle one is closed by the deadline.
        let mut still_open = 0;
        for mut s in idle {
            if !closed_by_server(&mut s, Duration::from_secs(5)) {
                still_open += 1;
            }
        }
        assert_eq!(still_open, 0, "idle handshakes left open past the deadline");
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

fn hold_echo(client: &ClientHandle) -> Result<TcpStream, ()> {
    let mut app = client.connect();
    app.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    app.write_all(b"Eping").map_err(|_| ())?;
    let mut four = [0u8; 4];
    app.read_exact(&mut four).map_err(|_| ())?;
    Ok(app)
}

#[test]
fn stream_limits_refuse_extra_streams_and_keep_serving() {
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
        let a1 = hold_echo(&a).expect("first stream of a");
        let a2 = hold_echo(&a).expect("second stream of a");
        assert!(
            hold_echo(&a).is_err(),
            "a third stream in one session was accepted"
        );
        let b1 = hold_echo(&b).expect("first stream of b");
        assert!(
            hold_echo(&b).is_err(),
            "a fourth stream on the server was accepted"
        );
        drop((a1, a2, b1));
        // Freed streams make room again.
        assert!(wait_until(Duration::from_secs(5), || hold_echo(&b).is_ok()));
    });
}
