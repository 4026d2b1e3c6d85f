//! The wire side: one query in, one answer out (`Handler::handle`), and
//! the UDP and TCP loops around it.

use crate::forward::Forwarder;
use crate::zone::{Reply, Snapshot, Zone};
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// The current snapshot; None until both watches have listed.
pub type Shared = Arc<RwLock<Option<Arc<Snapshot>>>>;

/// What we advertise and accept over UDP with EDNS (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
const MAX_UDP_INFLIGHT: usize = 1024;
const MAX_TCP_CONNS: usize = 256;
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

pub struct Handler {
    pub zone: Zone,
    pub snapshot: Shared,
    pub forwarder: Forwarder,
    /// Clients allowed to use us as a recursive resolver (pods, the node):
    /// anyone may ask about the cluster zone, but forwarding for the whole
    /// network would make an open resolver.
    pub recursion_from: Vec<IpNet>,
}

fn encode(msg: &Message) -> Option<Vec<u8>> {
    match msg.to_vec() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "encoding a DNS answer");
            None
        }
    }
}

fn error_reply(req: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    m.metadata = Metadata::response_from_request(&req.metadata);
    m.metadata.response_code = rcode;
    m.metadata.recursion_available = true;
    m.add_queries(req.queries.iter().cloned());
    m
}

impl Handler {
    fn recursion_allowed(&self, client: IpAddr) -> bool {
        let ip = client.to_canonical();
        ip.is_loopback() || self.recursion_from.iter().any(|n| n.contains(&ip))
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The answer to the wire-format `query` from `client`, or None when
    /// nothing should be sent (not a query, or unparseable beyond its ID).
    pub async fn handle(&self, query: &[u8], client: IpAddr, tr: Transport) -> Option<Vec<u8>> {
        let req = match Message::from_vec(query) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%client, error = %e, "malformed DNS query");
                let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
                return encode(&Message::error_msg(
                    id,
                    OpCode::Query,
                    ResponseCode::FormErr,
                ));
            }
        };
        // Never answer answers: two servers could bounce them forever.
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        if req.metadata.op_code != OpCode::Query {
            return encode(&error_reply(&req, ResponseCode::NotImp));
        }
        let [q] = req.queries.as_slice() else {
            return encode(&error_reply(&req, ResponseCode::FormErr));
        };
        let limit = match &req.edns {
            Some(e) => e.max_payload().clamp(512, EDNS_PAYLOAD) as usize,
            None => 512,
        };
        let snap = self.snapshot();
        let reply = snap.as_ref().and_then(|s| self.zone.answer(s, q));
        let mut resp = match reply {
            Some(r) => {
                self.authoritative(&req, q, r, snap.as_deref(), client)
                    .await
            }
            None if self.zone.contains(&q.name) => {
                // Not synced yet: saying NXDOMAIN would be cached as a lie.
                error_reply(&req, ResponseCode::ServFail)
            }
            None => {
                if !self.recursion_allowed(client) {
                    error_reply(&req, ResponseCode::Refused)
                } else {
                    let ans = match tr {
                        Transport::Udp => self.forwarder.forward(query).await,
                        Transport::Tcp => self.forwarder.forward_tcp(query).await,
                    };
                    match ans {
                        Some(a) if tr == Transport::Tcp || a.len() <= limit => return Some(a),
                        Some(a) => match Message::from_vec(&a) {
                            Ok(m) => m.truncate(),
                            Err(_) => error_reply(&req, ResponseCode::ServFail),
                        },
                        None => error_reply(&req, ResponseCode::ServFail),
                    }
                }
            }
        };
        if req.edns.is_some() && resp.edns.is_none() {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            resp.set_edns(e);
        }
        let bytes = encode(&resp)?;
        let max = if tr == Transport::Udp { limit } else { 65535 };
        if bytes.len() > max {
            return encode(&resp.truncate());
        }
        Some(bytes)
    }

    async fn authoritative(
        &self,
        req: &Message,
        q: &Query,
        r: Reply,
        snap: Option<&Snapshot>,
        client: IpAddr,
    ) -> Message {
        let mut m = error_reply(req, r.rcode);
        m.metadata.authoritative = true;
        m.answers = r.answers;
        m.authorities = r.authority;
        m.additionals = r.additionals;
        let Some(target) = r.chase else {
            return m;
        };
        // Resolve the CNAME target like CoreDNS, so stub resolvers that do
        // not chase CNAMEs still get addresses.
        let tq = Query::query(target.clone(), q.query_type);
        if let Some(inner) = snap.and_then(|s| self.zone.answer(s, &tq)) {
            m.answers.extend(inner.answers);
            return m;
        }
        if !self.recursion_allowed(client) {
            return m;
        }
        let mut fq = Message::query();
        fq.metadata.recursion_desired = true;
        fq.add_query(tq);
        let Some(bytes) = encode(&fq) else {
            return m;
        };
        if let Some(ans) = self.forwarder.forward(&bytes).await {
            if let Ok(a) = Message::from_vec(&ans) {
                if a.metadata.response_code == ResponseCode::NoError {
                    m.answers.extend(a.answers.into_iter().filter(|r| {
                        r.record_type() == q.query_type || r.record_type() == RecordType::CNAME
                    }));
                }
            }
        }
        m
    }
}

