//! Socket helpers: every listening socket, outgoing connect and
//! never-waiting send in MTCP goes through these, so their options and their
//! retry rules are written once.

use crate::util::shutdown::Shutdown;
use crate::util::thread::{self, ThreadCount};
use socket2::SockRef;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Backlog of the listening sockets: a burst of application connections
/// (or of links after an outage) must queue, not overflow into SYN cookies.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket with a deep accept queue (std's is 128) and
/// `SO_REUSEADDR`, so a restarted daemon binds at once.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Unblocks `accept()` when shutdown fires by connecting to ourselves.
pub fn wake_on_shutdown(
    threads: &ThreadCount,
    shutdown: &Shutdown,
    addr: SocketAddr,
) -> io::Result<()> {
    let shutdown = shutdown.clone();
    let target = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    };
    thread::spawn(threads, "accept-waker".into(), move || {
        let _ = shutdown.receiver().recv();
        let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
        Ok::<(), io::Error>(())
    })?;
    Ok(())
}

/// Connects to the first of `addrs` that answers within `timeout` each.
/// The error names the last address tried; `what` names the peer when
/// there is no address at all.
pub fn connect_first(addrs: &[SocketAddr], timeout: Duration, what: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{what} resolved to no address"),
    );
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last)
}

/// An IP literal; IPv6 may be written with or without brackets (as in a
/// URL), so that config files may use either.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    s.parse().ok()
}

/// Where outgoing connections leave from: a source address, a device, or
/// both (a client path); the default leaves by the routing table's choice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub ip: Option<IpAddr>,
    pub device: Option<String>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.ip, &self.device) {
            (Some(ip), Some(dev)) => write!(f, "{ip} on {dev}"),
            (Some(ip), None) => write!(f, "{ip}"),
            (None, Some(dev)) => write!(f, "{dev}"),
            (None, None) => f.write_str("the default route"),
        }
    }
}

/// [`connect_first`] from `source`: the socket is bound to its device and
/// address before it connects. Addresses of another family than the
/// source address are skipped. Errors say what the source lacks (a
/// missing address fails at once, which is how a path whose uplink lost
/// its address is noticed).
pub fn connect_first_from(
    addrs: &[SocketAddr],
    source: &Source,
    timeout: Duration,
    what: &str,
) -> io::Result<TcpStream> {
    if *source == Source::default() {
        return connect_first(addrs, timeout, what);
    }
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{what} resolved to no address reachable from {source}"),
    );
    let reachable = addrs
        .iter()
        .filter(|a| source.ip.is_none_or(|ip| ip.is_ipv4() == a.is_ipv4()));
    for addr in reachable {
        match connect_one_from(*addr, source, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = io::Error::new(e.kind(), format!("{addr} from {source}: {e}")),
        }
    }
    Err(last)
}

fn connect_one_from(addr: SocketAddr, source: &Source, timeout: Duration) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(dev) = &source.device {
        socket
            .bind_device(Some(dev.as_bytes()))
            .map_err(|e| device_error(dev, e))?;
    }
    if let Some(ip) = source.ip {
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| source_error(ip, e))?;
    }
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

fn device_error(dev: &str, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::EPERM) => format!(
            "binding to interface {dev} needs the CAP_NET_RAW capability (under systemd: \
             AmbientCapabilities=CAP_NET_RAW, see README, Bond several uplinks)"
        ),
        Some(libc::ENODEV) => format!("there is no interface {dev}"),
        _ => format!("cannot bind to interface {dev}: {e}"),
    };
    io::Error::new(e.kind(), why)
}

fn source_error(ip: IpAddr, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => {
            format!(
                "source address {ip} is not on this host (its uplink is down or was renumbered)"
            )
        }
        _ => format!("cannot bind to source address {ip}: {e}"),
    };
    io::Error::new(e.kind(), why)
}

/// One `sendmsg` that does not wait for room, whatever the socket's mode,
/// retried only when a signal interrupted it. `WouldBlock` means full.
pub fn send_now(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        match SockRef::from(socket).send_vectored_with_flags(slices, libc::MSG_DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// True when an error only says the socket had no room (or no bytes) now.
pub fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// True when a read or write deadline ran out (`SO_RCVTIMEO`/`SO_SNDTIMEO`
/// report it as `WouldBlock` on Linux).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
