//! The PROXY protocol v2 header a load balancer puts in front of a link
//! (`accept_proxy_protocol`): HAProxy's `send-proxy-v2` writes it on every
//! connection it forwards, `check-send-proxy` on its health checks.
//!
//! Behind a balancer every link's TCP peer is the balancer, so the header is
//! the only place the client's real address is found. Its bytes come before
//! the MTCP handshake on the same socket, so [`read_header`] takes exactly
//! them and never a byte more: it reads the 16 fixed bytes, then exactly the
//! length they announce (at most [`MAX_BODY_LEN`]). It stops at the first
//! byte that cannot start a v2 header, so a connection without one is
//! refused at once rather than when the deadline runs out. The `ppp` crate
//! checks and decodes the header once it is complete; the decision what it
//! means for the link ([`ProxyOrigin`]) is made here, from any `Read`, so
//! the unit tests below need no socket.

use ppp::v2::{self, Addresses, Command, Protocol};
use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// The 12 bytes every v2 header starts with (chosen by the protocol so that
/// no text protocol, v1 included, can start with them).
pub const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, u16 length.
pub const FIXED_LEN: usize = 16;
/// The most bytes of addresses and TLVs we accept after the fixed part.
/// HAProxy sends 12 (IPv4), 36 (IPv6) or 216 (unix sockets) plus the TLVs
/// it is configured to add (a unique id, ALPN, TLS details), far less than
/// this; the protocol allows 65,535, which a peer could use to hold a
/// handshake thread's memory before it has proved anything.
pub const MAX_BODY_LEN: usize = 1024;
/// How a version 1 (text) header starts.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Where a link really comes from, as its PROXY header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyOrigin {
    /// `PROXY` over TCP (IPv4 or IPv6): the client's own address and port.
    Client(SocketAddr),
    /// `LOCAL`: the balancer speaking for itself, which HAProxy does only
    /// for health checks (`check-send-proxy`); they usually close right
    /// after the header.
    Local,
    /// `PROXY` with no usable source: an unspecified family or transport,
    /// a unix socket or UDP. The connection's own address stands in.
    Unknown,
}

impl ProxyOrigin {
    /// The address to name the link's peer by: the client's when the header
    /// gives one, else `conn`, the connection's own peer (the balancer).
    pub fn peer(self, conn: SocketAddr) -> SocketAddr {
        match self {
            ProxyOrigin::Client(addr) => addr,
            ProxyOrigin::Local | ProxyOrigin::Unknown => conn,
        }
    }
}

/// Why a connection has no usable PROXY v2 header. Every case but
/// [`Io`](Self::Io) is a refusal: the connection cannot be a link that came
/// through the balancer.
#[derive(Debug)]
pub enum ProxyHeaderError {
    /// Reading failed before the header was complete: the deadline ran out,
    /// the connection was reset, or it closed before sending anything
    /// (`UnexpectedEof`, what port probes do).
    Io(io::Error),
    /// The connection closed after `read` bytes, inside the header.
    Truncated {
        /// Bytes of the header that arrived.
        read: usize,
    },
    /// The connection starts with something else; `start` is what was read
    /// (at most [`FIXED_LEN`] bytes).
    Missing {
        /// The first bytes, which told.
        start: Vec<u8>,
    },
    /// A version 1 header (text, `PROXY TCP4 ...`), which is not supported.
    Version1,
    /// The length field announces more than [`MAX_BODY_LEN`] bytes.
    TooLong(usize),
    /// A complete header that `ppp` refused (version, command, family,
    /// transport, or a length too short for the addresses).
    Malformed(v2::ParseError),
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHeaderError::Io(e) => write!(f, "reading the PROXY protocol v2 header: {e}"),
            ProxyHeaderError::Truncated { read } => write!(
                f,
                "the connection closed inside its PROXY protocol v2 header, after {read} bytes"
            ),
            ProxyHeaderError::Missing { start } => {
                write!(f, "no PROXY protocol v2 header: the connection starts with")?;
                for b in start {
                    write!(f, " {b:02x}")?;
                }
                if looks_like_mtcp(start) {
                    f.write_str(" (an MTCP client connecting directly, not through the proxy?)")?;
                }
                f.write_str(
                    "; with accept_proxy_protocol on, every link must come through a proxy \
                     that sends one (HAProxy: send-proxy-v2)",
                )
            }
            ProxyHeaderError::Version1 => f.write_str(
                "PROXY protocol version 1 (text) header: version 1 is not supported, \
                 configure the proxy to send version 2 (HAProxy: send-proxy-v2)",
            ),
            ProxyHeaderError::TooLong(len) => write!(
                f,
                "PROXY protocol v2 header announces {len} bytes of addresses and TLVs, \
                 more than the {MAX_BODY_LEN} accepted"
            ),
            ProxyHeaderError::Malformed(e) => write!(f, "malformed PROXY protocol v2 header: {e}"),
        }
    }
}

