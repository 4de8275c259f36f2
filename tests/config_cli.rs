//! The `mtcp` binary as a user meets it: config errors, `check`, exit codes,
//! `--help`/`--version`, and an orderly stop on SIGTERM.
//!
//! Every child process is bounded: it is killed after [`LIMIT`] and the test
//! fails, so a hanging daemon can never hang the test suite.

mod common;

use common::TempDir;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(10);
const EX_CONFIG: i32 = 78;
const EX_OSERR: i32 = 71;

const SERVER: &str = "mode = \"server\"\n\n[server]\nlisten_ip = \"127.0.0.1\"\nlisten_port = 0\nbackend_ip = \"127.0.0.1\"\nbackend_port = 9\nconnection_pool_size = 2\nbuffer_size = 65536\ndrain_timeout_ms = 0\n";
const CLIENT: &str = "mode = \"client\"\n\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 0\nserver_ip = \"127.0.0.1\"\nserver_port = 9\nconnection_pool_size = 2\nbuffer_size = 65536\nenable_zero_rtt = false\ndrain_timeout_ms = 0\n";

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn mtcp() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtcp"));
    cmd.env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn read_all(r: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// Waits for `child` until `deadline`; kills it and panics when it is late.
fn wait_bounded(child: &mut Child, deadline: Instant, what: &str) -> Option<i32> {
    loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => return status.code(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running after {LIMIT:?}, killed");
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `mtcp ARGS` (in `cwd` if given) to completion, at most [`LIMIT`].
fn run_in(cwd: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = mtcp();
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("spawn mtcp");
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    let code = wait_bounded(
        &mut child,
        Instant::now() + LIMIT,
        &format!("mtcp {args:?}"),
    );
    Output {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn run(args: &[&str]) -> Output {
    run_in(None, args)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Runs `mtcp server|client -c FILE` and `mtcp check -c FILE` on `text` and
/// checks both fail with EX_CONFIG, naming `key` on stderr in one line.
fn assert_config_error(mode: &str, text: &str, key: &str) {
    let dir = TempDir::new("bad");
    let path = dir.write("bad.toml", text);
    for args in [
        [mode, "-c", path_str(&path)],
        ["check", "-c", path_str(&path)],
    ] {
        let out = run(&args);
        assert_eq!(
            out.code,
            Some(EX_CONFIG),
            "mtcp {args:?}: stderr: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("`{key}`")),
            "mtcp {args:?}: stderr does not name `{key}`: {}",
            out.stderr
        );
        assert!(out.stderr.starts_with("mtcp: "), "{}", out.stderr);
        assert!(
            out.stderr.contains("bad.toml"),
            "file not named: {}",
            out.stderr
        );
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    }
}

fn without(text: &str, key: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(key))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn replace(text: &str, key: &str, line: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(key) {
                format!("{line}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

#[test]
fn missing_key_is_named() {
    assert_config_error(
        "server",
        &without(SERVER, "backend_port"),
        "server.backend_port",
    );
    assert_config_error(
        "client",
        &without(CLIENT, "enable_zero_rtt"),
        "client.enable_zero_rtt",
    );
}

#[test]
fn unknown_key_is_named() {
    assert_config_error(
        "server",
        &format!("{SERVER}bufer_size = 1\n"),
        "server.bufer_size",
    );
    assert_config_error("client", &format!("{CLIENT}foo = true\n"), "client.foo");
}

#[test]
fn wrong_type_is_named() {
    assert_config_error(
        "server",
        &replace(SERVER, "listen_port", "listen_port = \"a\""),
        "server.listen_port",
    );
    assert_config_error(
        "client",
        &replace(CLIENT, "connection_pool_size", "connection_pool_size = 1.5"),
        "client.connection_pool_size",
    );
}

#[test]
fn bad_address_is_named() {
    assert_config_error(
        "server",
        &replace(SERVER, "listen_ip", "listen_ip = \"1.2.3\""),
        "server.listen_ip",
    );
    assert_config_error(
        "client",
        &replace(CLIENT, "server_ip", "server_ip = \"not a host\""),
        "client.server_ip",
    );
}

#[test]
fn out_of_range_is_named() {
    assert_config_error(
        "server",
        &replace(SERVER, "connection_pool_size", "connection_pool_size = 0"),
        "server.connection_pool_size",
    );
    assert_config_error(
        "client",
        &replace(CLIENT, "buffer_size", "buffer_size = 10"),
        "client.buffer_size",
    );
}

#[test]
fn mode_mismatch_is_named() {
    let dir = TempDir::new("mode");
    let client = dir.write("client.toml", CLIENT);
    let server = dir.write("server.toml", SERVER);
    for (mode, path) in [("server", &client), ("client", &server)] {
        let out = run(&[mode, "-c", path_str(path)]);
        assert_eq!(out.code, Some(EX_CONFIG), "stderr: {}", out.stderr);
        assert!(out.stderr.contains("`mode`"), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("`mtcp {mode}`")),
            "{}",
            out.stderr
        );
    }
    // A mode that is neither.
    let bad = dir.write(
        "bad.toml",
        &SERVER.replace("mode = \"server\"", "mode = \"proxy\""),
    );
    let out = run(&["check", "-c", path_str(&bad)]);
    assert_eq!(out.code, Some(EX_CONFIG), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("`mode`"), "{}", out.stderr);
}

#[test]
fn missing_file_is_a_config_error() {
    let dir = TempDir::new("nofile");
    let path = dir.0.join("nope.toml");
    let out = run(&["check", "-c", path_str(&path)]);
    assert_eq!(out.code, Some(EX_CONFIG), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("nope.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}

#[test]
fn default_config_files_are_read_from_the_working_directory() {
    let dir = TempDir::new("cwd");
    for (mode, file) in [
        ("server", "config.server.toml"),
        ("client", "config.client.toml"),
    ] {
        // Absent: the error names the default file.
        let out = run_in(Some(&dir.0), &[mode]);
        assert_eq!(out.code, Some(EX_CONFIG), "stderr: {}", out.stderr);
        assert!(out.stderr.contains(file), "{}", out.stderr);
        // Present but broken: it is the one that was read.
        dir.write(file, &format!("mode = \"{mode}\"\n[{mode}]\n"));
        let out = run_in(Some(&dir.0), &[mode]);
        assert_eq!(out.code, Some(EX_CONFIG), "stderr: {}", out.stderr);
        assert!(out.stderr.contains("missing key"), "{}", out.stderr);
        assert!(out.stderr.contains(file), "{}", out.stderr);
    }
}

#[test]
fn check_accepts_both_example_configs() {
    let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc");
    // The examples read their secret from `mtcp.secret` next to them, as an
    // installation would have it; the repository ships no secret.
    let dir = TempDir::new("etc");
    let secret = dir.write("mtcp.secret", "0123456789abcdef0123456789abcdef\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod secret");
    let mut checked = 0;
    for (file, mode) in [
        ("config.server.toml", "server"),
        ("config.client.toml", "client"),
    ] {
        let original = etc.join(file);
        assert!(original.is_file(), "{} is missing", original.display());
        let text = std::fs::read_to_string(&original).expect("read example");
        let path = dir.write(file, &text);
        let out = run(&["check", "-c", path_str(&path)]);
        assert_eq!(out.code, Some(0), "{file}: stderr: {}", out.stderr);
        assert!(
            out.stdout.contains(&format!("mode = \"{mode}\"")),
            "{}",
            out.stdout
        );
        // Defaults are listed too.
        assert!(
            out.stdout.contains("keepalive_timeout_ms = 5000"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("encrypt = true"), "{}", out.stdout);
        assert!(
            !out.stdout.contains("0123456789abcdef"),
            "secret printed: {}",
            out.stdout
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn secret_file_problems_name_the_key() {
    let dir = TempDir::new("secret");
    let open_file = dir.write("open.secret", "0123456789abcdef0123456789abcdef");
    std::fs::set_permissions(
        &open_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    for (extra, key, words) in [
        (
            "secret_file = \"missing.secret\"",
            "server.secret_file",
            "missing.secret",
        ),
        (
            "secret_file = \"open.secret\"",
            "server.secret_file",
            "chmod 600",
        ),
        ("secret = \"short\"", "server.secret", "at least"),
        ("encrypt = true", "server.encrypt", "secret"),
    ] {
        let text = format!("{SERVER}{extra}\n");
        let path = dir.write("s.toml", &text);
        let out = run(&["check", "-c", path_str(&path)]);
        assert_eq!(out.code, Some(EX_CONFIG), "{extra}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("`{key}`")),
            "{extra}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(words), "{extra}: {}", out.stderr);
    }
}

#[test]
fn check_output_is_itself_a_valid_config() {
    let dir = TempDir::new("roundtrip");
    for text in [SERVER, CLIENT] {
        let first = dir.write("first.toml", text);
        let out = run(&["check", "-c", path_str(&first)]);
        assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
        let second = dir.write("second.toml", &out.stdout);
        let again = run(&["check", "-c", path_str(&second)]);
        assert_eq!(again.code, Some(0), "stderr: {}", again.stderr);
        // Only the comment naming the file differs.
        let body = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(body(&out.stdout), body(&again.stdout));
    }
}

#[test]
fn check_rejects_a_bad_file() {
    let dir = TempDir::new("check");
    let path = dir.write("broken.toml", "mode = \"server\"\n[server]\nlisten_ip = \n");
    let out = run(&["check", "-c", path_str(&path)]);
    assert_eq!(out.code, Some(EX_CONFIG), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("broken.toml:3"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn check_requires_a_file() {
    let out = run(&["check"]);
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        out.stdout
    );

    let out = run(&["--help"]);
    assert_eq!(out.code, Some(0));
    for word in ["server", "client", "check"] {
        assert!(out.stdout.contains(word), "{}", out.stdout);
    }

    for (mode, file) in [
        ("server", "config.server.toml"),
        ("client", "config.client.toml"),
    ] {
        let out = run(&[mode, "--help"]);
        assert_eq!(out.code, Some(0));
        assert!(out.stdout.contains(file), "{}", out.stdout);
        assert!(out.stdout.contains("working directory"), "{}", out.stdout);
    }

    let out = run(&[]);
    assert_ne!(out.code, Some(0));
}

#[test]
fn listen_failure_exits_with_oserr() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = TempDir::new("busy");
    let path = dir.write(
        "server.toml",
        &replace(SERVER, "listen_port", &format!("listen_port = {port}")),
    );
    let out = run(&["server", "-c", path_str(&path)]);
    assert_eq!(out.code, Some(EX_OSERR), "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    drop(taken);
}

/// Starts a daemon, waits until it logs that it listens (or a few seconds),
/// sends SIGTERM and expects a clean exit 0.
fn stops_cleanly_on_sigterm(mode: &str, text: &str) {
    let dir = TempDir::new("sigterm");
    let path = dir.write("c.toml", text);
    let mut child = mtcp()
        .args([mode, "-c", path_str(&path)])
        .env("RUST_LOG", "info")
        .spawn()
        .expect("spawn mtcp");
    let out = read_all(child.stdout.take());
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take();
    let err = thread::spawn(move || {
        let mut all = String::new();
        if let Some(s) = stderr {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
        }
        all
    });
    let ready_by = Instant::now() + Duration::from_secs(5);
    while Instant::now() < ready_by {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("listening") => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    let killed = common::output_within(
        Command::new("kill").args(["-TERM", &child.id().to_string()]),
        LIMIT,
    );
    assert!(killed.status.success(), "{killed:?}");
    let code = wait_bounded(&mut child, Instant::now() + LIMIT, &format!("mtcp {mode}"));
    let stderr = err.join().unwrap_or_default();
    let _ = out.join();
    assert_eq!(
        code,
        Some(0),
        "mtcp {mode} after SIGTERM: stderr:\n{stderr}"
    );
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[test]
fn server_stops_cleanly_on_sigterm() {
    stops_cleanly_on_sigterm("server", SERVER);
}

#[test]
fn client_stops_cleanly_on_sigterm() {
    stops_cleanly_on_sigterm("client", CLIENT);
}

#[test]
fn journald_logs_have_priority_and_no_timestamp() {
    // A busy port makes the server stop right after its first log line.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = TempDir::new("journal");
    let path = dir.write(
        "server.toml",
        &replace(SERVER, "listen_port", &format!("listen_port = {port}")),
    );
    let mut cmd = mtcp();
    cmd.args(["server", "-c", path_str(&path)])
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", "8:12345");
    let mut child = cmd.spawn().expect("spawn mtcp");
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    let code = wait_bounded(&mut child, Instant::now() + LIMIT, "mtcp server (journal)");
    let _ = out.join();
    let stderr = err.join().unwrap_or_default();
    assert_eq!(code, Some(EX_OSERR), "{stderr}");
    let log_line = stderr
        .lines()
        .find(|l| l.contains("starting as server"))
        .unwrap_or_else(|| panic!("no start-up log line in {stderr}"));
    assert!(log_line.starts_with("<6>"), "{log_line}");
    assert!(!log_line.contains(" 20"), "timestamp in {log_line}");
    drop(taken);
}
