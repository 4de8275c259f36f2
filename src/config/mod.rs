//! Configuration files: reading, checking and the typed settings the daemons run on.
//!
//! The file format is the specification's: a top-level `mode = "server"` (or
//! `"client"`) and one `[server]` (or `[client]`) table holding every key. The
//! specification's keys are required; every other tunable has a documented
//! default (see `etc/config.*.toml`).
//!
//! Loading happens in two steps so that each kind of mistake gets a precise
//! message. First serde reads the text into "raw" structs that mirror the file
//! exactly (`deny_unknown_fields`, required keys are plain fields, optional ones
//! `Option`), which catches syntax errors, missing keys, unknown keys and wrong
//! types. Then validation turns raw values into the runtime structs
//! ([`ServerConfig`], [`ClientConfig`]) and checks ranges and relations between
//! keys. Every error is a single line naming the file and the `table.key`, so a
//! user can fix it without reading the source.
//!
//! Each concern has its own file, in the order a file passes through them:
//! `raw` (the file's shape), `validate` (ranges, relations, secrets and
//! addresses; `paths` for the client's uplinks) and `types` (what the daemons run on); `error` words every
//! rejection, and `describe` turns settings back into a file for
//! `mtcp check` and the SIGHUP reload.

mod describe;
mod error;
mod paths;
mod raw;
mod types;
mod validate;

pub use error::ConfigError;
pub use types::{
    ClientConfig, Config, DuplicateMode, Endpoint, LogLevel, OpsConfig, PathConfig, Role,
    SchedulerKind, ServerConfig, TunnelConfig,
};

use error::{ErrorKind, from_toml_error};
use raw::{Mode, RawClientFile, RawHead, RawServerFile};
use std::path::Path;
use validate::Ctx;

/// Reads and checks a config file of either mode (what `mtcp check` needs).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(&path.display().to_string(), None, None, ErrorKind::Read(e))
    })?;
    parse(&text, path)
}

/// Reads a config file for `mtcp server`; a client file is an error, because
/// starting the wrong daemon silently would be worse than refusing.
pub fn load_server(path: &Path) -> Result<ServerConfig, ConfigError> {
    match load(path)? {
        Config::Server(c) => Ok(c),
        Config::Client(_) => Err(mode_mismatch(path, Role::Client, Role::Server)),
    }
}

/// Reads a config file for `mtcp client`; a server file is an error, because
/// starting the wrong daemon silently would be worse than refusing.
pub fn load_client(path: &Path) -> Result<ClientConfig, ConfigError> {
    match load(path)? {
        Config::Client(c) => Ok(c),
        Config::Server(_) => Err(mode_mismatch(path, Role::Server, Role::Client)),
    }
}

fn mode_mismatch(path: &Path, found: Role, wanted: Role) -> ConfigError {
    ConfigError::new(
        &path.display().to_string(),
        None,
        Some("mode".to_owned()),
        ErrorKind::Invalid(format!("\"{found}\" does not match `mtcp {wanted}`")),
    )
}

/// Parses config text; `origin` only names the file in error messages.
/// Separate from [`load`] so tests need no files.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let file = origin.display().to_string();
    let toml_err = |e: toml::de::Error| from_toml_error(&file, text, &e);
    // Pass 1 reads only the top level, so that a wrong or missing mode, or a
    // table of the other mode, is reported as such instead of as errors
    // inside a table that should not be there at all.
    let head: RawHead = toml::from_str(text).map_err(toml_err)?;
    let ctx = |table: &'static str| Ctx { file: &file, table };
    match head.mode {
        Mode::Server => {
            if head.client.is_some() {
                return Err(stray_table(&file, "client", Role::Server));
            }
            if head.server.is_none() {
                return Err(missing_table(&file, "server"));
            }
            let raw: RawServerFile = toml::from_str(text).map_err(toml_err)?;
            raw.server.validate(&ctx("server")).map(Config::Server)
        }
        Mode::Client => {
            if head.server.is_some() {
                return Err(stray_table(&file, "server", Role::Client));
            }
            if head.client.is_none() {
                return Err(missing_table(&file, "client"));
            }
            let raw: RawClientFile = toml::from_str(text).map_err(toml_err)?;
            raw.client.validate(&ctx("client")).map(Config::Client)
        }
    }
}

fn stray_table(file: &str, table: &str, mode: Role) -> ConfigError {
    ConfigError::new(
        file,
        None,
        Some(table.to_owned()),
        ErrorKind::Invalid(format!(
            "table `[{table}]` is not allowed in a file with mode = \"{mode}\""
        )),
    )
}

fn missing_table(file: &str, table: &str) -> ConfigError {
    ConfigError::new(
        file,
        None,
        Some(table.to_owned()),
        ErrorKind::Invalid(format!(
            "missing table `[{table}]` (required by mode = \"{table}\")"
        )),
    )
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_paths;
