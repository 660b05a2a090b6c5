//! Bonding module options from modprobe's files (/etc/modprobe.conf,
//! /etc/modprobe.d/*.conf) and /etc/bonding.cfg, which some hosts keep in the
//! same syntax. `options bonding K=V ...` sets the defaults of every bond the
//! module makes (an interface file's own options win, key by key); `alias bond0
//! bonding` with `options bond0 K=V ...` sets one bond's. Lines about other
//! modules are not network config and are left alone.

use std::path::Path;

use super::netdef::{At, BondOption, HostNet};
use super::source::Root;
use crate::import::report::{Kind, Report};

/// Reads every file modprobe would, then /etc/bonding.cfg.
pub fn read(root: &Root, net: &mut HostNet, report: &mut Report) {
    let mut files = vec!["etc/modprobe.conf".to_string()];
    for name in root.list("etc/modprobe.d") {
        if name.ends_with(".conf") {
            files.push(format!("etc/modprobe.d/{name}"));
        }
    }
    files.push("etc/bonding.cfg".to_string());
    let mut lines = Vec::new();
    for rel in &files {
        if let Some((text, file)) = root.read(rel, report) {
            lines.extend(
                logical_lines(&text)
                    .into_iter()
                    .map(|(n, l)| (file.clone(), n, l)),
            );
        }
    }
    // Aliases first: an `options bond0` line may come before its alias.
    let aliases: Vec<String> = lines
        .iter()
        .filter_map(|(_, _, l)| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[0] == "alias" && w[2] == "bonding").then(|| w[1].to_string())
        })
        .collect();
    net.bond_aliases.extend(aliases.iter().cloned());
    for (file, line, text) in &lines {
        statement(file, *line, text, &aliases, net, report);
    }
}

/// Lines with `\` continuations joined and comments dropped: (first line, text).
fn logical_lines(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(u32, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let n = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        let line = if acc.is_empty() && raw.trim_start().starts_with('#') {
            ""
        } else {
            raw
        };
        match line.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(line);
                if !acc.trim().is_empty() {
                    out.push((start, acc.trim().to_string()));
                }
            }
        }
    }
    out
}

fn statement(
    file: &Path,
    line: u32,
    text: &str,
    aliases: &[String],
    net: &mut HostNet,
    report: &mut Report,
) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = At {
        file: file.to_path_buf(),
        line,
    };
    match words.as_slice() {
        ["alias", _, "bonding"] => {}
        ["options", module, opts @ ..]
            if *module == "bonding" || aliases.iter().any(|a| a == module) =>
        {
            let options = opts.iter().map(|w| {
                let (k, v) = w.split_once('=').unwrap_or((w, ""));
                BondOption {
                    key: k.to_string(),
                    value: v.trim_matches('"').to_string(),
                    at: at.clone(),
                }
            });
            if *module == "bonding" {
                net.module_options.extend(options);
            } else {
                net.named_module_options
                    .entry(module.to_string())
                    .or_default()
                    .extend(options);
            }
        }
        [verb, module, ..]
            if (*module == "bonding" || aliases.iter().any(|a| a == module))
                && matches!(*verb, "install" | "remove" | "softdep") =>
        {
            report.add(
                file,
                line,
                format!("{verb} {module}"),
                Kind::NotCarried,
                "a command modprobe runs: vznet runs none",
            )
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_join_and_comments_go() {
        let got = logical_lines("# c\noptions bonding \\\n  miimon=100\n\nalias bond0 bonding\n");
        assert_eq!(
            got,
            vec![
                (2, "options bonding    miimon=100".to_string()),
                (5, "alias bond0 bonding".to_string())
            ]
        );
    }
}
