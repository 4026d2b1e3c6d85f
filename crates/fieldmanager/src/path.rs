//! Field paths and path sets (structured-merge-diff's `fieldpath`), with the
//! `FieldsV1` encoding of `metadata.managedFields` (`f:`, `k:`, `v:`, `i:`,
//! `.`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::FieldError;

/// One step of a path. Keys and values are held as canonical JSON text so
/// that elements are totally ordered and comparable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key (`f:name`).
    Field(String),
    /// An associative-list element by its keys (`k:{"name":"web"}`): the
    /// JSON object of the key fields, sorted by field name.
    Key(String),
    /// A set element by value (`v:"a"`), JSON.
    Value(String),
    /// A list element by position (`i:0`), only for lists without keys.
    Index(usize),
}

impl PathElement {
    pub fn field(name: &str) -> Self {
        PathElement::Field(name.to_string())
    }

    /// A key element from (field, value) pairs; sorted like upstream.
    pub fn key(fields: &[(String, Value)]) -> Self {
        let mut sorted: Vec<&(String, Value)> = fields.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut m = Map::new();
        for (k, v) in sorted {
            m.insert(k.clone(), v.clone());
        }
        PathElement::Key(Value::Object(m).to_string())
    }

    pub fn value(v: &Value) -> Self {
        PathElement::Value(v.to_string())
    }

    /// The FieldsV1 key (`f:name`, ...).
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key.
    pub fn decode(s: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::InvalidFieldsV1(format!("unknown path element {s:?}"));
        let (prefix, rest) = s.split_once(':').ok_or_else(bad)?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                let Value::Object(m) = v else {
                    return Err(bad());
                };
                let pairs: Vec<(String, Value)> = m.into_iter().collect();
                Ok(PathElement::key(&pairs))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                Ok(PathElement::value(&v))
            }
            "i" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PathElement {
    /// Upstream's `PathElement.String()`: `.name`, `[k="v",k2=1]`, `[=v]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(k) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(k) {
                    Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![k.clone()],
                };
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    pub fn child(&self, pe: PathElement) -> Path {
        let mut v = self.0.clone();
        v.push(pe);
        Path(v)
    }

    /// A path of field names (`["spec", "replicas"]`).
    pub fn fields(names: &[&str]) -> Path {
        Path(names.iter().map(|n| PathElement::field(n)).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

/// A set of paths as a tree: `members` are the paths ending here,
/// `children` the subtrees below an element (which need not be members).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Self {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    pub fn insert(&mut self, path: &Path) {
        self.insert_elems(&path.0);
    }

    /// [`Set::insert`] of a path given as its elements.
    pub fn insert_elems(&mut self, path: &[PathElement]) {
        let Some((last, init)) = path.split_last() else {
            return;
        };
        let mut cur = self;
        for pe in init {
            cur = cur.children.entry(pe.clone()).or_default();
        }
        cur.members.insert(last.clone());
    }

    pub fn has(&self, path: &Path) -> bool {
        let Some((last, init)) = path.0.split_last() else {
            return false;
        };
        let mut cur = self;
        for pe in init {
            match cur.children.get(pe) {
                Some(c) => cur = c,
                None => return false,
            }
        }
        cur.members.contains(last)
    }

    /// The subtree below `pe` (empty when absent).
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, depth first in element order (a node before its
    /// children, like upstream's `Set.Iterate`).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&Path::default(), &mut out);
        out
    }

    fn collect(&self, prefix: &Path, out: &mut Vec<Path>) {
        let mut elems: BTreeSet<&PathElement> = self.members.iter().collect();
        elems.extend(self.children.keys());
        for pe in elems {
            let p = prefix.child(pe.clone());
            if self.members.contains(pe) {
                out.push(p.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect(&p, out);
            }
        }
    }

    /// Removes exactly these paths (not their descendants).
    pub fn remove_members(&mut self, paths: &[Path]) {
        for p in paths {
            let Some((last, init)) = p.0.split_last() else {
                continue;
            };
            let mut cur = &mut *self;
            let mut found = true;
            for pe in init {
                match cur.children.get_mut(pe) {
                    Some(c) => cur = c,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if found {
                cur.members.remove(last);
            }
        }
        self.prune_empty();
    }

    fn prune_empty(&mut self) {
        for c in self.children.values_mut() {
            c.prune_empty();
        }
        self.children.retain(|_, c| !c.is_empty());
    }

    /// The FieldsV1 JSON form: a member with children gets a `".": {}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut elems: BTreeSet<&PathElement> = self.members.iter().collect();
        elems.extend(
            self.children
                .keys()
                .filter(|pe| self.children.get(*pe).is_some_and(|c| !c.is_empty())),
        );
        let mut keyed: Vec<(String, Value)> = elems
            .into_iter()
            .map(|pe| {
                let mut inner = match self.children.get(pe) {
                    Some(c) if !c.is_empty() => c.to_fields_v1(),
                    _ => Value::Object(Map::new()),
                };
                if self.members.contains(pe) && self.children.get(pe).is_some_and(|c| !c.is_empty())
                {
                    if let Value::Object(m) = &mut inner {
                        let mut with_dot = Map::new();
                        with_dot.insert(".".into(), Value::Object(Map::new()));
                        with_dot.extend(std::mem::take(m));
                        *m = with_dot;
                    }
                }
                (pe.encode(), inner)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Object(keyed.into_iter().collect())
    }

    /// Parses the FieldsV1 JSON form.
    pub fn from_fields_v1(v: &Value) -> Result<Set, FieldError> {
        let Value::Object(m) = v else {
            return Err(FieldError::InvalidFieldsV1(
                "fieldsV1 must be an object".into(),
            ));
        };
        let mut out = Set::new();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let Value::Object(cm) = child else {
                return Err(FieldError::InvalidFieldsV1(format!(
                    "value of {k:?} must be an object"
                )));
            };
            if cm.is_empty() || cm.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let sub = Set::from_fields_v1(child)?;
            if !sub.is_empty() {
                out.children.insert(pe, sub);
            }
        }
        Ok(out)
    }
}

impl Set {
    /// Elements that are members here or have children, in order.
    pub fn elements(&self) -> Vec<PathElement> {
        let mut e: BTreeSet<&PathElement> = self.members.iter().collect();
        e.extend(self.children.keys());
        e.into_iter().cloned().collect()
    }

    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }
}
