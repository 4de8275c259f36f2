//! A fleet of servers behind HAProxy (issue 17): three real `mtcp server`
//! processes, each with its own backend and metrics endpoint, a real
//! `haproxy` in front of them that pins every link to its session's server
//! by the session id at byte 11 of the link's first bytes (the lines of
//! `etc/haproxy.cfg`), and six clients (pools of 4, 0-RTT) in this process.
//!
//! Checked: every session's four links meet on one server, and every stream
//! reaches that server's backend intact, both ways; a server killed with
//! kill -9 resets its clients' open streams within 2 s and those clients
//! are served by another server within 2 s, while the other clients'
//! transfers and sessions go on untouched; a server drained with SIGTERM
//! finishes its open transfers while its clients' new connections go to
//! another server; after HAProxy reloads without peers (its stick table
//! lost, the open links kept on the old process), links cut by the network
//! are refused by servers that do not know their session and retried until
//! they reach their session's server, every session kept whole and in
//! place; a server added to the fleet (listed in HAProxy's configuration,
//! down until it starts) takes new sessions only: links cut after it came
//! up go back to their sessions' servers. Plain and secured links both
//! (the id sits at the same offset in either). The servers are processes
//! (a kill -9 and a drain need a process of their own), HAProxy is the one
//! Debian ships. Without `haproxy` the fleet tests print a `SKIPPED` line
//! and pass.

mod common;

use common::process::Daemon;
use common::{
    Backend, ClientHandle, FaultProxy, HeldPort, IO_TIMEOUT, TempDir, client_toml, download,
    output_within, pattern_hash, read_to_end_hash, skip, start_client_toml, upload, wait_until,
};
use mtcp::proto::frame::{FLAGS_OFFSET, HELLO_JOIN, SESSION_ID_OFFSET};
use mtcp::status::scrape;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SERVERS: usize = 3;
const CLIENTS: usize = 6;
const POOL: usize = 4;
const MIB: u64 = 1024 * 1024;
/// The servers' `drain_timeout_ms`.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a failed server may take to reset its clients' streams, and
/// those clients to be served again elsewhere.
const FAILOVER: Duration = Duration::from_secs(2);
/// Longest wait for the fleet to settle (links up, sessions pinned).
const SETTLE: Duration = Duration::from_secs(15);
/// The secret of a secured fleet (every server and client).
const SECRET: &str = "secret = \"fleet-test-secret-0123456789\"\n";

/// True when the servers can take HAProxy's PROXY protocol v2 header
/// before a link's first bytes (`accept_proxy_protocol`): the fleet then
/// runs with it (`send-proxy-v2 check-send-proxy`), as `etc/haproxy.cfg`
/// does; a build without the key runs it without.
fn proxy_protocol() -> bool {
    let probe = "mode = \"server\"\n[server]\nlisten_ip = \"127.0.0.1\"\nlisten_port = 0\n\
                 backend_ip = \"127.0.0.1\"\nbackend_port = 9\nconnection_pool_size = 4\n\
                 buffer_size = 65536\naccept_proxy_protocol = true\n";
    mtcp::config::parse(probe, Path::new("probe.toml")).is_ok()
}

/// The lines of `etc/haproxy.cfg` that keep a session's links together, by
/// section; the test's configuration uses them as they are, and
/// [`the_example_haproxy_config_is_valid_and_pins_by_session_id`] checks
/// that the example still has every one.
const DEFAULTS_LINES: &[&str] = &["retries 3", "option redispatch 1", "timeout connect 1s"];
const FRONTEND_LINES: &[&str] = &[
    "tcp-request inspect-delay 5s",
    "tcp-request content accept if { req.len ge 19 }",
];
const BACKEND_LINES: &[&str] = &[
    "stick-table type binary len 8 size 1m expire 1h",
    "tcp-request content track-sc0 req.payload(11,8)",
    "acl mtcp_joins req.payload(10,1),hex,hex2i,and(1) eq 1",
    "stick match req.payload(11,8)",
    "stick store-request req.payload(11,8) if !mtcp_joins",
];

/// The `haproxy` binary: on `PATH`, or where Debian puts it (a PATH
/// without the sbin directories is common outside a root login).
fn haproxy_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|bin| bin.is_file())
}

/// The binary, or `None` after a loud `SKIPPED` line.
fn haproxy_or_skip(test: &str) -> Option<PathBuf> {
    let bin = haproxy_bin();
    if bin.is_none() {
        skip(
            test,
            "haproxy not installed (Debian package `haproxy`; .ci/run installs it)",
        );
    }
    bin
}

/// A real `haproxy` in the foreground (`-db`), its log (stderr) collected;
/// killed when dropped, with the processes a [`reload`](Self::reload)
/// retired.
struct Haproxy {
    child: Child,
    /// Processes replaced by a reload, still serving the links they had.
    retired: Vec<Child>,
    bin: PathBuf,
    config: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    /// Where clients connect: a port held for the whole test.
    addr: SocketAddr,
    _port: HeldPort,
    /// Its stats socket, for the stick table and the servers' states.
    socket: PathBuf,
}

impl Haproxy {
    fn start(bin: &Path, dir: &TempDir, servers: &[SocketAddr]) -> Haproxy {
        let port = HeldPort::new("127.0.0.1");
        let socket = dir.0.join("haproxy.sock");
        let config = dir.write("haproxy.cfg", &haproxy_config(port.addr, servers, &socket));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let child = Haproxy::spawn(bin, &config, &[], &lines);
        let mut haproxy = Haproxy {
            child,
            retired: Vec::new(),
            bin: bin.to_path_buf(),
            config,
            lines,
            addr: port.addr,
            _port: port,
            socket,
        };
        // Up once its stats socket answers; a bad configuration ends it.
        let mut up = false;
        wait_until(Duration::from_secs(10), || {
            up = haproxy.query("show info").contains("Pid:");
            up || !haproxy.running()
        });
        assert!(up, "haproxy did not come up; its log:\n{}", haproxy.log());
        haproxy
    }

