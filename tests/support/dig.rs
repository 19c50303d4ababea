//! `dig` and `kdig` as subprocesses: clients that share no code with juris.
//!
//! ```no_run
//! use juris_testkit::dig::Lookup;
//! # let server: std::net::SocketAddr = "127.0.0.1:53".parse().unwrap();
//! let response = Lookup::dig(server, "www.alpha.test.", "A").tcp().run().expect("an answer");
//! assert_eq!(response.status, "NOERROR");
//! assert_eq!(response.answer_data("A"), ["192.0.2.1"]);
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use crate::tools;

/// Which client program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// BIND's `dig` (bind9-dnsutils).
    Dig,
    /// Knot's `kdig` (knot-dnsutils).
    Kdig,
}

/// One query to run.
#[derive(Debug, Clone)]
pub struct Lookup {
    client: Client,
    server: SocketAddr,
    name: String,
    record_type: String,
    tcp: bool,
    buffer_size: Option<u16>,
    ignore_truncation: bool,
    source: Option<IpAddr>,
    timeout_seconds: u32,
    tries: u32,
    extra: Vec<String>,
}

/// A resource record as the client printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name in lower case, absolute (`www.alpha.test.`).
    pub name: String,
    pub ttl: u32,
    pub class: String,
    /// Upper case (`A`, `CNAME`, `SOA`).
    pub record_type: String,
    /// The rest of the line, e.g. `192.0.2.1` or `"text" "more"`.
    pub data: String,
}

/// An RFC 8914 Extended DNS Error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedError {
    pub code: u16,
    /// The client's name for the code, e.g. `Censored`, if it printed one.
    pub purpose: Option<String>,
    /// EXTRA-TEXT without the client's quoting.
    pub text: Option<String>,
}

/// A response, parsed from the client's output.
#[derive(Debug, Clone)]
pub struct Response {
    /// RCODE mnemonic: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `FORMERR`, `REFUSED`, …
    pub status: String,
    /// Header flags in lower case: `qr`, `aa`, `tc`, `rd`, `ra`, `ad`, `cd`.
    pub flags: Vec<String>,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    pub extended_errors: Vec<ExtendedError>,
    /// The client's whole output, for failure messages.
    pub output: String,
}

/// The client got no response (timeout, refused connection, …).
#[derive(Debug, Clone)]
pub struct NoResponse {
    pub output: String,
}

impl fmt::Display for NoResponse {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "no DNS response; client output:\n{}",
            self.output
        )
    }
}

impl std::error::Error for NoResponse {}

impl Lookup {
    /// `dig @server name type`, UDP, one try, 2 s timeout.
    #[must_use]
    pub fn dig(server: SocketAddr, name: &str, record_type: &str) -> Self {
        Self::new(Client::Dig, server, name, record_type)
    }

    /// `kdig @server name type`, UDP, no retry, 2 s timeout.
    #[must_use]
    pub fn kdig(server: SocketAddr, name: &str, record_type: &str) -> Self {
        Self::new(Client::Kdig, server, name, record_type)
    }

    /// Either client.
    #[must_use]
    pub fn new(client: Client, server: SocketAddr, name: &str, record_type: &str) -> Self {
        Self {
            client,
            server,
            name: name.to_owned(),
            record_type: record_type.to_owned(),
            tcp: false,
            buffer_size: None,
            ignore_truncation: false,
            source: None,
            timeout_seconds: 2,
            tries: 1,
            extra: Vec::new(),
        }
    }

    /// Query over TCP.
    #[must_use]
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// EDNS UDP buffer size advertised (`+bufsize=N`).
    #[must_use]
    pub fn buffer_size(mut self, bytes: u16) -> Self {
        self.buffer_size = Some(bytes);
        self
    }

    /// Keep a truncated UDP answer instead of retrying over TCP (`+ignore`).
    #[must_use]
    pub fn ignore_truncation(mut self) -> Self {
        self.ignore_truncation = true;
        self
    }

    /// Send from this local address (`-b`), e.g. a client address mapped to a country.
    #[must_use]
    pub fn source(mut self, address: IpAddr) -> Self {
        self.source = Some(address);
        self
    }

    /// Seconds to wait for the response (default 2).
    #[must_use]
    pub fn timeout_seconds(mut self, seconds: u32) -> Self {
        self.timeout_seconds = seconds;
        self
    }

