//! SPDY/3.1 as kubectl speaks it (moby/spdystream): frame encoding and
//! decoding with zlib-compressed header blocks (the SPDY/3 dictionary,
//! one compression context per direction), and a server session that
//! hands out client-opened streams. No flow control: spdystream ignores it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

/// The SPDY/3 header compression dictionary (from the spec, as kubectl has it).
pub const DICTIONARY: &[u8] = include_bytes!("spdy_dict.bin");

const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
/// Largest frame accepted: header blocks and data are small in practice.
const MAX_FRAME: usize = 16 << 20;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("frame too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header compression: {0}")]
    Zlib(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last: u32,
        status: u32,
    },
    /// SETTINGS, HEADERS, WINDOW_UPDATE and unknown types: ignored.
    Other(u16),
}

pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Compresses header blocks (one zlib stream per connection direction).
pub struct Encoder {
    z: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream.
        let _ = z.set_dictionary(DICTIONARY);
        Encoder { z }
    }

    fn header_block(&mut self, h: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(h.len() as u32).to_be_bytes());
        for (k, v) in h {
            let k = k.to_ascii_lowercase();
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            // Sync flush is complete when input is consumed and output had room.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }

    pub fn encode(&mut self, f: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let control = |out: &mut Vec<u8>, ty: u16, flags: u8, payload: &[u8]| {
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&ty.to_be_bytes());
            let len = payload.len() as u32;
            out.push(flags);
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.extend_from_slice(payload);
        };
        match f {
            Frame::SynStream { id, fin, headers } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&0u32.to_be_bytes());
                p.extend_from_slice(&[0, 0]);
                p.extend(self.header_block(headers)?);
                control(out, SYN_STREAM, if *fin { FLAG_FIN } else { 0 }, &p);
            }
            Frame::SynReply { id, fin, headers } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                p.extend(self.header_block(headers)?);
                control(out, SYN_REPLY, if *fin { FLAG_FIN } else { 0 }, &p);
            }
            Frame::Data { id, fin, data } => {
                out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                out.push(if *fin { FLAG_FIN } else { 0 });
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
            }
            Frame::RstStream { id, status } => {
                let mut p = (id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, RST_STREAM, 0, &p);
            }
            Frame::Ping(id) => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last, status } => {
                let mut p = (last & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, GOAWAY, 0, &p);
            }
            Frame::Other(_) => {}
        }
        Ok(())
    }
}

/// Parses frames and decompresses header blocks.
pub struct Decoder {
    z: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            z: Decompress::new(true),
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            if out.len() == out.capacity() {
                if out.len() > MAX_FRAME {
                    return Err(SpdyError::TooLarge(out.len()));
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            match self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Zlib(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Zlib(e.to_string())),
            }
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            let progressed = used > 0 || out.len() > before_out;
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if !progressed && input.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(compressed)?;
        let bad = || SpdyError::Malformed("header block");
        let mut b = &raw[..];
        let mut take = |n: usize| -> Result<&[u8], SpdyError> {
            if b.len() < n {
                return Err(bad());
            }
            let (x, rest) = b.split_at(n);
            b = rest;
            Ok(x)
        };
        let n = be32(take(4)?) as usize;
        let mut h = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let kl = be32(take(4)?) as usize;
            let k = String::from_utf8_lossy(take(kl)?).into_owned();
            let vl = be32(take(4)?) as usize;
            let v = String::from_utf8_lossy(take(vl)?).into_owned();
            h.push((k, v));
        }
        Ok(h)
    }

    /// Take one complete frame off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let payload = buf.split_to(len).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                id: be32(&head[..4]) & 0x7fff_ffff,
                fin,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let ty = u16::from_be_bytes([head[2], head[3]]);
        let need = |n: usize, what| {
            if payload.len() < n {
                Err(SpdyError::Malformed(what))
            } else {
                Ok(())
            }
        };
        Ok(Some(match ty {
            SYN_STREAM => {
                need(10, "SYN_STREAM")?;
                Frame::SynStream {
                    id: be32(&payload) & 0x7fff_ffff,
                    fin,
                    headers: self.header_block(&payload[10..])?,
                }
            }
            SYN_REPLY => {
                need(4, "SYN_REPLY")?;
                Frame::SynReply {
                    id: be32(&payload) & 0x7fff_ffff,
                    fin,
                    headers: self.header_block(&payload[4..])?,
                }
            }
            RST_STREAM => {
                need(8, "RST_STREAM")?;
                Frame::RstStream {
                    id: be32(&payload) & 0x7fff_ffff,
                    status: be32(&payload[4..]),
                }
            }
            PING => {
                need(4, "PING")?;
                Frame::Ping(be32(&payload))
            }
            GOAWAY => {
                need(4, "GOAWAY")?;
                let status = if payload.len() >= 8 {
                    be32(&payload[4..])
                } else {
                    0
                };
                Frame::GoAway {
                    last: be32(&payload) & 0x7fff_ffff,
                    status,
                }
            }
            HEADERS => {
                // Still feed the shared zlib context so later blocks decode.
                if payload.len() >= 4 {
                    self.header_block(&payload[4..])?;
                }
                Frame::Other(ty)
            }
            SETTINGS | WINDOW_UPDATE => Frame::Other(ty),
            other => Frame::Other(other),
        }))
    }
}

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// Data the client sends on it; ends at its FIN or RST.
    pub data: mpsc::Receiver<Bytes>,
}

