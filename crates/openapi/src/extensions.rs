//! List-field extensions that `k8s-openapi`'s schemas leave out: strategic-merge-patch
//! metadata (`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`) and
//! server-side-apply list types (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
//! The values are upstream's (the `patchStrategy`/`patchMergeKey` struct tags and
//! `+listType`/`+listMapKey` markers of k8s.io/api 1.33).

use serde_json::{json, Map, Value};

/// (schema, property, list-type, list-map-keys, patch-merge-key, patch-strategy); "" = absent.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
);

const CORE: &str = "io.k8s.api.core.v1.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
const APPS: &str = "io.k8s.api.apps.v1.";
const BATCH: &str = "io.k8s.api.batch.v1.";
const POLICY: &str = "io.k8s.api.policy.v1.";
const DISCOVERY: &str = "io.k8s.api.discovery.v1.";

const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const NONE: &[&str] = &[];

/// Rows keyed by schema-name suffix; the prefix is given per block below.
const ROWS: &[(&str, &[Row])] = &[
    (
        META,
        &[
            ("ObjectMeta", "finalizers", "set", NONE, "", "merge"),
            (
                "ObjectMeta",
                "ownerReferences",
                "map",
                &["uid"],
                "uid",
                "merge",
            ),
            ("ObjectMeta", "managedFields", "atomic", NONE, "", ""),
            ("LabelSelector", "matchExpressions", "atomic", NONE, "", ""),
            ("LabelSelectorRequirement", "values", "atomic", NONE, "", ""),
            ("StatusDetails", "causes", "atomic", NONE, "", ""),
            ("DeleteOptions", "dryRun", "atomic", NONE, "", ""),
        ],
    ),
    (
        CORE,
        &[
            ("PodSpec", "containers", "map", NAME, "name", "merge"),
            ("PodSpec", "initContainers", "map", NAME, "name", "merge"),
            (
                "PodSpec",
                "ephemeralContainers",
                "map",
                NAME,
                "name",
                "merge",
            ),
            (
                "PodSpec",
                "volumes",
                "map",
                NAME,
                "name",
                "merge,retainKeys",
            ),
            ("PodSpec", "imagePullSecrets", "map", NAME, "name", "merge"),
            ("PodSpec", "hostAliases", "map", &["ip"], "ip", "merge"),
            (
                "PodSpec",
                "topologySpreadConstraints",
                "map",
                &["topologyKey", "whenUnsatisfiable"],
                "topologyKey",
                "merge",
            ),
            ("PodSpec", "schedulingGates", "map", NAME, "name", "merge"),
            (
                "PodSpec",
                "resourceClaims",
                "map",
                NAME,
                "name",
                "merge,retainKeys",
            ),
            ("PodSpec", "tolerations", "atomic", NONE, "", ""),
            ("PodSpec", "readinessGates", "atomic", NONE, "", ""),
            ("PodStatus", "conditions", "map", TYPE, "type", "merge"),
            ("PodStatus", "podIPs", "map", &["ip"], "ip", "merge"),
            ("PodStatus", "hostIPs", "atomic", NONE, "ip", "merge"),
            ("PodStatus", "containerStatuses", "atomic", NONE, "", ""),
            ("PodStatus", "initContainerStatuses", "atomic", NONE, "", ""),
            (
                "PodStatus",
                "ephemeralContainerStatuses",
                "atomic",
                NONE,
                "",
                "",
            ),
            (
                "PodStatus",
                "resourceClaimStatuses",
                "map",
                NAME,
                "name",
                "merge,retainKeys",
            ),
            (
                "Container",
                "ports",
                "map",
                &["containerPort", "protocol"],
                "containerPort",
                "merge",
            ),
            ("Container", "env", "map", NAME, "name", "merge"),
            (
                "Container",
                "volumeMounts",
                "map",
                &["mountPath"],
                "mountPath",
                "merge",
            ),
            (
                "Container",
                "volumeDevices",
                "map",
                &["devicePath"],
                "devicePath",
                "merge",
            ),
            ("Container", "args", "atomic", NONE, "", ""),
            ("Container", "command", "atomic", NONE, "", ""),
            ("Container", "envFrom", "atomic", NONE, "", ""),
            ("Container", "resizePolicy", "atomic", NONE, "", ""),
            (
                "EphemeralContainer",
                "ports",
                "map",
                &["containerPort", "protocol"],
                "containerPort",
                "merge",
            ),
            ("EphemeralContainer", "env", "map", NAME, "name", "merge"),
            (
                "EphemeralContainer",
                "volumeMounts",
                "map",
                &["mountPath"],
                "mountPath",
                "merge",
            ),
            (
                "EphemeralContainer",
                "volumeDevices",
                "map",
                &["devicePath"],
                "devicePath",
                "merge",
            ),
            ("EphemeralContainer", "args", "atomic", NONE, "", ""),
            ("EphemeralContainer", "command", "atomic", NONE, "", ""),
            ("EphemeralContainer", "envFrom", "atomic", NONE, "", ""),
            ("EphemeralContainer", "resizePolicy", "atomic", NONE, "", ""),
            ("ResourceRequirements", "claims", "map", NAME, "", ""),
            ("Capabilities", "add", "atomic", NONE, "", ""),
            ("Capabilities", "drop", "atomic", NONE, "", ""),
            ("NodeSelector", "nodeSelectorTerms", "atomic", NONE, "", ""),
            (
                "NodeSelectorTerm",
                "matchExpressions",
                "atomic",
                NONE,
                "",
                "",
            ),
            ("NodeSelectorTerm", "matchFields", "atomic", NONE, "", ""),
            ("NodeSelectorRequirement", "values", "atomic", NONE, "", ""),
            (
                "ServiceSpec",
                "ports",
                "map",
                &["port", "protocol"],
                "port",
                "merge",
            ),
            ("ServiceSpec", "clusterIPs", "atomic", NONE, "", ""),
            ("ServiceSpec", "externalIPs", "atomic", NONE, "", ""),
            ("ServiceSpec", "ipFamilies", "atomic", NONE, "", ""),
            (
                "ServiceSpec",
                "loadBalancerSourceRanges",
                "atomic",
                NONE,
                "",
                "",
            ),
            ("ServiceStatus", "conditions", "map", TYPE, "type", "merge"),
            ("LoadBalancerStatus", "ingress", "atomic", NONE, "", ""),
            ("ServiceAccount", "secrets", "map", NAME, "name", "merge"),
            ("ServiceAccount", "imagePullSecrets", "atomic", NONE, "", ""),
            ("NodeSpec", "taints", "atomic", NONE, "", ""),
            ("NodeSpec", "podCIDRs", "set", NONE, "", "merge"),
            ("NodeStatus", "conditions", "map", TYPE, "type", "merge"),
            ("NodeStatus", "addresses", "map", TYPE, "type", "merge"),
            ("NodeStatus", "images", "atomic", NONE, "", ""),
            ("NodeStatus", "volumesInUse", "atomic", NONE, "", ""),
            ("NodeStatus", "volumesAttached", "atomic", NONE, "", ""),
            ("NamespaceSpec", "finalizers", "atomic", NONE, "", ""),
            (
                "NamespaceStatus",
                "conditions",
                "map",
                TYPE,
                "type",
                "merge",
            ),
            (
                "PersistentVolumeClaimSpec",
                "accessModes",
                "atomic",
                NONE,
                "",
                "",
            ),
            (
                "PersistentVolumeClaimStatus",
                "accessModes",
                "atomic",
                NONE,
                "",
                "",
            ),
            (
                "PersistentVolumeClaimStatus",
                "conditions",
                "map",
                TYPE,
                "type",
                "merge",
            ),
            (
                "PersistentVolumeSpec",
                "accessModes",
                "atomic",
                NONE,
                "",
                "",
            ),
            (
                "PersistentVolumeSpec",
                "mountOptions",
                "atomic",
                NONE,
                "",
                "",
            ),
            ("Endpoints", "subsets", "atomic", NONE, "", ""),
            ("EndpointSubset", "addresses", "atomic", NONE, "", ""),
            (
                "EndpointSubset",
                "notReadyAddresses",
                "atomic",
                NONE,
                "",
                "",
            ),
            ("EndpointSubset", "ports", "atomic", NONE, "", ""),
            ("LimitRangeSpec", "limits", "atomic", NONE, "", ""),
            ("ResourceQuotaSpec", "scopes", "atomic", NONE, "", ""),
            ("ConfigMapVolumeSource", "items", "atomic", NONE, "", ""),
            ("SecretVolumeSource", "items", "atomic", NONE, "", ""),
            ("ProjectedVolumeSource", "sources", "atomic", NONE, "", ""),
        ],
    ),
    (
        APPS,
        &[
            (
                "DeploymentStatus",
                "conditions",
                "map",
                TYPE,
                "type",
                "merge",
            ),
            (
                "ReplicaSetStatus",
                "conditions",
                "map",
                TYPE,
                "type",
                "merge",
            ),
            (
                "StatefulSetStatus",
                "conditions",
                "map",
                TYPE,
                "type",
                "merge",
            ),
            (
                "DaemonSetStatus",
                "conditions",
                "map",
                TYPE,
                "type",
                "merge",
            ),
            (
                "StatefulSetSpec",
                "volumeClaimTemplates",
                "atomic",
                NONE,
                "",
                "",
            ),
        ],
    ),
    (
        BATCH,
        &[
            ("JobStatus", "conditions", "atomic", NONE, "type", "merge"),
            ("CronJobStatus", "active", "atomic", NONE, "", ""),
            ("PodFailurePolicy", "rules", "atomic", NONE, "", ""),
        ],
    ),
    (
        POLICY,
        &[(
            "PodDisruptionBudgetStatus",
            "conditions",
            "map",
            TYPE,
            "type",
            "merge",
        )],
    ),
    (
        DISCOVERY,
        &[
            ("EndpointSlice", "endpoints", "atomic", NONE, "", ""),
            ("EndpointSlice", "ports", "atomic", NONE, "", ""),
            ("Endpoint", "addresses", "set", NONE, "", ""),
        ],
    ),
];

/// Every (schema name, property) the table names; used by tests to catch typos.
#[cfg(test)]
pub(crate) fn table_entries() -> Vec<(String, &'static str)> {
    ROWS.iter()
        .flat_map(|(prefix, rows)| rows.iter().map(move |r| (format!("{prefix}{}", r.0), r.1)))
        .collect()
}

pub(crate) fn apply(defs: &mut Map<String, Value>) {
    for (prefix, rows) in ROWS {
        for &(schema, prop, list_type, keys, merge_key, strategy) in *rows {
            let name = format!("{prefix}{schema}");
            let Some(p) = defs
                .get_mut(&name)
                .and_then(|s| s.get_mut("properties"))
                .and_then(|p| p.get_mut(prop))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            if !keys.is_empty() {
                p.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
            if !list_type.is_empty() {
                p.insert("x-kubernetes-list-type".into(), json!(list_type));
            }
            if !merge_key.is_empty() {
                p.insert("x-kubernetes-patch-merge-key".into(), json!(merge_key));
            }
            if !strategy.is_empty() {
                p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            }
        }
    }
}
