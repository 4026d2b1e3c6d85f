//! `metadata.managedFields`: one entry per (manager, operation,
//! subresource[, apiVersion for updates]) with the fields it owns, and the
//! two operations that change ownership: Update (any write) and Apply.

use serde_json::{json, Map, Value};

use crate::path::{Path, Set};
use crate::schema::OptTy;
use crate::walk::{compare, merge, prune, to_set, Comparison};
use crate::FieldError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    /// "" for the main resource.
    pub subresource: String,
    pub set: Set,
}

impl Entry {
    /// Whether two entries are the same manager identity (upstream
    /// `BuildManagerIdentifier`: appliers are not split by apiVersion).
    fn same_identity(&self, manager: &str, op: Operation, sub: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == op
            && self.subresource == sub
            && (op == Operation::Apply || self.api_version == api_version)
    }

    /// How conflict messages name a manager (upstream `printManager`).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// Decodes `metadata.managedFields` (absent or null → empty).
pub fn decode(managed: Option<&Value>) -> Result<Vec<Entry>, FieldError> {
    let Some(v) = managed.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(FieldError::InvalidFieldsV1(
            "managedFields must be a list".into(),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let s = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let operation = match s("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            o => {
                return Err(FieldError::InvalidFieldsV1(format!(
                    "operation must be Apply or Update, got {o:?}"
                )))
            }
        };
        let ft = s("fieldsType");
        if !ft.is_empty() && ft != "FieldsV1" {
            return Err(FieldError::InvalidFieldsV1(format!(
                "unsupported fieldsType {ft:?}"
            )));
        }
        let set = match item.get("fieldsV1") {
            Some(f) if !f.is_null() => Set::from_fields_v1(f)?,
            _ => Set::new(),
        };
        out.push(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: item.get("time").and_then(Value::as_str).map(String::from),
            subresource: s("subresource"),
            set,
        });
    }
    Ok(out)
}

/// Encodes entries in upstream's order (operation, time, manager,
/// apiVersion, subresource).
pub fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Paths nobody owns (upstream's strip-meta manager): type meta and the
/// metadata the server sets.
fn strip(set: &mut Set) {
    let paths: Vec<Path> = [
        &["apiVersion"][..],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ]
    .iter()
    .map(|p| Path::fields(p))
    .collect();
    set.remove_members(&paths);
}

/// Who is writing.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub subresource: &'a str,
    pub api_version: &'a str,
    /// RFC 3339 time of this write.
    pub time: &'a str,
}

/// One field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as upstream prints it (`"kubectl-edit" using apps/v1`).
    pub manager: String,
    pub path: Path,
}

/// Records an Update by `w` that turned `old` into `new`: the writer gains
/// what it added or changed (taken from other managers), everyone loses
/// what it removed.
pub fn update(
    old: &Value,
    new: &Value,
    ty: OptTy<'_>,
    entries: &[Entry],
    w: &Writer<'_>,
) -> Result<Vec<Entry>, FieldError> {
    let c = compare(Some(old), Some(new), ty)?;
    if c.added.is_empty() && c.modified.is_empty() && c.removed.is_empty() {
        // A no-op write (e.g. a status PUT with the same status): ownership
        // is unchanged.
        return Ok(entries.to_vec());
    }
    let changed = c.modified.union(&c.added);
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len() + 1);
    let mut mine: Option<Entry> = None;
    for e in entries {
        if e.same_identity(w.manager, Operation::Update, w.subresource, w.api_version) {
            mine = Some(e.clone());
            continue;
        }
        let mut e = e.clone();
        e.set = e.set.difference(&changed).difference(&c.removed);
        out.push(e);
    }
    let prev = mine.map(|e| e.set).unwrap_or_default();
    let mut set = prev.difference(&c.removed).union(&changed);
    strip(&mut set);
    let time = if set == prev {
        entries
            .iter()
            .find(|e| e.same_identity(w.manager, Operation::Update, w.subresource, w.api_version))
            .and_then(|e| e.time.clone())
    } else {
        Some(w.time.to_string())
    };
    out.push(Entry {
        manager: w.manager.to_string(),
        operation: Operation::Update,
        api_version: w.api_version.to_string(),
        time,
        subresource: w.subresource.to_string(),
        set,
    });
    out.retain(|e| !e.set.is_empty());
    Ok(out)
}

/// The result of an apply.
#[derive(Debug)]
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
}

/// Server-side apply of `config` by `w` onto `live` (`None` on create):
/// merge, prune what this manager applied before and no one owns any more,
/// then check conflicts with the other managers (an error unless `force`,
/// in which case the applier takes the fields).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    ty: OptTy<'_>,
    entries: &[Entry],
    w: &Writer<'_>,
    force: bool,
) -> Result<Applied, FieldError> {
    let mut applied = to_set(config, ty)?;
    strip(&mut applied);
    let empty = Value::Object(Map::new());
    let live_v = live.unwrap_or(&empty);
    let mut merged = merge(Some(live_v), config, ty)?;
    let is_mine =
        |e: &Entry| e.same_identity(w.manager, Operation::Apply, w.subresource, w.api_version);
    let last = entries.iter().find(|e| is_mine(e)).map(|e| e.set.clone());
    let mut owned = applied.clone();
    for e in entries.iter().filter(|e| !is_mine(e)) {
        owned = owned.union(&e.set);
    }
    if let Some(last) = &last {
        prune(&mut merged, last, &owned, ty)?;
    }
    let c: Comparison = compare(Some(live_v), Some(&merged), ty)?;
    let changed = c.modified.union(&c.added);
    let mut conflicts = Vec::new();
    let mut out = Vec::with_capacity(entries.len() + 1);
    for e in entries {
        if is_mine(e) {
            continue;
        }
        let mut e = e.clone();
        let clash = e.set.intersection(&changed);
        for p in clash.paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                path: p,
            });
        }
        e.set = e.set.difference(&clash).difference(&c.removed);
        out.push(e);
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| (&a.manager, &a.path).cmp(&(&b.manager, &b.path)));
        return Err(FieldError::Conflicts(conflicts));
    }
    let prev = entries.iter().find(|e| is_mine(e));
    let time = match prev {
        Some(p) if p.set == applied && live.is_some_and(|l| *l == merged) => p.time.clone(),
        _ => Some(w.time.to_string()),
    };
    out.push(Entry {
        manager: w.manager.to_string(),
        operation: Operation::Apply,
        api_version: w.api_version.to_string(),
        time,
        subresource: w.subresource.to_string(),
        set: applied,
    });
    out.retain(|e| !e.set.is_empty());
    Ok(Applied {
        object: merged,
        entries: out,
    })
}

/// The message of a conflict error (upstream `getConflictMessage` with the
/// apply handler's "Apply failed with N conflict(s)" prefix).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    if n == 1 {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].manager, conflicts[0].path
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
}
