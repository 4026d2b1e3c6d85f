//! Apply half of Kubernetes strategic merge patch, ported from
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (`StrategicMergeMapPatch`
//! with `MergeParallelList: true, IgnoreUnmatchedNulls: true`, as used by
//! kube-apiserver).

use serde_json::{Map, Value};

use crate::schema::{Schema, Strategy};
use crate::PatchError;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

const ERR_BAD_FORMAT_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_FORMAT_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_FORMAT_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";

type JsonMap = Map<String, Value>;
type Result<T> = std::result::Result<T, PatchError>;

pub(crate) fn apply(doc: &Value, patch: &Value, schema: Schema) -> Result<Value> {
    let original = match doc {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::InvalidDocument("invalid JSON document".into())),
    };
    let patch = match patch {
        Value::Object(m) => m.clone(),
        // `null` decodes to a nil map: nothing to do.
        Value::Null => Map::new(),
        other => {
            return Err(PatchError::InvalidPatch(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind_name(other)
            )))
        }
    };
    merge_map(original, patch, schema).map(Value::Object)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

fn json_kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go type name as printed by `mergepatch.ErrBadArgType`.
fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn err_bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::MergeFailed(format!(
        "expected a {expected}, but received a {}",
        go_type_name(actual)
    ))
}

fn err_bad_arg_map(actual: &Value) -> PatchError {
    err_bad_arg_type("map[string]interface {}", actual)
}

fn err_no_merge_key(m: &JsonMap, key: &str) -> PatchError {
    PatchError::MergeFailed(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(m.clone())
    ))
}

fn err_bad_patch_type(t: &Value, m: &JsonMap) -> PatchError {
    let t = match t {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    PatchError::MergeFailed(format!(
        "unknown patch type: {t} in map: {}",
        Value::Object(m.clone())
    ))
}

/// Merges `patch` into `original` (mergeMap upstream).
fn merge_map(mut original: JsonMap, mut patch: JsonMap, schema: Schema) -> Result<JsonMap> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        let directive = directive.clone();
        return handle_directive_in_merge_map(&directive, patch);
    }

    apply_retain_keys_directive(&mut original, &mut patch)?;
    merge_patch_into_original(&mut original, &mut patch, schema)?;

    for (k, mut patch_v) in patch {
        let (is_delete_list, key) = if k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            (true, extract_key(&k, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?)
        } else {
            (false, k)
        };

        // A null deletes the key (unmatched nulls are ignored).
        if patch_v.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let orig_kind = original.get(&key).map(kind_of);
        if orig_kind != Some(kind_of(&patch_v)) {
            // Missing in the original, or of another type: take the patch value.
            if !is_delete_list {
                discard_null_values(&mut patch_v);
                match remove_directives(patch_v) {
                    Some(v) => {
                        original.insert(key, v);
                    }
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
            continue;
        }

        let (subschema, meta) = schema.lookup(&key);
        let Some(slot) = original.get_mut(&key) else {
            continue;
        };
        match (slot.take(), patch_v) {
            (Value::Object(o), Value::Object(p)) => {
                *slot = Value::Object(if meta.strategy == Some(Strategy::Replace) {
                    p
                } else {
                    merge_map(o, p, subschema)?
                });
            }
            (Value::Array(o), Value::Array(p)) => {
                *slot = Value::Array(merge_slice_handler(
                    o,
                    p,
                    subschema,
                    meta.strategy,
                    meta.merge_key,
                    is_delete_list,
                )?);
            }
            (_, p) => match remove_directives(p) {
                Some(v) => *slot = v,
                None => {
                    original.shift_remove(&key);
                }
            },
        }
    }
    Ok(original)
}

fn handle_directive_in_merge_map(directive: &Value, mut patch: JsonMap) -> Result<JsonMap> {
    match directive.as_str() {
        Some(REPLACE_DIRECTIVE) => {
            // Use the patch as is, without the directive.
            patch.shift_remove(DIRECTIVE_MARKER);
            Ok(patch)
        }
        Some(DELETE_DIRECTIVE) => Ok(Map::new()),
        _ => Err(err_bad_patch_type(directive, &patch)),
    }
}

/// Trims `prefix/` from a directive key.
fn extract_key(s: &str, prefix: &str) -> Result<String> {
    let mut parts = s.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    match parts.next() {
        Some(rest) if first == prefix => Ok(rest.to_string()),
        _ => Err(PatchError::InvalidPatch(
            match prefix {
                DELETE_FROM_PRIMITIVE_LIST_PREFIX => ERR_BAD_FORMAT_PRIMITIVE_LIST,
                _ => ERR_BAD_FORMAT_SET_ELEMENT_ORDER,
            }
            .into(),
        )),
    }
}

/// `$retainKeys`: drops the keys of `original` not in the list; every key
/// set by the patch must be in the list.
fn apply_retain_keys_directive(original: &mut JsonMap, patch: &mut JsonMap) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(list) = retain else {
        return Err(PatchError::InvalidPatch(ERR_BAD_FORMAT_RETAIN_KEYS.into()));
    };
    let retained = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !retained(k) {
            return Err(PatchError::InvalidPatch(ERR_BAD_FORMAT_RETAIN_KEYS.into()));
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// Processes the `$setElementOrder/<field>` directives: merges the field's
/// list and orders the result (`$setElementOrder` order, then patch order,
/// then live order). Removes the handled keys from `patch`.
fn merge_patch_into_original(
    original: &mut JsonMap,
    patch: &mut JsonMap,
    schema: Schema,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in keys {
        let Some(set_order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(set_order_list) = set_order else {
            return Err(err_bad_arg_type("[]interface {}", &set_order));
        };
        let original_key = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?;

        let original_list = match original.get(&original_key) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(err_bad_arg_type("[]interface {}", other)),
        };
        let patch_list = match patch.get(&original_key) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(err_bad_arg_type("[]interface {}", other)),
        };

        let (subschema, meta) = schema.lookup(&original_key);
        let merge_key = meta.merge_key.unwrap_or("");
        validate_patch_with_set_order_list(
            patch_list.as_deref().unwrap_or(&[]),
            &set_order_list,
            merge_key,
        )?;

        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                Some(Value::Array(a)) => a,
                _ => continue,
            },
            (Some(o), Some(p)) => merge_slice_handler(
                o.clone(),
                p.clone(),
                subschema,
                meta.strategy,
                meta.merge_key,
                false,
            )?,
            (None, None) => continue,
        };

        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives_by_present_in_list(merged, &set_order_list)
        } else {
            partition_maps_by_present_in_list(merged, &set_order_list, merge_key)?
        };

        let original_field = original_list.unwrap_or_default();
        let kind = slice_element_type(&[&original_field, patch_list.as_deref().unwrap_or(&[])])?;
        let both = normalize_element_order(
            patch_items,
            server_only,
            &set_order_list,
            &original_field,
            merge_key,
            kind,
        )?;
        original.insert(original_key.clone(), Value::Array(both));
        patch.shift_remove(&original_key);
    }
    Ok(())
}

