//! The applications at either end of a stream: the client's application and
//! the server's backend. Each writes a known byte pattern (then half-closes,
//! if its plan says so) and reads what arrives at a configurable pace, so
//! that backpressure and full windows happen when a test wants them.

use std::time::{Duration, Instant};

/// How an application reads its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPace {
    /// Takes every byte at once: the socket is never full.
    Unlimited,
    /// Takes `bytes` every `every`; the socket holds the rest up to its size.
    Paced { bytes: usize, every: Duration },
    /// Never reads: the socket fills, then the window.
    Stalled,
}

/// What one end's application does on one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPlan {
    /// Bytes it writes.
    pub send: usize,
    /// Whether it half-closes after them (the daemon then sends FIN).
    pub close: bool,
    pub read: ReadPace,
    /// Server only: how long the backend takes to connect; bytes that
    /// arrive meanwhile wait in the stream's buffer.
    pub connect_delay: Duration,
    /// Writes `.0` bytes every `.1` from the start, instead of all at once.
    pub write_pace: Option<(usize, Duration)>,
}

impl AppPlan {
    /// Writes `send` bytes, closes, reads everything at once.
    pub fn bulk(send: usize) -> Self {
        AppPlan {
            send,
            close: true,
            read: ReadPace::Unlimited,
            connect_delay: Duration::ZERO,
            write_pace: None,
        }
    }

    /// Writes `bytes` every `every` (the first right away) until done.
    pub fn write_paced(self, bytes: usize, every: Duration) -> Self {
        AppPlan {
            write_pace: Some((bytes, every)),
            ..self
        }
    }

    pub fn read(self, read: ReadPace) -> Self {
        AppPlan { read, ..self }
    }

    pub fn connect_delay(self, connect_delay: Duration) -> Self {
        AppPlan {
            connect_delay,
            ..self
        }
    }

    pub fn keep_open(self) -> Self {
        AppPlan {
            close: false,
            ..self
        }
    }
}

/// The application's writing side, as the daemon's reader sees it.
#[derive(Debug)]
pub struct AppWriter {
    data: Vec<u8>,
    /// Bytes the application has written so far (all, unless paced).
    written: usize,
    taken: usize,
    pub close: bool,
    /// The daemon has sent the FIN.
    pub fin_sent: bool,
    pace: Option<(usize, Duration)>,
    next_write: Option<Instant>,
}

impl AppWriter {
    pub fn new(data: Vec<u8>, close: bool, pace: Option<(usize, Duration)>, now: Instant) -> Self {
        let mut w = AppWriter {
            written: if pace.is_some() { 0 } else { data.len() },
            data,
            taken: 0,
            close,
            fin_sent: false,
            pace,
            next_write: pace.map(|_| now),
        };
        w.advance(now);
        w
    }

    /// Lets a paced application write whatever its pace allows by `now`.
    pub fn advance(&mut self, now: Instant) {
        let Some((bytes, every)) = self.pace else {
            return;
        };
        while let Some(t) = self.next_write
            && t <= now
        {
            self.written = (self.written + bytes.max(1)).min(self.data.len());
            self.next_write = (self.written < self.data.len()).then_some(t + every);
        }
    }

    /// When a paced application writes next, if it has more to write.
    pub fn next_write(&self) -> Option<Instant> {
        self.next_write
    }

    /// Bytes written by the application and not yet read by the daemon.
    pub fn available(&self) -> usize {
        self.written - self.taken
    }

    /// The application has written everything and closed: once the
    /// daemon read it all, it sends the FIN.
    pub fn ends(&self) -> bool {
        self.close && self.written == self.data.len()
    }

    /// Bytes the daemon has read so far.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// The daemon reads `n` bytes.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.data[self.taken..self.taken + n].to_vec();
        self.taken += n;
        out
    }
}

/// The application's reading side: the local socket's receive buffer and
/// what the application has read from it.
#[derive(Debug)]
pub struct AppReader {
    /// Every byte the daemon wrote to the socket, in order.
    pub got: Vec<u8>,
    /// Bytes in the socket buffer, not yet read by the application.
    fill: usize,
    capacity: usize,
    pub pace: ReadPace,
    next_read: Option<Instant>,
}

impl AppReader {
    pub fn new(pace: ReadPace, capacity: usize) -> Self {
        AppReader {
            got: Vec::new(),
            fill: 0,
            capacity,
            pace,
            next_read: None,
        }
    }

    /// The daemon writes `bytes` without waiting; returns how many the
    /// socket took.
    pub fn take(&mut self, bytes: &[u8], now: Instant) -> usize {
        let n = match self.pace {
            ReadPace::Unlimited => bytes.len(),
            _ => bytes.len().min(self.capacity - self.fill),
        };
        self.got.extend_from_slice(&bytes[..n]);
        if self.pace != ReadPace::Unlimited {
            self.fill += n;
            if let ReadPace::Paced { every, .. } = self.pace
                && self.fill > 0
                && self.next_read.is_none()
            {
                self.next_read = Some(now + every);
            }
        }
        n
    }

    /// Changes how the application reads from now on.
    pub fn set_pace(&mut self, pace: ReadPace, now: Instant) {
        self.pace = pace;
        self.next_read = match pace {
            ReadPace::Unlimited => {
                self.fill = 0;
                None
            }
            ReadPace::Paced { .. } if self.fill > 0 => Some(now),
            _ => None,
        };
    }

    /// Lets the application read whatever its pace allows by `now`.
    pub fn advance(&mut self, now: Instant) {
        let ReadPace::Paced { bytes, every } = self.pace else {
            return;
        };
        while let Some(t) = self.next_read
            && t <= now
        {
            self.fill -= self.fill.min(bytes.max(1));
            self.next_read = (self.fill > 0).then_some(t + every);
        }
    }

    /// When the application reads next, if it has anything to read.
    pub fn next_read(&self) -> Option<Instant> {
        self.next_read
    }
}
