//! Bonding uplinks on loopback (`[[client.path]]`): the loopback range takes
//! any source address, so paths bound to 127.0.0.2 and 127.0.0.3 stand for
//! two uplinks. A relay in front of the server tells them apart by their
//! source address, counts what each carries, and breaks one of them:
//! links leave from their path's address, a backup path carries nothing
//! while a primary is up, takes everything when none is, and gives it back
//! when a primary returns; a path whose address is gone fails fast and is
//! logged once. Every transfer is compared by sha256.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const PRIMARY: &str = "127.0.0.2";
const BACKUP: &str = "127.0.0.3";

/// What the relay does with one source address's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Relayed both ways.
    Open,
    /// Bytes vanish, no FIN or RST: an uplink that went dark.
    Blackhole,
    /// Nothing is read, so the sender's socket fills and its TCP stalls,
    /// as over an uplink that stopped delivering; bytes flow again when
    /// the fate is `Open` once more, none lost.
    Stall,
    /// Relayed at most this many bytes per second each way: a slower
    /// uplink.
    Slow(u64),
}

#[derive(Default)]
struct Uplinks {
    fate: HashMap<IpAddr, Fate>,
    /// Bytes relayed per source address: `[up, down]`.
    bytes: HashMap<IpAddr, [u64; 2]>,
    /// Connections accepted per source address.
    accepted: HashMap<IpAddr, usize>,
}

/// A relay to the server that sees each link's source address.
struct PathRelay {
    addr: SocketAddr,
    state: Arc<Mutex<Uplinks>>,
}

impl PathRelay {
    fn start(server: SocketAddr) -> PathRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let state: Arc<Mutex<Uplinks>> = Arc::default();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(inbound) = conn else { continue };
                let Ok(from) = inbound.peer_addr().map(|a| a.ip()) else {
                    continue;
                };
                *st.lock().unwrap().accepted.entry(from).or_default() += 1;
                let Ok(outbound) = TcpStream::connect(server) else {
                    continue;
                };
                for (r, w, dir) in [
                    (inbound.try_clone(), outbound.try_clone(), 0),
                    (outbound.try_clone(), inbound.try_clone(), 1),
                ] {
                    let (Ok(r), Ok(w)) = (r, w) else { continue };
                    let st = st.clone();
                    std::thread::spawn(move || pump(r, w, from, dir, &st));
                }
            }
        });
        PathRelay { addr, state }
    }

    fn set(&self, ip: &str, fate: Fate) {
        let ip: IpAddr = ip.parse().unwrap();
        self.state.lock().unwrap().fate.insert(ip, fate);
    }

    /// Bytes relayed for `ip` so far, both directions together.
    fn carried(&self, ip: &str) -> u64 {
        let ip: IpAddr = ip.parse().unwrap();
        let st = self.state.lock().unwrap();
        st.bytes.get(&ip).map_or(0, |[up, down]| up + down)
    }

    /// Bytes relayed from `ip` to the server so far.
    fn sent_from(&self, ip: &str) -> u64 {
        let ip: IpAddr = ip.parse().unwrap();
        let st = self.state.lock().unwrap();
        st.bytes.get(&ip).map_or(0, |[up, _]| *up)
    }

    fn accepted(&self, ip: &str) -> usize {
        let ip: IpAddr = ip.parse().unwrap();
        *self.state.lock().unwrap().accepted.get(&ip).unwrap_or(&0)
    }
}

fn pump(mut r: TcpStream, mut w: TcpStream, from: IpAddr, dir: usize, st: &Mutex<Uplinks>) {
    let mut buf = vec![0u8; 64 * 1024];
    let fate_of = |st: &Mutex<Uplinks>| *st.lock().unwrap().fate.get(&from).unwrap_or(&Fate::Open);
    loop {
        while fate_of(st) == Fate::Stall {
            std::thread::sleep(Duration::from_millis(5));
        }
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let fate = {
            let mut st = st.lock().unwrap();
            let fate = *st.fate.get(&from).unwrap_or(&Fate::Open);
            // Bytes read just as a stall began still go through.
            if fate != Fate::Blackhole {
                st.bytes.entry(from).or_default()[dir] += n as u64;
            }
            fate
        };
        if fate != Fate::Blackhole && w.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Fate::Slow(rate) = fate {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        }
    }
    let _ = w.shutdown(Direction::Write);
}

