//! Entry points for the fuzzers (`crates/juris-fuzz`): the parsers of upstream responses,
//! which read bytes any server on the internet (or a spoofer) can send. Not an API.

use bytes::Bytes;
use domain::base::{Message, Name, Rtype, ToName};

use crate::cache::{CacheConfig, CachedAnswer};

/// Runs `data` through the upstream response checks and parser (as the answer to a query
/// with its own ID and question, so that parsing goes past the matching checks; UDP and TCP),
/// and through the cache entry builder. Panics only on a bug.
pub fn upstream_response(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let (id, qname, qtype) = Message::from_octets(bytes.clone())
        .ok()
        .and_then(|message| {
            let question = message.sole_question().ok()?;
            let qname: Name<Bytes> = question.qname().to_name();
            Some((message.header().id(), qname, question.qtype()))
        })
        .unwrap_or_else(|| (0, Name::root_bytes(), Rtype::A));
    for over_tcp in [false, true] {
        if let Ok(Some(response)) =
            crate::upstream::check_and_parse(bytes.clone(), id, &qname, qtype, over_tcp)
        {
            assert!(response.wire.len() == data.len());
        }
    }
    let _ = CachedAnswer::from_message(data, 1_700_000_000, &CacheConfig::default());
}
