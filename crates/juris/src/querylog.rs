//! The query log (`[querylog]`): one JSON line per answered query, written by its own
//! thread from a bounded channel ([`juris_server::telemetry::AnswerSink`]); when the thread
//! falls behind, answers are dropped and counted (`juris_querylog_dropped_total`), never
//! waited for. Client addresses are left out unless `querylog.client` says otherwise.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use anyhow::Context;
use juris_server::telemetry::{self, AnswerSink, Answered, ClientAddress};

/// `[querylog]` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLogSettings {
    /// `None`: stderr; otherwise the file appended to.
    pub path: Option<PathBuf>,
    /// How much of the client address each line keeps.
    pub client: ClientAddress,
    /// Lines waiting to be written at most; beyond, answers are dropped (counted).
    pub queue: usize,
}

/// Opens the log and starts its writer thread; the returned sink goes to the pipeline.
pub fn start(settings: &QueryLogSettings) -> anyhow::Result<AnswerSink> {
    let out: Box<dyn Write + Send> = match &settings.path {
        None => Box::new(std::io::stderr()),
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("querylog.path: cannot open {}", path.display()))?,
        ),
    };
    let (sink, receiver) = AnswerSink::channel("querylog", settings.queue);
    let client = settings.client;
    std::thread::Builder::new()
        .name("juris-querylog".into())
        .spawn(move || write_lines(&receiver, BufWriter::new(out), client))
        .context("querylog: cannot start its thread")?;
    Ok(sink)
}

/// Writes until the pipeline is gone; flushes whenever the channel is empty.
fn write_lines(receiver: &Receiver<Arc<Answered>>, mut out: impl Write, client: ClientAddress) {
    let mut failed = false;
    loop {
        let answered = match receiver.try_recv() {
            Ok(answered) => answered,
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                match receiver.recv() {
                    Ok(answered) => answered,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if let Err(error) = writeln!(out, "{}", line(&answered, client)) {
            if !failed {
                tracing::error!(%error, "querylog: cannot write (lines are lost until it can)");
                failed = true;
            }
        } else {
            failed = false;
        }
    }
    let _ = out.flush();
}

/// One answered query as a JSON object.
pub fn line(answered: &Answered, client: ClientAddress) -> String {
    let time = jiff::Timestamp::try_from(answered.time)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let (qname, qtype) = telemetry::question(&answered.query)
        .map(|(name, qtype)| (name, domain::base::iana::Rtype::from_int(qtype).to_string()))
        .unwrap_or_default();
    let facts = telemetry::response_facts(&answered.response).unwrap_or_default();
    let mut object = serde_json::json!({
        "time": time,
        "transport": answered.transport.label(),
        "qname": qname,
        "qtype": qtype,
        "rcode": juris_server::synth::Rcode(u16::from(facts.rcode)).to_string(),
        "ede": facts.ede,
        "cache": answered.cache.label(),
        "latency_us": u64::try_from(answered.latency.as_micros()).unwrap_or(u64::MAX),
    });
    if let Some(order) = &answered.order {
        object["order"] = order.id.clone().into();
    }
    if let Some(address) = client.apply(answered.client) {
        object["client"] = match client {
            ClientAddress::Full => address.to_string(),
            _ => address.ip().to_string(),
        }
        .into();
    }
    object.to_string()
}