fn paths_toml(primary_links: usize, backup: Option<usize>) -> String {
    let mut text = format!("[[client.path]]\nbind_ip = \"{PRIMARY}\"\nlinks = {primary_links}\n");
    if let Some(n) = backup {
        text.push_str(&format!(
            "[[client.path]]\nbind_ip = \"{BACKUP}\"\nlinks = {n}\nbackup = true\n"
        ));
    }
    text
}

/// Server, relay and a client whose `[client]` table ends with `paths`.
fn bed(
    pool: usize,
    client_keys: &str,
    paths: &str,
) -> (Backend, ServerHandle, PathRelay, ClientHandle) {
    bed_with(pool, "", client_keys, paths)
}

/// [`bed`] with `server_keys` in the server's table too.
fn bed_with(
    pool: usize,
    server_keys: &str,
    client_keys: &str,
    paths: &str,
) -> (Backend, ServerHandle, PathRelay, ClientHandle) {
    let backend = Backend::start();
    let server = start_server_toml(&server_toml(backend.addr, pool, server_keys));
    let relay = PathRelay::start(server.addr);
    // The paths are tables after `[client]`: its other keys come first.
    let text = client_toml(relay.addr, pool, true, client_keys) + paths;
    let client = start_client_toml(&text);
    (backend, server, relay, client)
}

fn wait_links(client: &ClientHandle, n: usize) {
    let up = wait_until(Duration::from_secs(20), || {
        client.monitor.snapshot().link_count() == n
    });
    assert!(
        up,
        "{} of {n} links up",
        client.monitor.snapshot().link_count()
    );
}

#[test]
fn links_leave_from_their_paths_source_addresses() {
    within(Duration::from_secs(90), || {
        let paths = format!(
            "[[client.path]]\nbind_ip = \"{PRIMARY}\"\nlinks = 2\n\
             [[client.path]]\nbind_ip = \"{BACKUP}\"\nlinks = 2\n"
        );
        let (_backend, server, relay, client) = bed(4, "", &paths);
        wait_links(&client, 4);
        assert_eq!(relay.accepted(PRIMARY), 2);
        assert_eq!(relay.accepted(BACKUP), 2);
        let snap = client.monitor.snapshot();
        let id = snap.sessions[0].id;
        for l in &snap.sessions[0].links {
            let want = if l.index < 2 { PRIMARY } else { BACKUP };
            assert_eq!(l.local.ip().to_string(), want, "slot {}", l.index);
        }
        assert!(
            wait_log(
                Duration::from_secs(5),
                &[&format!("session {id:016x}: link"), ", path 1, 127.0.0.3:"]
            )
            .is_some(),
            "the link's path and source address are not in its log line"
        );
        assert!(
            !log_lines(&[&format!("session {id:016x} started"), "scheduler adaptive"]).is_empty(),
            "the server did not schedule the bonded session adaptively"
        );
        upload(&client, 31, 32 * MIB);
        download(&client, 32, 32 * MIB);
        // Both uplinks carried data (how much each is the adaptive
        // scheduler's choice, and loopback paths are alike only when the
        // machine is idle).
        for ip in [PRIMARY, BACKUP] {
            assert!(
                relay.carried(ip) > MIB / 2,
                "{ip} carried {}",
                relay.carried(ip)
            );
        }
        // The client's per-path figures say the same.
        let paths = client.monitor.snapshot().paths;
        assert_eq!(paths.len(), 2, "{paths:?}");
        for (p, ip) in paths.iter().zip([PRIMARY, BACKUP]) {
            assert_eq!(p.info.source, ip);
            assert_eq!(p.links, 2);
            let moved = p.totals.bytes_out + p.totals.bytes_in;
            assert!(moved > MIB / 2, "path {} moved {moved}", p.index);
            assert!(p.srtt_us > 0, "path {} has no round trip", p.index);
        }
        let line = client
            .monitor
            .snapshot()
            .lines()
            .into_iter()
            .find(|l| l.starts_with("stats path=1 "))
            .expect("a stats line per path");
        assert!(
            line.contains("source=127.0.0.3 backup=false links=2"),
            "{line}"
        );
        drop(server);
    });
}

/// Starts a 48 MiB download that the application reads slowly, so that it
/// is still running when a path fails; returns the stream after `first`
/// bytes were read.
fn start_slow_download(client: &ClientHandle, seed: u64) -> TcpStream {
    let mut app = client.connect();
    app.write_all(b"D").unwrap();
    app.write_all(&(48 * MIB).to_be_bytes()).unwrap();
    app.write_all(&seed.to_be_bytes()).unwrap();
    app
}

