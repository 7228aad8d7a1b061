//! The engine's connection to Redis: one server (a RESP3 connection
//! manager) or a Redis Cluster (the redis crate's async cluster client,
//! which follows the slots as they move). Both reconnect and resubscribe by
//! themselves and hand every push (published events, disconnections) to one
//! channel. The engine speaks to either through `ConnectionLike`, and asks
//! this type only where the two differ: how a channel is subscribed to and
//! published on, and how commands on keys of different slots are sent.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    ClientTlsConfig, Cmd, FromRedisValue, Pipeline, PushInfo, RedisFuture, RedisResult,
    TlsCertificates, Value,
};
use tokio::sync::mpsc;

use super::slots::CLUSTER_SLOTS;

/// Where Redis is, and how to reach it.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// One server's URL, or a cluster's seed nodes.
    pub urls: Vec<String>,
    /// Whether `urls` are the seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// PEM certificate authority for `rediss://`, when not one the system
    /// trusts.
    pub tls_ca: Option<Vec<u8>>,
    /// PEM client certificate and key, for a Redis that asks for one.
    pub tls_client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTarget {
    /// One server at `url`, trusted as the system trusts it.
    pub fn single(url: &str) -> RedisTarget {
        RedisTarget {
            urls: vec![url.to_owned()],
            cluster: false,
            tls_ca: None,
            tls_client: None,
        }
    }

    /// A Redis Cluster reached through `seeds`.
    pub fn cluster(seeds: &[String]) -> RedisTarget {
        RedisTarget {
            urls: seeds.to_vec(),
            cluster: true,
            tls_ca: None,
            tls_client: None,
        }
    }

    fn certificates(&self) -> Option<TlsCertificates> {
        if self.tls_ca.is_none() && self.tls_client.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .tls_client
                .clone()
                .map(|(client_cert, client_key)| ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: self.tls_ca.clone(),
        })
    }
}

/// RESP3 (pushes on the command connection) unless the URL says otherwise.
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

#[derive(Clone)]
pub enum Link {
    Single(ConnectionManager),
    Cluster {
        commands: ClusterConnection,
        /// Carries only `SSUBSCRIBE` and `SUNSUBSCRIBE`. When a slot moves,
        /// Redis tells its shard channels' subscribers with a `sunsubscribe`
        /// push that nobody asked for, which the client takes for the
        /// answer to the oldest command in flight on that connection: on
        /// this one, at worst a subscription's confirmation, never the
        /// answer to a write.
        subscriptions: ClusterConnection,
    },
}

impl Link {
    /// Connects to `target`; every push goes to `pushes`.
    pub async fn connect(
        target: &RedisTarget,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<Link> {
        let urls: Vec<String> = target.urls.iter().map(|u| with_resp3(u)).collect();
        if target.cluster {
            let builder = || {
                let builder = ClusterClientBuilder::new(urls.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(3))
                    // A master's failover takes its replica a few seconds
                    // to complete; commands meanwhile wait and retry.
                    .retries(8)
                    .max_retry_wait(1_000);
                match target.certificates() {
                    Some(certificates) => builder.certs(certificates),
                    None => builder,
                }
            };
            let commands = builder().build()?.get_async_connection().await?;
            let subscriptions = builder()
                .push_sender(pushes)
                .build()?
                .get_async_connection()
                .await?;
            return Ok(Link::Cluster {
                commands,
                subscriptions,
            });
        }
        let url = urls.first().cloned().unwrap_or_default();
        let client = match target.certificates() {
            Some(certificates) => redis::Client::build_with_tls(url, certificates)?,
            None => redis::Client::open(url)?,
        };
        let config = ConnectionManagerConfig::new()
            .set_push_sender(pushes)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_max_delay(Duration::from_secs(1));
        Ok(Link::Single(
            client.get_connection_manager_with_config(config).await?,
        ))
    }

    /// Slots keys are spread over: one for a single server, where the
    /// whole keyspace is one unit of failure.
    pub fn slots(&self) -> usize {
        match self {
            Link::Single(_) => 1,
            Link::Cluster { .. } => CLUSTER_SLOTS,
        }
    }

    /// The command that publishes a conversation's events: sharded on a
    /// cluster, so that they travel only through the conversation's shard.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Link::Single(_) => "PUBLISH",
            Link::Cluster { .. } => "SPUBLISH",
        }
    }

    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Link::Single(connection) => connection.subscribe(channel).await,
            Link::Cluster { subscriptions, .. } => subscriptions.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Link::Single(connection) => connection.unsubscribe(channel).await,
            Link::Cluster { subscriptions, .. } => subscriptions.sunsubscribe(channel).await,
        }
    }

    pub async fn publish(&mut self, channel: &str, payload: &str) -> RedisResult<()> {
        redis::cmd(self.publish_command())
            .arg(channel)
            .arg(payload)
            .query_async(self)
            .await
    }

    /// Runs independent commands and answers each one's answer, in order:
    /// one pipeline on a single server; on a cluster, where a pipeline must
    /// stay in one slot, each command on its own, all at once.
    pub async fn query_each<T: FromRedisValue>(
        &mut self,
        commands: Vec<Cmd>,
    ) -> RedisResult<Vec<T>> {
        match self {
            Link::Single(connection) => {
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command);
                }
                pipe.query_async(connection).await
            }
            Link::Cluster {
                commands: connection,
                ..
            } => {
                try_join_all(commands.into_iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<T>(&mut connection).await }
                }))
                .await
            }
        }
    }

    /// `query_each` for commands whose answers nobody reads.
    pub async fn run_each(&mut self, commands: Vec<Cmd>) -> RedisResult<()> {
        self.query_each::<Value>(commands).await.map(drop)
    }

    /// One slot of each slot range of the cluster's masters (on a single
    /// server, the one slot): a data loss on any master shows in the
    /// sentinel of its ranges' first slots.
    pub async fn range_starts(&mut self) -> RedisResult<Vec<u16>> {
        let Link::Cluster {
            commands: connection,
            ..
        } = self
        else {
            return Ok(vec![0]);
        };
        let ranges = connection
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").to_owned(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let Value::Array(ranges) = ranges else {
            return Ok(Vec::new());
        };
        let mut starts: Vec<u16> = ranges
            .iter()
            .filter_map(|range| match range {
                Value::Array(fields) => match fields.first() {
                    Some(Value::Int(start)) => u16::try_from(*start).ok(),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        starts.sort_unstable();
        Ok(starts)
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster { commands, .. } => commands.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster { commands, .. } => commands.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster { commands, .. } => commands.get_db(),
        }
    }
}
