//! `juris safeguards update FILE --source NAME` and `juris safeguards list`: an operator's
//! published list of shared infrastructure joins the protected list, so an order target on it
//! is held for review instead of enforced (issue #14 item 7).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

fn juris(args: &[&str], dir: &Path) -> Output {
    Command::new(JURIS)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_published_list_holds_the_targets_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("orders")).unwrap();
    fs::write(
        root.join("orders/o.json"),
        r#"{"id": "IT-SG-1", "kind": "court_order", "authority": "Tribunale di Milano",
            "reference": "RG 1/2026", "jurisdictions": ["IT"], "action": "nxdomain",
            "state": "active", "targets": [{"type": "domain", "value": "www.shared-cdn.test"}]}"#,
    )
    .unwrap();
    let explain = ["explain", "www.shared-cdn.test", "--client", "127.0.0.1"];
    let explain = [
        &explain[..],
        &[
            "--country",
            "IT",
            "--orders",
            "orders",
            "--data-dir",
            "data",
        ],
    ]
    .concat();
    // Before: the order blocks the name for Italy.
    let before = juris(&explain, root);
    assert!(before.status.success(), "{}", text(&before));
    assert!(
        text(&before).contains("verdict:      BLOCK"),
        "{}",
        text(&before)
    );

    // An AWS-shaped list filtered on one service, and a list of names.
    fs::write(
        root.join("ip-ranges.json"),
        r#"{"syncToken": "1", "createDate": "2026-12-01-00-00-00",
            "prefixes": [{"ip_prefix": "13.32.0.0/15", "region": "GLOBAL", "service": "CLOUDFRONT",
                          "network_border_group": "GLOBAL"},
                         {"ip_prefix": "3.5.140.0/22", "region": "x", "service": "AMAZON",
                          "network_border_group": "x"}],
            "ipv6_prefixes": []}"#,
    )
    .unwrap();
    let aws = juris(
        &[
            "safeguards",
            "update",
            "ip-ranges.json",
            "--source",
            "aws-cloudfront",
            "--service",
            "CLOUDFRONT",
            "--url",
            "https://ip-ranges.amazonaws.com/ip-ranges.json",
            "--data-dir",
            "data",
        ],
        root,
    );
    assert!(aws.status.success(), "{}", text(&aws));
    assert!(
        text(&aws).contains("aws-ip-ranges format, 1 prefixes"),
        "{}",
        text(&aws)
    );
    fs::write(
        root.join("hosters.txt"),
        "# shared hosting\nshared-cdn.test\n",
    )
    .unwrap();
    let names = juris(
        &[
            "safeguards",
            "update",
            "hosters.txt",
            "--source",
            "hosters",
            "--data-dir",
            "data",
        ],
        root,
    );
    assert!(names.status.success(), "{}", text(&names));
    let stored: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("data/protected/aws-cloudfront.json")).unwrap())
            .unwrap();
    assert_eq!(stored["prefixes"], serde_json::json!(["13.32.0.0/15"]));
    assert_eq!(stored["service"], "CLOUDFRONT");
    assert_eq!(stored["sha256"].as_str().unwrap().len(), 64);

    let list = juris(&["safeguards", "list", "--data-dir", "data"], root);
    let listed = text(&list);
    assert!(
        listed.contains("aws-cloudfront  1 prefixes, 0 names  aws-ip-ranges (service CLOUDFRONT)"),
        "{listed}"
    );
    assert!(
        listed.contains("hosters  0 prefixes, 1 names  lines"),
        "{listed}"
    );

    // After: the target is held for review, so the order file no longer loads as enforced,
    // and the refusal names the published list.
    let after = juris(&explain, root);
    assert!(!after.status.success(), "{}", text(&after));
    assert!(
        text(&after).contains("protected name shared-cdn.test (published list hosters)"),
        "{}",
        text(&after)
    );

    // Bad input: a file in no known format changes nothing; a broken list file is named.
    fs::write(root.join("other.json"), r#"{"something": []}"#).unwrap();
    let bad = juris(
        &[
            "safeguards",
            "update",
            "other.json",
            "--source",
            "hosters",
            "--data-dir",
            "data",
        ],
        root,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("no known published format"),
        "{}",
        text(&bad)
    );
    assert!(
        text(&juris(&["safeguards", "list", "--data-dir", "data"], root))
            .contains("hosters  0 prefixes, 1 names")
    );
    fs::write(root.join("data/protected/broken.json"), "{").unwrap();
    let broken = juris(&explain, root);
    assert!(
        text(&broken).contains("data/protected/broken.json"),
        "{}",
        text(&broken)
    );
}
