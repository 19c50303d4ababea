//! End-to-end: the admin API over HTTPS (`[control] tls_cert`, `tls_key`, `tls_client_ca`)
//! and the CLI's HTTPS client (`--api https://...`, `--ca-cert`, `--client-cert`,
//! `--client-key`); the refusal to serve plain HTTP beyond loopback
//! (`control.danger_api_without_tls`). Certificates are made here with rcgen: a CA that issues
//! the server's certificate (for the test's 127.x.y.1) and a client CA that issues the
//! operator's. No NSD needed: juris forwards to a port where nothing listens.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use juris_testkit::addresses::AddressBlock;
use juris_testkit::juris::Juris;

/// How long juris may take to log what a test waits for (a failure bound only).
const PATIENCE: Duration = Duration::from_secs(30);
const JURIS: &str = env!("CARGO_BIN_EXE_juris");

fn juris(args: &[&str]) -> Output {
    Command::new(JURIS)
        .args(args)
        .env_remove("JURIS_TOKEN")
        .env_remove("JURIS_API")
        .env_remove("JURIS_CA_CERT")
        .env_remove("JURIS_CLIENT_CERT")
        .env_remove("JURIS_CLIENT_KEY")
        .output()
        .unwrap()
}

/// A CA and a leaf it signs for `names`, written as `DIR/NAME-ca.pem`, `DIR/NAME.pem` and
/// `DIR/NAME-key.pem` (returned in that order).
fn issue(dir: &Path, name: &str, names: Vec<String>) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("juris test {name} CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    fs::write(&paths.0, ca_cert.pem()).unwrap();
    fs::write(&paths.1, leaf.pem()).unwrap();
    fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// An admin token made offline in `data`.
fn admin_token(data: &Path) -> String {
    fs::create_dir_all(data).unwrap();
    let output = juris(&[
        "token",
        "create",
        "--role",
        "admin",
        "--name",
        "officer",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// juris serving its API on `api` with `control` (TOML lines of `[control]`), data in `data`.
fn start(dir: &Path, api: SocketAddr, control: &str, data: &Path) -> Juris {
    let config = dir.join("juris.toml");
    fs::write(
        &config,
        format!("[control]\napi_listen = \"{api}\"\n{control}"),
    )
    .unwrap();
    let juris = Juris::builder(JURIS)
        .args(["--threads", "1", "--forward", "127.0.0.1:9", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .start();
    juris.wait_for_log("key=\"control.api_listen\"", PATIENCE);
    juris
}

/// An HTTPS client trusting the CA in `ca` (no client certificate).
fn https_agent(ca: &str) -> ureq::Agent {
    let pem = fs::read(ca).unwrap();
    let root = ureq::tls::Certificate::from_pem(&pem).unwrap();
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::from([root]))
                .build(),
        )
        .build()
        .into()
}

/// `juris order list --token TOKEN ARGS...`.
fn order_list(token: &str, args: &[&str]) -> Output {
    let mut all = vec!["order", "list", "--token", token];
    all.extend_from_slice(args);
    juris(&all)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--api https://... --ca-cert CA` works; without the CA, with the wrong one, or over plain
/// HTTP the CLI fails and says why. The console's cookie gets `Secure`. SIGHUP puts a new
/// certificate in force.
#[test]
fn cli_talks_https_with_the_ca_and_refuses_a_wrong_one() {
    let block = AddressBlock::allocate();
    let api = block.free_tcp_port();
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let (ca, _, _) = issue(dir, "server", vec![api.ip().to_string()]);
    let (other_ca, other_cert, other_key) = issue(dir, "other", vec![api.ip().to_string()]);
    let data = dir.join("data");
    let token = admin_token(&data);
    let juris = start(
        dir,
        api,
        "tls_cert = \"server.pem\"\ntls_key = \"server-key.pem\"\n",
        &data,
    );
    let https = format!("https://{api}");
    let (ca, other_ca) = (ca.to_str().unwrap(), other_ca.to_str().unwrap());

    let output = order_list(&token, &["--api", &https, "--ca-cert", ca]);
    assert!(output.status.success(), "{output:?}\n{}", juris.stderr());

    for (args, why) in [
        (vec!["--api", &https], "the built-in roots"),
        (vec!["--api", &https, "--ca-cert", other_ca], "another CA"),
    ] {
        let output = order_list(&token, &args);
        assert!(!output.status.success(), "{why}: {output:?}");
        let text = stderr(&output);
        assert!(
            text.contains("cannot reach the API")
                && text.contains("not trusted")
                && text.contains("--ca-cert"),
            "{why}: {text}"
        );
    }
    let output = order_list(&token, &["--api", &format!("http://{api}")]);
    assert!(!output.status.success(), "plain HTTP: {output:?}");
    assert!(
        stderr(&output).contains("cannot reach the API"),
        "{output:?}"
    );
    // A --ca-cert that is no certificate is named.
    let output = order_list(&token, &["--api", &https, "--ca-cert", "/dev/null"]);
    assert!(
        stderr(&output).contains("--ca-cert /dev/null: no PEM certificate"),
        "{output:?}"
    );

    // The console's sign-in cookie is Secure over the API's own TLS.
    let response = https_agent(ca)
        .get(format!("{https}/ui/login"))
        .call()
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("a sign-in cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // SIGHUP: the certificate of the other CA replaces the first.
    fs::copy(&other_cert, dir.join("server.pem")).unwrap();
    fs::copy(&other_key, dir.join("server-key.pem")).unwrap();
    juris.signal(libc::SIGHUP);
    juris.wait_for_log("admin API certificate and client CA reloaded", PATIENCE);
    let output = order_list(&token, &["--api", &https, "--ca-cert", other_ca]);
    assert!(output.status.success(), "{output:?}\n{}", juris.stderr());
    let output = order_list(&token, &["--api", &https, "--ca-cert", ca]);
    assert!(
        !output.status.success(),
        "the old CA after reload: {output:?}"
    );
}

/// With `tls_client_ca`, a client without a certificate, or with one from another CA, is
/// refused at the handshake; the operator's certificate gets through. The public listener
/// serves HTTPS with the same certificate and asks for no client certificate.
#[test]
fn client_certificate_required_when_configured() {
    let block = AddressBlock::allocate();
    let api = block.free_tcp_port();
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let (ca, _, _) = issue(dir, "server", vec![api.ip().to_string()]);
    let (_, cert, key) = issue(dir, "client", vec!["operator.example".into()]);
    let (_, stranger_cert, stranger_key) = issue(dir, "stranger", vec!["stranger.example".into()]);
    let data = dir.join("data");
    let token = admin_token(&data);
    let public = block.free_tcp_port();
    let juris = start(
        dir,
        api,
        &format!(
            "public_listen = \"{public}\"\ntls_cert = \"server.pem\"\n\
             tls_key = \"server-key.pem\"\ntls_client_ca = \"client-ca.pem\"\n"
        ),
        &data,
    );
    let https = format!("https://{api}");
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let (ca, cert, key) = (path(&ca), path(&cert), path(&key));
    let (stranger_cert, stranger_key) = (path(&stranger_cert), path(&stranger_key));

    let transparency = https_agent(&ca)
        .get(format!("https://{public}/transparency.json"))
        .call()
        .unwrap();
    assert_eq!(transparency.status(), 200);

    let mut full = vec!["--api", &https, "--ca-cert", &ca];
    full.extend(["--client-cert", &cert, "--client-key", &key]);
    let output = order_list(&token, &full);
    assert!(output.status.success(), "{output:?}\n{}", juris.stderr());

    let without = order_list(&token, &["--api", &https, "--ca-cert", &ca]);
    assert!(!without.status.success(), "{without:?}");
    let text = stderr(&without);
    assert!(
        text.contains("cannot reach the API") && text.contains("--client-cert"),
        "{text}"
    );
    let mut stranger = vec!["--api", &https, "--ca-cert", &ca];
    stranger.extend([
        "--client-cert",
        &stranger_cert,
        "--client-key",
        &stranger_key,
    ]);
    let output = order_list(&token, &stranger);
    assert!(
        !output.status.success(),
        "a stranger's certificate: {output:?}"
    );
    // One of the pair without the other is a usage error.
    let output = order_list(&token, &["--api", &https, "--client-cert", &cert]);
    assert!(
        stderr(&output).contains("--client-cert needs --client-key"),
        "{output:?}"
    );
}

/// An API address beyond loopback without TLS is refused, naming the keys that fix it; with
/// `danger_api_without_tls = true` or with a certificate it is accepted. `juris serve` refuses
/// it before binding anything.
#[test]
fn api_beyond_loopback_without_tls_is_refused_naming_the_keys() {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("juris.toml");
    let check = |control: &str| {
        fs::write(&config, format!("[control]\n{control}")).unwrap();
        juris(&["check-config", config.to_str().unwrap()])
    };
    let output = check("api_listen = \"0.0.0.0:8053\"\n");
    assert!(!output.status.success(), "{output:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    for key in [
        "control.api_listen",
        "control.tls_cert",
        "control.danger_api_without_tls",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
    let output = juris(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr(&output).contains("control.danger_api_without_tls"),
        "{output:?}"
    );
    let output = check("api_listen = \"0.0.0.0:8053\"\ndanger_api_without_tls = true\n");
    assert!(output.status.success(), "{output:?}");
    let output =
        check("api_listen = \"0.0.0.0:8053\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
    assert!(output.status.success(), "{output:?}");
    // Loopback needs nothing; half a pair is named.
    assert!(check("api_listen = \"[::1]:8053\"\n").status.success());
    let output = check("tls_cert = \"c.pem\"\n");
    assert!(stderr(&output).contains("control.tls_key"), "{output:?}");
}
