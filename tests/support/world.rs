//! The usual world of an end-to-end policy test: a temporary directory holding one order file
//! and a GeoIP database that places two client addresses of a fresh loopback block, one in
//! Italy and one in Germany.
//!
//! ```no_run
//! use juris_testkit::world::CountryWorld;
//! let world = CountryWorld::new(r#"{"id": "IT-1", "jurisdictions": ["IT"]}"#);
//! // juris serve --orders world.orders --geoip world.mmdb; dig -b world.italy() ...
//! ```

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::addresses::AddressBlock;
use crate::mmdb;

/// Host number of the Italian client in [`CountryWorld::clients`].
pub const ITALY: u8 = 101;
/// Host number of the German client in [`CountryWorld::clients`].
pub const GERMANY: u8 = 102;

/// Orders and countries on disk, and the clients they place.
#[derive(Debug)]
pub struct CountryWorld {
    /// The temporary directory (removed on drop).
    pub directory: tempfile::TempDir,
    /// `DIRECTORY/orders`, holding `it.json`.
    pub orders: PathBuf,
    /// `DIRECTORY/countries.mmdb`.
    pub mmdb: PathBuf,
    /// The clients' address block: host [`ITALY`] is in IT, host [`GERMANY`] in DE.
    pub clients: AddressBlock,
}

impl CountryWorld {
    /// Writes `order` (JSON) as the one order file and the country database.
    ///
    /// # Panics
    /// When the files cannot be written.
    #[must_use]
    pub fn new(order: &str) -> Self {
        let clients = AddressBlock::allocate();
        let directory = tempfile::tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        let orders = directory.path().join("orders");
        fs::create_dir_all(&orders)
            .and_then(|()| fs::write(orders.join("it.json"), order))
            .unwrap_or_else(|error| panic!("cannot write the order: {error}"));
        let mmdb = directory.path().join("countries.mmdb");
        mmdb::write_countries(
            &mmdb,
            &[
                (IpAddr::V4(clients.address(ITALY)), "IT"),
                (IpAddr::V4(clients.address(GERMANY)), "DE"),
            ],
        )
        .unwrap_or_else(|error| panic!("cannot write the country database: {error}"));
        Self {
            directory,
            orders,
            mmdb,
            clients,
        }
    }

    /// The Italian client's address.
    #[must_use]
    pub fn italy(&self) -> Ipv4Addr {
        self.clients.address(ITALY)
    }

    /// The German client's address.
    #[must_use]
    pub fn germany(&self) -> Ipv4Addr {
        self.clients.address(GERMANY)
    }
}
