//! Deep merging of JSON configuration values.

use serde_json::{Map, Value};

/// Deep-merges `override_` over `base` and returns the result; neither input changes.
///
/// - When both are objects, keys are merged one by one: a key whose values are objects on both
///   sides is merged recursively, any other key takes the override's value.
/// - Otherwise the override replaces the base wholesale. That includes `null` and arrays: arrays are
///   replaced, not concatenated.
///
/// The merge walks nested objects with an explicit work list rather than recursion, so its own
/// depth is unbounded. Cloning and dropping a `Value` still recurse inside `serde_json`; values that
/// come from `serde_json` parsing are at most 128 levels deep, which both handle.
///
/// ```
/// use psm_core::util::merge_configs;
/// use serde_json::json;
///
/// let base = json!({"redis": {"host": "a", "port": 6379}, "tags": ["x"], "ttl": 60});
/// let over = json!({"redis": {"host": "b"}, "tags": ["y"], "ttl": null});
/// assert_eq!(
///     merge_configs(&base, &over),
///     json!({"redis": {"host": "b", "port": 6379}, "tags": ["y"], "ttl": null})
/// );
/// ```
pub fn merge_configs(base: &Value, override_: &Value) -> Value {
    let mut merged = base.clone();
    merge_configs_in_place(&mut merged, override_);
    merged
}

/// [`merge_configs`] into `base` itself, cloning only what the override brings.
pub fn merge_configs_in_place(base: &mut Value, override_: &Value) {
    match (base, override_) {
        (Value::Object(dst), Value::Object(src)) => merge_maps(dst, src),
        (base, _) => *base = override_.clone(),
    }
}

type Object = Map<String, Value>;

fn merge_maps(dst: &mut Object, src: &Object) {
    let mut work: Vec<(&mut Object, &Object)> = vec![(dst, src)];
    while let Some((dst, src)) = work.pop() {
        for (key, value) in src {
            match dst.get_mut(key) {
                // Both sides are objects: merged below, after the plain assignments.
                Some(Value::Object(_)) if value.is_object() => {}
                Some(slot) => *slot = value.clone(),
                None => {
                    dst.insert(key.clone(), value.clone());
                }
            }
        }
        // `iter_mut` hands out disjoint borrows of the children, which the work list can then hold.
        for (key, child) in dst.iter_mut() {
            if let (Value::Object(d), Some(Value::Object(s))) = (child, src.get(key)) {
                work.push((d, s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn deep_merge_rules() {
        let base = json!({"a": 1, "b": {"c": 2, "d": {"e": 3}}, "arr": [1, 2], "keep": true});
        let over = json!({"a": 10, "b": {"d": {"f": 4}, "g": 5}, "arr": [3], "new": {"x": 1}});
        assert_eq!(
            merge_configs(&base, &over),
            json!({"a": 10, "b": {"c": 2, "d": {"e": 3, "f": 4}, "g": 5}, "arr": [3], "keep": true, "new": {"x": 1}})
        );
    }

    #[test]
    fn non_objects_replace() {
        assert_eq!(merge_configs(&json!({"a": 1}), &json!(5)), json!(5));
        assert_eq!(merge_configs(&json!(5), &json!({"a": 1})), json!({"a": 1}));
        assert_eq!(
            merge_configs(&json!({"a": {"b": 1}}), &json!({"a": null})),
            json!({"a": null})
        );
        assert_eq!(
            merge_configs(&json!({"a": {"b": 1}}), &json!({"a": [1]})),
            json!({"a": [1]})
        );
        assert_eq!(
            merge_configs(&json!({"a": 1}), &json!({"a": {"b": 1}})),
            json!({"a": {"b": 1}})
        );
        assert_eq!(merge_configs(&json!({"a": 1}), &json!({})), json!({"a": 1}));
    }

    #[test]
    fn inputs_are_untouched_and_in_place_agrees() {
        let base = json!({"a": {"b": 1}});
        let over = json!({"a": {"c": 2}});
        let merged = merge_configs(&base, &over);
        assert_eq!(base, json!({"a": {"b": 1}}));
        let mut in_place = base.clone();
        merge_configs_in_place(&mut in_place, &over);
        assert_eq!(in_place, merged);
    }

    #[test]
    fn deep_nesting_from_a_parser_merges() {
        let depth = 120;
        let nested = |leaf: &str| format!("{}{leaf}{}", "{\"k\":".repeat(depth), "}".repeat(depth));
        let base: Value = serde_json::from_str(&nested("{\"a\":1}")).unwrap();
        let over: Value = serde_json::from_str(&nested("{\"b\":2}")).unwrap();
        let merged = merge_configs(&base, &over);
        let mut leaf = &merged;
        for _ in 0..depth {
            leaf = &leaf["k"];
        }
        assert_eq!(leaf, &json!({"a": 1, "b": 2}));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from)
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn override_keys_win_and_base_keys_survive(base in value(), over in value()) {
            let merged = merge_configs(&base, &over);
            match (&base, &over) {
                (Value::Object(b), Value::Object(o)) => {
                    let m = merged.as_object().unwrap();
                    prop_assert!(b.keys().chain(o.keys()).all(|k| m.contains_key(k)));
                    prop_assert_eq!(m.len(), b.keys().chain(o.keys().filter(|k| !b.contains_key(*k))).count());
                    for (k, v) in o {
                        if !(v.is_object() && b.get(k).is_some_and(Value::is_object)) {
                            prop_assert_eq!(&m[k], v);
                        }
                    }
                }
                _ => prop_assert_eq!(&merged, &over),
            }
        }

        #[test]
        fn merging_with_itself_or_empty_is_identity(v in value()) {
            prop_assert_eq!(merge_configs(&v, &v), v.clone());
            if v.is_object() {
                prop_assert_eq!(merge_configs(&v, &json!({})), v.clone());
                prop_assert_eq!(merge_configs(&json!({}), &v), v);
            }
        }
    }
}