type Sink = Box<dyn AsyncWrite + Send + Unpin>;

/// The write side of a session, shared by the stream handlers.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Mutex<(Encoder, Sink)>>,
}

impl Writer {
    pub async fn send(&self, f: &Frame) -> Result<(), SpdyError> {
        let mut g = self.inner.lock().await;
        let mut buf = Vec::new();
        g.0.encode(f, &mut buf)?;
        g.1.write_all(&buf).await?;
        g.1.flush().await?;
        Ok(())
    }

    pub async fn reply(&self, id: u32) -> Result<(), SpdyError> {
        self.send(&Frame::SynReply {
            id,
            fin: false,
            headers: vec![],
        })
        .await
    }

    pub async fn data(&self, id: u32, data: Bytes, fin: bool) -> Result<(), SpdyError> {
        // Keep frames well under the 24-bit length.
        if data.len() > 32 * 1024 {
            let mut rest = data;
            while rest.len() > 32 * 1024 {
                let chunk = rest.split_to(32 * 1024);
                self.send(&Frame::Data {
                    id,
                    fin: false,
                    data: chunk,
                })
                .await?;
            }
            return self
                .send(&Frame::Data {
                    id,
                    fin,
                    data: rest,
                })
                .await;
        }
        self.send(&Frame::Data { id, fin, data }).await
    }

    /// GOAWAY, then close the connection.
    pub async fn close(&self) {
        let _ = self.send(&Frame::GoAway { last: 0, status: 0 }).await;
        let mut g = self.inner.lock().await;
        let _ = g.1.shutdown().await;
    }
}

