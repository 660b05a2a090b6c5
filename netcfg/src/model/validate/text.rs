//! Checks of the text itself, whatever the key: a NUL byte. TOML has no raw NUL,
//! but `"\u0000"` writes one, and no name, path, argument or value vznet hands
//! the kernel or a program can hold it (interface and netns names, host names,
//! hook and script arguments, sysctl keys: each would be cut short or refused
//! at apply time).

use toml_edit::{Item, Table, Value};

use super::{Checker, KeyPath, SourceFile};

/// Reports every key and string value of `source` that holds a NUL byte.
pub(super) fn check_nul_bytes(c: &mut Checker, source: &SourceFile) {
    // The escapes are the only way to write one: skip the walk when neither is there.
    let text = source.text();
    if !text.contains("\\u0000") && !text.contains("\\U00000000") {
        return;
    }
    let Some(doc) = source.doc() else { return };
    let mut found = Vec::new();
    table(doc.as_table(), &KeyPath::default(), &mut found);
    for path in found {
        c.error(
            source,
            &path,
            "contains a NUL byte (\\u0000): no name or value can hold one".into(),
        );
    }
}

fn table(t: &Table, path: &KeyPath, found: &mut Vec<KeyPath>) {
    for (key, item) in t.iter() {
        let p = path.k(key);
        if key.contains('\0') {
            found.push(p.clone());
        }
        match item {
            Item::Table(t) => table(t, &p, found),
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    table(t, &p.i(i), found);
                }
            }
            Item::Value(v) => value(v, &p, found),
            Item::None => {}
        }
    }
}

fn value(v: &Value, path: &KeyPath, found: &mut Vec<KeyPath>) {
    match v {
        Value::String(s) if s.value().contains('\0') => found.push(path.clone()),
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                value(v, &path.i(i), found);
            }
        }
        Value::InlineTable(t) => {
            for (key, v) in t.iter() {
                let p = path.k(key);
                if key.contains('\0') {
                    found.push(p.clone());
                }
                value(v, &p, found);
            }
        }
        _ => {}
    }
}
