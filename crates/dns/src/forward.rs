//! Forwarding what is not ours to the node's upstream resolvers: UDP,
//! then TCP when the answer is truncated; the next upstream on a timeout
//! or a network error.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Upstream resolvers of a resolv.conf text: its `nameserver` lines, port
/// 53, without `exclude` (the cluster DNS itself, which would loop).
pub fn upstreams_from_resolv_conf(text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("nameserver") {
            continue;
        }
        // A zone index (`fe80::1%eth0`) is not usable from a plain address.
        let Some(Ok(ip)) = f.next().map(|a| a.parse::<IpAddr>()) else {
            continue;
        };
        let sa = SocketAddr::new(ip, 53);
        if !exclude.contains(&ip) && !out.contains(&sa) {
            out.push(sa);
        }
    }
    out
}

/// Upstream resolvers of the host's `/etc/resolv.conf` (a loopback stub
/// resolver works: the server runs in the host's network namespace).
pub fn host_upstreams(exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let main = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    upstreams_from_resolv_conf(&main, exclude)
}

#[derive(Debug, Clone)]
pub struct Forwarder {
    pub upstreams: Vec<SocketAddr>,
    pub timeout: Duration,
}

fn id_of(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

fn truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & 0x02 != 0)
}

impl Forwarder {
    /// The first upstream answer to the wire-format `query`; None when no
    /// upstream answered (the caller says SERVFAIL).
    pub async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        let id = id_of(query)?;
        for up in &self.upstreams {
            match self.udp(*up, query, id).await {
                Ok(ans) if truncated(&ans) => match self.tcp(*up, query, id).await {
                    Ok(full) => return Some(full),
                    // The truncated answer still tells the client to retry
                    // over TCP itself.
                    Err(e) => {
                        tracing::debug!(upstream = %up, error = %e, "TCP retry after truncation");
                        return Some(ans);
                    }
                },
                Ok(ans) => return Some(ans),
                Err(e) => tracing::debug!(upstream = %up, error = %e, "upstream did not answer"),
            }
        }
        None
    }

    /// Over TCP only (the client asked over TCP: the answer may be large).
    pub async fn forward_tcp(&self, query: &[u8]) -> Option<Vec<u8>> {
        let id = id_of(query)?;
        for up in &self.upstreams {
            match self.tcp(*up, query, id).await {
                Ok(ans) => return Some(ans),
                Err(e) => tracing::debug!(upstream = %up, error = %e, "upstream did not answer"),
            }
        }
        None
    }

    async fn udp(&self, up: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
        let bind: SocketAddr = if up.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        // A fresh socket per query: a random source port, and answers of
        // other queries never arrive here.
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(up).await?;
        sock.send(query).await?;
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
            // Ignore stray datagrams with another ID.
            if id_of(&buf[..n]) == Some(id) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    async fn tcp(&self, up: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
        let t = self.timeout;
        let timed_out = |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let fut = async {
            let mut s = TcpStream::connect(up).await?;
            let len = u16::try_from(query.len())
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "too long"))?;
            let mut out = Vec::with_capacity(query.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(query);
            s.write_all(&out).await?;
            let n = s.read_u16().await? as usize;
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).await?;
            if id_of(&buf) != Some(id) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "answer with another ID",
                ));
            }
            Ok(buf)
        };
        tokio::time::timeout(t, fut).await.map_err(timed_out)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_upstreams() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver 10.43.0.10\n\
                    nameserver fe80::1%eth0\nnameserver 2001:db8::53\nnameserver 192.0.2.53\noptions ndots:2\n";
        let got = upstreams_from_resolv_conf(text, &["10.43.0.10".parse().unwrap()]);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }
}
