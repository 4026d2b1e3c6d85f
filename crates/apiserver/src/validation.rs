//! Validation with upstream's messages (apimachinery/pkg/util/validation and
//! the per-kind rules of pkg/apis/*/validation that users hit most).

use crate::error::{field_cause, Cause};
use crate::resources::ResourceType;
use serde_json::Value;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS1123_LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_dns1123_label(s) && s.len() <= DNS1123_LABEL_MAX {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let ok = !s.is_empty() && s.split('.').all(is_dns1123_label_loose);
    if !ok {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errs
}

fn is_dns1123_label_loose(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Label and annotation keys: `[prefix/]name`.
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".into());
        } else {
            for e in dns1123_subdomain_errors(p) {
                errs.push(format!("prefix part {e}"));
            }
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".into());
    } else if !is_qualified_name_part(name) {
        errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    errs
}

pub fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".into());
    }
    if !v.is_empty() && !is_qualified_name_part(v) && v.len() <= 63 {
        errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    errs
}

/// Resources whose names must be DNS-1123 labels rather than subdomains.
fn name_is_label(rt: &ResourceType) -> bool {
    matches!(rt.plural, "namespaces" | "services")
}

pub fn validate_object(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let name = meta
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(field_cause(
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        ));
    } else {
        let errs = if name_is_label(rt) {
            dns1123_label_errors(name)
        } else if rt.plural == "nodes" || rt.plural == "events" {
            // Events and nodes allow any path-safe name.
            if name.contains('/') || name == "." || name == ".." {
                vec!["may not contain '/'".to_string()]
            } else {
                vec![]
            }
        } else {
            dns1123_subdomain_errors(name)
        };
        for e in errs {
            causes.push(field_cause(
                "metadata.name",
                "FieldValueInvalid",
                format!("Invalid value: \"{name}\": {e}"),
            ));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(|v| v.as_object()) {
        for (k, v) in labels {
            for e in qualified_name_errors(k) {
                causes.push(field_cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    format!("Invalid value: \"{k}\": {e}"),
                ));
            }
            let vs = v.as_str().unwrap_or_default();
            for e in label_value_errors(vs) {
                causes.push(field_cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    format!("Invalid value: \"{vs}\": {e}"),
                ));
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(|v| v.as_object()) {
        let mut total = 0usize;
        for (k, v) in ann {
            for e in qualified_name_errors(k) {
                causes.push(field_cause(
                    "metadata.annotations",
                    "FieldValueInvalid",
                    format!("Invalid value: \"{k}\": {e}"),
                ));
            }
            total += k.len() + v.as_str().map(|s| s.len()).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(field_cause(
                "metadata.annotations",
                "FieldValueTooLong",
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
    kind_rules(rt, obj, &mut causes);
    causes
}

fn kind_rules(rt: &ResourceType, obj: &Value, causes: &mut Vec<Cause>) {
    match (rt.group, rt.kind) {
        ("", "Pod") => pod_spec_rules(obj.get("spec"), "spec", causes),
        ("apps", "Deployment")
        | ("apps", "ReplicaSet")
        | ("apps", "StatefulSet")
        | ("apps", "DaemonSet") => {
            let spec = obj.get("spec");
            let selector = spec.and_then(|s| s.get("selector"));
            match selector {
                None => causes.push(field_cause(
                    "spec.selector",
                    "FieldValueRequired",
                    "Required value",
                )),
                Some(sel) => {
                    let tl = spec
                        .and_then(|s| s.pointer("/template/metadata/labels"))
                        .and_then(|l| l.as_object());
                    match crate::selectors::LabelSelector::from_object(sel) {
                        Ok(s) if s.is_empty() => causes.push(field_cause(
                            "spec.selector",
                            "FieldValueInvalid",
                            "Invalid value: \"null\": empty selector is invalid for deployment",
                        )),
                        Ok(s) => {
                            if !s.matches(tl) {
                                causes.push(field_cause("spec.template.metadata.labels", "FieldValueInvalid", format!("Invalid value: {}: `selector` does not match template `labels`", serde_json::to_string(&tl).unwrap_or_default())));
                            }
                        }
                        Err(e) => causes.push(field_cause("spec.selector", "FieldValueInvalid", e)),
                    }
                }
            }
            if let Some(r) = spec
                .and_then(|s| s.get("replicas"))
                .and_then(|r| r.as_i64())
            {
                if r < 0 {
                    causes.push(field_cause(
                        "spec.replicas",
                        "FieldValueInvalid",
                        format!("Invalid value: {r}: must be greater than or equal to 0"),
                    ));
                }
            }
            pod_spec_rules(
                spec.and_then(|s| s.pointer("/template/spec")),
                "spec.template.spec",
                causes,
            );
        }
        ("batch", "Job") => {
            pod_spec_rules(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
                causes,
            );
            if let Some(rp) = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(|v| v.as_str())
            {
                if rp == "Always" {
                    causes.push(field_cause(
                        "spec.template.spec.restartPolicy",
                        "FieldValueNotSupported",
                        "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
                    ));
                }
            }
        }
        ("batch", "CronJob") => {
            let sched = obj
                .pointer("/spec/schedule")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            if sched.is_empty() {
                causes.push(field_cause(
                    "spec.schedule",
                    "FieldValueRequired",
                    "Required value",
                ));
            }
            pod_spec_rules(
                obj.pointer("/spec/jobTemplate/spec/template/spec"),
                "spec.jobTemplate.spec.template.spec",
                causes,
            );
        }
        ("", "Service") => {
            let ty = obj
                .pointer("/spec/type")
                .and_then(|v| v.as_str())
                .unwrap_or("ClusterIP");
            if !matches!(
                ty,
                "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
            ) {
                causes.push(field_cause("spec.type", "FieldValueNotSupported", format!("Unsupported value: \"{ty}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"")));
            }
            let ports = obj.pointer("/spec/ports").and_then(|v| v.as_array());
            let headless = obj.pointer("/spec/clusterIP").and_then(|v| v.as_str()) == Some("None");
            if ports.map(|p| p.is_empty()).unwrap_or(true) && ty != "ExternalName" && !headless {
                causes.push(field_cause(
                    "spec.ports",
                    "FieldValueRequired",
                    "Required value",
                ));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                let port = p.get("port").and_then(|v| v.as_i64()).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(field_cause(
                        &format!("spec.ports[{i}].port"),
                        "FieldValueInvalid",
                        format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn pod_spec_rules(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        causes.push(field_cause(path, "FieldValueRequired", "Required value"));
        return;
    };
    let containers = spec.get("containers").and_then(|c| c.as_array());
    match containers {
        None => causes.push(field_cause(
            &format!("{path}.containers"),
            "FieldValueRequired",
            "Required value",
        )),
        Some(cs) if cs.is_empty() => causes.push(field_cause(
            &format!("{path}.containers"),
            "FieldValueRequired",
            "Required value",
        )),
        Some(_) => {}
    }
    let host_users = spec
        .pointer("/hostUsers")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = c.get("name").and_then(|v| v.as_str()).unwrap_or_default();
            let p = format!("{path}.{list}[{i}]");
            if name.is_empty() {
                causes.push(field_cause(
                    &format!("{p}.name"),
                    "FieldValueRequired",
                    "Required value",
                ));
            } else {
                for e in dns1123_label_errors(name) {
                    causes.push(field_cause(
                        &format!("{p}.name"),
                        "FieldValueInvalid",
                        format!("Invalid value: \"{name}\": {e}"),
                    ));
                }
                if !seen.insert(name.to_string()) {
                    causes.push(field_cause(
                        &format!("{p}.name"),
                        "FieldValueDuplicate",
                        format!("Duplicate value: \"{name}\""),
                    ));
                }
            }
            if let Some(pm) = c
                .pointer("/securityContext/procMount")
                .and_then(|v| v.as_str())
            {
                let f = format!("{p}.securityContext.procMount");
                if !matches!(pm, "Default" | "Unmasked") {
                    causes.push(field_cause(
                        &f,
                        "FieldValueNotSupported",
                        format!("Unsupported value: \"{pm}\": supported values: \"Default\", \"Unmasked\""),
                    ));
                } else if pm == "Unmasked" && host_users {
                    causes.push(field_cause(
                        &f,
                        "FieldValueInvalid",
                        "Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`",
                    ));
                }
            }
            if c.get("image")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                causes.push(field_cause(
                    &format!("{p}.image"),
                    "FieldValueRequired",
                    "Required value",
                ));
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(|v| v.as_str()) {
        if !matches!(rp, "Always" | "OnFailure" | "Never") {
            causes.push(field_cause(&format!("{path}.restartPolicy"), "FieldValueNotSupported", format!("Unsupported value: \"{rp}\": supported values: \"Always\", \"OnFailure\", \"Never\"")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_label_errors("web-1").is_empty());
        assert!(!dns1123_label_errors("Web").is_empty());
        assert!(!dns1123_label_errors("-a").is_empty());
        assert!(dns1123_subdomain_errors("a.b-c").is_empty());
        assert!(!dns1123_subdomain_errors("a..b").is_empty());
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name_errors("/x").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("a b").is_empty());
    }
}
