use super::*;
use hickory_proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use std::str::FromStr;

fn snapshot() -> Arc<Snapshot> {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443}]},
    }))
    .unwrap();
    let ext: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "alias", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local"},
    }))
    .unwrap();
    Arc::new(Snapshot::new([Arc::new(svc), Arc::new(ext)], [], 7))
}

fn handler(upstreams: Vec<SocketAddr>, synced: bool) -> Arc<Handler> {
    Arc::new(Handler {
        zone: Zone::new("cluster.local", 5, None).unwrap(),
        snapshot: Arc::new(RwLock::new(synced.then(snapshot))),
        forwarder: Forwarder {
            upstreams,
            timeout: Duration::from_millis(300),
        },
        recursion_from: vec![IpNet::from_str("10.42.0.0/16").unwrap()],
    })
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

async fn start(h: Arc<Handler>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let s = bind(&[lo], 0, false).await.unwrap();
    let addr = s[0].udp.local_addr().unwrap();
    assert_eq!(s[0].tcp.local_addr().unwrap(), addr);
    (addr, tokio::spawn(serve(h, s)))
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, qs: &[Vec<u8>]) -> Vec<Message> {
    let mut s = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    // Several queries on one connection, as resolvers do.
    for q in qs {
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(q).await.unwrap();
        let n = s.read_u16().await.unwrap() as usize;
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn udp_and_tcp_answer_the_zone() {
    let (addr, task) = start(handler(vec![], true)).await;
    let q = query("kubernetes.default.svc.cluster.local.", RecordType::A);
    let m = ask_udp(addr, &q).await;
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), ["10.43.0.1"]);
    assert_eq!(m.queries.len(), 1);

    let answers = ask_tcp(
        addr,
        &[
            query("nope.default.svc.cluster.local.", RecordType::A),
            query("alias.default.svc.cluster.local.", RecordType::A),
        ],
    )
    .await;
    assert_eq!(answers[0].metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(
        answers[0].authorities[..],
        [Record {
            data: RData::SOA(_),
            ..
        }]
    ));
    // The in-zone CNAME target is resolved in the same answer.
    assert!(matches!(answers[1].answers[0].data, RData::CNAME(_)));
    assert_eq!(a_records(&answers[1]), ["10.43.0.1"]);
    task.abort();
}

#[tokio::test]
async fn edns_answer_and_garbage() {
    let h = handler(vec![], true);
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii("kubernetes.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_max_payload(4096);
    m.set_edns(e);
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let r = h
        .handle(&m.to_vec().unwrap(), lo, Transport::Udp)
        .await
        .unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    assert_eq!(a_records(&r), ["10.43.0.1"]);
    // A header and junk: FORMERR with the ID; less than an ID: nothing.
    let r = h
        .handle(&[0xab, 0xcd, 1, 2, 3], lo, Transport::Udp)
        .await
        .unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (0xabcd, ResponseCode::FormErr)
    );
    assert!(h.handle(&[1], lo, Transport::Udp).await.is_none());
    // An answer sent to us is never answered.
    let mut resp = Message::response(9, OpCode::Query);
    resp.add_query(Query::query(Name::root(), RecordType::A));
    assert!(h
        .handle(&resp.to_vec().unwrap(), lo, Transport::Udp)
        .await
        .is_none());
}

#[tokio::test]
async fn not_synced_is_servfail_and_outsiders_are_refused() {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let h = handler(vec![], false);
    let q = query("kubernetes.default.svc.cluster.local.", RecordType::A);
    let r = Message::from_vec(&h.handle(&q, lo, Transport::Udp).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);

    let h = handler(vec![], true);
    let q = query("example.org.", RecordType::A);
    let outsider: IpAddr = "192.0.2.9".parse().unwrap();
    let r = Message::from_vec(&h.handle(&q, outsider, Transport::Udp).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // The zone itself answers anyone.
    let q = query("kubernetes.default.svc.cluster.local.", RecordType::A);
    let r = Message::from_vec(&h.handle(&q, outsider, Transport::Udp).await.unwrap()).unwrap();
    assert_eq!(a_records(&r), ["10.43.0.1"]);
}

/// A fake upstream on loopback: over UDP it answers truncated, over TCP
/// in full (192.0.2.1, from the documentation range).
async fn fake_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = u.local_addr().unwrap();
    let t = TcpListener::bind(addr).await.unwrap();
    let answer = |q: &[u8], tc: bool| {
        let req = Message::from_vec(q).unwrap();
        let mut m = error_reply(&req, ResponseCode::NoError);
        m.metadata.truncation = tc;
        if !tc {
            m.add_answer(Record::from_rdata(
                req.queries[0].name.clone(),
                60,
                RData::A(hickory_proto::rr::rdata::A("192.0.2.1".parse().unwrap())),
            ));
        }
        m.to_vec().unwrap()
    };
    let task = tokio::spawn(async move {
        let udp = async {
            let mut buf = vec![0u8; 65535];
            loop {
                let (n, peer) = u.recv_from(&mut buf).await.unwrap();
                u.send_to(&answer(&buf[..n], true), peer).await.unwrap();
            }
        };
        let tcp = async {
            loop {
                let (mut s, _) = t.accept().await.unwrap();
                let n = s.read_u16().await.unwrap() as usize;
                let mut buf = vec![0u8; n];
                s.read_exact(&mut buf).await.unwrap();
                let a = answer(&buf, false);
                s.write_all(&(a.len() as u16).to_be_bytes()).await.unwrap();
                s.write_all(&a).await.unwrap();
            }
        };
        tokio::join!(udp, tcp);
    });
    (addr, task)
}

#[tokio::test]
async fn forwards_outside_the_zone_with_tcp_fallback() {
    let (up, up_task) = fake_upstream().await;
    let (addr, task) = start(handler(vec![up], true)).await;
    let m = ask_udp(addr, &query("example.org.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative);
    assert!(!m.metadata.truncation);
    assert_eq!(a_records(&m), ["192.0.2.1"]);
    up_task.abort();
    task.abort();
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() {
    // Bound but silent: the query times out.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (addr, task) = start(handler(vec![silent.local_addr().unwrap()], true)).await;
    let m = ask_udp(addr, &query("example.org.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = ask_udp(addr, &query("example.org.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    task.abort();
}

#[tokio::test]
async fn taken_port_falls_back_to_a_free_one() {
    let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
    let held = bind(&ips, 0, false).await.unwrap();
    let taken = held[0].udp.local_addr().unwrap().port();
    // The same port on both addresses.
    assert_eq!(held[1].tcp.local_addr().unwrap().port(), taken);
    assert!(bind(&ips, taken, false).await.is_err());
    let s = bind(&ips, taken, true).await.unwrap();
    let port = s[0].udp.local_addr().unwrap().port();
    assert_ne!(port, taken);
    for x in &s {
        assert_eq!(x.udp.local_addr().unwrap().port(), port);
        assert_eq!(x.tcp.local_addr().unwrap().port(), port);
    }
}