/// Checks that the items of the patch list appear in the `$setElementOrder`
/// list in the same relative order.
fn validate_patch_with_set_order_list(
    patch_list: &[Value],
    set_order: &[Value],
    merge_key: &str,
) -> Result<()> {
    if set_order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete = if merge_key.is_empty() {
        patch_list.to_vec()
    } else {
        extract_to_delete_items(patch_list.to_vec())?.0
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < set_order.len() {
        if contains_directive_marker(&non_delete[pi]) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[pi], &set_order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= set_order.len() {
        return Err(PatchError::MergeFailed(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}",
            Value::Array(patch_list.to_vec()),
            Value::Array(set_order.to_vec())
        )));
    }
    Ok(())
}

fn contains_directive_marker(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let l = left.as_object().ok_or_else(|| err_bad_arg_map(left))?;
    let r = right.as_object().ok_or_else(|| err_bad_arg_map(right))?;
    let lv = l
        .get(merge_key)
        .ok_or_else(|| err_no_merge_key(l, merge_key))?;
    let rv = r
        .get(merge_key)
        .ok_or_else(|| err_no_merge_key(r, merge_key))?;
    Ok(lv == rv)
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema,
    strategy: Option<Strategy>,
    merge_key: Option<&str>,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    // Delete lists are handled the same way whatever the field's strategy.
    if strategy == Some(Strategy::Merge) || is_delete_list {
        merge_slice(
            original,
            patch,
            schema,
            merge_key.unwrap_or(""),
            is_delete_list,
        )
    } else {
        Ok(patch)
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = slice_element_type(&[&original, &patch])?;

    let (merged, original, patch) = if kind != Kind::Object {
        if is_delete_list {
            return Ok(delete_from_slice(original, &patch));
        }
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        (deduplicate_scalars(both), original, patch)
    } else {
        if merge_key.is_empty() {
            return Err(PatchError::MergeFailed(format!(
                "cannot merge lists without merge key for {}",
                schema_name(schema)
            )));
        }
        let (original, patch) = merge_slice_with_special_elements(original, patch, merge_key)?;
        let merged =
            merge_slice_without_special_elements(original.clone(), &patch, merge_key, schema)?;
        (merged, original, patch)
    };

    // Enforce the order.
    let (patch_items, server_only) = if merge_key.is_empty() {
        partition_primitives_by_present_in_list(merged, &patch)
    } else {
        partition_maps_by_present_in_list(merged, &patch, merge_key)?
    };
    normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)
}

