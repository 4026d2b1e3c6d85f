//! Discovery documents: legacy (APIVersions, APIGroupList, APIResourceList)
//! and aggregated (apidiscovery.k8s.io v2 and v2beta1).

use crate::resources::{self, ResourceType, GROUPS};
use serde_json::{json, Value};

fn scope(rt: &ResourceType) -> &'static str {
    if rt.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn sub_kind(rt: &ResourceType, sub: &str) -> (Value, Vec<&'static str>) {
    match sub {
        "scale" => (
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            vec!["get", "patch", "update"],
        ),
        "binding" => (
            json!({"group": "", "version": "v1", "kind": "Binding"}),
            vec!["create"],
        ),
        "log" => (
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            vec!["get"],
        ),
        "exec" => (
            json!({"group": "", "version": "v1", "kind": "PodExecOptions"}),
            vec!["create", "get"],
        ),
        "attach" => (
            json!({"group": "", "version": "v1", "kind": "PodAttachOptions"}),
            vec!["create", "get"],
        ),
        "portforward" => (
            json!({"group": "", "version": "v1", "kind": "PodPortForwardOptions"}),
            vec!["create", "get"],
        ),
        _ => (
            json!({"group": rt.group, "version": rt.version, "kind": rt.kind}),
            vec!["get", "patch", "update"],
        ),
    }
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str) -> Value {
    json!({
        "name": group,
        "versions": [{"groupVersion": format!("{group}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{group}/v1"), "version": "v1"},
    })
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|g| group_entry(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    if !GROUPS.contains(&group) {
        return None;
    }
    let mut g = group_entry(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    if !resources::group_exists(group, version) {
        return None;
    }
    let mut out = Vec::new();
    for rt in resources::in_group(group).filter(|r| r.version == version) {
        let mut e = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs(),
        });
        if !rt.short_names.is_empty() {
            e["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            e["categories"] = json!(rt.categories);
        }
        out.push(e);
        for sub in rt.subresources {
            let (kind, verbs) = sub_kind(rt, sub);
            let mut s = json!({
                "name": format!("{}/{}", rt.plural, sub),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if *sub == "scale" {
                s["group"] = json!("autoscaling");
                s["version"] = json!("v1");
            }
            out.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}

fn aggregated_group(group: &str, discovery_version: &str) -> Value {
    let resources: Vec<Value> = resources::in_group(group)
        .map(|rt| {
            let subs: Vec<Value> = rt
                .subresources
                .iter()
                .map(|s| {
                    let (kind, verbs) = sub_kind(rt, s);
                    json!({"subresource": s, "responseKind": kind, "verbs": verbs})
                })
                .collect();
            let mut e = json!({
                "resource": rt.plural,
                "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                "scope": scope(rt),
                "singularResource": rt.singular,
                "verbs": rt.verbs(),
            });
            if !rt.short_names.is_empty() {
                e["shortNames"] = json!(rt.short_names);
            }
            if !rt.categories.is_empty() {
                e["categories"] = json!(rt.categories);
            }
            if !subs.is_empty() {
                e["subresources"] = json!(subs);
            }
            e
        })
        .collect();
    let mut meta = json!({"creationTimestamp": null});
    if !group.is_empty() {
        meta["name"] = json!(group);
    }
    let _ = discovery_version;
    json!({"metadata": meta, "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]})
}

/// The aggregated document for `/api` (core) or `/apis` (all groups).
pub fn aggregated(core: bool, discovery_version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group("", discovery_version)]
    } else {
        GROUPS
            .iter()
            .map(|g| aggregated_group(g, discovery_version))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{discovery_version}"),
        "metadata": {},
        "items": items,
    })
}

/// Which aggregated discovery version the Accept header asks for, if any.
pub fn wanted_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(wanted_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"), Some("v2"));
        assert_eq!(wanted_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"), Some("v2beta1"));
        assert_eq!(wanted_aggregated("application/json"), None);
    }

    #[test]
    fn resource_list_has_subresources() {
        let l = api_resource_list("apps", "v1").unwrap();
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        assert!(api_resource_list("nope", "v1").is_none());
    }
}
