//! Container environment (`envFrom`, `env` with `valueFrom`, `$(VAR)`
//! expansion) and command/args expansion, like the kubelet's
//! `makeEnvironmentVariables`. Errors are CreateContainerConfigError
//! messages.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::sources::{field_value, resource_value, Sources};
use crate::util::expand;

/// Resolved env, in order (later duplicates replace earlier values).
pub async fn container_env(
    pod: &Pod,
    c: &Container,
    sources: &mut Sources,
    host_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = out.iter_mut().find(|(ek, _)| *ek == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    };
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            if let Some(data) = sources
                .configmap_data(&r.name, r.optional.unwrap_or(false))
                .await?
            {
                for (k, v) in data {
                    set(
                        &mut out,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
        }
        if let Some(r) = &ef.secret_ref {
            if let Some(data) = sources
                .secret_data(&r.name, r.optional.unwrap_or(false))
                .await?
            {
                for (k, v) in data {
                    set(
                        &mut out,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_value(pod, &f.field_path, host_ip, false)?
            } else if let Some(r) = &vf.resource_field_ref {
                let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
                let cname = r
                    .container_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| c.name.clone());
                let target = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|x| x.name == cname)
                    .unwrap_or(c);
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else if let Some(r) = &vf.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.configmap_data(&r.name, optional).await? {
                    None => continue,
                    Some(data) => match data.get(&r.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key, ns, r.name
                            ))
                        }
                    },
                }
            } else if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.secret_data(&r.name, optional).await? {
                    None => continue,
                    Some(data) => match data.get(&r.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key, ns, r.name
                            ))
                        }
                    },
                }
            } else {
                String::new()
            }
        } else {
            let known: HashMap<String, String> = out.iter().cloned().collect();
            expand(e.value.as_deref().unwrap_or(""), &|k| known.get(k).cloned())
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

/// `$(VAR)` expansion of command and args against the container env.
pub fn expand_command(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let known: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |k: &str| known.get(k).map(|v| v.to_string());
    let ex = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    (ex(&c.command), ex(&c.args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_expansion() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "command": ["sh", "-c", "echo $(A) $$(A) $(MISSING)"],
            "args": ["$(B)"]
        }))
        .unwrap();
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two words".to_string()),
        ];
        let (cmd, args) = expand_command(&c, &env);
        assert_eq!(cmd, ["sh", "-c", "echo 1 $(A) $(MISSING)"]);
        assert_eq!(args, ["two words"]);
    }
}
