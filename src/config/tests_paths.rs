//! Unit tests of the `[[client.path]]` tables: every key's checks, and the
//! file, path index and key each error names.

use super::*;
use std::net::IpAddr;
use std::path::Path;

const CLIENT: &str = "mode = \"client\"\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 7000\nserver_ip = \"127.0.0.1\"\nserver_port = 8000\nconnection_pool_size = 4\nbuffer_size = 65536\nenable_zero_rtt = true\n";

const TWO_PATHS: &str = "
[[client.path]]
bind_ip = \"192.0.2.10\"
links = 2

[[client.path]]
bind_ip = \"198.51.100.7\"
interface = \"wwan0\"
links = 2
backup = true
";

fn client(text: &str) -> Result<ClientConfig, ConfigError> {
    match parse(text, Path::new("paths.toml"))? {
        Config::Client(c) => Ok(c),
        Config::Server(_) => panic!("expected a client config"),
    }
}

fn with_paths(paths: &str) -> Result<ClientConfig, ConfigError> {
    client(&format!("{CLIENT}{paths}"))
}

fn error(paths: &str) -> String {
    match with_paths(paths) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_issues_example_loads() {
    let c = with_paths(TWO_PATHS).unwrap();
    assert_eq!(
        c.paths,
        [
            PathConfig {
                bind_ip: Some("192.0.2.10".parse().unwrap()),
                interface: None,
                links: 2,
                backup: false,
            },
            PathConfig {
                bind_ip: Some("198.51.100.7".parse().unwrap()),
                interface: Some("wwan0".into()),
                links: 2,
                backup: true,
            },
        ]
    );
    assert_eq!(c.path_of_slot(0).map(|(i, _)| i), Some(0));
    assert_eq!(c.path_of_slot(1).map(|(i, _)| i), Some(0));
    assert_eq!(c.path_of_slot(2).map(|(i, _)| i), Some(1));
    assert_eq!(c.path_of_slot(3).map(|(i, _)| i), Some(1));
    assert_eq!(c.path_of_slot(4), None);
}

#[test]
fn without_paths_nothing_changes() {
    let c = client(CLIENT).unwrap();
    assert!(c.paths.is_empty());
    assert_eq!(c.path_of_slot(0), None);
    assert_eq!(c.tunnel.scheduler, SchedulerKind::LeastQueued);
}

#[test]
fn paths_make_the_adaptive_scheduler_the_default_but_not_the_rule() {
    let c = with_paths(TWO_PATHS).unwrap();
    assert_eq!(c.tunnel.scheduler, SchedulerKind::Adaptive);
    let text = CLIENT.replace(
        "enable_zero_rtt = true\n",
        "enable_zero_rtt = true\nscheduler = \"least_queued\"\n",
    );
    let c = client(&format!("{text}{TWO_PATHS}")).unwrap();
    assert_eq!(c.tunnel.scheduler, SchedulerKind::LeastQueued);
}

#[test]
fn the_pool_must_be_the_sum_of_the_paths_links() {
    let e = error("[[client.path]]\nbind_ip = \"192.0.2.10\"\nlinks = 3\n");
    assert_eq!(
        e,
        "paths.toml: key `client.connection_pool_size`: 4 does not equal the sum of the \
         paths' `links` (3 = 3): with [[client.path]] tables the pool is exactly their links"
    );
    let e = error(&TWO_PATHS.replace("links = 2\nbackup", "links = 3\nbackup"));
    assert!(e.contains("(2 + 3 = 5)"), "{e}");
}

#[test]
fn each_key_is_checked_and_named_with_its_path() {
    let cases = [
        (
            "[[client.path]]\nbind_ip = \"uplink.example\"\nlinks = 4\n",
            "key `client.path[0].bind_ip`: \"uplink.example\" is not an IP address",
        ),
        (
            "[[client.path]]\nbind_ip = \"::1\"\nlinks = 4\n",
            "key `client.path[0].bind_ip`: ::1 cannot reach the server at 127.0.0.1",
        ),
        (
            "[[client.path]]\nbind_ip = \"10.0.0.1\"\nlinks = 2\n[[client.path]]\ninterface = \"a/b\"\nlinks = 2\n",
            "key `client.path[1].interface`: \"a/b\" is not an interface name",
        ),
        (
            "[[client.path]]\ninterface = \"sixteen-letters-\"\nlinks = 4\n",
            "key `client.path[0].interface`",
        ),
        (
            "[[client.path]]\ninterface = \"\"\nlinks = 4\n",
            "key `client.path[0].interface`",
        ),
        (
            "[[client.path]]\nlinks = 4\n",
            "key `client.path[0]`: a path needs `bind_ip`, `interface` or both",
        ),
        (
            "[[client.path]]\nbind_ip = \"10.0.0.1\"\nlinks = 0\n",
            "key `client.path[0].links`: 0 is out of range: must be between 1 and 256",
        ),
        (
            "[[client.path]]\nbind_ip = \"10.0.0.1\"\nlinks = 4\nbackup = true\n",
            "key `client.path`: every path is a backup",
        ),
    ];
    for (paths, want) in cases {
        let e = error(paths);
        assert!(e.starts_with("paths.toml: "), "{e}");
        assert!(e.contains(want), "{paths}\n=> {e}\nwanted {want}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_name_their_line() {
    let e = error("[[client.path]]\nbind_ip = \"10.0.0.1\"\nlinks = 4\nweight = 3\n");
    assert!(e.contains("unknown key `client.path"), "{e}");
    assert!(
        e.starts_with("paths.toml:13: "),
        "the line of `weight`: {e}"
    );
    let e = error("[[client.path]]\nbind_ip = \"10.0.0.1\"\nlinks = \"four\"\n");
    assert!(e.contains("links"), "{e}");
    let e = error("[[client.path]]\nbind_ip = \"10.0.0.1\"\n");
    assert!(e.contains("missing key") && e.contains("links"), "{e}");
}

#[test]
fn ipv6_sources_go_with_an_ipv6_server() {
    let text = CLIENT.replace("server_ip = \"127.0.0.1\"", "server_ip = \"::1\"");
    let c = client(&format!(
        "{text}[[client.path]]\nbind_ip = \"[::1]\"\nlinks = 4\n"
    ))
    .unwrap();
    assert_eq!(
        c.paths[0].bind_ip,
        Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
    );
}

#[test]
fn described_paths_load_back_the_same() {
    let c = with_paths(TWO_PATHS).unwrap();
    let text = c.describe();
    assert!(
        text.contains(
            "path = [{ bind_ip = \"192.0.2.10\", links = 2, backup = false }, \
             { bind_ip = \"198.51.100.7\", interface = \"wwan0\", links = 2, backup = true }]"
        ),
        "{text}"
    );
    assert_eq!(client(&text).unwrap(), c);
}

#[test]
fn the_example_files_paths_load_once_uncommented() {
    let example = include_str!("../../etc/config.client.toml");
    let keys = ["[[client.path]]", "bind_ip", "interface", "links", "backup"];
    let text: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest,
            _ => l,
        })
        .map(|l| {
            if l.starts_with("connection_pool_size") {
                "connection_pool_size = 4"
            } else if l.starts_with("secret_file") || l.starts_with("encrypt") {
                // The secret is beside the example, not beside this test.
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = client(&text).unwrap();
    assert_eq!(c.paths.len(), 2);
    assert!(c.paths[1].backup);
}
