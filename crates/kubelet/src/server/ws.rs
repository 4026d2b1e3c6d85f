//! Connection upgrades: websocket (RFC 6455, subprotocol negotiation) and
//! SPDY/3.1 (`X-Stream-Protocol-Version`), and a websocket-to-bytes bridge
//! for protocols tunnelled in binary messages.

use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::Body;

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

fn header_list<B>(req: &Request<B>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn is_websocket<B>(req: &Request<B>) -> bool {
    header_list(req, "upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("websocket"))
}

pub fn is_spdy<B>(req: &Request<B>) -> bool {
    header_list(req, "upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Subprotocols offered by a websocket client.
pub fn ws_protocols<B>(req: &Request<B>) -> Vec<String> {
    header_list(req, "sec-websocket-protocol")
}

/// Stream protocols offered by a SPDY client.
pub fn spdy_protocols<B>(req: &Request<B>) -> Vec<String> {
    header_list(req, "x-stream-protocol-version")
}

fn switching() -> Response<Body> {
    let mut r = Response::new(super::full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r
}

/// The 101 for a websocket client choosing `proto`; `None` if the request
/// is not a valid websocket handshake.
pub fn ws_accept<B>(req: &Request<B>, proto: &str) -> Option<Response<Body>> {
    let key = req.headers().get("sec-websocket-key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = switching();
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&accept).ok()?);
    h.insert("sec-websocket-protocol", HeaderValue::from_str(proto).ok()?);
    Some(r)
}

/// The 101 for a SPDY client choosing `proto`.
pub fn spdy_accept(proto: &str) -> Response<Body> {
    let mut r = switching();
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(proto) {
        h.insert("x-stream-protocol-version", v);
    }
    r
}

/// A normal closure (1000): clients treat other codes, and none, as errors.
pub fn normal_close() -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }
}

/// The websocket once the 101 has gone out.
pub async fn websocket(on: OnUpgrade) -> Option<Ws> {
    match on.await {
        Ok(u) => Some(WebSocketStream::from_raw_socket(TokioIo::new(u), Role::Server, None).await),
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            None
        }
    }
}

/// A byte stream whose reads are the payloads of the websocket's binary
/// messages and whose writes become binary messages (how kubectl tunnels
/// SPDY for port-forward). Ends when either side closes.
pub fn bridge(ws: Ws) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let to_ws = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(buf[..n].to_vec().into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = sink.send(Message::Close(Some(normal_close()))).await;
        };
        let from_ws = async {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                    Message::Text(t) if wr.write_all(t.as_bytes()).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        };
        // Either direction ending ends the tunnel.
        tokio::select! {
            _ = to_ws => {}
            _ = from_ws => {}
        }
    });
    theirs
}
