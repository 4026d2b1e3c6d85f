//! Typed walks over JSON objects: the field set of an applied
//! configuration, merge of a configuration into a live object, comparison
//! of two objects, and removal of paths (structured-merge-diff's `typed`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::path::{Path, PathElement, Set};
use crate::schema::{child_ty, declared, key_default, kind_of, Kind, ListKind, OptTy};
use crate::FieldError;

/// Whether a node of this kind is a leaf (owned as a whole).
fn is_leaf(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::Scalar | Kind::AtomicMap | Kind::List(ListKind::Atomic, _) | Kind::Deduced
    )
}

/// Elements of an associative list or set, with their path elements.
fn list_elements<'v>(
    lk: &ListKind,
    items: &'v [Value],
    path: &Path,
) -> Result<Vec<(PathElement, &'v Value)>, FieldError> {
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let pe = match lk {
            ListKind::Set => PathElement::value(item),
            ListKind::Map(keys) => {
                let Value::Object(m) = item else {
                    return Err(FieldError::Invalid(format!(
                        "{path}: expected an object in an associative list, got {item}"
                    )));
                };
                let mut pairs = Vec::with_capacity(keys.len());
                for k in keys {
                    match m.get(k).filter(|v| !v.is_null()).cloned().or_else(|| key_default(k)) {
                        Some(v) => pairs.push((k.clone(), v)),
                        None => {
                            return Err(FieldError::Invalid(format!(
                                "{path}: element {i}: associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                            )))
                        }
                    }
                }
                PathElement::key(&pairs)
            }
            ListKind::Atomic => PathElement::Index(i),
        };
        if !seen.insert(pe.clone()) {
            return Err(FieldError::Invalid(format!(
                "{path}: duplicate entries for key {pe}"
            )));
        }
        out.push((pe, item));
    }
    Ok(out)
}

/// The set of fields an applied configuration specifies (upstream
/// `ToFieldSet`): scalars and atomic values, associative-list and set
/// elements, entries of maps; struct fields only through their leaves.
pub fn to_set(v: &Value, ty: OptTy<'_>) -> Result<Set, FieldError> {
    let mut out = Set::new();
    to_set_at(v, ty, &Path::default(), &mut out)?;
    Ok(out)
}

fn to_set_at(v: &Value, ty: OptTy<'_>, path: &Path, out: &mut Set) -> Result<(), FieldError> {
    let kind = kind_of(ty, Some(v));
    match (&kind, v) {
        (Kind::Struct(_) | Kind::Map(_), Value::Object(m)) => {
            for (k, cv) in m {
                let p = path.child(PathElement::field(k));
                to_set_at(cv, child_ty(&kind, ty, k), &p, out)?;
                let empty = cv.is_null() || cv.as_object().is_some_and(Map::is_empty);
                if empty || !declared(&kind, k) {
                    out.insert(&p);
                }
            }
        }
        (Kind::List(lk @ (ListKind::Map(_) | ListKind::Set), elem), Value::Array(items)) => {
            for (pe, item) in list_elements(lk, items, path)? {
                let p = path.child(pe);
                if matches!(lk, ListKind::Map(_)) {
                    to_set_at(item, *elem, &p, out)?;
                }
                out.insert(&p);
            }
        }
        _ => {
            if !path.0.is_empty() {
                out.insert(path);
            }
        }
    }
    Ok(())
}

/// Merges an applied configuration into the live object: granular maps and
/// structs merge field by field, associative lists and sets merge by key
/// (live-only elements keep their place, the configuration's order wins for
/// the rest), anything atomic is replaced.
pub fn merge(live: Option<&Value>, cfg: &Value, ty: OptTy<'_>) -> Result<Value, FieldError> {
    merge_at(live, cfg, ty, &Path::default())
}

fn merge_at(
    live: Option<&Value>,
    cfg: &Value,
    ty: OptTy<'_>,
    path: &Path,
) -> Result<Value, FieldError> {
    let kind = kind_of(ty, Some(cfg));
    match (&kind, live, cfg) {
        (Kind::Struct(_) | Kind::Map(_), Some(Value::Object(l)), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                let p = path.child(PathElement::field(k));
                let merged = merge_at(l.get(k), cv, child_ty(&kind, ty, k), &p)?;
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (
            Kind::List(lk @ (ListKind::Map(_) | ListKind::Set), elem),
            Some(Value::Array(l)),
            Value::Array(c),
        ) => {
            let le = list_elements(lk, l, path)?;
            let ce = list_elements(lk, c, path)?;
            let cfg_idx: HashMap<&PathElement, &Value> = ce.iter().map(|(p, v)| (p, *v)).collect();
            let live_idx: HashMap<&PathElement, usize> =
                le.iter().enumerate().map(|(i, (p, _))| (p, i)).collect();
            let mut out = Vec::with_capacity(l.len() + c.len());
            let mut next_live = 0;
            for (pe, cv) in &ce {
                // Live-only elements before this shared one keep their place.
                if let Some(&li) = live_idx.get(pe) {
                    while next_live < li {
                        let (lpe, lv) = &le[next_live];
                        if !cfg_idx.contains_key(lpe) {
                            out.push((*lv).clone());
                        }
                        next_live += 1;
                    }
                    next_live = next_live.max(li + 1);
                    let p = path.child(pe.clone());
                    let lv = le[li].1;
                    out.push(if matches!(lk, ListKind::Map(_)) {
                        merge_at(Some(lv), cv, *elem, &p)?
                    } else {
                        (*cv).clone()
                    });
                } else {
                    out.push((*cv).clone());
                }
            }
            for (lpe, lv) in le.iter().skip(next_live) {
                if !cfg_idx.contains_key(lpe) {
                    out.push((*lv).clone());
                }
            }
            Ok(Value::Array(out))
        }
        _ => Ok(cfg.clone()),
    }
}

/// What changed between two objects (upstream `Comparison`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// Compares `old` with `new`: leaves present only in `new` are added, only
/// in `old` removed, in both with different values modified; non-leaf nodes
/// (structs, maps, list elements) are added or removed when only one side
/// has them.
pub fn compare(
    old: Option<&Value>,
    new: Option<&Value>,
    ty: OptTy<'_>,
) -> Result<Comparison, FieldError> {
    let mut c = Comparison::default();
    compare_at(old, new, ty, &mut Vec::new(), &mut c)?;
    Ok(c)
}

/// `path` is a stack (pushed and popped around each child) so that no
/// path is built per node: [`Set::insert_elems`] copies what it keeps.
fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    ty: OptTy<'_>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) -> Result<(), FieldError> {
    let old = old.filter(|v| !v.is_null());
    let new = new.filter(|v| !v.is_null());
    // Equal subtrees add, remove and modify nothing: skip them (most of an
    // object on an update) before paying for paths and types.
    if let (Some(a), Some(b)) = (old, new) {
        if a == b {
            return Ok(());
        }
    }
    let kind = kind_of(ty, new.or(old));
    let same_shape = match (old, new) {
        (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => true,
    };
    let container = matches!(
        (&kind, new.or(old)),
        (Kind::Struct(_) | Kind::Map(_), Some(Value::Object(_)))
            | (
                Kind::List(ListKind::Map(_) | ListKind::Set, _),
                Some(Value::Array(_))
            )
    );
    if is_leaf(&kind) || !container || !same_shape {
        match (old, new) {
            (None, Some(_)) => c.added.insert_elems(path),
            (Some(_), None) => c.removed.insert_elems(path),
            (Some(a), Some(b)) if a != b => c.modified.insert_elems(path),
            _ => {}
        }
        return Ok(());
    }
    if !path.is_empty() {
        match (old, new) {
            (None, Some(_)) => c.added.insert_elems(path),
            (Some(_), None) => c.removed.insert_elems(path),
            _ => {}
        }
    }
    match &kind {
        Kind::List(lk, elem) => {
            let empty = Vec::new();
            let here = Path(path.clone());
            let ol = list_elements(lk, old.and_then(Value::as_array).unwrap_or(&empty), &here)?;
            let nl = list_elements(lk, new.and_then(Value::as_array).unwrap_or(&empty), &here)?;
            let oi: HashMap<&PathElement, &Value> = ol.iter().map(|(p, v)| (p, *v)).collect();
            let ni: HashMap<&PathElement, &Value> = nl.iter().map(|(p, v)| (p, *v)).collect();
            for (pe, v) in &nl {
                path.push(pe.clone());
                let r = if matches!(lk, ListKind::Set) {
                    if !oi.contains_key(pe) {
                        c.added.insert_elems(path);
                    }
                    Ok(())
                } else {
                    compare_at(oi.get(pe).copied(), Some(v), *elem, path, c)
                };
                path.pop();
                r?;
            }
            for (pe, v) in &ol {
                if ni.contains_key(pe) {
                    continue;
                }
                path.push(pe.clone());
                let r = if matches!(lk, ListKind::Set) {
                    c.removed.insert_elems(path);
                    Ok(())
                } else {
                    compare_at(Some(v), None, *elem, path, c)
                };
                path.pop();
                r?;
            }
        }
        _ => {
            let empty = Map::new();
            let om = old.and_then(Value::as_object).unwrap_or(&empty);
            let nm = new.and_then(Value::as_object).unwrap_or(&empty);
            // managedFields is bookkeeping, never a field anyone owns.
            let at_metadata = path.len() == 1 && path[0] == PathElement::Field("metadata".into());
            let skip = |k: &str| at_metadata && k == "managedFields";
            for (k, v) in nm {
                if skip(k) {
                    continue;
                }
                path.push(PathElement::field(k));
                let r = compare_at(om.get(k), Some(v), child_ty(&kind, ty, k), path, c);
                path.pop();
                r?;
            }
            for (k, v) in om {
                if nm.contains_key(k) || skip(k) {
                    continue;
                }
                path.push(PathElement::field(k));
                let r = compare_at(Some(v), None, child_ty(&kind, ty, k), path, c);
                path.pop();
                r?;
            }
        }
    }
    Ok(())
}

/// Removes from `obj` the paths of `last` (what a manager applied before)
/// that no manager owns any more (`owned`); a node that someone still owns
/// below is kept and only descended into (upstream `prune`).
pub fn prune(obj: &mut Value, last: &Set, owned: &Set, ty: OptTy<'_>) -> Result<(), FieldError> {
    prune_at(obj, last, Some(owned), ty, &Path::default())
}

fn prune_at(
    obj: &mut Value,
    last: &Set,
    owned: Option<&Set>,
    ty: OptTy<'_>,
    path: &Path,
) -> Result<(), FieldError> {
    let kind = kind_of(ty, Some(obj));
    let mut remove = Vec::new();
    for pe in last.elements() {
        let owned_member = owned.is_some_and(|o| o.has_member(&pe));
        let owned_below = owned.and_then(|o| o.child(&pe)).filter(|c| !c.is_empty());
        if owned_member || owned_below.is_some() || !last.has_member(&pe) {
            let Some(sub) = last.child(&pe) else { continue };
            let p = path.child(pe.clone());
            match (&kind, &pe, &mut *obj) {
                (Kind::Struct(_) | Kind::Map(_), PathElement::Field(f), Value::Object(m)) => {
                    let cty = child_ty(&kind, ty, f);
                    if let Some(v) = m.get_mut(f) {
                        prune_at(v, sub, owned_below, cty, &p)?;
                    }
                }
                (Kind::List(lk, elem), _, Value::Array(items)) => {
                    let idx = list_elements(lk, items, path)?
                        .iter()
                        .position(|(e, _)| e == &pe);
                    if let Some(i) = idx {
                        prune_at(&mut items[i], sub, owned_below, *elem, &p)?;
                    }
                }
                _ => {}
            }
        } else {
            remove.push(pe);
        }
    }
    for pe in remove {
        remove_element(obj, &kind, &pe, path)?;
    }
    Ok(())
}

fn remove_element(
    obj: &mut Value,
    kind: &Kind<'_>,
    pe: &PathElement,
    path: &Path,
) -> Result<(), FieldError> {
    match (pe, &mut *obj) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.shift_remove(f);
        }
        (_, Value::Array(items)) => {
            if let Kind::List(lk, _) = kind {
                let idx = list_elements(lk, items, path)?
                    .iter()
                    .position(|(e, _)| e == pe);
                if let Some(i) = idx {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// An "empty object" of a kind for comparisons on create: upstream compares
/// a created object with the zero value of its Go type, where value (non
/// pointer) structs such as `metadata`, `spec` and `spec.template` already
/// exist, so they are not reported as added.
pub fn create_skeleton(new: &Value) -> Value {
    const VALUE_STRUCTS: &[&str] = &[
        "metadata",
        "spec",
        "status",
        "template",
        "strategy",
        "updateStrategy",
        "jobTemplate",
    ];
    let mut out = Map::new();
    if let Value::Object(m) = new {
        for (k, v) in m {
            if VALUE_STRUCTS.contains(&k.as_str()) && v.is_object() {
                out.insert(k.clone(), create_skeleton(v));
            } else if k == "containers" && v.is_array() {
                // `PodSpec.Containers` has no omitempty: present, empty.
                out.insert(k.clone(), Value::Array(Vec::new()));
            }
        }
    }
    Value::Object(out)
}
