//! [`GeoError`]: why a GeoIP database or configuration was refused.
//!
//! None of these happen per query: classification never fails (an address the database cannot
//! place is simply in an unknown jurisdiction). They happen at startup and on reload, where the
//! previous database stays in force.

use std::path::PathBuf;

/// Why a GeoIP database could not be (re)loaded, or the configuration is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The file could not be read or is not a valid MaxMind DB.
    #[error("cannot load the GeoIP database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the MaxMind DB reader said.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// No field path was configured and none of the known record shapes fits.
    #[error(
        "cannot find a country code in the GeoIP database {path}: none of `country.iso_code`, \
         `country_code`, `country` holds a two-letter code in its first records; set `field_path`"
    )]
    UnknownRecordShape {
        /// The database file.
        path: PathBuf,
    },
    /// The configured field path leads to no two-letter code in the database's first records.
    #[error(
        "the field path `{field_path}` leads to no two-letter country code in the first records \
         of the GeoIP database {path}"
    )]
    FieldNotFound {
        /// The database file.
        path: PathBuf,
        /// The configured path.
        field_path: String,
    },
    /// The configured field path is malformed.
    #[error("invalid GeoIP field path `{field_path}`: {reason}")]
    InvalidFieldPath {
        /// The path as configured.
        field_path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
