//! The cluster's PKI: a CA, the serving certificate, the admin client
//! certificate and kubeconfig, all created on first start in the data dir.

use base64::Engine;
use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("bad PEM in {0}")]
    Pem(PathBuf),
    #[error("client verifier: {0}")]
    Verifier(String),
}

pub struct Pki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    /// Bearer token accepted as the admin identity (besides client certs).
    pub admin_token: String,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    params.not_before = rcgen::date_time_ymd(now.year() - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(now.year() + years, 1, 1);
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d
}

/// Host names and addresses the serving certificate must be valid for.
pub fn default_sans(bind: &str, extra: &[String]) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        "10.43.0.1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            sans.push(h.to_string());
        }
    }
    sans.extend(local_addresses());
    sans.extend(extra.iter().cloned());
    if !bind.is_empty() && bind != "0.0.0.0" && bind != "::" {
        sans.push(bind.to_string());
    }
    sans.sort();
    sans.dedup();
    sans
}

/// The address other nodes and pods reach this server at when it listens
/// on every address: the source address of the default route (a UDP
/// connect picks it and sends nothing), else the first local address.
pub fn advertise_address() -> Option<String> {
    let route = std::fs::read_to_string("/proc/net/route").ok()?;
    let gw = route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            return None;
        }
        let g = u32::from_str_radix(f[2], 16).ok()?;
        // The hex is the network-order address read as a native u32.
        Some(std::net::Ipv4Addr::from(g.to_ne_bytes())).filter(|g| !g.is_unspecified())
    });
    let via_gw = gw.and_then(|gw| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect((gw, 9)).ok()?;
        Some(s.local_addr().ok()?.ip().to_string())
    });
    via_gw.or_else(|| {
        local_addresses().into_iter().find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
    })
}

/// IPv4 addresses of local interfaces, read from /proc so no traffic is sent.
fn local_addresses() -> Vec<String> {
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return vec![];
    };
    let mut out = Vec::new();
    let lines: Vec<&str> = trie.lines().collect();
    for w in lines.windows(2) {
        if w[1].contains("/32 host LOCAL") {
            if let Some(ip) = w[0].trim().strip_prefix("|-- ") {
                out.push(ip.to_string());
            }
        }
    }
    out
}

fn san(s: &str) -> Result<SanType, TlsError> {
    Ok(match s.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(s.try_into()?),
    })
}

/// Loads the PKI from `dir`, creating what is missing.
pub fn load_or_create(dir: &Path, bind: &str, extra_sans: &[String]) -> Result<Pki, TlsError> {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).map_err(|source| TlsError::Io {
        path: tls_dir.clone(),
        source,
    })?;
    let ca_crt = tls_dir.join("ca.crt");
    let ca_key = tls_dir.join("ca.key");
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("bosun-ca", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 10);
        let cert = params.self_signed(&key)?;
        write(&ca_key, &key.serialize_pem(), true)?;
        write(&ca_crt, &cert.pem(), false)?;
    }
    let ca_pem = read(&ca_crt)?;
    let ca_keypair = KeyPair::from_pem(&read(&ca_key)?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_keypair)?;

    let srv_crt = tls_dir.join("serving.crt");
    let srv_key = tls_dir.join("serving.key");
    let sans = default_sans(bind, extra_sans);
    let sans_file = tls_dir.join("serving.sans");
    let wanted = sans.join(",");
    // Regenerate the serving cert when the host's names or addresses change.
    if !srv_crt.exists() || read(&sans_file).ok().as_deref() != Some(wanted.as_str()) {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("bosun-apiserver", None);
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 5);
        let cert = params.signed_by(&key, &issuer)?;
        write(&srv_key, &key.serialize_pem(), true)?;
        write(&srv_crt, &format!("{}{}", cert.pem(), ca_pem), false)?;
        write(&sans_file, &wanted, false)?;
    }

    let adm_crt = tls_dir.join("admin.crt");
    let adm_key = tls_dir.join("admin.key");
    if !adm_crt.exists() || !adm_key.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("system:admin", Some("system:masters"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 5);
        let cert = params.signed_by(&key, &issuer)?;
        write(&adm_key, &key.serialize_pem(), true)?;
        write(&adm_crt, &cert.pem(), false)?;
    }

    let token_file = dir.join("token");
    if !token_file.exists() {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write(&token_file, &token, true)?;
    }
    let admin_token = read(&token_file)?.trim().to_string();

    let server_config = server_config(&ca_pem, &read(&srv_crt)?, &read(&srv_key)?, &srv_crt)?;
    Ok(Pki {
        ca_pem,
        server_config,
        admin_token,
    })
}

fn server_config(
    ca_pem: &str,
    chain_pem: &str,
    key_pem: &str,
    path: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let c = c.map_err(|_| TlsError::Pem(path.to_path_buf()))?;
        roots
            .add(c)
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem(path.to_path_buf()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|_| TlsError::Pem(path.to_path_buf()))?
        .ok_or_else(|| TlsError::Pem(path.to_path_buf()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Writes `DIR/admin.kubeconfig` pointing at `server`, with the admin client certificate.
pub fn write_admin_kubeconfig(dir: &Path, server: &str) -> Result<PathBuf, TlsError> {
    let tls_dir = dir.join("tls");
    let b64 = |p: &Path| -> Result<String, TlsError> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read(p)?))
    };
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: bosun\ncontexts:\n- context:\n    cluster: bosun\n    user: admin\n  name: bosun\ncurrent-context: bosun\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&tls_dir.join("ca.crt"))?,
        server,
        b64(&tls_dir.join("admin.crt"))?,
        b64(&tls_dir.join("admin.key"))?,
    );
    let path = dir.join("admin.kubeconfig");
    write(&path, &kc, true)?;
    Ok(path)
}
