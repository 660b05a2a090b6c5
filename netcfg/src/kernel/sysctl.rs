//! Sysctls through /proc/sys (netlink devconf drops zero values, see KERNEL-NOTES).
//! Files resolve in the netns of the thread that opens them: vznet only writes the
//! host netns's, from its own threads.

use std::io;
use std::path::Path;

/// The value of a sysctl file, whitespace-normalised; `None` if it does not exist.
pub fn read(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(normalise(&s))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a sysctl.
pub fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value.as_bytes())
}

/// Tabs and runs of spaces become one space, so `"4096\t87380"` equals `"4096 87380"`.
pub fn normalise(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}
