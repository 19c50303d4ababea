//! One TLS record per DoH response on HTTP/2 connections (docs/design/0008-doh-stall.md).
//!
//! ```text
//!  hyper/h2 ── one write: HEADERS₁ DATA₁(END_STREAM) HEADERS₂ DATA₂(END_STREAM) … ──┐
//!                                                                                    ▼
//!  ResponseRecords: cut after each frame that ends a stream ─► rustls: one record per piece
//!                                                                                    ▼
//!  TcpStream ◄── written out together on flush (one writev, as before)
//! ```
//! TLS record boundaries carry no meaning (RFC 8446 §5.1) and HTTP/2 frames may be packed in
//! any way (RFC 9113 §4), so this changes nothing for a correct client. It exists for clients
//! that take one response per TLS read and drop what follows it in the same read, as
//! dnsperf's DoH client (2.10–2.14) does: without it, every response after the first in a
//! record was lost there.
//!
//! Cost: a record header and AEAD tag (22 bytes with TLS 1.3) per response instead of per
//! ~16 KiB; no extra system call (the records are queued in rustls and written together).

use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// HTTP/2 frame header length (RFC 9113 §4.1).
const FRAME_HEADER_LEN: usize = 9;
/// Frame types that can end a stream: DATA and HEADERS (RFC 9113 §6.1, §6.2).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
/// The END_STREAM flag of DATA and HEADERS.
const END_STREAM: u8 = 0x1;

/// Where the outgoing HTTP/2 byte stream stands: inside a frame header or a frame payload.
#[derive(Debug, Clone, Copy, Default)]
struct FrameCursor {
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    ends_stream: bool,
}

impl FrameCursor {
    /// Moves over `bytes`. With `stop`, stops right after the first frame that ends a stream.
    /// Returns how many bytes were passed.
    fn advance(&mut self, bytes: &[u8], stop: bool) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            if self.header_len < FRAME_HEADER_LEN {
                let take = (FRAME_HEADER_LEN - self.header_len).min(bytes.len() - at);
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[at..at + take]);
                self.header_len += take;
                at += take;
                if self.header_len < FRAME_HEADER_LEN {
                    break;
                }
                let [l0, l1, l2, kind, flags, ..] = self.header;
                self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                self.ends_stream = (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0;
            }
            let take = self.payload_left.min(bytes.len() - at);
            self.payload_left -= take;
            at += take;
            if self.payload_left == 0 {
                // The frame is complete.
                self.header_len = 0;
                if stop && self.ends_stream {
                    break;
                }
            }
        }
        at
    }
}

/// A server TLS stream that puts each HTTP/2 response (up to a frame that ends a stream) in
/// records of its own; with `cut: None` (HTTP/1.1) it is the plain stream.
pub(crate) struct ResponseRecords {
    inner: TlsStream<TcpStream>,
    cut: Option<FrameCursor>,
}

impl ResponseRecords {
    /// `h2`: whether the connection speaks HTTP/2 (ALPN `h2`).
    pub(crate) fn new(inner: TlsStream<TcpStream>, h2: bool) -> Self {
        Self {
            inner,
            cut: h2.then(FrameCursor::default),
        }
    }

    /// Hands `buf` to rustls in pieces, each ending after a frame that ends a stream (each
    /// piece becomes its own record or records). Returns how much rustls took (0 when its
    /// outgoing buffer is full).
    fn queue(&mut self, cursor: &mut FrameCursor, buf: &[u8]) -> io::Result<usize> {
        let connection = self.inner.get_mut().1;
        let mut written = 0;
        while written < buf.len() {
            let mut probe = *cursor;
            let piece = probe.advance(&buf[written..], true);
            let taken = connection.writer().write(&buf[written..written + piece])?;
            if taken == piece {
                *cursor = probe;
            } else {
                cursor.advance(&buf[written..written + taken], false);
            }
            written += taken;
            if taken < piece {
                break;
            }
        }
        Ok(written)
    }
}

impl AsyncRead for ResponseRecords {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResponseRecords {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(mut cursor) = this.cut else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        loop {
            let written = this.queue(&mut cursor, buf);
            this.cut = Some(cursor);
            let written = written?;
            if written > 0 || buf.is_empty() {
                // Start sending what is queued; the caller flushes (h2 always does) and a
                // socket that is not writable now wakes this task later.
                if let Poll::Ready(Err(error)) = Pin::new(&mut this.inner).poll_flush(cx) {
                    return Poll::Ready(Err(error));
                }
                return Poll::Ready(Ok(written));
            }
            // rustls' outgoing buffer is full: write it out, then queue again.
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut.is_none() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        // Not advertised for HTTP/2 (h2 then writes one flat buffer); if called, one slice.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        Pin::new(this).poll_write(cx, first)
    }

    /// HTTP/1.1: as the TLS stream. HTTP/2: no, so that h2 hands over whole frames in one
    /// buffer (it copies payloads up to 1 KiB into its own buffer either way).
    fn is_write_vectored(&self) -> bool {
        self.cut.is_none()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Cuts `stream` as [`ResponseRecords::queue`] does, fed in `chunk`-byte writes.
    fn pieces(stream: &[u8], chunk: usize) -> Vec<usize> {
        let mut cursor = FrameCursor::default();
        let mut cuts = Vec::new();
        let mut current = 0;
        for write in stream.chunks(chunk) {
            let mut at = 0;
            while at < write.len() {
                let mut probe = cursor;
                let n = probe.advance(&write[at..], true);
                cursor = probe;
                at += n;
                current += n;
                if cursor.header_len == 0 && cursor.payload_left == 0 && cursor.ends_stream {
                    cuts.push(current);
                    current = 0;
                    cursor.ends_stream = false;
                }
            }
        }
        if current > 0 {
            cuts.push(current);
        }
        cuts
    }

    #[test]
    fn cuts_after_each_frame_that_ends_a_stream_across_any_write_split() {
        let settings = frame(0x4, 0, 0, &[0; 6]);
        let headers_1 = frame(HEADERS, 0x4, 1, &[0x88; 20]);
        let data_1 = frame(DATA, END_STREAM, 1, &[7; 45]);
        let headers_3 = frame(HEADERS, 0x4, 3, &[0x88; 20]);
        let data_3 = frame(DATA, END_STREAM, 3, &[9; 300]);
        let ping = frame(0x6, 0, 0, &[0; 8]);
        let mut stream = Vec::new();
        for f in [&settings, &headers_1, &data_1, &headers_3, &data_3, &ping] {
            stream.extend_from_slice(f);
        }
        let first = settings.len() + headers_1.len() + data_1.len();
        let expected = vec![first, headers_3.len() + data_3.len(), ping.len()];
        for chunk in [1, 2, 5, 9, 10, 64, 1000, stream.len()] {
            assert_eq!(pieces(&stream, chunk), expected, "writes of {chunk} bytes");
        }
        // HEADERS with END_STREAM (a response without body) ends a piece too.
        let bodiless = frame(HEADERS, 0x4 | END_STREAM, 5, &[0x88; 3]);
        let mut two = bodiless.clone();
        two.extend_from_slice(&bodiless);
        assert_eq!(pieces(&two, 4), vec![bodiless.len(), bodiless.len()]);
    }
}