impl std::error::Error for ProxyHeaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyHeaderError::Io(e) => Some(e),
            ProxyHeaderError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

/// True when `start` is how an MTCP client opens a link: a secured link's
/// magic (`MTCS`, or version 1's `MTCN`), or a plain HELLO (a length, type
/// 0x01, `MTCP`).
fn looks_like_mtcp(start: &[u8]) -> bool {
    start.starts_with(b"MTCS")
        || start.starts_with(b"MTCN")
        || start.get(4..9).is_some_and(|hello| hello == b"\x01MTCP")
}

/// What the fixed part read so far can still become.
enum Prefix {
    /// Still the start of a v2 header (or, while under 6 bytes, of a v1 one).
    Open,
    /// The whole 16 bytes, starting with the signature.
    Fixed,
    /// Decided: no v2 header.
    Refused(ProxyHeaderError),
}

/// Judges the first `got.len()` bytes (at most [`FIXED_LEN`]).
fn judge_prefix(got: &[u8]) -> Prefix {
    let sig = got.len().min(SIGNATURE.len());
    if got[..sig] == SIGNATURE[..sig] {
        return if got.len() == FIXED_LEN {
            Prefix::Fixed
        } else {
            Prefix::Open
        };
    }
    let v1 = got.len().min(V1_PREFIX.len());
    if got[..v1] == V1_PREFIX[..v1] {
        return if v1 == V1_PREFIX.len() {
            Prefix::Refused(ProxyHeaderError::Version1)
        } else {
            Prefix::Open
        };
    }
    Prefix::Refused(ProxyHeaderError::Missing {
        start: got.to_vec(),
    })
}

/// Reads once into the rest of `buf[..want]` (retried when interrupted);
/// `Ok(false)` at the end of input. Never asks for a byte past `want`, so
/// nothing after the header is taken off the socket.
fn read_some(
    r: &mut impl Read,
    buf: &mut [u8],
    want: usize,
    got: &mut usize,
) -> Result<bool, ProxyHeaderError> {
    loop {
        match r.read(&mut buf[*got..want]) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                *got += n;
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProxyHeaderError::Io(e)),
        }
    }
}

