//! The Kafka side of the export: settings, the connection, the choice of a
//! partition by key and the produce requests.
//!
//! The client is `rskafka`, not `rdkafka`: it is pure Rust, so the node
//! still builds from crates.io alone with no C library (librdkafka) to
//! build or install, on every machine and in the container image; it speaks
//! TLS through rustls (already the node's TLS) and SASL PLAIN and SCRAM.
//! What it leaves out suits an outbox: it has no producer buffer of its own
//! (the outbox is the buffer, and a produce answers only once the brokers
//! hold the records, `acks=all`), and no partitioner, so keys are placed
//! here with Kafka's own hash ([`partition_for`]) and land where a Java
//! producer would put them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::join_all;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;

use crate::config::{KafkaSaslMechanism, Settings};
use crate::store::OutboxRow;

/// Longest wait to reach the brokers and read the topic's partitions.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of records in one produce request at most: well under the
/// brokers' default limit of a record batch (1 MiB, `message.max.bytes`).
const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// Where and how events are published.
#[derive(Clone)]
pub struct ExportConfig {
    pub brokers: Vec<String>,
    pub topic: String,
    pub sasl: Option<SaslConfig>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// How long claimed rows are this node's.
    pub lease: Duration,
}

impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the SASL password.
        f.debug_struct("ExportConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("sasl", &self.sasl.is_some())
            .field("tls", &self.tls.is_some())
            .field("lease", &self.lease)
            .finish()
    }
}

impl ExportConfig {
    /// The export the settings ask for: None without `KAFKA_BROKERS`; an
    /// error naming the setting when they do not fit together.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<ExportConfig>> {
        let brokers: Vec<String> = settings
            .kafka_brokers
            .iter()
            .map(|broker| broker.trim().to_owned())
            .filter(|broker| !broker.is_empty())
            .collect();
        if brokers.is_empty() {
            return Ok(None);
        }
        if settings.kafka_topic.trim().is_empty() {
            anyhow::bail!("KAFKA_TOPIC is empty");
        }
        if settings.kafka_claim_lease_ms < 1_000 {
            anyhow::bail!("KAFKA_CLAIM_LEASE_MS must be at least 1000");
        }
        let credentials = match (&settings.kafka_sasl_username, &settings.kafka_sasl_password) {
            (Some(username), Some(password)) => {
                Some(Credentials::new(username.clone(), password.clone()))
            }
            (None, None) => None,
            _ => anyhow::bail!(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD go together: set both or neither"
            ),
        };
        let sasl = match (settings.kafka_sasl_mechanism, credentials) {
            (Some(mechanism), Some(credentials)) => Some(match mechanism {
                KafkaSaslMechanism::Plain => SaslConfig::Plain(credentials),
                KafkaSaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                KafkaSaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            }),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!(
                "KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            ),
            (None, Some(_)) => anyhow::bail!(
                "KAFKA_SASL_USERNAME is set without KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            ),
        };
        let tls = if settings.kafka_tls || settings.kafka_tls_ca_file.is_some() {
            Some(Arc::new(tls_config(settings.kafka_tls_ca_file.as_deref())?))
        } else {
            None
        };
        Ok(Some(ExportConfig {
            brokers,
            topic: settings.kafka_topic.trim().to_owned(),
            sasl,
            tls,
            lease: Duration::from_millis(settings.kafka_claim_lease_ms),
        }))
    }

    /// The longest one batch may take to publish: half the lease, so that
    /// it is over (published or given up) before another node may take its
    /// rows.
    pub fn publish_deadline(&self) -> Duration {
        (self.lease / 2).min(Duration::from_secs(10))
    }
}

/// TLS to the brokers: the certificate authority of `ca_file`, else the
/// system's.
fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect())
                .with_context(|| format!("KAFKA_TLS_CA_FILE: cannot read {}", path.display()))?;
            if certificates.is_empty() {
                anyhow::bail!("KAFKA_TLS_CA_FILE: no certificate in {}", path.display());
            }
            for certificate in certificates {
                roots.add(certificate).with_context(|| {
                    format!("KAFKA_TLS_CA_FILE: a bad certificate in {}", path.display())
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                anyhow::bail!(
                    "KAFKA_TLS: the system trusts no certificate authority; set KAFKA_TLS_CA_FILE"
                );
            }
        }
    }
    // The provider named, rather than the process default, which is
    // ambiguous when several crates bring one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("KAFKA_TLS: no TLS version in common")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), which its default
