//! juris-testkit: support for end-to-end tests (real NSD servers on loopback, MMDB files
//! written by the tests, clients that share no code with juris).

pub mod mmdb;