/// Reads one PROXY v2 header from `r`, exactly its bytes, and says where the
/// connection comes from. The fixed part is judged after every read, so a
/// connection without a header is refused at the first byte that rules one
/// out, without waiting for more.
pub fn read_header(r: &mut impl Read) -> Result<ProxyOrigin, ProxyHeaderError> {
    let mut buf = [0u8; FIXED_LEN + MAX_BODY_LEN];
    let mut got = 0;
    loop {
        if !read_some(r, &mut buf, FIXED_LEN, &mut got)? {
            return Err(eof_after(got));
        }
        match judge_prefix(&buf[..got]) {
            Prefix::Fixed => break,
            Prefix::Refused(e) => return Err(e),
            Prefix::Open => {}
        }
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_BODY_LEN {
        return Err(ProxyHeaderError::TooLong(len));
    }
    let total = FIXED_LEN + len;
    while got < total {
        if !read_some(r, &mut buf, total, &mut got)? {
            return Err(ProxyHeaderError::Truncated { read: got });
        }
    }
    let header = v2::Header::try_from(&buf[..total]).map_err(ProxyHeaderError::Malformed)?;
    Ok(origin(&header))
}

/// The input ended after `got` bytes of what may still have been a header:
/// before any byte that is a connection closed before its handshake, as
/// everywhere else in the handshake; after some, a cut header.
fn eof_after(got: usize) -> ProxyHeaderError {
    if got == 0 {
        ProxyHeaderError::Io(io::ErrorKind::UnexpectedEof.into())
    } else {
        ProxyHeaderError::Truncated { read: got }
    }
}

/// What a header that `ppp` accepted means for the link.
fn origin(header: &v2::Header<'_>) -> ProxyOrigin {
    match (header.command, header.protocol, header.addresses) {
        (Command::Local, _, _) => ProxyOrigin::Local,
        (Command::Proxy, Protocol::Stream, Addresses::IPv4(a)) => {
            ProxyOrigin::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        (Command::Proxy, Protocol::Stream, Addresses::IPv6(a)) => {
            ProxyOrigin::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        (Command::Proxy, _, _) => ProxyOrigin::Unknown,
    }
}

/// A socket read with one deadline for all its reads: each waits at most
/// what is left, so a peer that trickles its header a byte at a time cannot
/// hold the handshake longer than `handshake_timeout_ms` in all.
pub struct Deadline<'a> {
    socket: &'a TcpStream,
    until: Instant,
}

impl<'a> Deadline<'a> {
    /// Reads from `socket` until `until`.
    pub fn new(socket: &'a TcpStream, until: Instant) -> Self {
        Deadline { socket, until }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.socket.set_read_timeout(Some(left))?;
        let mut socket = self.socket;
        socket.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, IPv4, IPv6, Type, Unix, Version};
    use std::io::Cursor;

    const HELLO: &[u8] = b"\x00\x00\x00\x19\x01MTCP\x02\x00";

    fn proxy_v4() -> Vec<u8> {
        let a = IPv4::new([203, 0, 113, 7], [10, 0, 0, 1], 40000, 8000);
        Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, a)
            .build()
            .expect("build")
    }

    /// `header` followed by a HELLO's first bytes: the link that comes after.
    fn then_hello(header: &[u8]) -> Cursor<Vec<u8>> {
        Cursor::new([header, HELLO].concat())
    }

    /// Reads `input` and checks that exactly `header_len` bytes were taken.
    fn read_taking(input: &[u8], header_len: usize) -> Result<ProxyOrigin, ProxyHeaderError> {
        let mut r = Cursor::new(input.to_vec());
        let out = read_header(&mut r);
        assert_eq!(r.position() as usize, header_len, "bytes taken");
        out
    }

    /// Gives its bytes one per read, then fails with `then` (or ends).
    struct Trickle<'a> {
        bytes: &'a [u8],
        then: Option<io::ErrorKind>,
        reads: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            match self.bytes.split_first() {
                Some((b, rest)) if !buf.is_empty() => {
                    buf[0] = *b;
                    self.bytes = rest;
                    Ok(1)
                }
                _ => match self.then {
                    Some(kind) => Err(kind.into()),
                    None => Ok(0),
                },
            }
        }
    }

    fn trickle(bytes: &[u8], then: Option<io::ErrorKind>) -> Trickle<'_> {
        Trickle {
            bytes,
            then,
            reads: 0,
        }
    }

    #[test]
    fn proxy_over_tcp_names_the_client_and_takes_only_the_header() {
        let header = proxy_v4();
        let mut r = then_hello(&header);
        let origin = read_header(&mut r).expect("header");
        assert_eq!(
            origin,
            ProxyOrigin::Client("203.0.113.7:40000".parse().expect("addr"))
        );
        assert_eq!(r.position() as usize, header.len(), "read past the header");
        assert_eq!(header.len(), 28);

        let a = IPv6::new(
            "2001:db8::7".parse::<std::net::Ipv6Addr>().expect("v6"),
            "2001:db8::1".parse::<std::net::Ipv6Addr>().expect("v6"),
            40001,
            8000,
        );
        let header = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, a)
            .build()
            .expect("build");
        let mut r = then_hello(&header);
        assert_eq!(
            read_header(&mut r).expect("header"),
            ProxyOrigin::Client("[2001:db8::7]:40001".parse().expect("addr"))
        );
        assert_eq!(r.position() as usize, header.len());
    }

    #[test]
    fn tlvs_are_read_and_skipped() {
        let a = IPv4::new([203, 0, 113, 8], [10, 0, 0, 1], 1, 8000);
        let header = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, a)
            .write_tlv(Type::UniqueId, b"request-42")
            .and_then(|b| b.write_tlv(Type::NoOp, &[0; 100]))
            .and_then(|b| b.build())
            .expect("build");
        let origin = read_taking(&[&header[..], HELLO].concat(), header.len());
        assert_eq!(
            origin.expect("header"),
            ProxyOrigin::Client("203.0.113.8:1".parse().expect("addr"))
        );
    }

    #[test]
    fn a_header_of_the_largest_accepted_length_is_read() {
        let a = IPv4::new([203, 0, 113, 9], [10, 0, 0, 1], 2, 8000);
        // 12 address bytes, one NOOP TLV (3 + value) filling the rest.
        let pad = vec![0u8; MAX_BODY_LEN - 12 - 3];
        let header = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, a)
            .write_tlv(Type::NoOp, &pad)
            .and_then(|b| b.build())
            .expect("build");
        assert_eq!(header.len(), FIXED_LEN + MAX_BODY_LEN);
        let origin = read_taking(&[&header[..], HELLO].concat(), header.len());
        assert_eq!(
            origin.expect("header"),
            ProxyOrigin::Client("203.0.113.9:2".parse().expect("addr"))
        );
    }

    #[test]
    fn local_is_a_health_check_and_no_address_means_the_connection() {
        let conn: SocketAddr = "10.0.0.2:5555".parse().expect("addr");
        let local = Builder::new(Version::Two | Command::Local, 0x00)
            .build()
            .expect("build");
        assert_eq!(local.len(), FIXED_LEN);
        let origin = read_taking(&[&local[..], HELLO].concat(), FIXED_LEN).expect("header");
        assert_eq!(origin, ProxyOrigin::Local);
        assert_eq!(origin.peer(conn), conn);
        // LOCAL with addresses (HAProxy may fill them): still a probe.
        let a = IPv4::new([203, 0, 113, 7], [10, 0, 0, 1], 1, 2);
        let local = Builder::with_addresses(Version::Two | Command::Local, Protocol::Stream, a)
            .build()
            .expect("build");
        assert_eq!(
            read_taking(&local, local.len()).expect("header"),
            ProxyOrigin::Local
        );

        let unspec = Builder::new(Version::Two | Command::Proxy, 0x00)
            .build()
            .expect("build");
        let unix = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            Unix::new([1; 108], [2; 108]),
        )
        .build()
        .expect("build");
        let udp = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Datagram,
            IPv4::new([203, 0, 113, 7], [10, 0, 0, 1], 1, 2),
        )
        .build()
        .expect("build");
        for header in [unspec, unix, udp] {
            let origin = read_taking(&header, header.len()).expect("header");
            assert_eq!(origin, ProxyOrigin::Unknown, "{header:?}");
            assert_eq!(origin.peer(conn), conn);
        }
        let client: SocketAddr = "203.0.113.7:1".parse().expect("addr");
        assert_eq!(ProxyOrigin::Client(client).peer(conn), client);
    }

    #[test]
    fn a_byte_at_a_time_is_the_same_header() {
        let header = proxy_v4();
        let input = [&header[..], HELLO].concat();
        // Past the header the reader fails: a read there would show.
        let mut r = trickle(&input[..header.len()], Some(io::ErrorKind::Other));
        assert_eq!(
            read_header(&mut r).expect("header"),
            ProxyOrigin::Client("203.0.113.7:40000".parse().expect("addr"))
        );
        assert_eq!(r.reads, header.len());
    }

    #[test]
    fn a_plain_or_secured_mtcp_link_is_missing_its_header() {
        for start in [
            HELLO,
            b"MTCS\x02\x00\x20abcdefghijklmnopqrstuvwxyz".as_slice(),
        ] {
            let e = read_taking(start, start.len().min(FIXED_LEN)).expect_err("no header");
            assert!(matches!(e, ProxyHeaderError::Missing { .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains("no PROXY protocol v2 header"), "{text}");
            assert!(text.contains("MTCP client connecting directly"), "{text}");
            assert!(text.contains("send-proxy-v2"), "{text}");
        }
        let e = read_taking(b"GET / HTTP/1.1\r\n\r\n", FIXED_LEN).expect_err("no header");
        assert_eq!(
            e.to_string(),
            "no PROXY protocol v2 header: the connection starts with \
             47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a; with accept_proxy_protocol on, \
             every link must come through a proxy that sends one (HAProxy: send-proxy-v2)"
        );
    }

    #[test]
    fn a_wrong_first_byte_is_refused_without_waiting_for_more() {
        // The peer sent one byte and waits: a second read would block (here:
        // fail), so the answer must come from the first.
        let mut r = trickle(b"\x00", Some(io::ErrorKind::WouldBlock));
        let e = read_header(&mut r).expect_err("no header");
        assert!(
            matches!(&e, ProxyHeaderError::Missing { start } if start == b"\x00"),
            "{e:?}"
        );
        assert_eq!(r.reads, 1);
        // A signature wrong in its last byte: refused there.
        let mut wrong = SIGNATURE.to_vec();
        wrong[11] = b'X';
        let mut r = trickle(&wrong, Some(io::ErrorKind::WouldBlock));
        let e = read_header(&mut r).expect_err("wrong signature");
        assert!(matches!(e, ProxyHeaderError::Missing { .. }), "{e:?}");
        assert_eq!(r.reads, 12);
    }

    #[test]
    fn version_1_is_named_and_refused() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 8000\r\n";
        let e = read_taking(v1, FIXED_LEN).expect_err("v1");
        assert!(matches!(e, ProxyHeaderError::Version1), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("version 1"), "{text}");
        assert!(text.contains("not supported"), "{text}");
        assert!(text.contains("send-proxy-v2"), "{text}");
        // A byte at a time it is told after "PROXY ", without reading on.
        let mut r = trickle(v1, Some(io::ErrorKind::WouldBlock));
        assert!(matches!(
            read_header(&mut r),
            Err(ProxyHeaderError::Version1)
        ));
        assert_eq!(r.reads, V1_PREFIX.len());
        // "PROXY" alone, then the end: cut short, not v1 yet.
        let e = read_taking(b"PROX", 4).expect_err("cut");
        assert!(
            matches!(e, ProxyHeaderError::Truncated { read: 4 }),
            "{e:?}"
        );
    }

    #[test]
    fn a_cut_header_is_truncated_and_nothing_is_an_eof() {
        let header = proxy_v4();
        for cut in [1, 11, 12, 15, 16, 20, header.len() - 1] {
            let e = read_taking(&header[..cut], cut).expect_err("cut");
            assert!(
                matches!(e, ProxyHeaderError::Truncated { read } if read == cut),
                "cut at {cut}: {e:?}"
            );
            assert!(e.to_string().contains(&format!("after {cut} bytes")), "{e}");
        }
        let e = read_taking(b"", 0).expect_err("empty");
        assert!(
            matches!(&e, ProxyHeaderError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof),
            "{e:?}"
        );
        // A deadline or reset inside the header is a socket error, as such.
        let mut r = trickle(&header[..20], Some(io::ErrorKind::TimedOut));
        let e = read_header(&mut r).expect_err("timed out");
        assert!(
            matches!(&e, ProxyHeaderError::Io(io) if io.kind() == io::ErrorKind::TimedOut),
            "{e:?}"
        );
        let mut r = trickle(&header[..3], Some(io::ErrorKind::ConnectionReset));
        let e = read_header(&mut r).expect_err("reset");
        assert!(
            matches!(&e, ProxyHeaderError::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
            "{e:?}"
        );
        // An interrupted read is retried, not an error.
        struct Interrupted(bool, Cursor<Vec<u8>>);
        impl Read for Interrupted {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 = !self.0;
                if self.0 {
                    Err(io::ErrorKind::Interrupted.into())
                } else {
                    self.1.read(buf)
                }
            }
        }
        let mut r = Interrupted(false, Cursor::new(header));
        assert!(matches!(read_header(&mut r), Ok(ProxyOrigin::Client(_))));
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_reading_it() {
        for len in [MAX_BODY_LEN + 1, usize::from(u16::MAX)] {
            let mut fixed = SIGNATURE.to_vec();
            fixed.extend([0x21, 0x11]);
            fixed.extend((len as u16).to_be_bytes());
            let input = [fixed, vec![0u8; 2000]].concat();
            let e = read_taking(&input, FIXED_LEN).expect_err("too long");
            assert!(
                matches!(e, ProxyHeaderError::TooLong(l) if l == len),
                "{e:?}"
            );
            assert!(
                e.to_string().contains(&format!("announces {len} bytes")),
                "{e}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused_with_what_is_wrong() {
        let good = proxy_v4();
        let with = |at: usize, byte: u8| {
            let mut h = good.clone();
            h[at] = byte;
            h
        };
        let short = {
            // IPv4 needs 12 address bytes; 4 are announced.
            let mut h = good[..FIXED_LEN].to_vec();
            h[15] = 4;
            [h, vec![1, 2, 3, 4]].concat()
        };
        for (what, header) in [
            ("version 1 bits", with(12, 0x11)),
            ("version 3", with(12, 0x31)),
            ("command 2", with(12, 0x22)),
            ("family 4", with(13, 0x41)),
            ("transport 3", with(13, 0x13)),
            ("addresses longer than the length", short),
        ] {
            let e = read_taking(&header, header.len()).expect_err(what);
            assert!(matches!(e, ProxyHeaderError::Malformed(_)), "{what}: {e:?}");
            assert!(
                e.to_string()
                    .starts_with("malformed PROXY protocol v2 header: "),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_and_never_read_past_a_header() {
        // xorshift: the same bytes on every run.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..2000 {
            let len = (next() % 64) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the cases start with the signature, so the parts after
            // it are exercised too.
            if case % 2 == 0 {
                input.splice(0..0, SIGNATURE.iter().copied());
            }
            let mut r = Cursor::new(input.clone());
            let out = read_header(&mut r);
            let taken = r.position() as usize;
            assert!(taken <= FIXED_LEN + MAX_BODY_LEN);
            if out.is_ok() {
                let announced = usize::from(u16::from_be_bytes([input[14], input[15]]));
                assert_eq!(taken, FIXED_LEN + announced, "{input:?}");
            }
        }
    }

    #[test]
    fn errors_say_what_they_are() {
        assert_eq!(
            ProxyHeaderError::Io(io::ErrorKind::TimedOut.into()).to_string(),
            "reading the PROXY protocol v2 header: timed out"
        );
        assert_eq!(
            ProxyHeaderError::Truncated { read: 7 }.to_string(),
            "the connection closed inside its PROXY protocol v2 header, after 7 bytes"
        );
        assert_eq!(
            ProxyHeaderError::TooLong(2000).to_string(),
            "PROXY protocol v2 header announces 2000 bytes of addresses and TLVs, \
             more than the 1024 accepted"
        );
        let source = ProxyHeaderError::Malformed(v2::ParseError::Version(0x30));
        assert!(std::error::Error::source(&source).is_some());
        assert!(std::error::Error::source(&ProxyHeaderError::Version1).is_none());
    }
}