#[test]
fn a_backup_path_idles_while_a_primary_is_up_takes_over_losing_nothing_and_fails_back() {
    within(Duration::from_secs(120), || {
        let keys = "keepalive_interval_ms = 200\nkeepalive_timeout_ms = 1000\n\
                    reconnect_min_ms = 50\nreconnect_max_ms = 300";
        let (_backend, _server, relay, client) = bed(2, keys, &paths_toml(1, Some(1)));
        wait_links(&client, 2);
        // While the primary is up the backup carries keepalives only.
        let before = relay.carried(BACKUP);
        upload(&client, 41, 16 * MIB);
        download(&client, 42, 16 * MIB);
        let idle = relay.carried(BACKUP) - before;
        assert!(
            idle < 64 * 1024,
            "the backup carried {idle} bytes beside a live primary"
        );

        // The primary goes dark in the middle of a download.
        let mut app = start_slow_download(&client, 43);
        let mut head = vec![0u8; 4 * MIB as usize];
        app.read_exact(&mut head).unwrap();
        relay.set(PRIMARY, Fate::Blackhole);
        let dark = Instant::now();
        let backup_before = relay.carried(BACKUP);
        let moved = wait_until(Duration::from_secs(10), || {
            relay.carried(BACKUP) > backup_before + MIB
        });
        assert!(moved, "the backup never took over");
        let stall = dark.elapsed();
        assert!(
            stall < Duration::from_millis(1000 + 3000),
            "data resumed on the backup after {stall:?} (keepalive_timeout_ms 1000)"
        );
        let (rest, hash) = {
            let mut whole = sha2_of_head(&head);
            let n = read_rest(&mut app, &mut whole);
            (n, whole.finish())
        };
        assert_eq!(rest + head.len() as u64, 48 * MIB);
        assert_eq!(
            hash,
            pattern_hash(43, 48 * MIB),
            "bytes lost or changed in the failover"
        );
        let paths = client.monitor.snapshot().paths;
        assert_eq!(
            paths[0].links, 0,
            "the dark primary's link is still counted: {paths:?}"
        );
        assert!(
            paths[1].totals.frames_resent > 0,
            "the backup re-sent nothing of what the primary lost: {paths:?}"
        );

        // The primary is back: new data leaves the backup again.
        relay.set(PRIMARY, Fate::Open);
        let back = wait_until(Duration::from_secs(10), || {
            client.monitor.snapshot().link_count() == 2
        });
        assert!(back, "the primary's link did not come back");
        let before = relay.carried(BACKUP);
        download(&client, 44, 16 * MIB);
        let after_failback = relay.carried(BACKUP) - before;
        assert!(
            after_failback < 64 * 1024,
            "the backup still carried {after_failback} bytes after the primary came back"
        );
    });
}

/// A running sha256 over a download, for checking one read in two parts.
struct Digest(sha2::Sha256, u64);

impl Digest {
    fn finish(self) -> [u8; 32] {
        use sha2::Digest as _;
        self.0.finalize().into()
    }
}

fn sha2_of_head(head: &[u8]) -> Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(head);
    Digest(h, head.len() as u64)
}

fn read_rest(app: &mut TcpStream, d: &mut Digest) -> u64 {
    use sha2::Digest as _;
    app.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match app.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => {
                d.0.update(&buf[..k]);
                d.1 += k as u64;
                n += k as u64;
            }
            Err(e) => panic!("download broke after {} bytes: {e}", d.1),
        }
    }
}

#[test]
fn a_path_whose_address_is_gone_fails_fast_is_logged_once_and_the_others_carry_on() {
    within(Duration::from_secs(60), || {
        // 192.0.2.1 (TEST-NET-1) is on no interface of this machine.
        let paths = format!(
            "[[client.path]]\nbind_ip = \"{PRIMARY}\"\nlinks = 1\n\
             [[client.path]]\nbind_ip = \"192.0.2.1\"\nlinks = 1\n"
        );
        let keys = "reconnect_min_ms = 20\nreconnect_max_ms = 100";
        let (_backend, _server, _relay, client) = bed(2, keys, &paths);
        wait_links(&client, 1);
        let id = client.monitor.snapshot().sessions[0].id;
        let gone = "source address 192.0.2.1 is not on this host";
        assert!(
            wait_log(
                Duration::from_secs(5),
                &[&format!("session {id:016x}"), gone]
            )
            .is_some(),
            "no log line names the missing source address"
        );
        download(&client, 51, 8 * MIB);
        upload(&client, 52, 8 * MIB);
        // Attempts go on every 100 ms at most; the warning is not repeated.
        let failed = |c: &ClientHandle| -> u64 {
            let snap = c.monitor.snapshot();
            snap.counters.handshakes_failed.iter().map(|(_, n)| n).sum()
        };
        assert!(
            wait_until(Duration::from_secs(10), || failed(&client) >= 10),
            "only {} attempts on the path failed",
            failed(&client)
        );
        let lines = log_lines(&[&format!("session {id:016x}"), gone]);
        assert_eq!(lines.len(), 1, "{lines:#?}");
    });
}

