//! Read buffers recycled once the peer has acknowledged their bytes.

use crate::proto::send::Payload;
use crate::util::sync::lock;
use std::sync::{Arc, Mutex};

/// Read buffers recycled once the peer has acknowledged their bytes.
///
/// A bulk stream fills a `buffer_size` buffer per read; allocating each one
/// afresh made the allocator hand memory back to the kernel and fault it in
/// again (page faults and page clearing were a tenth of a relay's CPU).
/// The pool is per session and small, so idle sessions keep little.
pub struct PayloadPool {
    size: usize,
    most: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

/// Bytes of free buffers a session's pool keeps at most.
const POOL_BYTES: usize = 1024 * 1024;

impl PayloadPool {
    /// A pool of buffers of `size` bytes (the largest read a stream makes).
    pub fn new(size: usize) -> PayloadPool {
        PayloadPool {
            size,
            most: (POOL_BYTES / size.max(1)).max(1),
            free: Mutex::new(Vec::new()),
        }
    }

    /// A buffer of `len` zero-or-stale bytes, to read into. Pooled when
    /// it would fill most of one: on a sealed link the largest read is a
    /// little short of `buffer_size` (`rt::secure::MAX_SEALED_PAYLOAD`), and
    /// recycling only exact sizes put the page faults back.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len > self.size || 2 * len < self.size {
            return vec![0; len];
        }
        let mut buf = lock(&self.free).pop().unwrap_or_else(|| {
            // The pool's size, so that it can come back.
            Vec::with_capacity(self.size)
        });
        buf.resize(len, 0);
        buf
    }

    /// A copy of `bytes` (a frame that arrived out of order and must wait),
    /// in a pooled buffer if it would fill most of one.
    pub fn copy_of(&self, bytes: &[u8]) -> Vec<u8> {
        if bytes.len() <= self.size
            && 2 * bytes.len() >= self.size
            && let Some(mut buf) = lock(&self.free).pop()
        {
            buf.clear();
            buf.extend_from_slice(bytes);
            return buf;
        }
        bytes.to_vec()
    }

    /// Takes back a payload nobody else holds any more.
    pub fn give(&self, payload: Payload) {
        if let Ok(buf) = Arc::try_unwrap(payload) {
            self.give_vec(buf);
        }
    }

    /// Takes back a buffer, if it is one of the pool's size and the pool
    /// has room.
    pub fn give_vec(&self, buf: Vec<u8>) {
        if buf.capacity() == self.size {
            let mut free = lock(&self.free);
            if free.len() < self.most {
                free.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_a_little_short_of_the_size_reuses_a_buffer() {
        let pool = PayloadPool::new(65536);
        let first = pool.take(65536);
        let at = first.as_ptr();
        pool.give_vec(first);
        let again = pool.take(crate::rt::secure::MAX_SEALED_PAYLOAD);
        assert_eq!(
            again.as_ptr(),
            at,
            "a fresh buffer for a sealed link's read"
        );
        assert_eq!(again.len(), crate::rt::secure::MAX_SEALED_PAYLOAD);
        pool.give_vec(again);
        let small = pool.take(1000);
        assert_ne!(small.as_ptr(), at, "a small read took a whole buffer");
    }
}
