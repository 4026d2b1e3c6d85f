//! `portForward`: SPDY/3.1 `portforward.k8s.io`, directly or tunnelled in
//! websocket binary messages (`SPDY/3.1+portforward.k8s.io`). Per forwarded
//! connection the client opens an error stream and a data stream with the
//! same `requestID`; the data stream is spliced to `localhost:<port>`
//! dialled inside the pod's network namespace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spdy::{self, Session, Writer};
use super::{text, ws, Body};
use crate::agent::Agent;

const WS_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";

pub async fn serve(agent: Arc<Agent>, mut req: Request<Incoming>, pod: &Value) -> Response<Body> {
    let uid = super::pod_uid(pod).to_string();
    let netns = if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        None
    } else {
        match bosun_runtime::PodSandbox::load(&agent.rt.sandbox_dir(&uid)) {
            Ok(sb) => sb.netns,
            Err(e) => return text(400, format!("pod sandbox not ready: {e}")),
        }
    };
    let on = hyper::upgrade::on(&mut req);
    if ws::is_websocket(&req) {
        if !ws::ws_protocols(&req).iter().any(|p| p == WS_TUNNEL) {
            return text(400, "unsupported websocket subprotocol");
        }
        let Some(resp) = ws::ws_accept(&req, WS_TUNNEL) else {
            return text(400, "bad websocket handshake");
        };
        tokio::spawn(async move {
            if let Some(w) = ws::websocket(on).await {
                run(ws::bridge(w), netns).await;
            }
        });
        return resp;
    }
    if ws::is_spdy(&req) {
        if !ws::spdy_protocols(&req).iter().any(|p| p == SPDY_PROTOCOL) {
            return text(403, "unsupported stream protocol");
        }
        tokio::spawn(async move {
            match on.await {
                Ok(u) => run(hyper_util::rt::TokioIo::new(u), netns).await,
                Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
            }
        });
        return ws::spdy_accept(SPDY_PROTOCOL);
    }
    text(400, "upgrade request required")
}

async fn run<IO>(io: IO, netns: Option<PathBuf>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut sess = Session::start(io);
    let w = sess.writer.clone();
    // requestID -> error stream id.
    let mut errors: HashMap<String, u32> = HashMap::new();
    while let Some(s) = sess.streams.recv().await {
        if w.reply(s.id).await.is_err() {
            break;
        }
        let rid = spdy::header(&s.headers, "requestid")
            .unwrap_or("")
            .to_string();
        match spdy::header(&s.headers, "streamtype").unwrap_or("") {
            "error" => {
                errors.insert(rid, s.id);
            }
            "data" => {
                let err_id = errors.remove(&rid);
                let port = spdy::header(&s.headers, "port").and_then(|p| p.parse::<u16>().ok());
                tokio::spawn(forward(w.clone(), s, err_id, port, netns.clone()));
            }
            other => {
                tracing::debug!(streamtype = other, "port-forward: unexpected stream");
            }
        }
    }
    drop(sess);
}

async fn forward(
    w: Writer,
    mut s: spdy::Stream,
    err_id: Option<u32>,
    port: Option<u16>,
    netns: Option<PathBuf>,
) {
    let fail = |msg: String| {
        let w = w.clone();
        async move {
            if let Some(e) = err_id {
                let _ = w.data(e, Bytes::from(msg), true).await;
            }
            let _ = w.data(s.id, Bytes::new(), true).await;
        }
    };
    let Some(port) = port else {
        fail("missing or invalid port".into()).await;
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ns2 = netns.clone();
    let conn = tokio::task::spawn_blocking(move || {
        bosun_runtime::netns::connect_tcp(ns2.as_deref(), addr, Duration::from_secs(5))
    })
    .await;
    let tcp = match conn {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            fail(format!(
                "error forwarding port {port} to pod: {}",
                bosun_runtime::netns::describe_connect_error(&e)
            ))
            .await;
            return;
        }
        Err(e) => {
            fail(format!("error forwarding port {port} to pod: {e}")).await;
            return;
        }
    };
    let tcp = match tcp
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(tcp))
    {
        Ok(t) => t,
        Err(e) => {
            fail(format!("error forwarding port {port} to pod: {e}")).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let id = s.id;
    let up = async {
        while let Some(b) = s.data.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let w2 = w.clone();
    let down = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w2
                        .data(id, Bytes::copy_from_slice(&buf[..n]), false)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = w2.data(id, Bytes::new(), true).await;
    };
    tokio::join!(up, down);
    if let Some(e) = err_id {
        let _ = w.data(e, Bytes::new(), true).await;
    }
}
