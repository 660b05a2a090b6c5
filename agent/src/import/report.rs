//! What an import could not carry over, one item per keyword: shared by every
//! importer (`vznet import keepalived`, and configs of other tools to come).
//!
//! Text: `FILE:LINE: KEYWORD: not carried: WHY`, one line per item, in the order of
//! the source. `--json` prints the same items as objects.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How an item's keyword fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// What the keyword does is lost: the imported config does not do it.
    #[serde(rename = "not carried")]
    NotCarried,
    /// Carried over, but vznet does it differently (the why says how).
    #[serde(rename = "changed")]
    Changed,
    /// The source tool itself does nothing with it here (it ignores the value, or
    /// it only matters with something the config does not use).
    #[serde(rename = "no effect")]
    NoEffect,
}

impl Kind {
    /// The words in a report line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NotCarried => "not carried",
            Kind::Changed => "changed",
            Kind::NoEffect => "no effect",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One keyword of the source that the import reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The source file the keyword is in.
    pub file: PathBuf,
    /// Its line (1-based).
    pub line: u32,
    /// The keyword (`smtp_alert`, `lb_algo sed`).
    pub keyword: String,
    /// Lost, changed, or without effect.
    pub kind: Kind,
    /// Why, and what to do instead when there is something.
    pub why: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}: {}",
            self.file.display(),
            self.line,
            self.keyword,
            self.kind,
            self.why
        )
    }
}

/// Every reported item of one import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Report {
    items: Vec<Item>,
    /// Source files in the order they were read, for sorting.
    #[serde(skip)]
    files: Vec<PathBuf>,
}

impl Report {
    /// Adds an item.
    pub fn add(
        &mut self,
        file: &Path,
        line: u32,
        keyword: impl Into<String>,
        kind: Kind,
        why: impl Into<String>,
    ) {
        self.items.push(Item {
            file: file.to_path_buf(),
            line,
            keyword: keyword.into(),
            kind,
            why: why.into(),
        });
    }

    /// Records that `file` was read (items sort by the order files were read).
    pub fn file_read(&mut self, file: &Path) {
        if !self.files.iter().any(|f| f == file) {
            self.files.push(file.to_path_buf());
        }
    }

    /// The items in source order (files in the order they were read, then lines);
    /// items of one line keep the order they were added in.
    pub fn items(&self) -> Vec<&Item> {
        let mut files: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        for i in &self.items {
            if !files.contains(&i.file.as_path()) {
                files.push(&i.file);
            }
        }
        let mut out: Vec<&Item> = self.items.iter().collect();
        out.sort_by_key(|i| {
            let file = files.iter().position(|f| *f == i.file.as_path());
            (file, i.line)
        });
        out
    }

    /// Whether anything is lost (`--strict` fails then).
    pub fn loses_something(&self) -> bool {
        self.items.iter().any(|i| i.kind == Kind::NotCarried)
    }

    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// One line per item.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for i in self.items() {
            out.push_str(&i.to_string());
            out.push('\n');
        }
        out
    }

    /// The items as a JSON array.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.items()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_source_order() {
        let mut r = Report::default();
        let a = Path::new("a.conf");
        let b = Path::new("b.conf");
        r.file_read(a);
        r.file_read(b);
        r.add(b, 1, "router_id", Kind::NoEffect, "only in alerts");
        r.add(a, 9, "smtp_alert", Kind::NotCarried, "no e-mail");
        r.add(a, 2, "lb_algo sed", Kind::Changed, "wlc");
        assert_eq!(
            r.to_text(),
            "a.conf:2: lb_algo sed: changed: wlc\n\
             a.conf:9: smtp_alert: not carried: no e-mail\n\
             b.conf:1: router_id: no effect: only in alerts\n"
        );
        assert!(r.loses_something());
        assert_eq!(r.to_json()[0]["kind"], "changed");
    }
}
