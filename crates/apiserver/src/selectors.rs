//! Label and field selectors, with the string syntax of apimachinery's
//! `labels.Parse` and `fields.ParseSelector`.

use crate::error::ApiError;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Req>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(
                parse_req(part).map_err(|m| {
                    ApiError::bad_request(format!("unable to parse requirement: {m}"))
                })?,
            );
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }

    /// Builds a selector from a `metav1.LabelSelector` object.
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(|m| m.as_object()) {
            for (k, v) in m {
                reqs.push(Req::Eq(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(|m| m.as_array()) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                reqs.push(match op {
                    "In" => Req::In(key, values),
                    "NotIn" => Req::NotIn(key, values),
                    "Exists" => Req::Exists(key),
                    "DoesNotExist" => Req::NotExists(key),
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"))
                    }
                });
            }
        }
        Ok(LabelSelector { reqs })
    }

    /// The string form (`a=b,c in (d)`), as used in Scale.status.selector.
    pub fn to_string_form(&self) -> String {
        let parts: Vec<String> = self
            .reqs
            .iter()
            .map(|r| match r {
                Req::Eq(k, v) => format!("{k}={v}"),
                Req::NotEq(k, v) => format!("{k}!={v}"),
                Req::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Req::Exists(k) => k.clone(),
                Req::NotExists(k) => format!("!{k}"),
            })
            .collect();
        parts.join(",")
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_req(p: &str) -> Result<Req, String> {
    if let Some(k) = p.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Req::NotExists(k.to_string()));
    }
    for (op, ctor) in [(" notin ", false), (" in ", true)] {
        if let Some(idx) = p.find(op) {
            let key = p[..idx].trim();
            check_key(key)?;
            let rest = p[idx + op.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("found '{rest}', expected: '('"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            for v in &values {
                check_value(v)?;
            }
            return Ok(if ctor {
                Req::In(key.to_string(), values)
            } else {
                Req::NotIn(key.to_string(), values)
            });
        }
    }
    for (op, kind) in [("!=", 2), ("==", 1), ("=", 1)] {
        if let Some(idx) = p.find(op) {
            let key = p[..idx].trim();
            let value = p[idx + op.len()..].trim();
            check_key(key)?;
            check_value(value)?;
            return Ok(if kind == 2 {
                Req::NotEq(key.into(), value.into())
            } else {
                Req::Eq(key.into(), value.into())
            });
        }
    }
    check_key(p)?;
    Ok(Req::Exists(p.to_string()))
}

fn check_key(k: &str) -> Result<(), String> {
    if crate::validation::qualified_name_errors(k).is_empty() {
        Ok(())
    } else {
        Err(format!("invalid label key \"{k}\""))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    if crate::validation::label_value_errors(v).is_empty() {
        Ok(())
    } else {
        Err(format!("invalid label value: \"{v}\""))
    }
}

/// A field selector: conjunction of `path=value` / `path!=value`.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str, kind: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, neg, value) = if let Some(i) = part.find("!=") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], false, &part[i + 1..])
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !field_supported(kind, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), neg, value.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The name this selector pins, if it is `metadata.name=X` (lets a GET-like
    /// list skip scanning).
    pub fn pinned_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(f, neg, _)| f == "metadata.name" && !neg)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, neg, want)| {
            let have = field_value(obj, field);
            (have == *want) != *neg
        })
    }
}

fn field_supported(kind: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let extra: &[&str] = match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "note",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Job" => &["status.successful"],
        "ReplicaSet" => &["status.replicas"],
        "ReplicationController" => &["status.replicas"],
        "PersistentVolume" => &["name"],
        "CertificateSigningRequest" => &["spec.signerName"],
        _ => &[],
    };
    extra.contains(&field)
}

fn field_value(obj: &Value, field: &str) -> String {
    if field == "source" {
        return obj
            .pointer("/source/component")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
    }
    let mut cur = obj;
    for seg in field.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => {
                // Unset booleans read as "false", like upstream's conversions.
                if matches!(field, "spec.unschedulable" | "spec.hostNetwork") {
                    return "false".into();
                }
                return String::new();
            }
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a
            .first()
            .and_then(|x| x.get("ip"))
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_ops() {
        let l = labels(json!({"app": "web", "tier": "fe"}));
        let t = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(t("app=web"));
        assert!(t("app==web"));
        assert!(!t("app!=web"));
        assert!(t("app in (web, db)"));
        assert!(!t("app notin (web,db)"));
        assert!(t("tier"));
        assert!(!t("!tier"));
        assert!(t("!missing"));
        assert!(t("app=web,tier in (fe)"));
        assert!(!t("app=web,tier in (be)"));
        assert!(t("missing notin (x)"));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
    }

    #[test]
    fn field_selector() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed", "Pod").unwrap();
        assert!(f.matches(&pod));
        let f = FieldSelector::parse("spec.nodeName=", "Pod").unwrap();
        assert!(!f.matches(&pod));
        assert!(FieldSelector::parse("spec.foo=x", "Pod").is_err());
        let f = FieldSelector::parse("metadata.name=p", "ConfigMap").unwrap();
        assert_eq!(f.pinned_name(), Some("p"));
    }
}
