//! RFC 6902 JSON patch with the behaviour of `gopkg.in/evanphx/json-patch.v4`,
//! which kube-apiserver uses for `application/json-patch+json`:
//! negative array indices are accepted, `replace` of a missing object key
//! behaves like `add`, `test` of a missing key against `null` succeeds, a
//! path without a leading `/` is read as if it had one.

use serde_json::{Map, Value};

use crate::{PatchError, MAX_JSON_PATCH_OPERATIONS};

pub(crate) fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: &[Value] = match patch {
        Value::Array(ops) => ops,
        // `null` decodes to an empty patch.
        Value::Null => &[],
        other => {
            return Err(PatchError::InvalidPatch(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                json_type(other)
            )))
        }
    };
    for op in ops {
        if !(op.is_object() || op.is_null()) {
            return Err(PatchError::InvalidPatch(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                json_type(op)
            )));
        }
    }
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            got: ops.len(),
        });
    }
    if !(doc.is_object() || doc.is_array()) {
        return Err(PatchError::InvalidDocument(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.partialDoc",
            json_type(doc)
        )));
    }
    let empty = Map::new();
    let mut doc = doc.clone();
    for op in ops {
        let op = op.as_object().unwrap_or(&empty);
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("unknown");
        match kind {
            "add" => add(&mut doc, op)?,
            "remove" => remove(&mut doc, op)?,
            "replace" => replace(&mut doc, op)?,
            "move" => move_op(&mut doc, op)?,
            "test" => test(&mut doc, op)?,
            "copy" => copy(&mut doc, op)?,
            other => {
                return Err(PatchError::InvalidOperation(format!(
                    "Unexpected kind: {other}"
                )))
            }
        }
    }
    Ok(doc)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn str_field<'a>(
    op: &'a Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<&'a str, PatchError> {
    match op.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(PatchError::InvalidOperation(format!(
            "{what} operation failed to decode {name}: operation missing {name} field"
        ))),
        Some(other) => Err(PatchError::InvalidOperation(format!(
            "{what} operation failed to decode {name}: json: cannot unmarshal {} into Go value of type string",
            json_type(other)
        ))),
    }
}

fn decode_key(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

fn invalid_index(idx: i64) -> PatchError {
    PatchError::InvalidOperation(format!("Unable to access invalid index: {idx}"))
}

fn parse_index(key: &str) -> Result<i64, PatchError> {
    key.parse::<i64>().map_err(|_| {
        PatchError::InvalidOperation(format!("strconv.Atoi: parsing {key:?}: invalid syntax"))
    })
}

/// Index of an existing element, negative indices counting from the end.
fn existing_index(len: usize, key: &str) -> Result<usize, PatchError> {
    let idx = parse_index(key)?;
    let len_i = len as i64;
    let real = if idx < 0 {
        if idx < -len_i {
            return Err(invalid_index(idx));
        }
        idx + len_i
    } else {
        idx
    };
    if real >= len_i {
        return Err(invalid_index(idx));
    }
    Ok(real as usize)
}

/// Finds the container holding the last token of `path`, and that token.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let key = decode_key(split[split.len() - 1]);
    let mut cur = doc;
    for part in &split[1..split.len() - 1] {
        let part = decode_key(part);
        let next = match cur {
            Value::Object(m) => m.get_mut(&part)?,
            Value::Array(a) => {
                let idx = existing_index(a.len(), &part).ok()?;
                &mut a[idx]
            }
            _ => return None,
        };
        if !(next.is_object() || next.is_array()) {
            return None;
        }
        cur = next;
    }
    Some((cur, key))
}

/// The value at `key` of a container; `Ok(None)` for a missing object key or
/// a `null` value.
fn con_get(con: &Value, key: &str) -> Result<Option<Value>, PatchError> {
    match con {
        Value::Object(m) => Ok(m.get(key).filter(|v| !v.is_null()).cloned()),
        Value::Array(a) => {
            let idx = existing_index(a.len(), key)?;
            Ok(Some(a[idx].clone()).filter(|v| !v.is_null()))
        }
        _ => Err(PatchError::InvalidOperation("not a container".into())),
    }
}

fn con_add(con: &mut Value, key: &str, val: Value) -> Result<(), PatchError> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(val);
                return Ok(());
            }
            let idx = key.parse::<i64>().map_err(|_| {
                PatchError::InvalidOperation(format!(
                    "value was not a proper array index: '{key}': strconv.Atoi: parsing {key:?}: invalid syntax"
                ))
            })?;
            let sz = a.len() as i64 + 1;
            if idx >= sz {
                return Err(invalid_index(idx));
            }
            let real = if idx < 0 {
                if idx < -sz {
                    return Err(invalid_index(idx));
                }
                idx + sz
            } else {
                idx
            };
            a.insert(real as usize, val);
            Ok(())
        }
        _ => Err(PatchError::InvalidOperation("not a container".into())),
    }
}

fn con_set(con: &mut Value, key: &str, val: Value) -> Result<(), PatchError> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            let idx = existing_index(a.len(), key)?;
            a[idx] = val;
            Ok(())
        }
        _ => Err(PatchError::InvalidOperation("not a container".into())),
    }
}