    /// How many times to send the query over UDP before giving up (default 1), like a
    /// stub resolver that retries.
    #[must_use]
    pub fn tries(mut self, tries: u32) -> Self {
        self.tries = tries.max(1);
        self
    }

    /// Any other option, passed as is (`+nsid`, `+ednsopt=15`, `+norecurse`, …).
    #[must_use]
    pub fn arg(mut self, argument: &str) -> Self {
        self.extra.push(argument.to_owned());
        self
    }

    /// More options, passed as they are (`["+dnssec", "+cd"]`).
    #[must_use]
    pub fn args<'a>(mut self, arguments: impl IntoIterator<Item = &'a str>) -> Self {
        self.extra.extend(arguments.into_iter().map(str::to_owned));
        self
    }

    /// The command line this lookup runs, for messages.
    #[must_use]
    pub fn command_line(&self) -> String {
        let (program, arguments) = self.arguments();
        format!("{program} {}", arguments.join(" "))
    }

    /// Runs the client and parses what it printed.
    ///
    /// # Errors
    /// [`NoResponse`] when the client printed no DNS message.
    ///
    /// # Panics
    /// When the client is not installed.
    pub fn run(&self) -> Result<Response, NoResponse> {
        let (program, arguments) = self.arguments();
        let path = tools::require(program);
        let output = Command::new(path)
            .args(&arguments)
            .output()
            .map_err(|error| NoResponse {
                output: format!("cannot run {program}: {error}"),
            })?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let text = format!("$ {}\n{text}", self.command_line());
        parse(&text).ok_or(NoResponse { output: text })
    }

    fn arguments(&self) -> (&'static str, Vec<String>) {
        let mut arguments = vec![
            format!("@{}", self.server.ip()),
            "-p".to_owned(),
            self.server.port().to_string(),
        ];
        let program = match self.client {
            Client::Dig => {
                arguments.push(format!("+tries={}", self.tries));
                "dig"
            }
            Client::Kdig => {
                arguments.push(format!("+retry={}", self.tries - 1));
                "kdig"
            }
        };
        arguments.push(format!("+time={}", self.timeout_seconds));
        if self.tcp {
            arguments.push("+tcp".to_owned());
        }
        if let Some(size) = self.buffer_size {
            arguments.push(format!("+bufsize={size}"));
        }
        if self.ignore_truncation {
            arguments.push("+ignore".to_owned());
        }
        if let Some(source) = self.source {
            arguments.push("-b".to_owned());
            arguments.push(source.to_string());
        }
        arguments.extend(self.extra.iter().cloned());
        arguments.push(self.name.clone());
        arguments.push(self.record_type.clone());
        (program, arguments)
    }
}

impl Response {
    /// Whether the header has `flag` (`"tc"`, `"aa"`, `"ra"`, …).
    #[must_use]
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags
            .iter()
            .any(|present| present.eq_ignore_ascii_case(flag))
    }

    /// The data of the answer records of `record_type`, in order.
    #[must_use]
    pub fn answer_data(&self, record_type: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|record| record.record_type.eq_ignore_ascii_case(record_type))
            .map(|record| record.data.clone())
            .collect()
    }

    /// The SOA records in the authority section.
    #[must_use]
    pub fn authority_soa(&self) -> Vec<&Record> {
        self.authority
            .iter()
            .filter(|record| record.record_type == "SOA")
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Section {
    None,
    Answer,
    Authority,
    Additional,
}

/// Parses the first DNS message in dig or kdig output; `None` when there is none.
#[must_use]
pub fn parse(output: &str) -> Option<Response> {
    let mut response: Option<Response> = None;
    let mut section = Section::None;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.split("->>HEADER<<-").nth(1) {
            if response.is_some() {
                break; // dig printed a second message (e.g. after a TCP retry): keep the first
            }
            let status = rest
                .split("status:")
                .nth(1)
                .and_then(|after| after.split([',', ';']).next())
                .map(|status| status.trim().to_owned())
                .unwrap_or_default();
            response = Some(Response {
                status,
                flags: Vec::new(),
                answer: Vec::new(),
                authority: Vec::new(),
                additional: Vec::new(),
                extended_errors: Vec::new(),
                output: output.to_owned(),
            });
            continue;
        }
        let Some(current) = response.as_mut() else {
            continue;
        };
        let lower = trimmed.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix(";; flags:") {
            current.flags = rest
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        } else if let Some(position) = trimmed.find("EDE:").filter(|_| trimmed.starts_with(';')) {
            current
                .extended_errors
                .push(parse_extended_error(&trimmed[position + 4..]));
        } else if lower.starts_with(";; answer section") {
            section = Section::Answer;
        } else if lower.starts_with(";; authority section") {
            section = Section::Authority;
        } else if lower.starts_with(";; additional section") {
            section = Section::Additional;
        } else if trimmed.is_empty() || trimmed.starts_with(';') {
            if trimmed.is_empty() {
                section = Section::None;
            }
        } else if let Some(record) = parse_record(trimmed) {
            match section {
                Section::Answer => current.answer.push(record),
                Section::Authority => current.authority.push(record),
                Section::Additional => current.additional.push(record),
                Section::None => {}
            }
        }
    }
    response
}

