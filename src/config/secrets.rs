//! librdkafka properties, which may hold secrets: never shown in `Debug`, masked in
//! `config check`, and loadable from a file so they need not sit in the environment.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

pub(crate) const MASK: &str = "<redacted>";

/// A secret setting (the peer token): read and written as a plain string, never shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

/// `sasl.*` and `ssl.*` properties that are not secret; every other one is masked when shown.
const PLAIN_PROPERTIES: [&str; 15] = [
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.kerberos.service.name",
    "sasl.kerberos.principal",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.token.endpoint.url",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
    "ssl.endpoint.identification.algorithm",
    "ssl.cipher.suites",
    "ssl.curves.list",
];

/// True when the value of `key` may be a secret.
pub(crate) fn is_secret(key: &str) -> bool {
    let scoped = key.starts_with("sasl.") || key.starts_with("ssl.");
    let worded = ["password", "secret", "token", "pem"]
        .iter()
        .any(|word| key.contains(word));
    (scoped && !PLAIN_PROPERTIES.contains(&key)) || worded
}

/// librdkafka properties, passed through as-is.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    /// The properties with every possible secret replaced by a mask.
    pub(crate) fn masked(&self) -> KafkaProperties {
        KafkaProperties(
            self.0
                .iter()
                .map(|(key, value)| {
                    let shown = if is_secret(key) { MASK } else { value };
                    (key.clone(), shown.to_owned())
                })
                .collect(),
        )
    }

    /// Reads `key=value` lines (blank lines and `#` comments skipped), as a Kubernetes Secret
    /// or a Java-style properties file holds them. Values may contain `=` and `,`.
    pub(crate) fn read_file(path: &Path) -> Result<KafkaProperties, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut properties = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                invalid(
                    "kafka_properties_file",
                    format!("line {} of {} is not key=value", number + 1, path.display()),
                )
            })?;
            properties.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(KafkaProperties(properties))
    }
}

impl From<BTreeMap<String, String>> for KafkaProperties {
    fn from(map: BTreeMap<String, String>) -> Self {
        KafkaProperties(map)
    }
}

impl FromIterator<(String, String)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(properties: I) -> Self {
        KafkaProperties(properties.into_iter().collect())
    }
}

impl Deref for KafkaProperties {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for KafkaProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.masked().0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sasl_and_ssl_secret_is_masked() {
        let properties = KafkaProperties::from(BTreeMap::from(
            [
                ("sasl.password", "hunter2"),
                ("sasl.oauthbearer.config", "clientSecret=abc"),
                ("ssl.key.password", "k3y"),
                ("ssl.keystore.password", "st0re"),
                ("ssl.key.pem", "-----BEGIN"),
                ("sasl.username", "svc"),
                ("ssl.ca.location", "/etc/ca.pem"),
                ("linger.ms", "5"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ));
        let shown = format!("{properties:?}");
        for secret in ["hunter2", "clientSecret", "k3y", "st0re", "BEGIN"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for plain in ["svc", "/etc/ca.pem", "5"] {
            assert!(shown.contains(plain), "{shown}");
        }
    }

    #[test]
    fn a_properties_file_keeps_commas_and_equals_in_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kafka.properties");
        std::fs::write(&path, "# secrets\nsasl.password = a,b=c\n\nlinger.ms=5\n").unwrap();
        let properties = KafkaProperties::read_file(&path).unwrap();
        assert_eq!(properties["sasl.password"], "a,b=c");
        assert_eq!(properties["linger.ms"], "5");
        std::fs::write(&path, "no equals sign\n").unwrap();
        assert!(KafkaProperties::read_file(&path).is_err());
    }
}

/// Object-store settings, which hold credentials: `Debug` shows only their names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ObjectStoreOptions(pub(crate) BTreeMap<String, String>);

impl FromIterator<(String, String)> for ObjectStoreOptions {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        ObjectStoreOptions(pairs.into_iter().collect())
    }
}

impl ObjectStoreOptions {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

impl std::fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}
