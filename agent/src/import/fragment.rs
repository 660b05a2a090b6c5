//! A host.toml fragment: imported objects as `[[array]]` tables, written with
//! toml_edit from the typed settings (values are never formatted by hand), keys
//! that equal vznet's defaults left out unless the importer keeps them on purpose
//! (where the source tool's default differs from vznet's).

use serde::Serialize;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

/// One table of the fragment and the comment above it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Comment lines above the table (without `#`).
    pub comment: Vec<String>,
    /// The table's keys.
    pub table: Table,
}

/// A serializable value as a table of inline values, in field order.
pub fn table<T: Serialize>(value: &T) -> Result<Table, toml_edit::ser::Error> {
    Ok(toml_edit::ser::to_document(value)?.into_table())
}

/// The TOML text of an item without its decoration, for comparisons.
fn repr(item: &Item) -> Option<String> {
    let v = item.clone().into_value().ok()?;
    Some(v.decorated("", "").to_string())
}

/// Removes the keys of `table` that equal `defaults`' except those in `keep`.
pub fn prune(table: &mut Table, defaults: &Table, keep: &[&str]) {
    let same: Vec<String> = table
        .iter()
        .filter(|(k, v)| {
            !keep.contains(k)
                && defaults
                    .get(k)
                    .and_then(repr)
                    .is_some_and(|d| Some(d) == repr(v))
        })
        .map(|(k, _)| k.to_string())
        .collect();
    for k in same {
        table.remove(&k);
    }
}

/// Default values written as TOML (`reverse = false`), for [`prune_each`].
pub fn defaults(text: &str) -> Table {
    text.parse::<DocumentMut>()
        .expect("defaults are valid TOML")
        .into_table()
}

/// Passes every inline table in the array at `key` through `f`.
pub fn edit_each(table: &mut Table, key: &str, mut f: impl FnMut(&mut Table)) {
    let Some(Item::Value(Value::Array(a))) = table.get_mut(key) else {
        return;
    };
    for v in a.iter_mut() {
        if let Value::InlineTable(t) = v {
            let mut plain = t.clone().into_table();
            f(&mut plain);
            *t = plain.into_inline_table();
        }
    }
}

/// Removes, from every inline table in the array at `key`, the keys that equal
/// `defaults`'.
pub fn prune_each(table: &mut Table, key: &str, defaults: &Table) {
    edit_each(table, key, |t| prune(t, defaults, &[]));
}

/// Turns the inline table at `key` into a `[parent.key]` sub-table.
pub fn sub_table(table: &mut Table, key: &str) {
    if let Some(Item::Value(Value::InlineTable(t))) = table.get(key).cloned().as_ref() {
        let mut sub = t.clone().into_table();
        sub.set_implicit(false);
        table.insert(key, Item::Table(sub));
    }
}

/// Turns the array of inline tables at `key` into `[[parent.key]]` tables, each
/// passed through `each` first (to prune or lay out its own keys).
pub fn table_array(table: &mut Table, key: &str, mut each: impl FnMut(&mut Table)) {
    let Some(Item::Value(Value::Array(a))) = table.get(key).cloned() else {
        return;
    };
    let mut out = ArrayOfTables::new();
    for v in a.iter() {
        if let Value::InlineTable(t) = v {
            let mut t = t.clone().into_table();
            each(&mut t);
            out.push(t);
        }
    }
    table.insert(key, Item::ArrayOfTables(out));
}

/// Lays inline values out as TOML writes them by default: ` = ` and one space
/// inside braces.
fn tidy(table: &mut Table) {
    for (_, item) in table.iter_mut() {
        match item {
            Item::Value(v) => {
                v.decor_mut().clear();
                if let Value::InlineTable(t) = v {
                    t.fmt();
                }
                if let Value::Array(a) = v {
                    a.fmt();
                }
            }
            Item::Table(t) => tidy(t),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(tidy),
            Item::None => {}
        }
    }
}

/// The document: a header comment, then each `[[name]]` array in the order given.
pub fn document(header: &[String], arrays: Vec<(&str, Vec<Entry>)>) -> DocumentMut {
    let mut doc = DocumentMut::new();
    let mut first = true;
    for (name, entries) in arrays {
        if entries.is_empty() {
            continue;
        }
        let mut aot = ArrayOfTables::new();
        for mut e in entries {
            tidy(&mut e.table);
            let mut prefix = String::new();
            if first {
                for line in header {
                    prefix.push_str(&comment_line(line));
                }
                first = false;
            }
            prefix.push('\n');
            for line in &e.comment {
                prefix.push_str(&comment_line(line));
            }
            e.table.decor_mut().set_prefix(prefix);
            aot.push(e.table);
        }
        doc.insert(name, Item::ArrayOfTables(aot));
    }
    doc
}

/// `# text\n`, with anything that could end the comment made harmless.
fn comment_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.is_empty() {
        "#\n".into()
    } else {
        format!("# {clean}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Thing {
        name: String,
        size: u32,
        tags: Vec<String>,
        inner: Inner,
        list: Vec<Inner>,
    }

    #[derive(Serialize, Clone)]
    struct Inner {
        a: u32,
    }

    #[test]
    fn defaults_go_layout_follows_the_rules() {
        let thing = Thing {
            name: "x\n\"y\"".into(),
            size: 3,
            tags: vec![],
            inner: Inner { a: 1 },
            list: vec![Inner { a: 2 }],
        };
        let defaults = table(&Thing {
            name: String::new(),
            size: 3,
            tags: vec![],
            inner: Inner { a: 0 },
            list: vec![],
        })
        .expect("table");
        let mut t = table(&thing).expect("table");
        prune(&mut t, &defaults, &["size"]);
        sub_table(&mut t, "inner");
        table_array(&mut t, "list", |_| {});
        let doc = document(
            &["head\u{7}".into()],
            vec![(
                "thing",
                vec![Entry {
                    comment: vec!["from a:1".into()],
                    table: t,
                }],
            )],
        );
        let text = doc.to_string();
        let (head, rest) = text.split_once("size = 3").expect("size kept");
        assert!(
            head.starts_with("# head?\n\n# from a:1\n[[thing]]\nname = "),
            "{text}"
        );
        assert_eq!(
            rest, "\n\n[thing.inner]\na = 1\n\n[[thing.list]]\na = 2\n",
            "{text}"
        );
        let back: toml::Value = toml::from_str(&text).expect("parses");
        assert_eq!(back["thing"][0]["name"].as_str(), Some("x\n\"y\""));
    }
}
