//! RFC 7386 JSON merge patch with the behaviour of evanphx/json-patch v4
//! `MergePatch`, which kube-apiserver uses for `application/merge-patch+json`.

use serde_json::{Map, Value};

use crate::PatchError;

const ERR_BAD_JSON_DOC: &str = "Invalid JSON Document";
const ERR_BAD_JSON_PATCH: &str = "Invalid JSON Patch";

pub(crate) fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if doc.is_null() {
        return Err(PatchError::InvalidDocument(ERR_BAD_JSON_DOC.into()));
    }
    match patch {
        Value::Object(p) => match doc {
            Value::Object(d) => {
                let mut d = d.clone();
                merge_docs(&mut d, p.clone());
                Ok(Value::Object(d))
            }
            // Not a document: the result is the patch itself, without nulls.
            _ => {
                let mut p = patch.clone();
                prune_nulls(&mut p);
                Ok(p)
            }
        },
        Value::Array(a) => {
            let mut a = a.clone();
            prune_ary_nulls(&mut a);
            Ok(Value::Array(a))
        }
        _ => Err(PatchError::InvalidPatch(ERR_BAD_JSON_PATCH.into())),
    }
}

fn merge_docs(doc: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            doc.shift_remove(&k);
            continue;
        }
        match doc.get_mut(&k) {
            Some(cur) if !cur.is_null() => {
                let taken = cur.take();
                *cur = merge(taken, v);
            }
            _ => {
                let mut v = v;
                prune_nulls(&mut v);
                doc.insert(k, v);
            }
        }
    }
}

fn merge(cur: Value, patch: Value) -> Value {
    match (cur, patch) {
        (Value::Object(mut c), Value::Object(p)) => {
            merge_docs(&mut c, p);
            Value::Object(c)
        }
        (Value::Object(_), p) => p,
        (_, mut p) => {
            prune_nulls(&mut p);
            p
        }
    }
}

fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => prune_doc_nulls(m),
        Value::Array(a) => prune_ary_nulls(a),
        _ => {}
    }
}

fn prune_doc_nulls(m: &mut Map<String, Value>) {
    m.retain(|_, v| !v.is_null());
    for v in m.values_mut() {
        prune_nulls(v);
    }
}

/// Null elements of arrays are kept; only nested objects are pruned.
fn prune_ary_nulls(a: &mut [Value]) {
    for v in a.iter_mut() {
        prune_nulls(v);
    }
}