/// partitioner applies to a record's key.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among
/// `partitions`, so that one conversation's events share a partition (and
/// so an order) and any producer of the same key agrees.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// The Kafka key of a row: its conversation's id, as text.
pub fn key_of(row: &OutboxRow) -> String {
    row.conversation_id.to_string()
}

fn record_of(row: &OutboxRow) -> Record {
    Record {
        key: Some(key_of(row).into_bytes()),
        value: Some(row.event_json()),
        // For consumers that route or deduplicate without parsing JSON.
        headers: BTreeMap::from([
            ("event_id".to_owned(), row.event_id.to_string().into_bytes()),
            ("type".to_owned(), row.kind.clone().into_bytes()),
            (
                "schema".to_owned(),
                crate::store::outbox::SCHEMA.to_string().into_bytes(),
            ),
        ]),
        timestamp: row.created_at,
    }
}

/// What became of a batch.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Acknowledged by the brokers.
    pub published: Vec<i64>,
    /// Not acknowledged (a failed request and every later row of its
    /// partition): to be published again.
    pub unpublished: Vec<i64>,
    /// The first failure, for the log.
    pub error: Option<String>,
}

/// A connection to the brokers and the topic's partitions.
pub struct Kafka {
    client: Client,
    topic: String,
    partitions: i32,
    partition_clients: HashMap<i32, Arc<PartitionClient>>,
}

impl Kafka {
    /// Connects and reads how many partitions the topic has. The topic must
    /// exist: its partitions and retention are the operators' choice.
    pub async fn connect(config: &ExportConfig, client_id: &str) -> anyhow::Result<Kafka> {
        let connect = async {
            let mut builder = ClientBuilder::new(config.brokers.clone())
                .client_id(client_id.to_owned())
                // rskafka retries a failing request forever by default: the
                // deadline hands a failure back, and the exporter's own
                // backoff (which gives the rows back) takes over.
                .backoff_config(BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                    deadline: Some(config.publish_deadline()),
                });
            if let Some(tls) = &config.tls {
                builder = builder.tls_config(tls.clone());
            }
            if let Some(sasl) = &config.sasl {
                builder = builder.sasl_config(sasl.clone());
            }
            let client = builder.build().await.context("reaching the brokers")?;
            let topics = client.list_topics().await.context("listing topics")?;
            let partitions = topics
                .iter()
                .find(|topic| topic.name == config.topic)
                .map(|topic| topic.partitions.len())
                .filter(|count| *count > 0)
                .with_context(|| format!("the topic {} does not exist", config.topic))?;
            anyhow::Ok(Kafka {
                client,
                topic: config.topic.clone(),
                partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
                partition_clients: HashMap::new(),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow::anyhow!("the brokers did not answer within {CONNECT_TIMEOUT:?}"))?
    }

    async fn partition_client(&mut self, partition: i32) -> anyhow::Result<Arc<PartitionClient>> {
        if let Some(client) = self.partition_clients.get(&partition) {
            return Ok(client.clone());
        }
        let client = Arc::new(
            self.client
                .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Error)
                .await
                .with_context(|| format!("reaching partition {partition}"))?,
        );
        self.partition_clients.insert(partition, client.clone());
        Ok(client)
    }

