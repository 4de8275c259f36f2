//! The client's `[[client.path]]` tables: the uplinks its links leave by.
//! Each error names the path by its index (`client.path[1].bind_ip`), the
//! order in which the file lists them.

use super::error::{ConfigError, ErrorKind};
use super::raw::RawPath;
use super::types::{POOL_SIZE_MAX, PathConfig};
use crate::util::net::parse_ip;
use std::net::IpAddr;

/// Longest interface name Linux accepts (`IFNAMSIZ` less the NUL).
const INTERFACE_NAME_MAX: usize = 15;

/// Checks the paths against each other, the pool size and the server's
/// address (an IP literal there must be of the paths' address family).
pub(super) fn validate(
    file: &str,
    raw: Vec<RawPath>,
    pool_size: usize,
    server_ip: Option<IpAddr>,
) -> Result<Vec<PathConfig>, ConfigError> {
    let paths = raw
        .into_iter()
        .enumerate()
        .map(|(i, p)| validate_one(file, i, p, server_ip))
        .collect::<Result<Vec<_>, _>>()?;
    if paths.is_empty() {
        return Ok(paths);
    }
    if paths.iter().all(|p| p.backup) {
        return Err(path_err(
            file,
            "client.path",
            "every path is a backup (`backup = true`): at least one must carry data".into(),
        ));
    }
    let total: usize = paths.iter().map(|p| p.links).sum();
    if total != pool_size {
        let parts: Vec<String> = paths.iter().map(|p| p.links.to_string()).collect();
        return Err(path_err(
            file,
            "client.connection_pool_size",
            format!(
                "{pool_size} does not equal the sum of the paths' `links` ({} = {total}): \
                 with [[client.path]] tables the pool is exactly their links",
                parts.join(" + ")
            ),
        ));
    }
    Ok(paths)
}

fn validate_one(
    file: &str,
    i: usize,
    raw: RawPath,
    server_ip: Option<IpAddr>,
) -> Result<PathConfig, ConfigError> {
    let key = |name: &str| format!("client.path[{i}].{name}");
    let bind_ip = match &raw.bind_ip {
        None => None,
        Some(text) => {
            let ip = parse_ip(text).ok_or_else(|| {
                path_err(
                    file,
                    &key("bind_ip"),
                    format!(
                        "{text:?} is not an IP address (a source address must be an IP literal)"
                    ),
                )
            })?;
            if let Some(server) = server_ip
                && server.is_ipv4() != ip.is_ipv4()
            {
                return Err(path_err(
                    file,
                    &key("bind_ip"),
                    format!("{ip} cannot reach the server at {server}: another address family"),
                ));
            }
            Some(ip)
        }
    };
    let interface = match raw.interface {
        None => None,
        Some(name) => {
            Some(check_interface(&name).map_err(|m| path_err(file, &key("interface"), m))?)
        }
    };
    if bind_ip.is_none() && interface.is_none() {
        return Err(path_err(
            file,
            &format!("client.path[{i}]"),
            "a path needs `bind_ip`, `interface` or both: otherwise its links take the \
             default route like any other"
                .into(),
        ));
    }
    let links = usize::try_from(raw.links)
        .ok()
        .filter(|_| (1..=POOL_SIZE_MAX).contains(&raw.links))
        .ok_or_else(|| {
            path_err(
                file,
                &key("links"),
                format!(
                    "{} is out of range: must be between 1 and {POOL_SIZE_MAX}",
                    raw.links
                ),
            )
        })?;
    Ok(PathConfig {
        bind_ip,
        interface,
        links,
        backup: raw.backup.unwrap_or(false),
    })
}

/// A network interface name as Linux accepts it.
fn check_interface(name: &str) -> Result<String, String> {
    let bad_char = name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if name.is_empty() || name.len() > INTERFACE_NAME_MAX || bad_char || name == "." || name == ".."
    {
        return Err(format!(
            "{name:?} is not an interface name (1-{INTERFACE_NAME_MAX} characters, no '/', ':' or spaces)"
        ));
    }
    Ok(name.to_owned())
}

fn path_err(file: &str, key: &str, msg: String) -> ConfigError {
    ConfigError::new(file, None, Some(key.to_owned()), ErrorKind::Invalid(msg))
}
