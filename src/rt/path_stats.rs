//! Per-path figures of a client that bonds uplinks (`[[client.path]]`):
//! what each uplink carries, its round trip and what it re-sent for the
//! others, for the stats lines and the metrics endpoint.
//!
//! A path's counters must only grow, while its links come and go: each
//! link's own counters are added to its path's totals when it ends
//! (`rt::counters::EndedPaths`), and a snapshot adds the live links'
//! counters to those.

use crate::rt::counters::{EndedPaths, PathTotals};

/// What the config says of a path, for labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    /// The source address and/or device, as configured.
    pub source: String,
    pub backup: bool,
}

/// One path at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSnapshot {
    pub index: u16,
    pub info: PathInfo,
    /// Its links up now, over all sessions.
    pub links: usize,
    /// Ended links and live links together.
    pub totals: PathTotals,
    /// The lowest smoothed round trip of its live links, µs (0 = none
    /// measured).
    pub srtt_us: u64,
}

/// What a snapshot needs of one live link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLink {
    pub path: Option<u16>,
    pub totals: PathTotals,
    pub srtt_us: u64,
}

/// Each configured path's figures from the live links in `links` and the
/// totals of those that ended.
pub fn snapshot(paths: &[PathInfo], ended: &EndedPaths, links: &[LiveLink]) -> Vec<PathSnapshot> {
    paths
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let index = u16::try_from(i).unwrap_or(u16::MAX);
            let mine = links.iter().filter(|l| l.path == Some(index));
            let mut totals = ended.get(i);
            let (mut count, mut srtt_us) = (0, 0);
            for l in mine {
                totals.add(l.totals);
                count += 1;
                if l.srtt_us > 0 && (srtt_us == 0 || l.srtt_us < srtt_us) {
                    srtt_us = l.srtt_us;
                }
            }
            PathSnapshot {
                index,
                info: info.clone(),
                links: count,
                totals,
                srtt_us,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(n: u64) -> PathTotals {
        PathTotals {
            bytes_out: n,
            bytes_in: 2 * n,
            frames_resent: 3 * n,
            bytes_resent: 4 * n,
        }
    }

    #[test]
    fn a_paths_counters_keep_what_its_ended_links_carried() {
        let paths = [
            PathInfo {
                source: "192.0.2.10".into(),
                backup: false,
            },
            PathInfo {
                source: "wwan0".into(),
                backup: true,
            },
        ];
        let ended = EndedPaths::default();
        ended.link_ended(0, totals(10));
        let live = [
            LiveLink {
                path: Some(0),
                totals: totals(1),
                srtt_us: 9000,
            },
            LiveLink {
                path: Some(0),
                totals: totals(2),
                srtt_us: 7000,
            },
            LiveLink {
                path: Some(1),
                totals: totals(5),
                srtt_us: 0,
            },
            LiveLink {
                path: None,
                totals: totals(100),
                srtt_us: 1,
            },
        ];
        let snap = snapshot(&paths, &ended, &live);
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].links, 2);
        assert_eq!(snap[0].totals, totals(13));
        assert_eq!(snap[0].srtt_us, 7000, "the lowest measured");
        assert_eq!(snap[1].links, 1);
        assert_eq!(snap[1].totals, totals(5));
        assert_eq!(snap[1].srtt_us, 0, "none measured");
        assert!(snap[1].info.backup);
        let none = snapshot(&paths, &ended, &[]);
        assert_eq!(none[0].totals, totals(10), "ended links still count");
        assert_eq!(none[0].links, 0);
    }
}
