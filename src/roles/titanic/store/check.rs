//! The report for people of what `pirate titanic --check` found ([`Check::lines`]): one fact a
//! line, naming the store's files, so it stays with the store. The check itself and what
//! reading a log back found ([`Recovery`](super::Recovery)) are plain data in the event layer
//! (`event::store`), which carries them to the renderer.

use std::path::Path;

use super::{Check, DAMAGED_PREFIX, NEW_FILE};

impl Check {
    /// The report for people, one fact a line: what a start would keep, cut off and set
    /// aside, then the verdict.
    pub fn lines(&self, dir: &Path) -> Vec<String> {
        let r = &self.recovery;
        let mut lines = vec![
            format!(
                "store {}: {} bytes of log, {} valid records",
                dir.display(),
                self.log_bytes,
                r.records
            ),
            format!(
                "keep: {} entries ({} pending, {} answered)",
                self.entries,
                self.pending,
                self.entries - self.pending
            ),
        ];
        if r.duplicates > 0 {
            lines.push(format!(
                "ignore: {} duplicated records (they change nothing)",
                r.duplicates
            ));
        }
        if r.torn_bytes > 0 {
            lines.push(format!(
                "cut off: an incomplete record of {} bytes at the end (a write interrupted by \
                 a crash, never acknowledged)",
                r.torn_bytes
            ));
        }
        if r.damaged() {
            lines.push(format!(
                "set aside: {} damaged {}, {}{} lost; a start keeps every valid record and sets \
                 the damaged log aside as {DAMAGED_PREFIX}N",
                r.damage.len(),
                if r.damage.len() == 1 {
                    "stretch"
                } else {
                    "stretches"
                },
                if r.damage.iter().all(|d| d.exact) {
                    ""
                } else {
                    "at least "
                },
                match r.lost_records() {
                    1 => "1 record".to_string(),
                    n => format!("{n} records"),
                }
            ));
            lines.extend(r.describe(usize::MAX));
        }
        if self.stale_new {
            lines.push(format!(
                "delete: {NEW_FILE}, left by a compaction that crashed before its rename"
            ));
        }
        for path in &self.set_aside_before {
            lines.push(format!(
                "note: {} is a damaged log set aside by an earlier start",
                path.display()
            ));
        }
        lines.push(if r.damaged() {
            "verdict: damaged".to_string()
        } else {
            "verdict: clean".to_string()
        });
        lines
    }
}
