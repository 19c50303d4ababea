//! The README's order quick start, run as written as far as it works offline (issue 15 item
//! 7): the commands are read from README.md itself, so the test follows the text. The only
//! changes are the test's own loopback addresses for `127.0.0.1:5353` and `127.0.0.101`, a
//! forwarder where nothing listens (no Internet: blocked names need no upstream), and no API.
//! The line importing a downloaded CSV is skipped (no download here); everything else runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use juris_testkit::addresses::AddressBlock;
use juris_testkit::juris::Juris;

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the fenced block that follows the "Orders (JSON documents" paragraph,
/// without their comments.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let start = readme
        .find("Orders (JSON documents")
        .expect("the README's order quick start");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").expect("its code block") + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|line| match line.find(" #") {
            Some(comment) => line[..comment].trim().to_owned(),
            None => line.trim().to_owned(),
        })
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn readme_order_quick_start_works_offline() {
    let commands = quick_start();
    assert!(
        commands.iter().any(|c| c.starts_with("juris geoip import")),
        "{commands:?}"
    );
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::os::unix::fs::symlink(repository().join("examples"), dir.join("examples")).unwrap();
    let block = AddressBlock::allocate();
    let client = block.address(101).to_string();
    let bin = Path::new(JURIS).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut server: Option<Juris> = None;
    let mut ran = Vec::new();
    for command in commands {
        if command.contains("dbip-country-ipv4.csv") {
            continue; // a downloaded file
        }
        let command = command.replace("127.0.0.101", &client);
        if let Some(args) = command.strip_prefix("juris serve ") {
            // Relative paths are relative to where the README's reader stands: here, `dir`.
            let args: Vec<String> = args
                .split_whitespace()
                .map(|arg| match dir.join(arg) {
                    path if path.exists() => path.display().to_string(),
                    _ => arg.to_owned(),
                })
                .collect();
            server = Some(
                Juris::builder(JURIS)
                    .args(&args)
                    .args(["--forward", "127.0.0.1:9", "--api-listen", "none"])
                    .arg("--data-dir")
                    .arg(dir.join("juris-data"))
                    .start(),
            );
            ran.push(command);
            continue;
        }
        let command = match &server {
            Some(server) => command.replace(
                "@127.0.0.1 -p 5353",
                &format!("@{} -p {}", server.address().ip(), server.address().port()),
            ),
            None => command,
        };
        let output = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(dir)
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}: {output:?}\n{}",
            server.as_ref().map(Juris::stderr).unwrap_or_default()
        );
        if command.starts_with("dig ") {
            assert!(stdout.contains("NXDOMAIN"), "{command}: {stdout}");
            assert!(stdout.contains("EDE: 16"), "{command}: {stdout}");
        }
        if command.starts_with("juris explain ") {
            assert!(
                stdout.contains("verdict:      BLOCK"),
                "{command}: {stdout}"
            );
            assert!(stdout.contains("IT-MI-2024-0001"), "{command}: {stdout}");
        }
        ran.push(command);
    }
    for expected in [
        "juris geoip import",
        "juris serve",
        "dig ",
        "juris explain",
        "juris status",
    ] {
        assert!(
            ran.iter().any(|c| c.starts_with(expected)),
            "{expected} not run: {ran:?}"
        );
    }
}
