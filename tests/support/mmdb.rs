//! MMDB files for tests: the writer is `juris_geo::writer` (also what `juris geoip import`
//! uses), re-exported here with the tests' usual world.
//!
//! ```no_run
//! use juris_testkit::mmdb::{MmdbWriter, Shape};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir();
//! MmdbWriter::new(Shape::CountryCode)
//!     .insert("127.0.0.101/32".parse()?, "IT")
//!     .insert("2001:db8::/32".parse()?, "FR")
//!     .write_to(dir.join("test.mmdb"))?;
//! # Ok(()) }
//! ```

use std::path::Path;

use ipnet::IpNet;
pub use juris_geo::writer::{read_country, MmdbWriteError, MmdbWriter, RecordSize, Shape, Value};

/// Writes a [`Shape::CountryCode`] database at `path` that places each host (a /32 or /128) in
/// its country: the usual world of an end-to-end test.
pub fn write_countries(
    path: impl AsRef<Path>,
    hosts: &[(std::net::IpAddr, &str)],
) -> Result<(), MmdbWriteError> {
    let mut writer = MmdbWriter::new(Shape::CountryCode);
    for (host, country) in hosts {
        writer.insert(IpNet::from(*host), country);
    }
    writer.write_to(path)
}
