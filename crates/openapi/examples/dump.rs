//! Writes the OpenAPI v3 documents for a typical set of resources into a directory
//! (`cargo run -p bosun-openapi --example dump -- OUT_DIR`): `root.json`, `api__v1.json`,
//! `apis__apps__v1.json`. Handy for trying them with a stub server and the real kubectl.

use bosun_openapi::{content_hash, group_version_document, path_key, root_document, ResourceInfo};

fn res(group: &str, kind: &str, plural: &str, namespaced: bool, subs: &[&str]) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        verbs: vec![],
    }
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let gvs: Vec<(&str, Vec<ResourceInfo>)> = vec![
        (
            "",
            vec![
                res("", "Pod", "pods", true, &["status", "binding"]),
                res("", "ConfigMap", "configmaps", true, &[]),
                res("", "Namespace", "namespaces", false, &["status"]),
                res("", "Service", "services", true, &["status"]),
            ],
        ),
        (
            "apps",
            vec![res(
                "apps",
                "Deployment",
                "deployments",
                true,
                &["status", "scale"],
            )],
        ),
    ];
    let mut entries = Vec::new();
    for (group, resources) in gvs {
        let t = std::time::Instant::now();
        let doc = group_version_document(group, "v1", &resources);
        let key = path_key(group, "v1");
        let hash = content_hash(&doc);
        eprintln!("{key}: {:?}", t.elapsed());
        std::fs::write(
            format!("{out}/{}.json", key.replace('/', "__")),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
        entries.push((key, hash));
    }
    let root = root_document(&entries);
    std::fs::write(
        format!("{out}/root.json"),
        serde_json::to_vec_pretty(&root).unwrap(),
    )
    .unwrap();
}