fn parse_record(line: &str) -> Option<Record> {
    let mut parts = line.split_whitespace();
    let name = parts.next()?.to_ascii_lowercase();
    let ttl = parts.next()?.parse().ok()?;
    let class = parts.next()?.to_owned();
    let record_type = parts.next()?.to_ascii_uppercase();
    let data = parts.collect::<Vec<_>>().join(" ");
    Some(Record {
        name,
        ttl,
        class,
        record_type,
        data,
    })
}

/// ` 16 (Censored): (text)` (dig) or ` 16 (Censored): 'text'` (kdig).
fn parse_extended_error(rest: &str) -> ExtendedError {
    let rest = rest.trim();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let code = digits.parse().unwrap_or(u16::MAX);
    let mut rest = rest[digits.len()..].trim_start();
    let mut purpose = None;
    if let Some(inner) = rest.strip_prefix('(') {
        if let Some(end) = inner.find(')') {
            purpose = Some(inner[..end].to_owned());
            rest = &inner[end + 1..];
        }
    }
    let text = rest
        .trim_start()
        .strip_prefix(':')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(|text| {
            let unwrapped = text
                .strip_prefix('(')
                .and_then(|t| t.strip_suffix(')'))
                .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
                .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')));
            unwrapped.unwrap_or(text).to_owned()
        });
    ExtendedError {
        code,
        purpose,
        text,
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn parses_dig_output_with_ede() {
        let output = ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n\
            ;; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1\n\n\
            ;; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags:; udp: 1232\n\
            ; EDE: 16 (Censored): (IT-MI-2024-0001 Tribunale di Milano)\n\
            ;; QUESTION SECTION:\n;x.test.\t\t\tIN\tA\n\n\
            ;; AUTHORITY SECTION:\ntest.\t\t30\tIN\tSOA\tns1.test. hostmaster.test. 1 3600 600 86400 300\n\n";
        let response = parse(output).expect("a response");
        assert_eq!(response.status, "NXDOMAIN");
        assert!(response.has_flag("ra") && !response.has_flag("aa"));
        assert_eq!(response.authority_soa().len(), 1);
        assert_eq!(response.authority[0].ttl, 30);
        assert_eq!(
            response.extended_errors,
            [ExtendedError {
                code: 16,
                purpose: Some("Censored".into()),
                text: Some("IT-MI-2024-0001 Tribunale di Milano".into())
            }]
        );
    }

    #[test]
    fn parses_kdig_output_with_ede() {
        let output = ";; ->>HEADER<<- opcode: QUERY; status: NOERROR; id: 2\n\
            ;; Flags: qr rd ra; QUERY: 1; ANSWER: 1; AUTHORITY: 0; ADDITIONAL: 1\n\n\
            ;; EDNS PSEUDOSECTION:\n;; EDE: 15 (Blocked): 'why'\n\n\
            ;; ANSWER SECTION:\nwww.alpha.test.     \t300\tIN\tA\t192.0.2.1\n";
        let response = parse(output).expect("a response");
        assert_eq!(response.status, "NOERROR");
        assert_eq!(response.flags, ["qr", "rd", "ra"]);
        assert_eq!(response.answer_data("A"), ["192.0.2.1"]);
        assert_eq!(response.extended_errors[0].code, 15);
        assert_eq!(response.extended_errors[0].text.as_deref(), Some("why"));
    }

    #[test]
    fn no_header_means_no_response() {
        assert!(parse(";; communications error to 127.0.0.1#53: timed out\n").is_none());
    }
}
