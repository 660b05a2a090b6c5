//! keepalived.conf's structure: each line is a keyword with its arguments, and a
//! line followed by `{` owns the lines up to the matching `}` (keepalived's
//! `process_stream` and `alloc_value_block` read nested blocks and value lists
//! that way).

use super::lexer::{Line, Location};
use super::words::words;
use crate::import::report::{Kind, Report};

/// One keyword line and the block it opens, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where the line is.
    pub at: Location,
    /// Its words (`words[0]` is the keyword).
    pub words: Vec<String>,
    /// The line as read, for keywords that split it their own way (scripts).
    pub text: String,
    /// The block after it.
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The keyword.
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// Argument `n` (1 is the first after the keyword).
    pub fn arg(&self, n: usize) -> Option<&str> {
        self.words.get(n).map(String::as_str)
    }

    /// The block's lines (none without a block).
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// The top-level keywords with their blocks; stray braces are reported.
pub fn parse(lines: Vec<Line>, report: &mut Report) -> Vec<Node> {
    let mut it = lines.into_iter().peekable();
    let mut top = Vec::new();
    while let Some(line) = it.next() {
        match line.text.as_str() {
            "}" => report.add(
                &line.at.file,
                line.at.line,
                "}",
                Kind::NoEffect,
                "closes no block (keepalived ignores it)",
            ),
            "{" => {
                let skipped = block(&mut it, &line, report);
                report.add(
                    &line.at.file,
                    line.at.line,
                    "{",
                    Kind::NotCarried,
                    format!(
                        "a block without a keyword ({} lines; keepalived ignores the brace and reads them as top-level keywords)",
                        skipped.len()
                    ),
                );
            }
            _ => top.push(node(line, &mut it, report)),
        }
    }
    top
}

fn node(
    line: Line,
    it: &mut std::iter::Peekable<impl Iterator<Item = Line>>,
    report: &mut Report,
) -> Node {
    let block = match it.peek() {
        Some(next) if next.text == "{" => {
            let open = it.next().unwrap_or_else(|| line.clone());
            Some(block(it, &open, report))
        }
        _ => None,
    };
    Node {
        words: words(&line.text),
        at: line.at,
        text: line.text,
        block,
    }
}

/// The lines of a block whose `{` was just read, up to its `}`.
fn block(
    it: &mut std::iter::Peekable<impl Iterator<Item = Line>>,
    open: &Line,
    report: &mut Report,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    while let Some(line) = it.next() {
        match line.text.as_str() {
            "}" => return nodes,
            "{" => {
                let inner = block(it, &line, report);
                nodes.extend(inner);
            }
            _ => nodes.push(node(line, it, report)),
        }
    }
    report.add(
        &open.at.file,
        open.at.line,
        "{",
        Kind::NoEffect,
        "the block is not closed before the end of the file",
    );
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lines(text: &str) -> Vec<Line> {
        let file: Arc<std::path::Path> = Arc::from(std::path::Path::new("k.conf"));
        text.lines()
            .enumerate()
            .map(|(n, t)| Line {
                at: Location {
                    file: file.clone(),
                    line: n as u32 + 1,
                },
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn blocks_nest() {
        let mut r = Report::default();
        let tree = parse(
            lines(
                "vrrp_instance VI_1\n{\ninterface eth0\nvirtual_ipaddress\n{\n10.0.0.1/24\n}\n}\n}",
            ),
            &mut r,
        );
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].arg(1), Some("VI_1"));
        let inner = tree[0].children();
        assert_eq!(inner[0].words, ["interface", "eth0"]);
        assert_eq!(inner[1].children()[0].keyword(), "10.0.0.1/24");
        assert_eq!(
            r.to_text(),
            "k.conf:9: }: no effect: closes no block (keepalived ignores it)\n"
        );
    }
}