    /// `haproxy -db -f config` with `args`; its stderr goes to `lines`.
    fn spawn(bin: &Path, config: &Path, args: &[&str], lines: &Arc<Mutex<Vec<String>>>) -> Child {
        let mut child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let sink = lines.clone();
        let stderr = child.stderr.take();
        thread::spawn(move || {
            if let Some(s) = stderr {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            }
        });
        child
    }

    /// A reload without a `peers` section, as `haproxy -sf` does it (and
    /// `systemctl reload` of a configuration without one): a new process
    /// with an empty stick table takes the listening port and the stats
    /// socket, and the old one stops listening but keeps serving the links
    /// it has. Returns once the new process answers on the stats socket
    /// and the old one has stopped listening.
    fn reload(&mut self) {
        let old = self.child.id();
        let new = Haproxy::spawn(
            &self.bin,
            &self.config,
            &["-sf", &old.to_string()],
            &self.lines,
        );
        let pid = new.id();
        self.retired.push(std::mem::replace(&mut self.child, new));
        let (serving, stopped) = (
            format!("Pid: {pid}"),
            format!("({old}) : Proxy links stopped"),
        );
        let mut done = false;
        wait_until(Duration::from_secs(10), || {
            done = self.query("show info").lines().any(|l| l == serving)
                && self.log().contains(&stopped);
            done || !self.running()
        });
        assert!(
            done,
            "the reloaded haproxy (pid {pid}) did not take over from pid {old}; the log:\n{}",
            self.log()
        );
    }

