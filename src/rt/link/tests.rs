//! The link's queues against a real socket pair whose far end stops
//! reading, so that the writer blocks and DATA waits in the queue.

use super::*;
use crate::proto::frame::decode;
use crate::rt::secure;
use std::io::{Read, Write};
use std::net::TcpListener;

/// A host that takes every frame and ignores the link's life.
struct Quiet;

impl LinkHost for Quiet {
    fn on_frame(&self, _: &LinkHandle, _: Frame<'_>) -> Result<(), FrameError> {
        Ok(())
    }
    fn link_up(&self, _: Arc<LinkHandle>) {}
    fn link_down(&self, _: &LinkHandle, _: &LinkError) {}
}

const CHUNK: usize = 64 * 1024;
/// The offset that marks the frame sent ahead.
const MARK: u64 = 1 << 60;

fn data(offset: u64) -> Outbound {
    Outbound::Data {
        stream: 1,
        offset,
        bytes: Arc::new(vec![7; CHUNK]),
    }
}

/// The DATA offsets the far end reads, in order, until it has seen `until`.
fn offsets_read(far: &mut TcpStream, until: &[u64]) -> Vec<u64> {
    far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut seen = Vec::new();
    while !until.iter().all(|u| seen.contains(u)) {
        let n = far.read(&mut chunk).expect("the link went quiet");
        assert!(n > 0, "the link closed; saw {seen:?}");
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Some((f, len)) = decode(&buf[used..], 1 << 20).expect("a frame") {
            if let Frame::Data { offset, .. } = f {
                seen.push(offset);
            }
            used += len;
        }
        buf.drain(..used);
    }
    seen
}

#[test]
fn bytes_sent_ahead_overtake_the_queued_data() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut far, _) = listener.accept().unwrap();
    let settings = LinkSettings {
        path: LinkPath::default(),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(20),
        notsent_lowat: NOTSENT_LOWAT,
        max_payload: 1 << 20,
    };
    let threads = ThreadCount::default();
    let link = start(
        Arc::new(Quiet),
        near,
        0,
        &threads,
        secure::plain(),
        settings,
    )
    .unwrap();
    // Fill the socket, then the queue: the writer blocks on the socket.
    let mut queued = Vec::new();
    for i in 0..100_000u64 {
        let offset = i * CHUNK as u64;
        if link.try_send_data(data(offset)).is_err() {
            break;
        }
        queued.push(offset);
    }
    let last = *queued.last().expect("nothing was queued");
    assert!(queued.len() < 100_000, "the socket never filled");
    assert!(link.send_data_ahead(data(MARK)).is_ok(), "the link died");
    let seen = offsets_read(&mut far, &[MARK, last]);
    let at = |o: u64| seen.iter().position(|&s| s == o).unwrap();
    // The queue held the last DATA_QUEUE frames, and the writer, blocked on
    // the full socket, could take none of them before the mark arrived.
    let first_waiting = queued[queued.len() - DATA_QUEUE];
    assert!(
        at(MARK) < at(first_waiting),
        "the frame sent ahead came after the queued DATA: {} of {}, the queue's second at {}",
        at(MARK),
        seen.len(),
        at(first_waiting)
    );
    link.kill(LinkError::ClosedByUs);
}

/// A host that keeps the DATA it is handed: (offset, payload).
#[derive(Default)]
struct Keeper(Mutex<Vec<(u64, Vec<u8>)>>);

impl LinkHost for Keeper {
    fn on_frame(&self, _: &LinkHandle, f: Frame<'_>) -> Result<(), FrameError> {
        if let Frame::Data { offset, data, .. } = f {
            lock(&self.0).push((offset, data.to_vec()));
        }
        Ok(())
    }
    fn link_up(&self, _: Arc<LinkHandle>) {}
    fn link_down(&self, _: &LinkHandle, _: &LinkError) {}
}

/// Frames that straddle records (another sender's layout) and records that
/// hold many frames are all delivered whole from a sealed link.
#[test]
fn a_sealed_link_delivers_frames_however_records_cut_them() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut far, _) = listener.accept().unwrap();
    let (ours, (mut theirs, _)) = secure::sealed_pair(secure::Cipher::AesGcm);
    let settings = LinkSettings {
        path: LinkPath::default(),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(20),
        notsent_lowat: NOTSENT_LOWAT,
        max_payload: 1 << 17,
    };
    let keeper = Arc::new(Keeper::default());
    let link = start(
        keeper.clone(),
        near,
        0,
        &ThreadCount::default(),
        ours,
        settings,
    )
    .unwrap();
    // Payloads from 1 byte to 100 KiB (larger than a record), each filled
    // with its own number.
    let sizes: Vec<usize> = (0..60).map(|i| 1 + (i * i * 37) % 100_000).collect();
    let mut stream = Vec::new();
    let mut offset = 0u64;
    for (i, &n) in sizes.iter().enumerate() {
        let f = Frame::Data {
            stream: 1,
            offset,
            data: &vec![i as u8; n],
        };
        frame::encode(&f, &mut stream);
        offset += n as u64;
    }
    // Records of odd sizes: most frames straddle one or more.
    for piece in stream.chunks(7_919) {
        far.write_all(theirs.seal(piece).unwrap()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock(&keeper.0).len() < sizes.len() {
        assert!(Instant::now() < deadline, "frames went missing");
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = lock(&keeper.0);
    let mut offset = 0u64;
    for (i, (at, data)) in got.iter().enumerate() {
        assert_eq!(*at, offset, "frame {i} out of place");
        assert_eq!(data.len(), sizes[i], "frame {i} cut");
        assert!(data.iter().all(|&b| b == i as u8), "frame {i} changed");
        offset += data.len() as u64;
    }
    link.kill(LinkError::ClosedByUs);
}