fn schema_name(schema: Schema) -> String {
    match schema.0 {
        Some(ty) => format!("{ty:?}"),
        None => "map".into(),
    }
}

/// Handles the list elements carrying `$patch` (delete / replace) and returns
/// the updated original and the patch without those elements.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut without_special = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(err_bad_arg_map(&v));
        };
        match m.get(DIRECTIVE_MARKER) {
            None => without_special.push(v),
            Some(directive) => match directive.as_str() {
                Some(DELETE_DIRECTIVE) => match m.get(merge_key) {
                    Some(merge_value) => {
                        original = delete_matching_entries(original, merge_key, merge_value)?;
                    }
                    None => return Err(err_no_merge_key(m, merge_key)),
                },
                // Keep going to prune the other `$patch` elements.
                Some(REPLACE_DIRECTIVE) => replace = true,
                Some(MERGE_DIRECTIVE) => {
                    return Err(PatchError::MergeFailed(
                        "merging lists cannot yet be specified in the patch".into(),
                    ))
                }
                _ => return Err(err_bad_patch_type(directive, m)),
            },
        }
    }
    if replace {
        return Ok((without_special, Vec::new()));
    }
    Ok((original, without_special))
}

fn delete_matching_entries(
    mut original: Vec<Value>,
    merge_key: &str,
    merge_value: &Value,
) -> Result<Vec<Value>> {
    while let Some(i) = find_map_in_slice(&original, merge_key, merge_value)? {
        original.remove(i);
    }
    Ok(original)
}

fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    schema: Schema,
) -> Result<Vec<Value>> {
    for v in patch {
        let Value::Object(m) = v else {
            return Err(err_bad_arg_map(v));
        };
        let Some(merge_value) = m.get(merge_key) else {
            return Err(err_no_merge_key(m, merge_key));
        };
        match find_map_in_slice(&original, merge_key, merge_value)? {
            Some(i) => {
                let o = match original[i].take() {
                    Value::Object(o) => o,
                    other => return Err(err_bad_arg_map(&other)),
                };
                original[i] = Value::Object(merge_map(o, m.clone(), schema)?);
            }
            None => original.push(v.clone()),
        }
    }
    Ok(original)
}

fn delete_from_slice(current: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    current
        .into_iter()
        .filter(|v| !to_delete.contains(v))
        .collect()
}

