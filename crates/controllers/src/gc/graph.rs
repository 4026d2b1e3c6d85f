//! The ownerReferences graph (uid → node, owner uid → dependents) and the
//! pure decisions the garbage collector makes from it.

use std::collections::{HashMap, HashSet};

/// A resource key: (API group, kind), how owner references are resolved
/// whatever version they name.
pub type GroupKind = (String, String);

/// The group of an apiVersion ("apps/v1" → "apps", "v1" → "").
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

#[derive(Debug, Clone, PartialEq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub block: bool,
}

/// One object as the collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub uid: String,
    pub gk: GroupKind,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: String,
    pub owners: Vec<OwnerRef>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
    /// Being deleted with the `foregroundDeletion` finalizer.
    pub fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
    /// Being deleted with the `orphan` finalizer.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }
}

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: HashMap<String, Node>,
    /// owner uid → dependent uids.
    pub dependents: HashMap<String, HashSet<String>>,
}

/// How a dependent sees one of its owners, from the graph alone.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Exists, being deleted in the foreground.
    Waiting,
    /// Not in the graph: must be verified with a live GET.
    Absent,
}

impl Graph {
    pub fn upsert(&mut self, n: Node) {
        self.remove(&n.uid.clone());
        for o in &n.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(n.uid.clone());
        }
        self.nodes.insert(n.uid.clone(), n);
    }

    pub fn remove(&mut self, uid: &str) -> Option<Node> {
        let n = self.nodes.remove(uid)?;
        for o in &n.owners {
            if let Some(s) = self.dependents.get_mut(&o.uid) {
                s.remove(uid);
                if s.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(n)
    }

    /// Dependents of `uid` present in the graph.
    pub fn dependents_of(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().filter_map(|d| self.nodes.get(d)).collect())
            .unwrap_or_default()
    }

    pub fn owner_state(&self, o: &OwnerRef) -> OwnerState {
        match self.nodes.get(&o.uid) {
            Some(n) if n.gk.1 == o.kind && n.name == o.name => {
                if n.waiting_for_dependents() {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            // Not seen, or the uid names another object: verify live.
            _ => OwnerState::Absent,
        }
    }

    /// Dependents worth an attempt to delete: some owner is absent or
    /// waiting for its dependents, and the dependent is not already going.
    pub fn delete_candidates(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .values()
            .filter(|n| !n.owners.is_empty() && !n.deleting)
            .filter(|n| {
                n.owners
                    .iter()
                    .any(|o| self.owner_state(o) != OwnerState::Solid)
            })
            .map(|n| n.uid.clone())
            .collect();
        v.sort();
        v
    }

    /// Owners in foreground deletion none of whose dependents block them
    /// any more: their `foregroundDeletion` finalizer can go.
    pub fn foreground_done(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.waiting_for_dependents())
            .filter(|n| {
                !self
                    .dependents_of(&n.uid)
                    .iter()
                    .any(|d| d.owners.iter().any(|o| o.uid == n.uid && o.block))
            })
            .map(|n| n.uid.clone())
            .collect();
        v.sort();
        v
    }

    /// Owners being deleted with the `orphan` finalizer, with the
    /// dependents whose reference to them must be removed first.
    pub fn orphaning(&self) -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = self
            .nodes
            .values()
            .filter(|n| n.orphaning())
            .map(|n| {
                let mut d: Vec<String> = self
                    .dependents_of(&n.uid)
                    .iter()
                    .map(|d| d.uid.clone())
                    .collect();
                d.sort();
                (n.uid.clone(), d)
            })
            .collect();
        v.sort();
        v
    }
}

/// What to do with a dependent once every owner has been classified
/// (absent owners verified live: `dangling` ones are really gone).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Nothing,
    /// Keep the object: drop the dangling owner references and stop
    /// blocking owners that wait for their dependents.
    PatchOwners {
        remove: Vec<String>,
        unblock: Vec<String>,
    },
    DeleteForeground,
    DeleteBackground,
}

