//! Small, panic-free accessors over user-supplied JSON plus the formatting
//! helpers upstream's printers share (ages, label selectors, container lists).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::human_duration;

/// `obj.pointer(path)`, tolerating anything.
pub(crate) fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    obj.pointer(path)
}

/// String at `path`, "" when missing or not a string.
pub(crate) fn s<'a>(obj: &'a Value, path: &str) -> &'a str {
    at(obj, path).and_then(Value::as_str).unwrap_or("")
}

/// Optional string at `path` (a Go `*string`): `None` when missing/null/not a string.
pub(crate) fn opt_s<'a>(obj: &'a Value, path: &str) -> Option<&'a str> {
    at(obj, path).and_then(Value::as_str)
}

/// Integer view of a JSON value (ints, floats truncated, numeric strings).
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u.min(i64::MAX as u64) as i64))
            .or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(st) => st.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Optional integer at `path` (a Go `*int32`).
pub(crate) fn opt_i(obj: &Value, path: &str) -> Option<i64> {
    at(obj, path).and_then(as_int)
}

/// Integer at `path`, 0 when missing.
pub(crate) fn i(obj: &Value, path: &str) -> i64 {
    opt_i(obj, path).unwrap_or(0)
}

/// Optional bool at `path`.
pub(crate) fn opt_b(obj: &Value, path: &str) -> Option<bool> {
    at(obj, path).and_then(Value::as_bool)
}

/// Bool at `path`, false when missing.
pub(crate) fn b(obj: &Value, path: &str) -> bool {
    opt_b(obj, path).unwrap_or(false)
}

static EMPTY: Vec<Value> = Vec::new();

/// Array at `path`, empty when missing or not an array.
pub(crate) fn arr<'a>(obj: &'a Value, path: &str) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(EMPTY.as_slice())
}

/// Number of entries of the map (or array) at `path`.
pub(crate) fn len_of(obj: &Value, path: &str) -> usize {
    match at(obj, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// String-valued map at `path` as sorted (key, value) pairs; non-string values
/// are rendered as their JSON text.
pub(crate) fn str_map(obj: &Value, path: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = match at(obj, path) {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), scalar_string(v)))
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// Renders a scalar the way Go would print it (strings bare, numbers plain).
pub(crate) fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(st) => st.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A `resource.Quantity` as text: strings as given, numbers printed plainly,
/// missing as "0" (the zero Quantity's String()).
pub(crate) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(st)) if !st.is_empty() => st.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// An IntOrString as Go's `IntOrString.String()` prints it.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(_) => as_int(v).unwrap_or(0).to_string(),
        other => scalar_string(other),
    }
}

/// Parses a metav1.Time / MicroTime. The Go zero time ("0001-01-01T00:00:00Z")
/// counts as unset, like `Time.IsZero()`.
pub(crate) fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = v?.as_str()?;
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    if t == zero_time() {
        None
    } else {
        Some(t)
    }
}

fn zero_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Time at `path`.
pub(crate) fn time(obj: &Value, path: &str) -> Option<DateTime<Utc>> {
    parse_time(at(obj, path))
}

/// upstream `translateTimestampSince`: "<unknown>" for unset times.
pub(crate) fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// AGE cell: time since `.metadata.creationTimestamp`.
pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> String {
    since(time(obj, "/metadata/creationTimestamp"), now)
}

/// `.metadata.name`.
pub(crate) fn name(obj: &Value) -> String {
    s(obj, "/metadata/name").to_string()
}

/// Whether `.metadata.deletionTimestamp` is set.
pub(crate) fn deleting(obj: &Value) -> bool {
    matches!(at(obj, "/metadata/deletionTimestamp"), Some(v) if !v.is_null())
}

/// upstream `labels.FormatLabels`: sorted "k=v,k2=v2", "<none>" when empty.
pub(crate) fn format_labels(obj: &Value, path: &str) -> String {
    let pairs = str_map(obj, path);
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.LabelSelectorAsSelector(sel).String()`; `Err(())` where upstream
/// fails to convert (unknown operator, bad value counts).
pub(crate) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let sel = match sel {
        Some(v @ Value::Object(_)) => v,
        _ => return Ok(String::new()),
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in str_map(sel, "/matchLabels") {
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for expr in arr(sel, "/matchExpressions") {
        let key = s(expr, "/key").to_string();
        let mut values: Vec<String> = arr(expr, "/values").iter().map(scalar_string).collect();
        let text = match s(expr, "/operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(());
                }
                values.sort();
                let op = if s(expr, "/operator") == "In" {
                    "in"
                } else {
                    "notin"
                };
                format!("{key} {op} ({})", values.join(","))
            }
            "Exists" => {
                if !values.is_empty() {
                    return Err(());
                }
                key.clone()
            }
            "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(());
                }
                format!("!{key}")
            }
            _ => return Err(()),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// upstream `metav1.FormatLabelSelector`: "<none>" when empty, "<error>" on failure.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(st) if st.is_empty() => "<none>".to_string(),
        Ok(st) => st,
        Err(()) => "<error>".to_string(),
    }
}

/// upstream `layoutContainerCells`: comma-joined names and images.
pub(crate) fn containers(obj: &Value, path: &str) -> (String, String) {
    let list = arr(obj, path);
    let names: Vec<&str> = list.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = list.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// Go's `net.JoinHostPort`.
pub(crate) fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// upstream `GetAccessModesAsString`.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    let mut out = Vec::new();
    if has("ReadWriteOnce") {
        out.push("RWO");
    }
    if has("ReadOnlyMany") {
        out.push("ROX");
    }
    if has("ReadWriteMany") {
        out.push("RWX");
    }
    if has("ReadWriteOncePod") {
        out.push("RWOP");
    }
    out.join(",")
}

/// upstream `printBoolPtr`.
pub(crate) fn bool_ptr(v: Option<bool>) -> String {
    match v {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}
