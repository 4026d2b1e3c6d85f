//! Small pure helpers: quantities, `$(VAR)` expansion, QoS class, times.

use k8s_openapi::api::core::v1::{Container, Pod};

/// A Kubernetes quantity as a float of base units (`100m` → 0.1,
/// `1Gi` → 1073741824). `None` if it doesn't parse.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// Milli-units of a quantity, rounded up (CPU).
pub fn milli(q: &str) -> Option<u64> {
    parse_quantity(q).map(|v| (v * 1000.0).ceil().max(0.0) as u64)
}

/// Whole units of a quantity, rounded up (memory bytes).
pub fn whole(q: &str) -> Option<i64> {
    parse_quantity(q).map(|v| v.ceil() as i64)
}

/// Expand `$(VAR)` references like Kubernetes: `$$` is a literal `$`,
/// a reference to an unknown variable is left as is.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push_str(&input[last..i]);
                    out.push('$');
                    i += 2;
                    last = i;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        out.push_str(&input[last..i]);
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        last = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[last..]);
    out
}

/// A container's request of `name` (defaulting to its limit, like the API).
pub fn request(c: &Container, name: &str) -> Option<String> {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .or_else(|| limit(c, name))
}

pub fn limit(c: &Container, name: &str) -> Option<String> {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone())
}

/// The pod's QoS class (upstream `GetPodQOS`).
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for r in ["cpu", "memory"] {
            let req = request(c, r)
                .and_then(|q| parse_quantity(&q))
                .filter(|v| *v > 0.0);
            let lim = limit(c, r)
                .and_then(|q| parse_quantity(&q))
                .filter(|v| *v > 0.0);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (Some(a), Some(b)) if (a - b).abs() < 1e-9 => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// RFC 3339 with seconds, as the API prints times.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn now() -> String {
    rfc3339(chrono::Utc::now())
}

/// `name_namespace(uid)` (upstream `format.Pod`).
pub fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Seconds as the kubelet prints durations in events (`1.234s`, `250ms`).
pub fn human_duration(d: std::time::Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(whole("128Mi"), Some(128 << 20));
        assert_eq!(whole("1G"), Some(1_000_000_000));
        assert_eq!(whole("1e3"), Some(1000));
        assert_eq!(whole("12x"), None);
    }

    #[test]
    fn expansion() {
        let vars = |k: &str| match k {
            "A" => Some("a".to_string()),
            "B" => Some("b b".to_string()),
            _ => None,
        };
        assert_eq!(expand("x$(A)y", &vars), "xay");
        assert_eq!(expand("$(A)$(B)", &vars), "ab b");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(C)", &vars), "$(C)");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("cost $5", &vars), "cost $5");
        assert_eq!(expand("end$", &vars), "end$");
    }

    #[test]
    fn qos() {
        let pod = |c: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [c]}})).unwrap()
        };
        assert_eq!(
            qos_class(&pod(serde_json::json!({"name": "a"}))),
            "BestEffort"
        );
        assert_eq!(
            qos_class(&pod(
                serde_json::json!({"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(
                serde_json::json!({"name": "a", "resources": {"requests": {"cpu": "1"}}})
            )),
            "Burstable"
        );
    }
}