    /// Stick table entries that hold a server: sessions whose links this
    /// process sends to a known server (entries that only `track-sc0`
    /// made have `server_id=0`).
    fn placed_entries(&self) -> usize {
        self.query("show table fleet")
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .any(|f| f.strip_prefix("server_id=").is_some_and(|id| id != "0"))
            })
            .count()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// The answer to one command on the stats socket ("" if none).
    fn query(&self, command: &str) -> String {
        let Ok(mut sock) = UnixStream::connect(&self.socket) else {
            return String::new();
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = sock.write_all(format!("{command}\n").as_bytes());
        let mut answer = String::new();
        let _ = sock.read_to_string(&mut answer);
        answer
    }

    /// Each server's name (`mtcp0`, ...) and status as HAProxy sees it
    /// (`UP`, `DOWN`, `UP 1/2` while it goes down, ...).
    fn statuses(&self) -> Vec<(String, String)> {
        // CSV: pxname, svname, ..., and the 18th field is the status.
        self.query("show stat")
            .lines()
            .filter(|l| l.starts_with("fleet,mtcp"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[1].to_string(),
                    f.get(17).copied().unwrap_or("?").to_string(),
                )
            })
            .collect()
    }

    /// Waits (bounded) until HAProxy's health checks give server `s` (its
    /// index) the status `want` (`UP` or `DOWN`, not on the way to it);
    /// fails the test with the servers' states.
    fn wait_status(&self, s: usize, want: &str, what: &str) {
        let name = format!("mtcp{s}");
        let settled = wait_until(SETTLE, || {
            self.statuses()
                .iter()
                .any(|(n, status)| *n == name && status == want)
        });
        assert!(
            settled,
            "{what}: haproxy did not mark server {s} {want} within {SETTLE:?}\n{}",
            self.state()
        );
    }

    /// The stick table and the servers' states, for failure messages.
    fn state(&self) -> String {
        let status: Vec<String> = self
            .statuses()
            .into_iter()
            .map(|(name, status)| format!("{name} {status}"))
            .collect();
        format!(
            "haproxy servers: {status:?}\n{}\nhaproxy log:\n{}",
            self.query("show table fleet"),
            self.log()
        )
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        for child in self.retired.iter_mut().chain([&mut self.child]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test's HAProxy configuration: the example's pinning lines and round
/// robin, so that sessions spread over the servers evenly and the same way
/// every run, and a link balanced again goes to the next server (leastconn
/// may send it to the same wrong one every time: README, Scale out,
/// Several HAProxys); checks five times as
/// often as the example's (a dead server is marked down well within
/// [`FAILOVER`]); its log on stderr; a stats socket.
fn haproxy_config(listen: SocketAddr, servers: &[SocketAddr], socket: &Path) -> String {
    let indent = |lines: &[&str]| {
        lines
            .iter()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let proxy = if proxy_protocol() {
        " send-proxy-v2 check-send-proxy"
    } else {
        ""
    };
    let mut cfg = format!(
        "global\n    log stderr format raw local0 info\n    \
         stats socket {} mode 600 level admin\n    maxconn 4000\n\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    option dontlognull\n\
         {}    timeout client 5m\n    timeout server 5m\n    timeout tunnel 1h\n    \
         timeout check 1s\n\n\
         frontend links\n    bind {listen}\n{}    default_backend fleet\n\n\
         backend fleet\n    balance roundrobin\n{}    \
         default-server check inter 200ms fall 2 rise 2{proxy}\n",
        socket.display(),
        indent(DEFAULTS_LINES),
        indent(FRONTEND_LINES),
        indent(BACKEND_LINES),
    );
    for (i, s) in servers.iter().enumerate() {
        cfg.push_str(&format!("    server mtcp{i} {s}\n"));
    }
    cfg
}

/// One `mtcp server` process of the fleet, with its own backend.
struct Member {
    daemon: Daemon,
    backend: Backend,
    /// Where its links arrive.
    addr: SocketAddr,
    /// Its `metrics_listen` (an ephemeral port, read from its log).
    metrics: SocketAddr,
    /// False once the test killed it or it exited.
    alive: bool,
    /// The port it listens on, when it was held for it before it started.
    _port: Option<HeldPort>,
}

impl Member {
    /// Server `i`, on an ephemeral port or on `port`, held for it so far.
    fn start(dir: &TempDir, i: usize, secured: bool, port: Option<HeldPort>) -> Member {
        let backend = Backend::start();
        let proxy = if proxy_protocol() {
            "accept_proxy_protocol = true\n"
        } else {
            ""
        };
        let config = format!(
            "mode = \"server\"\n[server]\nlisten_ip = \"127.0.0.1\"\nlisten_port = {}\n\
             backend_ip = \"127.0.0.1\"\nbackend_port = {}\nconnection_pool_size = {POOL}\n\
             buffer_size = 65536\nmetrics_listen = \"127.0.0.1:0\"\nstats_interval_ms = 0\n\
             drain_timeout_ms = {}\n{proxy}{}",
            port.as_ref().map_or(0, |p| p.addr.port()),
            backend.addr.port(),
            DRAIN.as_millis(),
            if secured { SECRET } else { "" }
        );
        let path = dir.write(&format!("server{i}.toml"), &config);
        let daemon = Daemon::start("server", &path, None);
        let addr = daemon.listening_addr();
        let line = daemon.wait_log(&["metrics endpoint on http://"]);
        let metrics = line
            .split("http://")
            .nth(1)
            .map(|rest| rest.trim_end_matches("/metrics").trim())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in {line:?}"));
        Member {
            daemon,
            backend,
            addr,
            metrics,
            alive: true,
            _port: port,
        }
    }

    /// Streams its backend has accepted.
    fn streams(&self) -> usize {
        self.backend.accepted.load(Ordering::SeqCst)
    }
}

/// Servers, HAProxy and clients; dropped in this order: clients first (they
/// drain in a second), then HAProxy, then the servers (killed).
struct Fleet {
    clients: Vec<ClientHandle>,
    /// Per client, the relay its links pass on their way to HAProxy (a
    /// relayed fleet's; none otherwise): cutting one of them is a link
    /// cut by the network.
    relays: Vec<FaultProxy>,
    relayed: bool,
    haproxy: Haproxy,
    /// The servers started so far, in HAProxy's order (`mtcp0`, ...).
    servers: Vec<Member>,
    /// The ports of the servers HAProxy lists that are not started yet, in
    /// its order after those in `servers`: held, so connects to them are
    /// refused (HAProxy marks them down) until [`grow`](Fleet::grow)
    /// starts a server on the next.
    held: Vec<HeldPort>,
    /// Links authenticated and encrypted (the session id in the secured
    /// preamble), or plain (in the HELLO).
    secured: bool,
    dir: TempDir,
}

/// Where every client's sessions are, each on one server with all its
/// links.
struct Pinned {
    /// Per client, its sessions and the server (index) each is on.
    clients: Vec<Vec<(u64, usize)>>,
}

impl Pinned {
    /// The servers client `c`'s sessions are on.
    fn servers_of(&self, c: usize) -> BTreeSet<usize> {
        self.clients[c].iter().map(|&(_, s)| s).collect()
    }

    /// Client `c`'s session ids.
    fn ids_of(&self, c: usize) -> BTreeSet<u64> {
        self.clients[c].iter().map(|&(id, _)| id).collect()
    }

    /// The clients whose (only) session is on server `s`.
    fn clients_on(&self, s: usize) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&c| self.servers_of(c) == BTreeSet::from([s]))
            .collect()
    }
}

impl Fleet {
    fn start(bin: &Path, secured: bool) -> Fleet {
        Fleet::start_with(bin, secured, false)
    }

    /// A fleet whose clients reach HAProxy each through a [`FaultProxy`]
    /// of its own, when `relayed`.
    fn start_with(bin: &Path, secured: bool, relayed: bool) -> Fleet {
        let fleet = Fleet::start_some(bin, secured, relayed, SERVERS);
        fleet.add_clients()
    }

    /// Servers and HAProxy, no client yet: HAProxy lists [`SERVERS`]
    /// servers, of which the first `running` run; the others' ports are
    /// held for [`grow`](Self::grow).
    fn start_some(bin: &Path, secured: bool, relayed: bool, running: usize) -> Fleet {
        common::init_logging();
        let dir = TempDir::new("fleet");
        let servers: Vec<Member> = (0..running)
            .map(|i| Member::start(&dir, i, secured, None))
            .collect();
        let held: Vec<HeldPort> = (running..SERVERS)
            .map(|_| HeldPort::new("127.0.0.1"))
            .collect();
        let addrs: Vec<SocketAddr> = servers
            .iter()
            .map(|s| s.addr)
            .chain(held.iter().map(|p| p.addr))
            .collect();
        let haproxy = Haproxy::start(bin, &dir, &addrs);
        Fleet {
            clients: Vec::new(),
            relays: Vec::new(),
            relayed,
            haproxy,
            servers,
            held,
            secured,
            dir,
        }
    }

    /// [`CLIENTS`] clients, started one after another.
    fn add_clients(mut self) -> Fleet {
        for _ in 0..CLIENTS {
            self.add_client();
        }
        self
    }

    /// Starts the next server HAProxy lists but that does not run yet, on
    /// the port held for it; returns its index.
    fn grow(&mut self) -> usize {
        assert!(!self.held.is_empty(), "every server HAProxy lists runs");
        let port = self.held.remove(0);
        let (i, addr) = (self.servers.len(), port.addr);
        let server = Member::start(&self.dir, i, self.secured, Some(port));
        assert_eq!(
            server.addr, addr,
            "server {i} listens elsewhere than its held port"
        );
        self.servers.push(server);
        i
    }

    /// One more client of the fleet (pool of 4, 0-RTT): its pool connects
    /// at once.
    fn add_client(&mut self) -> usize {
        let mut server = self.haproxy.addr;
        if self.relayed {
            let relay = FaultProxy::start(server);
            server = relay.addr;
            self.relays.push(relay);
        }
        self.clients.push(start_client_toml(&client_toml(
            server,
            POOL,
            true,
            &format!(
                "stats_interval_ms = 0\ndrain_timeout_ms = 1000\n{}",
                if self.secured { SECRET } else { "" }
            ),
        )));
        self.clients.len() - 1
    }

    /// Links the live servers refused because they do not know the
    /// session: links a load balancer sent to another server than their
    /// session's.
    fn astray(&self) -> u64 {
        self.servers
            .iter()
            .filter(|s| s.alive)
            .filter_map(|s| scrape(s.metrics).ok())
            .flat_map(|x| x.samples)
            .filter(|m| {
                m.name == "mtcp_links_refused_total" && m.label("reason") == "unknown_session"
            })
            .map(|m| m.value as u64)
            .sum()
    }

    /// Every live server's sessions: id → links up, per server index.
    fn placement(&self) -> Result<BTreeMap<u64, Vec<(usize, u64)>>, String> {
        let mut at: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
        for (i, server) in self.servers.iter().enumerate().filter(|(_, s)| s.alive) {
            let scraped = scrape(server.metrics).map_err(|e| format!("server {i}: {e}"))?;
            for sample in scraped
                .samples
                .iter()
                .filter(|s| s.name == "mtcp_session_links")
            {
                let id = u64::from_str_radix(sample.label("session"), 16)
                    .map_err(|e| format!("server {i}: session label: {e}"))?;
                at.entry(id).or_default().push((i, sample.value as u64));
            }
        }
        Ok(at)
    }

    /// Every client's sessions with all their links up, each on exactly one
    /// live server that holds it with all its links, and no other session
    /// on any server; or what is not so.
    fn pinned(&self) -> Result<Pinned, String> {
        let at = self.placement()?;
        let mut clients = Vec::new();
        let mut known = BTreeSet::new();
        for (c, client) in self.clients.iter().enumerate() {
            let snapshot = client.monitor.snapshot();
            if snapshot.sessions.is_empty() {
                return Err(format!("client {c} has no session"));
            }
            let mut mine = Vec::new();
            for s in &snapshot.sessions {
                known.insert(s.id);
                if s.links.len() != POOL {
                    return Err(format!(
                        "client {c}: session {:016x} has {} of {POOL} links up",
                        s.id,
                        s.links.len()
                    ));
                }
                match at.get(&s.id).map(Vec::as_slice) {
                    Some(&[(server, links)]) if links == POOL as u64 => mine.push((s.id, server)),
                    Some(places) => {
                        return Err(format!(
                            "client {c}: session {:016x} is on (server, links) {places:?}, \
                             expected one server with all {POOL} links",
                            s.id
                        ));
                    }
                    None => {
                        return Err(format!(
                            "client {c}: session {:016x} is on no live server",
                            s.id
                        ));
                    }
                }
            }
            clients.push(mine);
        }
        let strays: Vec<String> = at
            .iter()
            .filter(|(id, _)| !known.contains(*id))
            .map(|(id, places)| format!("{id:016x} on {places:?}"))
            .collect();
        if !strays.is_empty() {
            return Err(format!("sessions no client has: {strays:?}"));
        }
        Ok(Pinned { clients })
    }

    /// Waits (bounded) until [`pinned`](Self::pinned) holds; fails the test
    /// with what did not hold.
    fn wait_pinned(&self, what: &str) -> Pinned {
        let mut last = Err(String::new());
        wait_until(SETTLE, || {
            last = self.pinned();
            last.is_ok()
        });
        last.unwrap_or_else(|why| {
            panic!(
                "{what}: the sessions' links did not all meet on one server within {SETTLE:?}: \
                 {why}\n{}",
                self.haproxy.state()
            )
        })
    }

    /// The server hosting the most clients' sessions, its clients, and the
    /// other clients (at least one).
    fn busiest(&self, pinned: &Pinned) -> (usize, Vec<usize>, Vec<usize>) {
        let server = (0..SERVERS)
            .max_by_key(|&s| pinned.clients_on(s).len())
            .expect("servers");
        let on = pinned.clients_on(server);
        let others: Vec<usize> = (0..CLIENTS).filter(|c| !on.contains(c)).collect();
        assert!(
            !on.is_empty() && !others.is_empty(),
            "sessions were not spread over the servers: {:?}",
            pinned.clients
        );
        (server, on, others)
    }
}

/// One download through a client, checked; fails fast rather than hang.
fn try_download(client: SocketAddr, seed: u64, len: u64) -> io::Result<()> {
    let mut app = TcpStream::connect(client)?;
    app.set_read_timeout(Some(Duration::from_secs(2)))?;
    app.write_all(b"D")?;
    app.write_all(&len.to_be_bytes())?;
    app.write_all(&seed.to_be_bytes())?;
    let (n, hash) = read_to_end_hash(&mut app)?;
    if n != len || hash != pattern_hash(seed, len) {
        return Err(io::Error::other(format!(
            "got {n} of {len} bytes, or other bytes"
        )));
    }
    Ok(())
}

/// Retries [`try_download`] until one succeeds (when it ended) or one
/// started by `deadline` fails.
fn download_by(client: SocketAddr, seed: u64, deadline: Instant) -> Result<Instant, io::Error> {
    loop {
        match try_download(client, seed, MIB) {
            Ok(()) => return Ok(Instant::now()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What a download read (bytes, sha256), or how it failed.
type Received = io::Result<(u64, [u8; 32])>;

/// A download read by a thread of its own at about 8 MiB/s, so that it is
/// still in flight when a server dies or drains; counts what it read.
struct Transfer {
    got: Arc<AtomicU64>,
    reader: thread::JoinHandle<(Received, Instant)>,
    seed: u64,
    len: u64,
}

/// A download that never ends by itself.
const ENDLESS: u64 = 1 << 40;

impl Transfer {
    fn start(client: SocketAddr, seed: u64, len: u64) -> Transfer {
        let mut app = TcpStream::connect(client).expect("connect to client");
        app.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        app.write_all(b"D").expect("command");
        app.write_all(&len.to_be_bytes()).expect("length");
        app.write_all(&seed.to_be_bytes()).expect("seed");
        let got = Arc::new(AtomicU64::new(0));
        let counter = got.clone();
        let reader = thread::spawn(move || {
            let mut paced = Pacer(app, counter);
            (read_to_end_hash(&mut paced), Instant::now())
        });
        Transfer {
            got,
            reader,
            seed,
            len,
        }
    }

    fn bytes(&self) -> u64 {
        self.got.load(Ordering::SeqCst)
    }

    /// Waits (bounded) for its end: what it read, or how it failed, and
    /// when.
    fn end(self, limit: Duration) -> (Received, Instant) {
        let ended = wait_until(limit, || self.reader.is_finished());
        assert!(
            ended,
            "transfer {} still running after {limit:?} ({} bytes read)",
            self.seed,
            self.bytes()
        );
        self.reader.join().expect("transfer reader")
    }

    /// Waits (bounded) for its end and checks every byte; when it ended.
    fn finish(self, limit: Duration) -> Instant {
        let (seed, len) = (self.seed, self.len);
        let (result, at) = self.end(limit);
        let (n, hash) = result.unwrap_or_else(|e| panic!("transfer {seed} failed: {e}"));
        assert_eq!(n, len, "transfer {seed}: length");
        assert_eq!(
            hash,
            pattern_hash(seed, len),
            "transfer {seed} arrived corrupted"
        );
        at
    }
}

/// Reads at most 8 MiB/s and counts what it read.
struct Pacer(TcpStream, Arc<AtomicU64>);

impl Read for Pacer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let most = buf.len().min(64 * 1024);
        let n = self.0.read(&mut buf[..most])?;
        self.1.fetch_add(n as u64, Ordering::SeqCst);
        thread::sleep(Duration::from_micros(n as u64 / 8));
        Ok(n)
    }
}

/// Starts a paced transfer through every client (`ENDLESS` for those in
/// `endless`) and waits until each has moved a first MiB.
fn transfers(fleet: &Fleet, len: u64, endless: &[usize]) -> Vec<Transfer> {
    let all: Vec<Transfer> = fleet
        .clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let len = if endless.contains(&c) { ENDLESS } else { len };
            Transfer::start(client.addr, 100 + c as u64, len)
        })
        .collect();
    let moving = wait_until(SETTLE, || all.iter().all(|t| t.bytes() >= MIB));
    assert!(
        moving,
        "not every transfer started moving: {:?} bytes\n{}",
        all.iter().map(Transfer::bytes).collect::<Vec<_>>(),
        fleet.haproxy.state()
    );
    all
}

/// Uploads then downloads `len` bytes through every client at once (seeds
/// from `seed` on), every byte compared, and checks that each stream
/// reached the backend of its session's server (and no link moved
/// meanwhile).
fn round_trips(fleet: &Fleet, pinned: &Pinned, seed: u64, len: u64) {
    let before: Vec<usize> = fleet.servers.iter().map(Member::streams).collect();
    thread::scope(|scope| {
        for (c, client) in fleet.clients.iter().enumerate() {
            scope.spawn(move || {
                upload(client, seed + c as u64, len);
                download(client, seed + 10 + c as u64, len);
            });
        }
    });
    for (s, server) in fleet.servers.iter().enumerate().filter(|(_, s)| s.alive) {
        let expected = 2 * pinned.clients_on(s).len();
        assert_eq!(
            server.streams() - before[s],
            expected,
            "streams at server {s}'s backend, expected two per client whose session is there \
             ({:?})",
            pinned.clients
        );
    }
}

/// Secured links (the session id in their clear preamble): each session's
/// four links on one server, one session per client on the fleet, and each
/// stream, up and down, at the backend of its session's server, intact.
#[test]
fn every_session_s_links_meet_on_one_server_and_its_streams_arrive_intact() {
    let Some(bin) = haproxy_or_skip("fleet: sessions pinned") else {
        return;
    };
    let fleet = Fleet::start(&bin, true);
    let pinned = fleet.wait_pinned("at start");
    let sessions: usize = (0..CLIENTS).map(|c| pinned.ids_of(c).len()).sum();
    assert_eq!(sessions, CLIENTS, "one session per client");
    let counted: f64 = fleet
        .servers
        .iter()
        .map(|s| {
            scrape(s.metrics)
                .expect("scrape")
                .samples
                .iter()
                .filter(|x| x.name == "mtcp_sessions")
                .map(|x| x.value)
                .sum::<f64>()
        })
        .sum();
    assert_eq!(
        counted, CLIENTS as f64,
        "mtcp_sessions over the fleet, expected one per client"
    );
    if proxy_protocol() {
        // Links came up on servers that refuse any without a PROXY v2
        // header, and HAProxy's checks carry one too (LOCAL), which each
        // server counts.
        for (s, server) in fleet.servers.iter().enumerate() {
            let checked = wait_until(SETTLE, || {
                scrape(server.metrics).is_ok_and(|x| {
                    x.samples.iter().any(|m| {
                        m.name == "mtcp_handshakes_failed_total"
                            && m.label("reason") == "health_check"
                            && m.value > 0.0
                    })
                })
            });
            assert!(checked, "server {s} counted no PROXY-protocol health check");
        }
    }
    println!(
        "FLEET: PROXY protocol v2 {}",
        if proxy_protocol() {
            "on"
        } else {
            "off (the servers do not accept it)"
        }
    );

    round_trips(&fleet, &pinned, 10, 8 * MIB);
    let after = fleet.wait_pinned("after the transfers");
    for c in 0..CLIENTS {
        assert_eq!(
            after.clients[c], pinned.clients[c],
            "client {c}'s session changed"
        );
    }
}

/// Plain links (the session id in the HELLO): kill -9 of the server with
/// the most sessions, while a transfer runs through every client.
#[test]
fn a_killed_server_s_clients_start_over_on_another_and_the_others_are_untouched() {
    let Some(bin) = haproxy_or_skip("fleet: a server killed") else {
        return;
    };
    let mut fleet = Fleet::start(&bin, false);
    let pinned = fleet.wait_pinned("at start");
    let (victim, hit, spared) = fleet.busiest(&pinned);
    let running = transfers(&fleet, 24 * MIB, &hit);

    let killed_at = Instant::now();
    fleet.servers[victim].daemon.kill();
    fleet.servers[victim].alive = false;

    // The clients whose session died with it: their open streams are reset
    // within 2 s, and a new connection through each is served within 2 s
    // of the kill, by another server.
    let mut running: Vec<Option<Transfer>> = running.into_iter().map(Some).collect();
    let served = thread::scope(|scope| {
        let waits: Vec<_> = hit
            .iter()
            .map(|&c| {
                let transfer = running[c].take().expect("transfer");
                let addr = fleet.clients[c].addr;
                scope.spawn(move || {
                    let (result, at) = transfer.end(Duration::from_secs(10));
                    let served = download_by(addr, 50 + c as u64, killed_at + FAILOVER);
                    (c, result, at, served)
                })
            })
            .collect();
        waits
            .into_iter()
            .map(|w| w.join().expect("waiter"))
            .collect::<Vec<_>>()
    });
    for (c, result, at, served) in served {
        match result {
            Err(_) => {}
            Ok((n, _)) => panic!(
                "client {c}: a stream through the killed server ended cleanly after {n} bytes; \
                 expected a reset"
            ),
        }
        let took = at.duration_since(killed_at);
        assert!(
            took < FAILOVER,
            "client {c}: its stream was reset {took:?} after the kill, expected within {FAILOVER:?}"
        );
        let at = served.unwrap_or_else(|e| {
            panic!(
                "client {c}: no connection served within {FAILOVER:?} of the kill: {e}\n{}",
                fleet.haproxy.state()
            )
        });
        println!(
            "FLEET: kill -9 of server {victim}: client {c}'s stream reset after {took:?}, \
             a new connection served after {:?}",
            at.duration_since(killed_at)
        );
    }
    let after = fleet.wait_pinned("after the kill");
    for &c in &hit {
        assert!(
            !after.servers_of(c).contains(&victim) && after.ids_of(c) != pinned.ids_of(c),
            "client {c} did not start a new session on another server: {:?}",
            after.clients[c]
        );
    }
    // The others never noticed.
    for &c in &spared {
        running[c].take().expect("transfer").finish(IO_TIMEOUT);
        assert_eq!(
            after.clients[c], pinned.clients[c],
            "client {c}, whose server lives, changed session or server"
        );
    }
}

/// Secured links: SIGTERM to the server with the most sessions, while a
/// transfer runs through every client.
#[test]
fn a_drained_server_finishes_its_transfers_while_its_clients_move_on() {
    let Some(bin) = haproxy_or_skip("fleet: a server drained") else {
        return;
    };
    let mut fleet = Fleet::start(&bin, true);
    let pinned = fleet.wait_pinned("at start");
    let (drained, movers, others) = fleet.busiest(&pinned);
    let len = 24 * MIB;
    let running = transfers(&fleet, len, &[]);
    let streams_before = fleet.servers[drained].streams();

    let termed = Instant::now();
    fleet.servers[drained].daemon.signal("TERM");
    // A connection its clients open before its GOAWAY reaches them still
    // goes there, as it should; from then on, none does.
    let told = wait_until(SETTLE, || {
        movers.iter().all(|&c| {
            fleet.clients[c]
                .monitor
                .sessions()
                .iter()
                .any(|s| s.peer_going_away())
        })
    });
    assert!(
        told,
        "the draining server's clients did not hear its GOAWAY; its log:\n{}",
        fleet.servers[drained].daemon.log()
    );

    // While it drains, it takes no new session: its clients' new
    // connections, and those of new clients, one per server (round robin
    // would give one of them to the draining server if it still took
    // sessions), are served at once, elsewhere; no new stream reaches its
    // backend.
    let fresh: Vec<usize> = (0..SERVERS).map(|_| fleet.add_client()).collect();
    thread::scope(|scope| {
        for &c in movers.iter().chain(&fresh) {
            let addr = fleet.clients[c].addr;
            let haproxy = &fleet.haproxy;
            scope.spawn(move || {
                if let Err(e) = download_by(addr, 60 + c as u64, Instant::now() + FAILOVER) {
                    panic!(
                        "client {c}: no new connection served within {FAILOVER:?} while a \
                         server drains: {e}\n{}",
                        haproxy.state()
                    );
                }
            });
        }
    });
    assert_eq!(
        fleet.servers[drained].streams(),
        streams_before,
        "a new stream reached the draining server's backend"
    );
    // Every transfer, through the draining server too, arrives whole within
    // the drain time.
    for (c, transfer) in running.into_iter().enumerate() {
        let at = transfer.finish(DRAIN + Duration::from_secs(5));
        assert!(
            at.duration_since(termed) < DRAIN,
            "client {c}: its transfer ended {:?} after SIGTERM, past the drain time",
            at.duration_since(termed)
        );
    }
    let code = fleet.servers[drained].daemon.wait_exit();
    fleet.servers[drained].alive = false;
    println!(
        "FLEET: SIGTERM to server {drained}: every transfer intact, the server exited after {:?}",
        termed.elapsed()
    );
    assert_eq!(
        code,
        Some(0),
        "the drained server's exit code; its log:\n{}",
        fleet.servers[drained].daemon.log()
    );
    let after = fleet.wait_pinned("after the drain");
    for &c in movers.iter().chain(&fresh) {
        assert!(
            !after.servers_of(c).contains(&drained),
            "client {c} is on the drained server: {:?}",
            after.clients[c]
        );
    }
    for &c in &others {
        assert_eq!(
            after.clients[c], pinned.clients[c],
            "client {c}, whose server was not drained, changed session or server"
        );
    }
}

/// Plain links: HAProxy reloaded without peers (its stick table lost while
/// every session's links stay open on the old process), then a link of
/// each of two sessions on one server cut by the network (each client
/// reaches HAProxy through a relay of its own). Each cut link reconnects
/// to the new process, which knows no session's server and balances it;
/// one landing on another server is refused there (unknown session), and
/// since a joining link stores nothing in the table, its retries are
/// balanced afresh until one reaches its session's server. Two at once
/// make sure at least one lands wrong: round robin never gives two links
/// in a row the same server. With `stick on req.payload(11,8)` instead of
/// the `stick match`/`stick store-request` pair, the wrong server is
/// stored and every retry sent back there: this test then fails (a link
/// still refused after 15 s).
///
/// A reload, not `clear table`: `clear table` on the stats socket spares
/// entries in use, and `track-sc0` holds every entry whose session has a
/// link open, so it clears none of them; HAProxy 2.6 cannot remove a
/// binary key by name either.
#[test]
fn links_cut_after_haproxy_lost_its_stick_table_find_their_session_s_server() {
    let Some(bin) = haproxy_or_skip("fleet: stick table lost") else {
        return;
    };
    let mut fleet = Fleet::start_with(&bin, false, true);
    let pinned = fleet.wait_pinned("at start");
    // Two sessions on one server (six sessions on three servers: the
    // busiest has at least two).
    let (server, on, _) = fleet.busiest(&pinned);
    let cut = &on[..2];
    let placed = fleet.haproxy.placed_entries();
    assert_eq!(
        placed,
        CLIENTS,
        "stick table entries with a server before the reload, expected one per session\n{}",
        fleet.haproxy.state()
    );

    fleet.haproxy.reload();
    let placed = fleet.haproxy.placed_entries();
    assert_eq!(
        placed,
        0,
        "the reloaded haproxy's stick table knows a session's server\n{}",
        fleet.haproxy.state()
    );
    let astray_before = fleet.astray();
    let running = transfers(&fleet, 16 * MIB, &[]);
    let tried: Vec<usize> = cut
        .iter()
        .map(|&c| fleet.relays[c].accepted.load(Ordering::SeqCst))
        .collect();
    let cut_at = Instant::now();
    for &c in cut {
        assert!(fleet.relays[c].cut_one(), "client {c} has no link to cut");
    }
    // Both clients noticed and connect their link again.
    let reconnecting = wait_until(SETTLE, || {
        cut.iter()
            .zip(&tried)
            .all(|(&c, &n)| fleet.relays[c].accepted.load(Ordering::SeqCst) > n)
    });
    assert!(
        reconnecting,
        "clients {cut:?} did not connect their cut links again"
    );

    // Every session has its four links again, all on its server: the same
    // session as before, none lost, no half of one on another server.
    let after = fleet.wait_pinned("after links were cut behind a reloaded haproxy");
    let took = cut_at.elapsed();
    for c in 0..CLIENTS {
        assert_eq!(
            after.clients[c], pinned.clients[c],
            "client {c} lost its session or moved to another server"
        );
    }
    // The lost table did send links astray (else this proved nothing).
    let astray = fleet.astray() - astray_before;
    assert!(
        astray > 0,
        "no server refused a cut link as an unknown session: the reloaded haproxy still sent \
         every link to its session's server\n{}",
        fleet.haproxy.state()
    );
    // Nor did it store the servers that refused them, or any other: only
    // a link that starts a session stores its server.
    assert_eq!(
        fleet.haproxy.placed_entries(),
        0,
        "a joining link stored a server in the reloaded haproxy's stick table\n{}",
        fleet.haproxy.state()
    );
    for transfer in running {
        transfer.finish(IO_TIMEOUT);
    }
    round_trips(&fleet, &after, 70, 4 * MIB);
    println!(
        "FLEET: stick table lost to a reload: links of clients {cut:?} (server {server}) cut; \
         {astray} tries refused by another server, every session whole on its server after \
         {took:?}"
    );
}

/// Plain links: a server added to the fleet takes new sessions only.
/// HAProxy lists three servers, of which two run (the third's port is
/// held: its checks are refused and HAProxy marks it down); six clients'
/// sessions are placed on the two. Then the third server starts on its
/// port and HAProxy marks it up, and a link of every session is cut by
/// the network (each client reaches HAProxy through a relay of its own):
/// each reconnects to its session's server, found in the stick table, so
/// every session stays the same session, whole on its server, none on the
/// new server, and no server refuses a link as an unknown session. Three
/// clients started after it are balanced round robin over the three
/// servers: at least one lands on the new server. Transfers running
/// through the cut and after it arrive intact, through every client.
///
/// With a hash of the id instead of the stick table (`tcp-request content
/// set-var(txn.sid) req.payload(11,8)` and `balance hash var(txn.sid)`),
/// most ids hash to another server once a third is up: this test then
/// fails, a cut link refused by the wrong server after 15 s. (HAProxy 2.6's
/// `balance hash req.payload(11,8)` does not hash at all: it balances one
/// id's links round robin, and this test fails on the refusals.)
#[test]
fn a_server_added_to_the_fleet_takes_new_sessions_and_moves_no_existing_one() {
    let Some(bin) = haproxy_or_skip("fleet: a server added") else {
        return;
    };
    let fleet = Fleet::start_some(&bin, false, true, SERVERS - 1);
    let new = SERVERS - 1;
    fleet
        .haproxy
        .wait_status(new, "DOWN", "before the new server started");
    for s in 0..new {
        fleet.haproxy.wait_status(s, "UP", "at start");
    }
    let mut fleet = fleet.add_clients();
    let pinned = fleet.wait_pinned("on two servers");
    for s in 0..new {
        assert!(
            !pinned.clients_on(s).is_empty(),
            "no session on server {s}: {:?}",
            pinned.clients
        );
    }

    let started = Instant::now();
    assert_eq!(fleet.grow(), new, "the new server's index");
    fleet
        .haproxy
        .wait_status(new, "UP", "after the new server started");
    let up = started.elapsed();

    // A link of every session cut while a transfer runs through it: each
    // connects again through HAProxy, which must send it to its session's
    // server, not by the new balance.
    let running = transfers(&fleet, 8 * MIB, &[]);
    let tried: Vec<usize> = fleet
        .relays
        .iter()
        .map(|r| r.accepted.load(Ordering::SeqCst))
        .collect();
    let cut_at = Instant::now();
    for (c, relay) in fleet.relays.iter().enumerate() {
        assert!(relay.cut_one(), "client {c} has no link to cut");
    }
    let reconnecting = wait_until(SETTLE, || {
        fleet
            .relays
            .iter()
            .zip(&tried)
            .all(|(r, &n)| r.accepted.load(Ordering::SeqCst) > n)
    });
    assert!(
        reconnecting,
        "not every client connected its cut link again\n{}",
        fleet.haproxy.state()
    );
    let after = fleet.wait_pinned("after links were cut with the new server up");
    let whole = cut_at.elapsed();
    for c in 0..CLIENTS {
        assert!(
            !after.servers_of(c).contains(&new),
            "client {c}'s session is on the new server: {:?}\n{}",
            after.clients[c],
            fleet.haproxy.state()
        );
        assert_eq!(
            after.clients[c], pinned.clients[c],
            "client {c} lost its session or moved to another server"
        );
    }
    let astray = fleet.astray();
    assert_eq!(
        astray,
        0,
        "servers refused links as unknown sessions: HAProxy sent them elsewhere than their \
         session's server\n{}",
        fleet.haproxy.state()
    );
    for transfer in running {
        transfer.finish(IO_TIMEOUT);
    }

    // New clients, one per server: round robin gives the new server one.
    let fresh: Vec<usize> = (0..SERVERS).map(|_| fleet.add_client()).collect();
    let grown = fleet.wait_pinned("with new clients on the grown fleet");
    for c in 0..CLIENTS {
        assert_eq!(
            grown.clients[c], pinned.clients[c],
            "client {c} lost its session or moved to another server once new clients came"
        );
    }
    let on_new: Vec<usize> = fresh
        .iter()
        .copied()
        .filter(|&c| grown.servers_of(c).contains(&new))
        .collect();
    assert!(
        !on_new.is_empty(),
        "none of the new clients {fresh:?} has its session on the new server: {:?}\n{}",
        grown.clients,
        fleet.haproxy.state()
    );
    round_trips(&fleet, &grown, 80, 2 * MIB);
    let astray = fleet.astray();
    assert_eq!(
        astray,
        0,
        "servers refused links of new clients as unknown sessions\n{}",
        fleet.haproxy.state()
    );
    println!(
        "FLEET: server {new} added (up {up:?} after it started): a link of each of \
         {CLIENTS} sessions cut, every session whole on its server after {whole:?}, no link \
         astray; new clients {on_new:?} of {fresh:?} on the new server"
    );
}

/// `etc/haproxy.cfg` passes `haproxy -c` and keeps every line that the
/// fleet tests prove keeps a session's links together, and those lines
/// read the protocol's offset.
#[test]
fn the_example_haproxy_config_is_valid_and_pins_by_session_id() {
    let offset = SESSION_ID_OFFSET;
    assert!(
        BACKEND_LINES.contains(&format!("stick match req.payload({offset},8)").as_str())
            && BACKEND_LINES.contains(
                &format!(
                    "acl mtcp_joins req.payload({},1),hex,hex2i,and({}) eq {}",
                    FLAGS_OFFSET, HELLO_JOIN, HELLO_JOIN
                )
                .as_str()
            )
            && FRONTEND_LINES.contains(
                &format!(
                    "tcp-request content accept if {{ req.len ge {} }}",
                    offset + 8
                )
                .as_str()
            ),
        "the pinning lines do not read the session id at offset {offset}"
    );
    let Some(bin) = haproxy_or_skip("fleet: etc/haproxy.cfg") else {
        return;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/haproxy.cfg");
    let text = std::fs::read_to_string(&path).expect("etc/haproxy.cfg");
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for line in DEFAULTS_LINES
        .iter()
        .chain(FRONTEND_LINES)
        .chain(BACKEND_LINES)
    {
        assert!(lines.contains(line), "etc/haproxy.cfg has no line `{line}`");
    }
    let out = output_within(
        Command::new(&bin).arg("-c").arg("-f").arg(&path),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "haproxy -c -f etc/haproxy.cfg: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
