//! Writes the man pages of `mtcp` (mtcp.1 and one page per subcommand) into
//! the directory given as the only argument.
//!
//! Generated from the clap definition that also renders `--help`, so the
//! pages always match the binary they ship with. Built only with the `man`
//! feature: `cargo run --features man --bin mtcp-man -- target/man`.
#![forbid(unsafe_code)]

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};
use mtcp::cli::Cli;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: mtcp-man OUTPUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mtcp-man: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Writes every page; returns the files written.
fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = vec![main_page(&cmd, dir)?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone()).manual("MTCP");
        written.push(man.generate_to(dir)?);
    }
    Ok(written)
}

/// mtcp.1: clap's sections plus the ones a daemon's page needs.
fn main_page(cmd: &clap::Command, dir: &Path) -> std::io::Result<PathBuf> {
    let man = Man::new(cmd.clone()).manual("MTCP");
    let path = dir.join(man.get_filename());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    extra_sections().to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    let mut file = std::fs::File::create(&path)?;
    file.write_all(&out)?;
    file.flush()?;
    Ok(path)
}

fn extra_sections() -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["FILES"]);
    item(
        &mut r,
        "/etc/mtcp/NAME.toml",
        "Config file of the service instance mtcp@NAME. Its mode key (\"server\" or \"client\") \
         picks the daemon; every key is documented in the installed examples \
         /etc/mtcp/server.toml and /etc/mtcp/client.toml. Check a file with mtcp check -c FILE.",
    );
    item(
        &mut r,
        "/etc/mtcp/mtcp.secret",
        "The link secret (mode 0600), created at installation if missing; both ends of a pair \
         need the same file. The unit hands it to the daemon with LoadCredential=, where a \
         relative secret_file = \"mtcp.secret\" finds it.",
    );
    item(
        &mut r,
        "/usr/lib/systemd/system/mtcp@.service",
        "The hardened unit template: systemctl enable --now mtcp@server starts the daemon \
         configured by /etc/mtcp/server.toml; systemctl reload checks the file and sends SIGHUP.",
    );
    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "RUST_LOG",
        "Log filter (e.g. debug, or mtcp::link=trace,info); when set it overrides the config \
         file's log_level.",
    );
    item(
        &mut r,
        "NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID",
        "Set by systemd for Type=notify units: readiness, status and watchdog notifications.",
    );
    item(
        &mut r,
        "JOURNAL_STREAM",
        "Set by systemd when stderr goes to the journal: log lines then carry a syslog priority \
         and no timestamp.",
    );
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("systemd.service"),
        roman("(5), "),
        italic("/usr/share/doc/mtcp/README.md"),
    ]);
    r
}

fn item(r: &mut Roff, tag: &str, text: &str) {
    r.control("TP", []);
    r.text([bold(tag)]);
    r.text([roman(text)]);
}