    /// Publishes `rows` (in `seq` order), each to its key's partition. The
    /// partitions are written at once; within one, requests go one after
    /// the other in `seq` order and the first failure stops it, so that a
    /// conversation's events are never acknowledged out of order.
    pub async fn publish(&mut self, rows: &[OutboxRow]) -> Outcome {
        let mut by_partition: BTreeMap<i32, Vec<&OutboxRow>> = BTreeMap::new();
        for row in rows {
            let partition = partition_for(key_of(row).as_bytes(), self.partitions);
            by_partition.entry(partition).or_default().push(row);
        }
        let mut outcome = Outcome::default();
        let mut writes = Vec::new();
        for (partition, rows) in by_partition {
            match self.partition_client(partition).await {
                Ok(client) => writes.push(publish_partition(client, rows)),
                Err(error) => {
                    outcome.error.get_or_insert(format!("{error:#}"));
                    outcome.unpublished.extend(rows.iter().map(|row| row.seq));
                }
            }
        }
        for (published, unpublished, error) in join_all(writes).await {
            outcome.published.extend(published);
            outcome.unpublished.extend(unpublished);
            if let Some(error) = error {
                outcome.error.get_or_insert(error);
            }
        }
        outcome
    }
}

/// One partition's rows, in requests of at most [`MAX_REQUEST_BYTES`]:
/// (published, unpublished, the failure).
async fn publish_partition(
    client: Arc<PartitionClient>,
    rows: Vec<&OutboxRow>,
) -> (Vec<i64>, Vec<i64>, Option<String>) {
    let mut published = Vec::new();
    let mut pending = rows.iter().peekable();
    while pending.peek().is_some() {
        let mut records = Vec::new();
        let mut seqs = Vec::new();
        let mut bytes = 0;
        while let Some(row) = pending.peek() {
            let record = record_of(row);
            let size = record.approximate_size();
            if !records.is_empty() && bytes + size > MAX_REQUEST_BYTES {
                break;
            }
            bytes += size;
            records.push(record);
            seqs.push(row.seq);
            pending.next();
        }
        if let Err(error) = client.produce(records, Compression::NoCompression).await {
            let unpublished = seqs.into_iter().chain(pending.map(|row| row.seq)).collect();
            let error = format!("producing to partition {}: {error}", client.partition());
            return (published, unpublished, Some(error));
        }
        published.extend(seqs);
    }
    (published, Vec::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // Apache Kafka's own vectors (UtilsTest.testMurmur2).
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
    }

    #[test]
    fn partitions_stay_in_range() {
        for partitions in 1..8 {
            for i in 0..200 {
                let key = uuid::Uuid::from_u128(i * 7_919).to_string();
                let partition = partition_for(key.as_bytes(), partitions);
                assert!((0..partitions).contains(&partition));
                assert_eq!(partition, partition_for(key.as_bytes(), partitions));
            }
        }
    }

    #[test]
    fn settings_that_do_not_fit_are_refused() {
        let mut settings = Settings::defaults();
        assert!(ExportConfig::from_settings(&settings).unwrap().is_none());
        settings.kafka_brokers = vec!["127.0.0.1:9092".into()];
        let config = ExportConfig::from_settings(&settings).unwrap().unwrap();
        assert_eq!(config.topic, "chatstream.events");
        assert!(config.sasl.is_none() && config.tls.is_none());
        settings.kafka_sasl_mechanism = Some(KafkaSaslMechanism::ScramSha512);
        let error = ExportConfig::from_settings(&settings).unwrap_err();
        assert!(error.to_string().contains("KAFKA_SASL_USERNAME"));
        settings.kafka_sasl_username = Some("chat".into());
        settings.kafka_sasl_password = Some("secret".into());
        let config = ExportConfig::from_settings(&settings).unwrap().unwrap();
        assert!(matches!(config.sasl, Some(SaslConfig::ScramSha512(_))));
        assert!(!format!("{config:?}").contains("secret"));
        settings.kafka_tls_ca_file = Some("/nonexistent/ca.pem".into());
        let error = ExportConfig::from_settings(&settings).unwrap_err();
        assert!(format!("{error:#}").contains("KAFKA_TLS_CA_FILE"));
    }
}