#[test]
fn links_bound_to_a_device_come_up_and_a_missing_device_is_named() {
    within(Duration::from_secs(60), || {
        let paths = format!(
            "[[client.path]]\nbind_ip = \"{PRIMARY}\"\ninterface = \"lo\"\nlinks = 1\n\
             [[client.path]]\ninterface = \"mtcp-nodev0\"\nlinks = 1\n"
        );
        let keys = "reconnect_min_ms = 20\nreconnect_max_ms = 100";
        let (_backend, _server, relay, client) = bed(2, keys, &paths);
        let id = {
            let mut id = None;
            assert!(wait_until(Duration::from_secs(10), || {
                id = client.monitor.snapshot().sessions.first().map(|s| s.id);
                id.is_some()
            }));
            id.unwrap_or_default()
        };
        // Binding a socket to a device needs CAP_NET_RAW; tests run as root
        // in CI, but a developer's may not.
        let denied = "binding to interface lo needs the CAP_NET_RAW capability";
        if wait_log(
            Duration::from_secs(2),
            &[&format!("session {id:016x}"), denied],
        )
        .is_some()
        {
            skip(
                "links_bound_to_a_device_come_up_and_a_missing_device_is_named",
                "no CAP_NET_RAW here, and the refusal was named",
            );
            return;
        }
        wait_links(&client, 1);
        assert_eq!(relay.accepted(PRIMARY), 1);
        assert!(
            wait_log(
                Duration::from_secs(5),
                &[
                    &format!("session {id:016x}"),
                    "there is no interface mtcp-nodev0"
                ]
            )
            .is_some(),
            "no log line names the missing device"
        );
        download(&client, 61, 4 * MIB);
    });
}

#[test]
fn a_stalled_uplink_does_not_hold_the_other_back() {
    within(Duration::from_secs(120), || {
        // Two primary paths; the keepalive would take 20 s to declare the
        // stalled one dead, far longer than the test waits.
        let paths = format!(
            "[[client.path]]\nbind_ip = \"{PRIMARY}\"\nlinks = 1\n\
             [[client.path]]\nbind_ip = \"{BACKUP}\"\nlinks = 1\n"
        );
        // A window far beyond what the stalled link's socket buffers absorb
        // on loopback, so that its queue fills before the window does.
        let keys = "keepalive_interval_ms = 200\nkeepalive_timeout_ms = 20000\n\
                    stream_window = 67108864";
        let (_backend, _server, relay, client) = bed_with(2, keys, keys, &paths);
        // The second uplink is the slower one: its queue fills, while the
        // first keeps the round trip and rate it had when it stalled, so
        // the scheduler still prefers it.
        relay.set(BACKUP, Fate::Slow(8 * MIB));
        wait_links(&client, 2);
        // A download far larger than the window, so that however fast the
        // first link took its share, most of it is still to come when that
        // link stalls.
        let size = 256 * MIB;
        let mut app = client.connect();
        app.write_all(b"D").unwrap();
        app.write_all(&size.to_be_bytes()).unwrap();
        app.write_all(&71u64.to_be_bytes()).unwrap();
        let mut head = vec![0u8; 4 * MIB as usize];
        app.read_exact(&mut head).unwrap();
        relay.set(PRIMARY, Fate::Stall);
        let before = relay.carried(BACKUP);
        let reader = std::thread::spawn(move || {
            let mut d = sha2_of_head(&head);
            let n = read_rest(&mut app, &mut d);
            (n + head.len() as u64, d.finish())
        });
        // The other uplink carries on, up to the stream window beyond the
        // bytes stuck in the stalled one, instead of the stream waiting for
        // room on the stalled link it picked (which took 1.4-2.6 MB before
        // it waited for good, when it did).
        let moved = wait_until(Duration::from_secs(20), || {
            relay.carried(BACKUP) > before + 8 * MIB
        });
        let carried = relay.carried(BACKUP) - before;
        relay.set(PRIMARY, Fate::Open);
        assert!(
            moved,
            "the other uplink carried only {carried} bytes while one stalled: the stream waited for the stalled link's queue"
        );
        let (n, hash) = reader.join().unwrap();
        assert_eq!(n, size);
        assert_eq!(hash, pattern_hash(71, size));
    });
}

