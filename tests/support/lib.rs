//! juris-testkit: support for end-to-end tests (real NSD servers on loopback, MMDB files
//! written by the tests, clients that share no code with juris).
//!
//! ```text
//!   test ──dig/kdig/raw──▶ juris (127.A.B.1:port) ──▶ NSD root 127.C.D.1:53
//!                                                 ──▶ NSD test. 127.C.D.2:53 ─┐
//!                                                 ──▶ NSD alpha.test. …       ├─ dnstap ─▶ QueryLog
//! ```
//!
//! - [`hierarchy`]: zones → NSD processes with real delegations, glue and glueless name
//!   servers, unreachable name servers, root hints, and what each server received (dnstap).
//! - [`juris`]: the binary under test on its own address, stopped on drop.
//! - [`dig`]: `dig`/`kdig` runs parsed into status, flags, sections and EDE.
//! - [`raw`]: hickory-proto based raw client for malformed packets over UDP and TCP.
//! - [`dnssec`]: zones signed with ldns (and broken on purpose); [`signed_world`] is the
//!   signed hierarchy with the outcome each name must have; [`unbound`] is a reference
//!   validator to prove the fixtures.
//! - [`addresses`]: per-process, per-hierarchy blocks of 127/8 so parallel tests never collide.
//!
//! Every child process dies with the test binary (see [`process`]).
//!
//! ```no_run
//! use juris_testkit::{dig::Lookup, hierarchy::{Hierarchy, Zone}, juris::Juris};
//! let hierarchy = Hierarchy::builder()
//!     .zone(Zone::new("test."))
//!     .zone(Zone::new("alpha.test.").records("www A 192.0.2.1"))
//!     .start();
//! let juris = Juris::builder("target/debug/juris").root_hints(hierarchy.root_hints()).start();
//! let response = Lookup::dig(juris.address(), "www.alpha.test.", "A").run().unwrap();
//! assert_eq!(response.answer_data("A"), ["192.0.2.1"]);
//! ```

pub mod addresses;
pub mod daemon;
pub mod dig;
pub mod dnsdist;
pub mod dnssec;
pub mod dnstap;
pub mod hierarchy;
pub mod juris;
pub mod mmdb;
mod process;
pub mod raw;
pub mod signed_world;
pub mod tools;
pub mod unbound;
pub mod world;