fn con_remove(con: &mut Value, key: &str) -> Result<(), PatchError> {
    match con {
        Value::Object(m) => {
            if m.shift_remove(key).is_none() {
                return Err(PatchError::PathNotFound(format!(
                    "Unable to remove nonexistent key: {key}: missing value"
                )));
            }
            Ok(())
        }
        Value::Array(a) => {
            let idx = existing_index(a.len(), key)?;
            a.remove(idx);
            Ok(())
        }
        _ => Err(PatchError::InvalidOperation("not a container".into())),
    }
}

fn value_of(op: &Map<String, Value>) -> Value {
    op.get("value").cloned().unwrap_or(Value::Null)
}

fn add(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let path = str_field(op, "path", "add")?;
    let Some((con, key)) = find_object(doc, path) else {
        return Err(PatchError::PathNotFound(format!(
            "add operation does not apply: doc is missing path: \"{path}\": missing value"
        )));
    };
    con_add(con, &key, value_of(op))
        .map_err(|e| with_context(e, &format!("error in add for path: '{path}'")))
}

fn remove(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let path = str_field(op, "path", "remove")?;
    let Some((con, key)) = find_object(doc, path) else {
        return Err(PatchError::PathNotFound(format!(
            "remove operation does not apply: doc is missing path: \"{path}\": missing value"
        )));
    };
    con_remove(con, &key)
        .map_err(|e| with_context(e, &format!("error in remove for path: '{path}'")))
}

fn replace(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let path = str_field(op, "path", "replace")?;
    if path.is_empty() {
        let val = value_of(op);
        if !(val.is_object() || val.is_array()) {
            return Err(PatchError::InvalidOperation(
                "replace operation value must be object or array".into(),
            ));
        }
        *doc = val;
        return Ok(());
    }
    let Some((con, key)) = find_object(doc, path) else {
        return Err(PatchError::PathNotFound(format!(
            "replace operation does not apply: doc is missing path: {path}: missing value"
        )));
    };
    if con_get(con, &key).is_err() {
        return Err(PatchError::PathNotFound(format!(
            "replace operation does not apply: doc is missing key: {path}: missing value"
        )));
    }
    con_set(con, &key, value_of(op))
        .map_err(|e| with_context(e, &format!("error in remove for path: '{path}'")))
}

fn move_op(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let from = str_field(op, "from", "move")?;
    let Some((con, key)) = find_object(doc, from) else {
        return Err(PatchError::PathNotFound(format!(
            "move operation does not apply: doc is missing from path: {from}: missing value"
        )));
    };
    let val = con_get(con, &key)
        .map_err(|e| with_context(e, &format!("error in move for path: '{key}'")))?;
    con_remove(con, &key)
        .map_err(|e| with_context(e, &format!("error in move for path: '{key}'")))?;
    let path = str_field(op, "path", "move")?;
    let Some((con, key)) = find_object(doc, path) else {
        return Err(PatchError::PathNotFound(format!(
            "move operation does not apply: doc is missing destination path: {path}: missing value"
        )));
    };
    con_add(con, &key, val.unwrap_or(Value::Null))
        .map_err(|e| with_context(e, &format!("error in move for path: '{path}'")))
}

fn copy(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let from = str_field(op, "from", "copy")?;
    let Some((con, key)) = find_object(doc, from) else {
        return Err(PatchError::PathNotFound(format!(
            "copy operation does not apply: doc is missing from path: {from}: missing value"
        )));
    };
    let val = con_get(con, &key)
        .map_err(|e| with_context(e, &format!("error in copy for from: '{from}'")))?;
    let path = str_field(op, "path", "copy")?;
    let Some((con, key)) = find_object(doc, path) else {
        return Err(PatchError::PathNotFound(format!(
            "copy operation does not apply: doc is missing destination path: {path}: missing value"
        )));
    };
    con_add(con, &key, val.unwrap_or(Value::Null))
        .map_err(|e| with_context(e, "error while adding value during copy"))
}

fn test(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let path = str_field(op, "path", "test")?;
    let failed = || PatchError::TestFailed(format!("testing value {path} failed: test failed"));
    let want = op.get("value");
    if path.is_empty() {
        return if want == Some(&*doc) {
            Ok(())
        } else {
            Err(failed())
        };
    }
    let Some((con, key)) = find_object(doc, path) else {
        return Err(PatchError::PathNotFound(format!(
            "test operation does not apply: is missing path: {path}: missing value"
        )));
    };
    let val = con_get(con, &key)
        .map_err(|e| with_context(e, &format!("error in test for path: '{path}'")))?;
    match (val, want) {
        (None, None | Some(Value::Null)) => Ok(()),
        (Some(v), Some(w)) if &v == w => Ok(()),
        _ => Err(failed()),
    }
}

fn with_context(e: PatchError, ctx: &str) -> PatchError {
    match e {
        PatchError::PathNotFound(m) => PatchError::PathNotFound(format!("{ctx}: {m}")),
        PatchError::InvalidOperation(m) => PatchError::InvalidOperation(format!("{ctx}: {m}")),
        other => other,
    }
}