/// An address on the loopback device for one test (TEST-NET-2, on no
/// network), removed and restored at will and always removed at the end.
/// While it is removed an `unreachable` route stands for it, so that
/// nothing sent to it leaves the machine by the default route.
struct TempAddress {
    ip: &'static str,
}

impl TempAddress {
    /// `None` when it cannot be added (not root, no `ip`).
    fn add(ip: &'static str) -> Option<TempAddress> {
        let t = TempAddress { ip };
        t.ip(&["route", "add", "unreachable", &t.host()])
            .then_some(())?;
        t.ip(&["addr", "add", &t.host(), "dev", "lo"]).then_some(t)
    }

    fn host(&self) -> String {
        format!("{}/32", self.ip)
    }

    fn ip(&self, args: &[&str]) -> bool {
        std::process::Command::new("ip")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn remove(&self) {
        assert!(self.ip(&["addr", "del", &self.host(), "dev", "lo"]));
    }

    fn restore(&self) {
        assert!(self.ip(&["addr", "add", &self.host(), "dev", "lo"]));
    }
}

impl Drop for TempAddress {
    fn drop(&mut self) {
        self.ip(&["addr", "del", &self.host(), "dev", "lo"]);
        self.ip(&["route", "del", "unreachable", &self.host()]);
    }
}

/// An uplink's address goes away (a lost DHCP lease, an interface taken
/// down) and comes back: its links die by keepalive, the attempts to
/// reconnect them fail fast and are logged, the other path carries
/// everything meanwhile, and once the address is back the path's links
/// come up again and carry data.
#[test]
fn links_come_back_when_a_removed_address_returns() {
    const GONE: &str = "198.51.100.77";
    within(Duration::from_secs(120), || {
        let Some(address) = TempAddress::add(GONE) else {
            eprintln!("SKIPPED: cannot add {GONE} to lo (needs root and iproute2)");
            return;
        };
        let paths = format!(
            "[[client.path]]\nbind_ip = \"{PRIMARY}\"\nlinks = 2\n\
             [[client.path]]\nbind_ip = \"{GONE}\"\nlinks = 2\n"
        );
        let keys = "keepalive_interval_ms = 200\nkeepalive_timeout_ms = 1000\n\
                    reconnect_min_ms = 50\nreconnect_max_ms = 300";
        // Both ends notice silent links within a second (each end detects
        // the silence of the links it sends on).
        let server_keys = "keepalive_interval_ms = 200\nkeepalive_timeout_ms = 1000";
        let (_backend, _server, relay, client) = bed_with(4, server_keys, keys, &paths);
        wait_links(&client, 4);
        let id = client.monitor.snapshot().sessions[0].id;
        download(&client, 61, 8 * MIB);
        assert!(relay.carried(GONE) > 0, "the path carried nothing");

        address.remove();
        wait_links(&client, 2);
        let gone = format!("source address {GONE} is not on this host");
        assert!(
            wait_log(
                Duration::from_secs(5),
                &[&format!("session {id:016x}"), &gone]
            )
            .is_some(),
            "no log line names the missing source address"
        );
        let (accepted, sent) = (relay.accepted(GONE), relay.sent_from(GONE));
        download(&client, 62, 8 * MIB);
        upload(&client, 63, 8 * MIB);
        // Only what the dead links' sockets had written before may still
        // trickle in (loopback carries it whatever the address). What the
        // server wrote to its ends of those links before its keepalive ran
        // out is lost on the way and sent again: checked by the sha256.
        assert_eq!(
            relay.accepted(GONE),
            accepted,
            "a link came up from a gone address"
        );
        assert!(
            relay.sent_from(GONE) - sent < MIB,
            "bytes left from a gone address: {}",
            relay.sent_from(GONE) - sent
        );

        address.restore();
        wait_links(&client, 4);
        let snap = client.monitor.snapshot();
        assert_eq!(snap.sessions.len(), 1, "the session was replaced");
        assert_eq!(snap.sessions[0].id, id);
        assert!(
            relay.accepted(GONE) >= accepted + 2,
            "the path's links did not come back"
        );
        let before = relay.carried(GONE);
        download(&client, 64, 16 * MIB);
        upload(&client, 65, 16 * MIB);
        assert!(
            relay.carried(GONE) > before,
            "the returned path carries nothing"
        );
    });
}