pub struct Session {
    pub streams: mpsc::Receiver<Stream>,
    pub writer: Writer,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Session {
    /// Serve the server side of a SPDY connection over `io`.
    pub fn start<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, wr) = tokio::io::split(io);
        let writer = Writer {
            inner: Arc::new(Mutex::new((Encoder::new(), Box::new(wr) as Sink))),
        };
        let (tx, rx) = mpsc::channel(16);
        let w = writer.clone();
        let reader = tokio::spawn(async move {
            let mut dec = Decoder::new();
            let mut buf = BytesMut::with_capacity(16 * 1024);
            let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
            loop {
                let frame = match dec.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "SPDY: bad frame, closing");
                        break;
                    }
                };
                match frame {
                    Frame::SynStream { id, fin, headers } => {
                        let (dtx, drx) = mpsc::channel(64);
                        if !fin {
                            open.insert(id, dtx);
                        }
                        let s = Stream {
                            id,
                            headers,
                            data: drx,
                        };
                        if tx.send(s).await.is_err() {
                            // Nobody takes new streams any more.
                            let _ = w.send(&Frame::RstStream { id, status: 3 }).await;
                        }
                    }
                    Frame::Data { id, fin, data } => {
                        if let Some(s) = open.get(&id) {
                            if !data.is_empty() {
                                let _ = s.send(data).await;
                            }
                        }
                        if fin {
                            open.remove(&id);
                        }
                    }
                    Frame::RstStream { id, .. } => {
                        open.remove(&id);
                    }
                    Frame::Ping(id) => {
                        let _ = w.send(&Frame::Ping(id)).await;
                    }
                    Frame::GoAway { .. } => break,
                    Frame::SynReply { .. } | Frame::Other(_) => {}
                }
                let _ = buf.remaining();
            }
        });
        Session {
            streams: rx,
            writer,
            reader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(&wire[..]);
        let mut out = Vec::new();
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn frames_roundtrip_with_shared_zlib_context() {
        let h = |t: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".to_string(), "80".to_string()),
            ]
        };
        let frames = vec![
            Frame::SynStream {
                id: 1,
                fin: true,
                headers: h("error"),
            },
            Frame::SynStream {
                id: 3,
                fin: false,
                headers: h("data"),
            },
            Frame::SynReply {
                id: 3,
                fin: false,
                headers: vec![],
            },
            Frame::Data {
                id: 3,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::RstStream { id: 5, status: 5 },
            Frame::Ping(7),
            Frame::GoAway { last: 3, status: 0 },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        enc.encode(
            &Frame::Data {
                id: 1,
                fin: false,
                data: Bytes::from_static(b"abcdef"),
            },
            &mut wire,
        )
        .unwrap();
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(&wire[..10]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[10..]);
        assert!(matches!(
            dec.decode(&mut buf).unwrap(),
            Some(Frame::Data { id: 1, .. })
        ));
    }

    #[test]
    fn data_frame_layout() {
        let mut wire = Vec::new();
        Encoder::new()
            .encode(
                &Frame::Data {
                    id: 5,
                    fin: true,
                    data: Bytes::from_static(b"xy"),
                },
                &mut wire,
            )
            .unwrap();
        assert_eq!(wire, [0, 0, 0, 5, 1, 0, 0, 2, b'x', b'y']);
    }

    #[test]
    fn rejects_garbage() {
        let mut dec = Decoder::new();
        // Control frame of version 2.
        let mut buf = BytesMut::from(&[0x80, 2, 0, 1, 0, 0, 0, 0][..]);
        assert!(dec.decode(&mut buf).is_err());
        // SYN_STREAM with a corrupt header block.
        let mut buf = BytesMut::from(
            &[
                0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ][..],
        );
        assert!(dec.decode(&mut buf).is_err());
    }

    #[tokio::test]
    async fn session_dispatches_streams_and_data() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut sess = Session::start(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in [
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: vec![("streamtype".into(), "stdin".into())],
            },
            Frame::Data {
                id: 1,
                fin: true,
                data: Bytes::from_static(b"in"),
            },
            Frame::Ping(9),
        ] {
            enc.encode(&f, &mut wire).unwrap();
        }
        cwr.write_all(&wire).await.unwrap();
        let mut s = sess.streams.recv().await.unwrap();
        assert_eq!(header(&s.headers, "StreamType"), Some("stdin"));
        assert_eq!(&s.data.recv().await.unwrap()[..], b"in");
        assert!(s.data.recv().await.is_none());
        sess.writer.reply(1).await.unwrap();
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
                continue;
            }
            crd.read_buf(&mut buf).await.unwrap();
        }
        assert!(got.contains(&Frame::Ping(9)));
        assert!(got
            .iter()
            .any(|f| matches!(f, Frame::SynReply { id: 1, .. })));
    }
}
