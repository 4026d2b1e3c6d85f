use super::*;
use serde_json::json;

fn svc(v: serde_json::Value) -> Arc<Service> {
    Arc::new(serde_json::from_value(v).expect("service fixture"))
}

fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
    Arc::new(serde_json::from_value(v).expect("slice fixture"))
}

fn fixture() -> Snapshot {
    let services = vec![
        svc(
            json!({"metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}),
        ),
        svc(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.43.7.7", "clusterIPs": ["10.43.7.7", "fd00::7"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                               {"port": 9000, "protocol": "UDP"}]}})),
        svc(json!({"metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"],
                     "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}})),
        svc(json!({"metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "example.org",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})),
    ];
    let slices = vec![
        slice(json!({"metadata": {"name": "db-abc", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.6"], "hostname": "db-1"},
            {"addresses": ["10.42.0.7"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.8"], "hostname": "db-3", "conditions": {"ready": false}},
        ]})),
        // A second slice repeating an address must not duplicate it.
        slice(json!({"metadata": {"name": "db-def", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"], "hostname": "db-0"}]})),
        slice(json!({"metadata": {"name": "web-x", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.1.9"]}]})),
    ];
    Snapshot::new(services, slices, 42)
}

fn zone() -> Zone {
    Zone::new(
        "cluster.local",
        DEFAULT_TTL,
        Some("10.43.0.10".parse().unwrap()),
    )
    .unwrap()
}

fn ask(name: &str, t: RecordType) -> Option<Reply> {
    let q = Query::query(Name::from_ascii(name).unwrap(), t);
    zone().answer(&fixture(), &q)
}

fn addrs(r: &Reply) -> Vec<String> {
    let mut v: Vec<String> = r
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn is_soa_only(r: &Reply) -> bool {
    r.answers.is_empty()
        && r.authority.len() == 1
        && matches!(&r.authority[0].data, RData::SOA(s) if s.serial == 42 && s.minimum == 5)
}

#[test]
fn cluster_ip_service_a_and_aaaa() {
    let r = ask("kubernetes.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert_eq!(addrs(&r), ["10.43.0.1"]);
    assert_eq!(r.answers[0].ttl, 5);
    assert_eq!(
        r.answers[0].name,
        Name::from_ascii("kubernetes.default.svc.cluster.local.").unwrap()
    );
    let r = ask("web.shop.svc.cluster.local.", RecordType::AAAA).unwrap();
    assert_eq!(addrs(&r), ["fd00::7"]);
    // Case does not matter, and the owner keeps the asked spelling.
    let r = ask("WEB.Shop.SVC.cluster.LOCAL.", RecordType::A).unwrap();
    assert_eq!(addrs(&r), ["10.43.7.7"]);
    assert_eq!(r.answers[0].name.to_ascii(), "WEB.Shop.SVC.cluster.LOCAL.");
}

#[test]
fn headless_service_is_every_ready_endpoint() {
    let r = ask("db.shop.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(addrs(&r), ["10.42.0.5", "10.42.0.6", "10.42.0.7"]);
    // No IPv6 endpoints: NOERROR, empty, SOA.
    let r = ask("db.shop.svc.cluster.local.", RecordType::AAAA).unwrap();
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(is_soa_only(&r));
}

#[test]
fn endpoint_hostnames_and_dashed_ips() {
    let r = ask("db-0.db.shop.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(addrs(&r), ["10.42.0.5"]);
    let r = ask("10-42-0-7.db.shop.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(addrs(&r), ["10.42.0.7"]);
    // Not ready: not there.
    let r = ask("db-3.db.shop.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(r.rcode, ResponseCode::NXDomain);
}

#[test]
fn srv_for_named_ports() {
    let r = ask("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(r.answers.len(), 1);
    let RData::SRV(s) = &r.answers[0].data else {
        panic!("not SRV: {r:?}")
    };
    assert_eq!(s.port, 80);
    assert_eq!(s.target.to_ascii(), "web.shop.svc.cluster.local.");
    assert_eq!(
        addrs(&Reply {
            answers: r.additionals.clone(),
            ..r.clone()
        }),
        ["10.43.7.7", "fd00::7"]
    );

    // Headless: one per endpoint, target the hostname or dashed IP, the
    // endpoint's port.
    let r = ask("_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).unwrap();
    let mut targets: Vec<(String, u16)> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::SRV(s) => Some((s.target.to_ascii(), s.port)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("10-42-0-7.db.shop.svc.cluster.local.".to_string(), 15432),
            ("db-0.db.shop.svc.cluster.local.".to_string(), 15432),
            ("db-1.db.shop.svc.cluster.local.".to_string(), 15432),
        ]
    );
    assert_eq!(r.additionals.len(), 3);

    // Wrong protocol or an unnamed port: NXDOMAIN.
    let r = ask("_http._udp.web.shop.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(r.rcode, ResponseCode::NXDomain);
    // `_tcp.web...` exists (above the SRV names) but has no records.
    let r = ask("_tcp.web.shop.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(is_soa_only(&r));
    // SRV on the service name: every port.
    let r = ask("web.shop.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(r.answers.len(), 2);
}

#[test]
fn external_name_is_a_cname() {
    let r = ask("ext.shop.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(
        matches!(&r.answers[..], [a] if matches!(&a.data, RData::CNAME(c) if c.0.to_ascii() == "example.org."))
    );
    assert_eq!(
        r.chase.as_ref().map(|n| n.to_ascii()),
        Some("example.org.".into())
    );
    let r = ask("ext.shop.svc.cluster.local.", RecordType::CNAME).unwrap();
    assert!(r.chase.is_none());
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn missing_names_are_nxdomain_with_soa() {
    for name in [
        "nope.default.svc.cluster.local.",
        "kubernetes.nope.svc.cluster.local.",
        "kubernetes.default.default.svc.cluster.local.",
        "a.b.c.d.e.svc.cluster.local.",
        "foo.cluster.local.",
    ] {
        let r = ask(name, RecordType::A).unwrap();
        assert_eq!(r.rcode, ResponseCode::NXDomain, "{name}");
        assert_eq!(r.authority.len(), 1, "{name}");
        assert!(matches!(r.authority[0].data, RData::SOA(_)), "{name}");
        assert_eq!(r.authority[0].name.to_ascii(), "cluster.local.");
    }
}

#[test]
fn existing_names_without_the_type_are_empty() {
    for (name, t) in [
        ("kubernetes.default.svc.cluster.local.", RecordType::TXT),
        ("kubernetes.default.svc.cluster.local.", RecordType::AAAA),
        ("svc.cluster.local.", RecordType::A),
        ("shop.svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
    ] {
        let r = ask(name, t).unwrap();
        assert_eq!(r.rcode, ResponseCode::NoError, "{name} {t}");
        assert!(is_soa_only(&r), "{name} {t}: {r:?}");
    }
}

#[test]
fn apex_soa_and_ns() {
    let r = ask("cluster.local.", RecordType::SOA).unwrap();
    assert!(matches!(&r.answers[..], [a] if matches!(a.data, RData::SOA(_))));
    let r = ask("cluster.local.", RecordType::NS).unwrap();
    assert!(
        matches!(&r.answers[..], [a] if matches!(&a.data, RData::NS(n) if n.0.to_ascii() == "ns.dns.cluster.local."))
    );
    assert_eq!(
        addrs(&Reply {
            answers: r.additionals.clone(),
            ..r
        }),
        ["10.43.0.10"]
    );
}

#[test]
fn pod_names_carry_their_address() {
    let r = ask("10-42-3-4.shop.pod.cluster.local.", RecordType::A).unwrap();
    assert_eq!(addrs(&r), ["10.42.3.4"]);
    let r = ask("x-y.shop.pod.cluster.local.", RecordType::A).unwrap();
    assert_eq!(r.rcode, ResponseCode::NXDomain);
}

#[test]
fn names_outside_the_zone_are_not_ours() {
    assert!(ask("example.org.", RecordType::A).is_none());
    assert!(ask("cluster.local.example.org.", RecordType::A).is_none());
    assert!(ask("local.", RecordType::A).is_none());
    // Another zone whose name ends like ours is still not ours.
    assert!(ask("notcluster.local.", RecordType::A).is_none());
}

#[test]
fn ptr_for_service_and_endpoint_addresses() {
    let rev = |ip: &str| Name::from(ip.parse::<IpAddr>().unwrap());
    let q = Query::query(rev("10.43.7.7"), RecordType::PTR);
    let r = zone().answer(&fixture(), &q).unwrap();
    assert!(
        matches!(&r.answers[..], [a] if matches!(&a.data, RData::PTR(p) if p.0.to_ascii() == "web.shop.svc.cluster.local."))
    );
    let q = Query::query(rev("10.42.0.5"), RecordType::PTR);
    let r = zone().answer(&fixture(), &q).unwrap();
    assert!(
        matches!(&r.answers[..], [a] if matches!(&a.data, RData::PTR(p) if p.0.to_ascii() == "db-0.db.shop.svc.cluster.local."))
    );
    // Unknown addresses go upstream.
    let q = Query::query(rev("192.0.2.1"), RecordType::PTR);
    assert!(zone().answer(&fixture(), &q).is_none());
}

#[test]
fn other_domains() {
    let z = Zone::new("corp.example.", 30, None).unwrap();
    let q = Query::query(
        Name::from_ascii("kubernetes.default.svc.corp.example.").unwrap(),
        RecordType::A,
    );
    let r = z.answer(&fixture(), &q).unwrap();
    assert_eq!(addrs(&r), ["10.43.0.1"]);
    assert_eq!(r.answers[0].ttl, 30);
    assert!(Zone::new("", 5, None).is_err());
    assert!(Zone::new("bad..domain", 5, None).is_err());
}
