//! Label selectors and node selector terms.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

static EMPTY_LABELS: Labels = BTreeMap::new();

/// Labels of an object's metadata (empty map when unset).
pub fn labels_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &Labels {
    meta.labels.as_ref().unwrap_or(&EMPTY_LABELS)
}

/// Labels of a node.
pub fn node_labels(node: &Node) -> &Labels {
    labels_of(&node.metadata)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }

    fn matches_value(&self, v: Option<&str>) -> bool {
        match self.op {
            Op::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt | Op::Lt => {
                let Some(v) = v.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|x| x.parse::<i64>().ok()) else {
                    return false;
                };
                if self.op == Op::Gt {
                    v > want
                } else {
                    v < want
                }
            }
        }
    }

    fn new(key: &str, op: &str, values: &[String], allow_numeric: bool) -> Option<Requirement> {
        let op = match op {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if allow_numeric => Op::Gt,
            "Lt" if allow_numeric => Op::Lt,
            _ => return None,
        };
        let ok = match op {
            Op::In | Op::NotIn => !values.is_empty(),
            Op::Exists | Op::DoesNotExist => values.is_empty(),
            Op::Gt | Op::Lt => values.len() == 1 && values[0].parse::<i64>().is_ok(),
        };
        ok.then(|| Requirement {
            key: key.to_string(),
            op,
            values: values.to_vec(),
        })
    }
}

/// A compiled label selector (upstream `labels.Selector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Matches nothing (nil selector, or an invalid one).
    Nothing,
    /// Conjunction of requirements; empty matches everything.
    Requirements(Vec<RequirementHandle>),
}

/// Opaque requirement of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementHandle(Requirement);

impl Selector {
    /// Upstream `metav1.LabelSelectorAsSelector`: `None` → nothing, `{}` → everything,
    /// invalid → nothing.
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector::Nothing;
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(RequirementHandle(Requirement {
                key: k.clone(),
                op: Op::In,
                values: vec![v.clone()],
            }));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.as_deref().unwrap_or(&[]);
            match Requirement::new(&e.key, &e.operator, values, false) {
                Some(r) => reqs.push(RequirementHandle(r)),
                None => return Selector::Nothing,
            }
        }
        Selector::Requirements(reqs)
    }

    /// Selector requiring exactly these labels.
    pub fn from_labels(labels: &Labels) -> Selector {
        Selector::Requirements(
            labels
                .iter()
                .map(|(k, v)| {
                    RequirementHandle(Requirement {
                        key: k.clone(),
                        op: Op::In,
                        values: vec![v.clone()],
                    })
                })
                .collect(),
        )
    }

    /// Add `key=value` requirements (used for `matchLabelKeys`).
    pub fn add_label_requirements(&mut self, labels: &Labels) {
        if let Selector::Requirements(reqs) = self {
            for (k, v) in labels {
                reqs.push(RequirementHandle(Requirement {
                    key: k.clone(),
                    op: Op::In,
                    values: vec![v.clone()],
                }));
            }
        }
    }

    /// Conjunction with another selector's requirements (a nothing-selector
    /// contributes no requirements, as upstream's `Requirements()` returns none).
    pub fn and(&mut self, other: Selector) {
        if let (Selector::Requirements(a), Selector::Requirements(b)) = (self, other) {
            a.extend(b);
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::Requirements(r) => r.iter().all(|r| r.0.matches(labels)),
        }
    }

    /// `key = value` pairs the selector requires (single-value `In` requirements),
    /// usable to look candidates up in a label index.
    pub fn required_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let reqs: &[RequirementHandle] = match self {
            Selector::Nothing => &[],
            Selector::Requirements(r) => r,
        };
        reqs.iter()
            .filter(|r| r.0.op == Op::In && r.0.values.len() == 1)
            .map(|r| (r.0.key.as_str(), r.0.values[0].as_str()))
    }

    /// Upstream `Selector.Empty()`: true only for the match-everything selector.
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::Requirements(r) if r.is_empty())
    }
}

/// A compiled `NodeSelectorTerm`.
#[derive(Debug, Clone)]
pub struct CompiledTerm {
    /// `None` when the term is invalid or empty: it matches no node.
    reqs: Option<(Vec<Requirement>, Vec<Requirement>)>,
}

impl CompiledTerm {
    pub fn new(term: &NodeSelectorTerm) -> CompiledTerm {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return CompiledTerm { reqs: None };
        }
        let compile =
            |rs: &[NodeSelectorRequirement], is_field: bool| -> Option<Vec<Requirement>> {
                rs.iter()
                    .map(|r| {
                        if is_field
                            && (r.key != "metadata.name"
                                || !matches!(r.operator.as_str(), "In" | "NotIn"))
                        {
                            return None;
                        }
                        if is_field && r.values.as_ref().is_none_or(|v| v.len() != 1) {
                            return None;
                        }
                        Requirement::new(
                            &r.key,
                            &r.operator,
                            r.values.as_deref().unwrap_or(&[]),
                            true,
                        )
                    })
                    .collect()
            };
        let reqs = compile(exprs, false).zip(compile(fields, true));
        CompiledTerm { reqs }
    }

    pub fn matches(&self, node: &Node) -> bool {
        let Some((exprs, fields)) = &self.reqs else {
            return false;
        };
        let labels = node_labels(node);
        if !exprs.iter().all(|r| r.matches(labels)) {
            return false;
        }
        if !fields.is_empty() {
            let name = node.metadata.name.as_deref().unwrap_or("");
            if !fields.iter().all(|r| r.matches_value(Some(name))) {
                return false;
            }
        }
        true
    }
}

/// The pod's required node affinity: `spec.nodeSelector` AND any of the required
/// node affinity terms (upstream `nodeaffinity.RequiredNodeAffinity`).
#[derive(Debug, Clone, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Option<Labels>,
    terms: Option<Vec<CompiledTerm>>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .filter(|m| !m.is_empty())
            .cloned();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| {
                ns.node_selector_terms
                    .iter()
                    .map(CompiledTerm::new)
                    .collect()
            });
        RequiredNodeAffinity {
            node_selector,
            terms,
        }
    }

    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none() && self.terms.is_none()
    }

    pub fn matches(&self, node: &Node) -> bool {
        if let Some(sel) = &self.node_selector {
            let labels = node_labels(node);
            if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                return false;
            }
        }
        if let Some(terms) = &self.terms {
            return terms.iter().any(|t| t.matches(node));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}})).unwrap()
    }

    #[test]
    fn label_selector_semantics() {
        let l: Labels = [("app".to_string(), "web".to_string())].into();
        assert!(!Selector::from_label_selector(None).matches(&l));
        let empty = Selector::from_label_selector(Some(&LabelSelector::default()));
        assert!(empty.is_empty() && empty.matches(&l));
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(Selector::from_label_selector(Some(&sel)).matches(&l));
        let bad: LabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .unwrap();
        assert_eq!(Selector::from_label_selector(Some(&bad)), Selector::Nothing);
    }

    #[test]
    fn node_selector_terms() {
        let n = node(json!({"zone": "a", "gen": "5"}));
        let cases = [
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["x"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                true,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}),
                false,
            ),
            (json!({}), false),
        ];
        for (t, want) in cases {
            let term: NodeSelectorTerm = serde_json::from_value(t.clone()).unwrap();
            assert_eq!(CompiledTerm::new(&term).matches(&n), want, "{t}");
        }
    }
}
