//! Config files kept with their text, so that every error can name file, line,
//! column and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, Value};

/// One segment of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// `bridge`
    Key(String),
    /// `[2]`
    Index(usize),
}

/// A key path such as `bridge[1].ports[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The path `key`.
    pub fn key(key: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(key.to_string())])
    }

    /// This path extended by a key.
    pub fn k(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }

    /// This path extended by an index.
    pub fn i(&self, index: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if k.contains(['.', ' ', '"']) => write!(f, "{}\"{k}\"", dot(n))?,
                Seg::Key(k) => write!(f, "{}{k}", dot(n))?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

fn dot(n: usize) -> &'static str {
    if n == 0 {
        ""
    } else {
        "."
    }
}

/// A position in a file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A parsed config file with its text.
#[derive(Debug)]
pub struct SourceFile {
    path: PathBuf,
    text: String,
    /// Parsed with spans only when an error must be located: keeping a
    /// span-preserving document per file costs ~10 KiB each, a lot for 1000 VEs.
    doc: std::sync::OnceLock<Option<Document<String>>>,
}

impl Clone for SourceFile {
    /// The text and path; spans are parsed again if an error needs them.
    fn clone(&self) -> SourceFile {
        SourceFile::new(&self.path, self.text.clone())
    }
}

impl SourceFile {
    /// Keeps `text` from `path`.
    pub fn new(path: &Path, text: String) -> SourceFile {
        SourceFile {
            path: path.to_path_buf(),
            text,
            doc: std::sync::OnceLock::new(),
        }
    }

    /// The span-preserving document; `None` on a TOML syntax error (the typed
    /// parse reports that error).
    pub(super) fn doc(&self) -> Option<&Document<String>> {
        self.doc
            .get_or_init(|| Document::parse(self.text.clone()).ok())
            .as_ref()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Line and column of a byte offset.
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: self.path.clone(),
            line,
            column,
        }
    }

    /// Where `path` is written; the nearest enclosing key if the path itself is
    /// absent; the file's start if nothing matches.
    pub fn locate(&self, path: &KeyPath) -> Location {
        let mut best: Option<Range<usize>> = None;
        if let Some(doc) = self.doc() {
            let mut node = Node::Table(doc.as_table());
            for seg in &path.0 {
                match node.child(seg) {
                    Some((next, span)) => {
                        best = span.or(best);
                        node = next;
                    }
                    None => break,
                }
            }
        }
        self.location(best.map_or(0, |s| s.start))
    }

    /// The key path of the innermost entry whose span contains byte `offset`.
    pub fn path_at(&self, offset: usize) -> KeyPath {
        let mut path = KeyPath::default();
        if let Some(doc) = self.doc() {
            let mut node = Node::Table(doc.as_table());
            'descend: loop {
                let children = node.children();
                for (seg, child, span) in &children {
                    if span
                        .as_ref()
                        .is_some_and(|s| s.contains(&offset) || s.end == offset)
                        || child.span().is_some_and(|s| s.contains(&offset))
                    {
                        path.0.push(seg.clone());
                        node = *child;
                        continue 'descend;
                    }
                }
                // Table headers' spans do not cover their bodies: fall back to the
                // child that starts last before the offset.
                let start = |(_, child, span): &(Seg, Node, Option<Range<usize>>)| {
                    span.as_ref().map(|s| s.start).or_else(|| child.start())
                };
                let last = children
                    .iter()
                    .filter(|c| start(c).is_some_and(|st| st <= offset))
                    .max_by_key(|c| start(c));
                if let Some((seg, child, _)) = last {
                    if matches!(child, Node::Table(_) | Node::Item(Item::ArrayOfTables(_))) {
                        path.0.push(seg.clone());
                        node = *child;
                        continue 'descend;
                    }
                }
                break;
            }
        }
        path
    }
}

/// A borrowed position in a toml_edit document; array-of-tables entries are
/// tables with no `Item` of their own, hence the three cases.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a Item),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }

    /// Where the node starts; an array of tables at its first entry.
    fn start(&self) -> Option<usize> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => {
                a.iter().next().and_then(|t| t.span()).map(|s| s.start)
            }
            other => other.span().map(|s| s.start),
        }
    }

    fn from_item(item: &'a Item) -> Node<'a> {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::Value(v) => Node::Value(v),
            other => Node::Item(other),
        }
    }

    /// The child at `seg` and the span that best names it (its key, else itself).
    fn child(&self, seg: &Seg) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match (seg, *self) {
            (Seg::Key(k), Node::Table(t)) => t
                .get_key_value(k)
                .map(|(key, v)| (Node::from_item(v), key.span().or_else(|| v.span()))),
            (Seg::Key(k), Node::Value(Value::InlineTable(t))) => t
                .get_key_value(k)
                .map(|(key, v)| (Node::from_item(v), key.span().or_else(|| v.span()))),
            (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => {
                a.get(*i).map(|t| (Node::Table(t), t.span()))
            }
            (Seg::Index(i), Node::Value(Value::Array(a))) => {
                a.get(*i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        }
    }

    /// All children with their segment and key span.
    fn children(&self) -> Vec<(Seg, Node<'a>, Option<Range<usize>>)> {
        match *self {
            Node::Table(t) => t
                .iter()
                .filter_map(|(k, _)| {
                    let (key, v) = t.get_key_value(k)?;
                    Some((Seg::Key(k.to_string()), Node::from_item(v), key.span()))
                })
                .collect(),
            Node::Value(Value::InlineTable(t)) => t
                .iter()
                .filter_map(|(k, _)| {
                    let (key, v) = t.get_key_value(k)?;
                    Some((Seg::Key(k.to_string()), Node::from_item(v), key.span()))
                })
                .collect(),
            Node::Item(Item::ArrayOfTables(a)) => a
                .iter()
                .enumerate()
                .map(|(i, t)| (Seg::Index(i), Node::Table(t), t.span()))
                .collect(),
            Node::Value(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (Seg::Index(i), Node::Value(v), v.span()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