fn find_map_in_slice(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(PatchError::MergeFailed(format!(
                "value for key {i} is not a map."
            )));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn partition_primitives_by_present_in_list(
    list: Vec<Value>,
    by: &[Value],
) -> (Vec<Value>, Vec<Value>) {
    list.into_iter().partition(|v| by.contains(v))
}

fn partition_maps_by_present_in_list(
    list: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::with_capacity(list.len());
    let mut server_only = Vec::with_capacity(list.len());
    for v in list {
        let Value::Object(m) = &v else {
            return Err(err_bad_arg_map(&v));
        };
        let Some(merge_value) = m.get(merge_key) else {
            return Err(err_no_merge_key(m, merge_key));
        };
        if find_map_in_slice(by, merge_key, merge_value)?.is_some() {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// Removes the maps carrying `$patch` (and so the field or element holding
/// them); `None` when `obj` itself is such a map.
fn remove_directives(obj: Value) -> Option<Value> {
    match obj {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = remove_directives(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Drops every null-valued key, recursively through maps and lists.
fn discard_null_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                discard_null_values(v);
            }
        }
        Value::Array(a) => {
            for v in a.iter_mut() {
                discard_null_values(v);
            }
        }
        _ => {}
    }
}

/// The common type of the elements of the slices.
fn slice_element_type(slices: &[&[Value]]) -> Result<Kind> {
    let mut prev: Option<Kind> = None;
    for s in slices {
        for v in s.iter() {
            let k = kind_of(v);
            match prev {
                None => {
                    if k == Kind::Array {
                        return Err(PatchError::Unprocessable(ERR_NO_LIST_OF_LISTS.into()));
                    }
                    if k == Kind::Null {
                        return Err(PatchError::MergeFailed(
                            "list elements must not be null".into(),
                        ));
                    }
                    prev = Some(k);
                }
                Some(p) if p != k => {
                    let all: Vec<Value> = slices.iter().map(|s| Value::Array(s.to_vec())).collect();
                    return Err(PatchError::MergeFailed(format!(
                        "list element types are not identical: {}",
                        Value::Array(all)
                    )));
                }
                Some(_) => {}
            }
        }
    }
    prev.ok_or_else(|| PatchError::MergeFailed("no elements in any of the given slices".into()))
}

/// Upstream's in-place deduplication (which does not keep the order; the
/// order is fixed afterwards by `normalize_element_order`).
fn deduplicate_scalars(mut s: Vec<Value>) -> Vec<Value> {
    let mut length = s.len() as isize - 1;
    let mut i: isize = 0;
    while i < length {
        let mut j = i + 1;
        while j <= length {
            if s[i as usize] == s[j as usize] {
                s[j as usize] = s[length as usize].clone();
                s.truncate(length as usize);
                length -= 1;
                j -= 1;
            }
            j += 1;
        }
        i += 1;
    }
    s
}

/// Splits a list into the items without and with `$patch: delete`.
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut non_delete = Vec::new();
    let mut to_delete = Vec::new();
    for v in list {
        let Value::Object(m) = &v else {
            return Err(err_bad_arg_map(&v));
        };
        if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
            to_delete.push(v);
        } else {
            non_delete.push(v);
        }
    }
    Ok((non_delete, to_delete))
}

fn validate_merge_key_in_lists(merge_key: &str, lists: &[&[Value]]) -> Result<()> {
    for list in lists {
        for item in list.iter() {
            let Value::Object(m) = item else {
                return Err(err_bad_arg_map(item));
            };
            if !m.contains_key(merge_key) {
                return Err(err_no_merge_key(m, merge_key));
            }
        }
    }
    Ok(())
}

/// Position of `val` in `list` (by merge key for maps), like upstream
/// `index`; a missing or null merge key compares equal to another missing
/// one, as Go's nil interface values do.
fn index_of(list: &[Value], val: &Value, merge_key: &str, kind: Kind) -> Option<usize> {
    let target = order_key(val, merge_key, kind);
    list.iter()
        .position(|v| order_key(v, merge_key, kind) == target)
}

fn order_key<'a>(item: &'a Value, merge_key: &str, kind: Kind) -> Option<&'a Value> {
    if kind == Kind::Object {
        item.as_object()
            .and_then(|m| m.get(merge_key))
            .filter(|v| !v.is_null())
    } else {
        Some(item)
    }
}

/// Sorts `patch` by `patch_order` and `server_only` by `server_order`, then
/// interleaves them.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted_slice(
        server_only,
        patch,
        server_order,
        merge_key,
        kind,
    ))
}

/// Interleaves two sorted lists: an item of `left` goes before the current
/// item of `right` when both are found in `server_order` and it comes first
/// there.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Vec<Value> {
    let left_pos: Vec<Option<usize>> = left
        .iter()
        .map(|v| index_of(server_order, v, merge_key, kind))
        .collect();
    let right_pos: Vec<Option<usize>> = right
        .iter()
        .map(|v| index_of(server_order, v, merge_key, kind))
        .collect();
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().zip(left_pos).peekable();
    let mut right = right.into_iter().zip(right_pos).peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some((_, Some(li))), Some((_, Some(ri)))) => li < ri,
            (Some(_), Some(_)) => false,
            _ => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((v, _)) = next {
            out.push(v);
        }
    }
    out.extend(left.map(|(v, _)| v));
    out.extend(right.map(|(v, _)| v));
    out
}

/// Sorts `to_sort` by the order of its items in `order` (stable; items not
/// found are handled like Go's insertion sort with upstream's comparator).
/// `$patch: delete` items go last.
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>> {
    let (to_sort, to_delete) = if kind == Kind::Object {
        validate_merge_key_in_lists(merge_key, &[&to_sort, order])?;
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    let mut items: Vec<(Option<usize>, Value)> = to_sort
        .into_iter()
        .map(|v| (index_of(order, &v, merge_key, kind), v))
        .collect();
    if items.iter().all(|(p, _)| p.is_some()) {
        items.sort_by_key(|(p, _)| *p);
    } else {
        // less(i, j) is "true" unless both are found; emulate insertion sort.
        let less = |a: &Option<usize>, b: &Option<usize>| match (a, b) {
            (Some(a), Some(b)) => a < b,
            _ => true,
        };
        for i in 1..items.len() {
            let mut j = i;
            while j > 0 && less(&items[j].0, &items[j - 1].0) {
                items.swap(j, j - 1);
                j -= 1;
            }
        }
    }
    let mut out: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}
