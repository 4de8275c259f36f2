//! Why a file was rejected, worded as one line a user can act on: serde's and
//! toml's errors are turned into "file:line: key `table.key`: ..." here, so
//! the rest of config never has to locate a key in the text.

use std::fmt;

/// Why a config file was rejected: one line naming the file, the line where
/// known, and the `table.key` at fault, so the user can go straight to it.
#[derive(Debug)]
pub struct ConfigError {
    file: String,
    line: Option<usize>,
    key: Option<String>,
    kind: ErrorKind,
}

#[derive(Debug)]
pub(super) enum ErrorKind {
    /// The file could not be read at all.
    Read(std::io::Error),
    /// A required key is absent.
    Missing,
    /// A key the program does not know (usually a typo).
    Unknown,
    /// Anything else: syntax, type or value; the text says what.
    Invalid(String),
}

impl ConfigError {
    pub(super) fn new(
        file: &str,
        line: Option<usize>,
        key: Option<String>,
        kind: ErrorKind,
    ) -> Self {
        let kind = match kind {
            // Messages from toml can span lines; the contract is one line.
            ErrorKind::Invalid(m) => ErrorKind::Invalid(one_line(&m)),
            k => k,
        };
        ConfigError {
            file: file.to_owned(),
            line,
            key,
            kind,
        }
    }

    /// The file name as given by the user.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line of the offending text, when it could be located.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The offending key as `table.key` (or `mode`), when the error concerns one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (&self.kind, self.line) {
            // Missing keys have no line: the key is, by definition, nowhere.
            (ErrorKind::Missing, _) | (ErrorKind::Read(_), _) | (_, None) => {}
            (_, Some(line)) => write!(f, ":{line}")?,
        }
        f.write_str(": ")?;
        let key = self.key.as_deref().unwrap_or("?");
        match &self.kind {
            ErrorKind::Read(e) => write!(f, "cannot read: {e}"),
            ErrorKind::Missing => write!(f, "missing key `{key}`"),
            ErrorKind::Unknown => write!(f, "unknown key `{key}`"),
            ErrorKind::Invalid(msg) => match &self.key {
                Some(key) => write!(f, "key `{key}`: {msg}"),
                None => f.write_str(msg),
            },
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Turning toml/serde errors into "file:line: key `table.key`: ..." messages
// ---------------------------------------------------------------------------

pub(super) fn from_toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message();
    let span = e.span();
    let line = span.as_ref().map(|s| line_number(text, s.start));
    let quoted = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = quoted("missing field `") {
        // serde points a missing key at its table's header; at the very start
        // of the file (empty span) for the top level.
        let key = match span {
            Some(s) if !s.is_empty() => match path_at(text, s.clone()) {
                Some(table) if !table.is_empty() => format!("{table}.{name}"),
                _ => name,
            },
            _ => name,
        };
        return ConfigError::new(file, None, Some(key), ErrorKind::Missing);
    }
    if let Some(name) = quoted("unknown field `") {
        // serde points an unknown key at the key itself.
        let key = span
            .clone()
            .and_then(|s| path_at(text, s))
            .filter(|k| !k.is_empty())
            .unwrap_or(name);
        return ConfigError::new(file, line, Some(key), ErrorKind::Unknown);
    }
    let key = span
        .and_then(|s| path_at(text, s))
        .filter(|k| !k.is_empty());
    ConfigError::new(file, line, key, ErrorKind::Invalid(msg.to_owned()))
}

fn line_number(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key path of whatever `span` points at: a table header, a key,
/// or a value (then the key it is assigned to), prefixed with the enclosing
/// `[table]`. Best effort by design: it reads single lines, which is all a
/// config of scalar values needs; `None` when nothing sensible is found.
fn path_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let bytes = text.as_bytes();
    let start = span.start.min(text.len());
    let line_start = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| start + i);
    let line = text.get(line_start..line_end)?;
    if line.trim_start().starts_with('[') {
        // A header, or a broken one (then there is no key to name).
        return header_name(line);
    }
    let table = text
        .get(..line_start)?
        .lines()
        .rev()
        .find_map(header_name)
        .unwrap_or_default();
    let prefix = text.get(line_start..start)?;
    let key = if prefix.contains('=') {
        // The span is a value: the key is what stands before its '=', through
        // any enclosing inline tables (`a = { b = <value>`).
        let parts: Vec<String> = prefix
            .split('{')
            .filter_map(|seg| {
                let before_eq = &seg[..seg.rfind('=')?];
                let after_comma = before_eq.rsplit(',').next().unwrap_or(before_eq);
                Some(normalize_key(after_comma))
            })
            .collect();
        parts.join(".")
    } else {
        // The span is a key, possibly the last part of a dotted key.
        let end = span.end.clamp(start, line_end);
        normalize_key(text.get(line_start..end)?)
    };
    Some(match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key,
        (false, false) => format!("{table}.{key}"),
    })
}

/// `Some("server")` for a line `[server]` (or `[[server]]`, `[ "server" ]  # c`).
fn header_name(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let inner = &rest[..rest.find(']')?];
    Some(normalize_key(inner))
}

/// `server . "listen_port"` → `server.listen_port`.
fn normalize_key(raw: &str) -> String {
    raw.split('.')
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}