/// One address's sockets.
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

async fn bind_all(ips: &[IpAddr], port: u16) -> std::io::Result<Vec<Sockets>> {
    let mut out: Vec<Sockets> = Vec::new();
    let mut port = port;
    for ip in ips {
        let udp = UdpSocket::bind(SocketAddr::new(*ip, port)).await?;
        // Port 0: the first address picks, the others follow.
        port = udp.local_addr()?.port();
        let tcp = TcpListener::bind(SocketAddr::new(*ip, port)).await?;
        out.push(Sockets { udp, tcp });
    }
    Ok(out)
}

/// UDP and TCP sockets on `port` of each address in `ips` (one socket per
/// address rather than a wildcard: a UDP answer must leave from the
/// address the query was sent to, or the client, and conntrack for the
/// DNATed ClusterIP, would not recognise it); when the port is taken and
/// `fallback` is set, a port free on all of them.
pub async fn bind(ips: &[IpAddr], port: u16, fallback: bool) -> std::io::Result<Vec<Sockets>> {
    let err = match bind_all(ips, port).await {
        Ok(s) => return Ok(s),
        Err(e) if !fallback || port == 0 => return Err(e),
        Err(e) => e,
    };
    tracing::info!(port, error = %err, "DNS port taken; using a free one");
    let mut last = err;
    for _ in 0..20 {
        match bind_all(ips, 0).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serves every socket until the task is dropped.
pub async fn serve(handler: Arc<Handler>, sockets: Vec<Sockets>) {
    let tasks = sockets.into_iter().map(|s| {
        let h = handler.clone();
        async move {
            tokio::join!(serve_udp(h.clone(), s.udp), serve_tcp(h, s.tcp));
        }
    });
    futures::future::join_all(tasks).await;
}

async fn serve_udp(h: Arc<Handler>, udp: UdpSocket) {
    let udp = Arc::new(udp);
    let sem = Arc::new(Semaphore::new(MAX_UDP_INFLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Overloaded: drop it; the client retries.
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            continue;
        };
        let msg = buf[..n].to_vec();
        let (h, udp) = (h.clone(), udp.clone());
        tokio::spawn(async move {
            if let Some(resp) = h.handle(&msg, peer.ip(), Transport::Udp).await {
                if let Err(e) = udp.send_to(&resp, peer).await {
                    tracing::debug!(%peer, error = %e, "DNS UDP send");
                }
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(h: Arc<Handler>, tcp: TcpListener) {
    let sem = Arc::new(Semaphore::new(MAX_TCP_CONNS));
    loop {
        let (s, peer) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS TCP accept");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            continue;
        };
        let h = h.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp_conn(&h, s, peer.ip()).await {
                tracing::debug!(%peer, error = %e, "DNS TCP connection");
            }
            drop(permit);
        });
    }
}

async fn tcp_conn(h: &Handler, mut s: TcpStream, peer: IpAddr) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, s.read_u16()).await {
            Ok(Ok(n)) => n as usize,
            // Idle or closed: done.
            _ => return Ok(()),
        };
        let mut buf = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        let Some(resp) = h.handle(&buf, peer, Transport::Tcp).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(resp.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&resp);
        s.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests;