/// upstream's attemptToDeleteItem: `solid`, `dangling`, `waiting` are owner uids.
pub fn decide(
    node: &Node,
    has_dependents: bool,
    solid: &[String],
    dangling: &[String],
    waiting: &[String],
) -> Decision {
    if node.deleting {
        return Decision::Nothing;
    }
    if !solid.is_empty() {
        if dangling.is_empty() && waiting.is_empty() {
            return Decision::Nothing;
        }
        let unblock: Vec<String> = node
            .owners
            .iter()
            .filter(|o| o.block && waiting.contains(&o.uid))
            .map(|o| o.uid.clone())
            .collect();
        if dangling.is_empty() && unblock.is_empty() {
            return Decision::Nothing;
        }
        return Decision::PatchOwners {
            remove: dangling.to_vec(),
            unblock,
        };
    }
    if dangling.is_empty() && waiting.is_empty() {
        return Decision::Nothing;
    }
    if !waiting.is_empty() && has_dependents {
        Decision::DeleteForeground
    } else {
        Decision::DeleteBackground
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
        Node {
            uid: uid.into(),
            gk: (String::new(), "ConfigMap".into()),
            namespace: Some("default".into()),
            name: uid.into(),
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|(o, b)| OwnerRef {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: o.to_string(),
                    uid: o.to_string(),
                    block: *b,
                })
                .collect(),
            finalizers: vec![],
            deleting: false,
        }
    }

    #[test]
    fn background_candidates() {
        let mut g = Graph::default();
        g.upsert(node("owner", &[]));
        g.upsert(node("a", &[("owner", false)]));
        g.upsert(node("b", &[("gone", false)]));
        assert_eq!(g.delete_candidates(), vec!["b".to_string()]);
        g.remove("owner");
        assert_eq!(
            g.delete_candidates(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(g.dependents_of("owner").len() == 1);
    }

    #[test]
    fn foreground_waits_for_blocking_dependents() {
        let mut g = Graph::default();
        let mut o = node("owner", &[]);
        o.deleting = true;
        o.finalizers = vec![FOREGROUND.into()];
        g.upsert(o);
        g.upsert(node("a", &[("owner", true)]));
        g.upsert(node("b", &[("owner", false)]));
        assert_eq!(
            g.delete_candidates(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(g.foreground_done().is_empty());
        let mut a = g.nodes["a"].clone();
        a.deleting = true;
        g.upsert(a);
        // Still there (e.g. a terminating pod): still blocking.
        assert!(g.foreground_done().is_empty());
        g.remove("a");
        assert_eq!(g.foreground_done(), vec!["owner".to_string()]);
    }

    #[test]
    fn orphaning_lists_dependents() {
        let mut g = Graph::default();
        let mut o = node("owner", &[]);
        o.deleting = true;
        o.finalizers = vec![ORPHAN.into()];
        g.upsert(o);
        g.upsert(node("a", &[("owner", true)]));
        assert_eq!(
            g.orphaning(),
            vec![("owner".to_string(), vec!["a".to_string()])]
        );
        // The orphaning owner is solid for its dependents: nothing deleted.
        assert!(g.delete_candidates().is_empty());
    }

    #[test]
    fn decisions() {
        let n = node("a", &[("o1", true), ("o2", false)]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(decide(&n, false, &s(&["o1"]), &[], &[]), Decision::Nothing);
        assert_eq!(
            decide(&n, false, &s(&["o1"]), &s(&["o2"]), &[]),
            Decision::PatchOwners {
                remove: s(&["o2"]),
                unblock: vec![]
            }
        );
        assert_eq!(
            decide(&n, false, &s(&["o2"]), &[], &s(&["o1"])),
            Decision::PatchOwners {
                remove: vec![],
                unblock: s(&["o1"])
            }
        );
        assert_eq!(
            decide(&n, false, &[], &s(&["o1", "o2"]), &[]),
            Decision::DeleteBackground
        );
        assert_eq!(
            decide(&n, true, &[], &s(&["o2"]), &s(&["o1"])),
            Decision::DeleteForeground
        );
        assert_eq!(
            decide(&n, false, &[], &s(&["o2"]), &s(&["o1"])),
            Decision::DeleteBackground
        );
        let mut d = n.clone();
        d.deleting = true;
        assert_eq!(decide(&d, false, &[], &s(&["o1"]), &[]), Decision::Nothing);
    }

    #[test]
    fn groups() {
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
    }
}
