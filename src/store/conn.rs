//! The one Redis connection type of the switch: a managed connection to one Redis, or a
//! Redis Cluster client (`redis.cluster = true`), behind one [`redis::aio::ConnectionLike`]
//! so every query, script and pipeline of the store runs unchanged on both.
//!
//! On a cluster every request script touches one slot (the keys of one institution carry
//! the hash tag `{<institution>}`; a reference binding is a key of its own slot), so the
//! client routes it by its first key. `MOVED`/`ASK` redirections and a failover (a replica
//! promoted) are followed by redis-rs's cluster client (an `ASK` of a whole pipeline is
//! not, so such a pipeline is sent again command by command: [`Conn::one_slot_pipeline`]);
//! what still fails after its retries (a script refused `TRYAGAIN` while its slot
//! migrates) is a [`redis::RedisError`] the caller retries: never an answer from a guess.
//!
//! Scripts are loaded on the masters only, so a replica promoted by a failover answers
//! `NOSCRIPT` and the store re-applies the journal before it runs anything there (the
//! writes its old master had not replicated are given back; see `Store::eval`).
//!
//! A pipeline whose commands fall in one slot is sent as one pipeline to that slot's
//! master. A pipeline over several slots is split into one pipeline per slot, sent
//! concurrently, and the replies put back in the pipeline's order (a pipeline was never
//! atomic across keys): the start of every payment (the reference binding's slot and the
//! institution's), the journal's recovery batches and its reading of the marks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{RedisSettings, StoreError};

/// A Redis connection: one server or a cluster. Cheap to clone (both are multiplexed
/// handles onto shared connections).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<Cluster>),
}

/// The cluster client, made again from the seeds when failures have kept coming (none more
/// than [`Cluster::STREAK_GAP`] apart) for [`Cluster::REBUILD_AFTER`], whatever succeeded
/// on other slots meanwhile: redis-rs refreshes its slot map on `MOVED` and on a lost
/// connection, but a client whose requests keep timing out against a dead master can keep
/// its old map (seen in tests/scale_out.rs); a fresh client asks the seeds again. While a
/// master stays down that is one new client every 3 s; requests already sent finish on the
/// old one.
pub struct Cluster {
    client: redis::cluster::ClusterClient,
    /// A plain client of one node (`host`, `port`) with the cluster's credentials and TLS:
    /// for the replicas, which the cluster client only reaches by its own routing.
    node: Box<dyn Fn(&str, u16) -> Result<redis::Client, StoreError> + Send + Sync>,
    config: redis::cluster::ClusterConfig,
    current: std::sync::RwLock<ClusterConnection>,
    /// (first failure of the current streak, last failure), and when the client was made.
    health: std::sync::Mutex<(Option<(Instant, Instant)>, Instant)>,
}

impl Cluster {
    /// Failures this long without a pause of [`Cluster::STREAK_GAP`] rebuild the client.
    pub const REBUILD_AFTER: Duration = Duration::from_secs(3);
    /// A gap this long between two failures ends a streak.
    pub const STREAK_GAP: Duration = Duration::from_secs(1);

    fn connection(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Notes how a command went; a long streak of failures makes a new client.
    fn note(&self, failed: bool) {
        if !failed {
            return;
        }
        let now = Instant::now();
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (first, _) = match h.0 {
            Some((first, last)) if now - last < Self::STREAK_GAP => (first, now),
            _ => (now, now),
        };
        h.0 = Some((first, now));
        if now - first >= Self::REBUILD_AFTER && now - h.1 >= Self::REBUILD_AFTER {
            tracing::warn!(
                failing_for_ms = (now - first).as_millis() as u64,
                "redis cluster: commands keep failing; asking the seeds for the cluster's map again"
            );
            let fresh = self
                .client
                .get_pending_async_connection_with_config(self.config.clone());
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            *h = (None, now);
        }
    }

    async fn run<T>(
        self: Arc<Self>,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let r = f.await;
        if let Err(e) = &r {
            self.note(
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_cluster_error(),
            );
        }
        r
    }
}

impl Conn {
    /// Whether this is a cluster client.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// `PING` to one node (on a cluster, a random one; redis-rs would ask every master).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ping_any(&self) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => redis::cmd("PING").query_async(&mut c.clone()).await,
            Conn::Cluster(c) => {
                let v = c
                    .connection()
                    .route_command(
                        redis::cmd("PING"),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                Ok(redis::from_redis_value(v)?)
            }
        }
    }

    /// The address (`host:port`) of every master of the cluster, from `CLUSTER SLOTS`;
    /// `None` on a single Redis. For the commands that must visit each master: `SCAN`,
    /// `CONFIG GET`.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn masters(&self) -> redis::RedisResult<Option<Vec<(String, u16)>>> {
        let Conn::Cluster(c) = self else {
            return Ok(None);
        };
        let c = c.connection();
        let mut out: Vec<(String, u16)> = Vec::new();
        for (master, _) in cluster_nodes(&c).await? {
            if !out.contains(&master) {
                out.push(master);
            }
        }
        Ok(Some(out))
    }

    /// The nodes a per-node command visits in turn with [`Conn::on_node`]: every master of
    /// a cluster, or `[None]` (the one server).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn each_node(&self) -> redis::RedisResult<Vec<Option<(String, u16)>>> {
        Ok(match self.masters().await? {
            Some(m) => m.into_iter().map(Some).collect(),
            None => vec![None],
        })
    }

    /// Flushes the script cache of every replica that holds the script `sha` (the store's
    /// probe): a master demoted without a restart keeps its scripts, and promoted again it
    /// would run them on the writes it missed instead of answering `NOSCRIPT` (see the
    /// module's docs). Returns how many replicas were flushed; 0 on a single Redis.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn flush_replica_scripts(&self, sha: &str) -> redis::RedisResult<usize> {
        let Conn::Cluster(c) = self else {
            return Ok(0);
        };
        let conn = c.connection();
        let mut replicas: Vec<(String, u16)> = Vec::new();
        for (_, rs) in cluster_nodes(&conn).await? {
            for r in rs {
                if !replicas.contains(&r) {
                    replicas.push(r);
                }
            }
        }
        let mut flushed = 0;
        for (host, port) in replicas {
            // A plain connection of its own: a replica is never reached through the
            // cluster client's routing (a miss there makes it reconnect everything).
            let Ok(client) = (c.node)(&host, port) else {
                continue;
            };
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)));
            let Ok(mut node) = client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
            else {
                continue;
            };
            let exists: Vec<i64> = redis::cmd("SCRIPT")
                .arg("EXISTS")
                .arg(sha)
                .query_async(&mut node)
                .await?;
            if exists.first() == Some(&1) {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut node)
                    .await?;
                tracing::warn!(replica = %format!("{host}:{port}"), "redis cluster: a replica held the switch's scripts (a demoted master?): flushed, so that it answers NOSCRIPT if promoted");
                flushed += 1;
            }
        }
        Ok(flushed)
    }

    /// Runs the keyless `cmd` (`SCAN`, `INFO`) on the master of `key`'s slot (a cluster),
    /// or on the server itself (a single Redis): for the commands about one institution's
    /// keys, which share its hash tag.
    ///
    /// # Errors
    /// Redis unreachable, the command's own error.
    pub async fn on_master_of<T: redis::FromRedisValue>(
        &self,
        key: &str,
        cmd: &Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Cluster(c) => {
                let v = c
                    .connection()
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                            Route::with_key(key, SlotAddr::Master),
                        )),
                    )
                    .await?;
                Ok(redis::from_redis_value(v)?)
            }
            _ => cmd.query_async(&mut self.clone()).await,
        }
    }

    /// Runs `cmd` on one node: the master at `host:port` on a cluster (see
    /// [`Conn::masters`]), the server itself on a single Redis.
    ///
    /// # Errors
    /// Redis unreachable, the command's own error.
    pub async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> redis::RedisResult<T> {
        match (self, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let v = c
                    .connection()
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        }),
                    )
                    .await?;
                Ok(redis::from_redis_value(v)?)
            }
            _ => cmd.query_async(&mut self.clone()).await,
        }
    }

    /// A pipeline of one slot. While that slot migrates to another master, redis-rs follows
    /// an `ASK` for a whole pipeline by sending `ASKING` once and then every command, so all
    /// but the first are refused by the importing node (`MOVED` back) and the pipeline
    /// fails after its retries. Then (and only for such cluster errors) its commands are
    /// sent again one by one, in order: redis-rs follows `ASK`, `MOVED` and `TRYAGAIN` for
    /// a single command correctly. A pipeline was never atomic, and every pipeline of the
    /// store may run again (the switch retries a whole request on any error), so a command
    /// that had run before the failure running once more changes nothing.
    async fn one_slot_pipeline(
        mut c: ClusterConnection,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        match c.req_packed_commands(pipeline, offset, count).await {
            Err(e) if offset == 0 && e.is_cluster_error() => {
                metrics::counter!(crate::metrics::REDIS_PIPELINE_FALLBACKS_TOTAL).increment(1);
                // A keyless command (the store's probe that the node still knows its
                // scripts) goes to the master of the pipeline's slot, as in the pipeline:
                // alone, redis-rs would send it to any node, a replica included.
                let master = pipeline.cmd_iter().find_map(slot_tag).map(|tag| {
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                        tag,
                        SlotAddr::Master,
                    )))
                });
                let mut out = Vec::with_capacity(count);
                for cmd in pipeline.cmd_iter() {
                    out.push(match (&master, slot_tag(cmd)) {
                        (Some(route), None) => c.route_command(cmd.clone(), route.clone()).await?,
                        _ => c.req_packed_command(cmd).await?,
                    });
                }
                Ok(out)
            }
            r => r,
        }
    }

    /// Pipelines of a cluster whose commands are in several slots: one pipeline per slot
    /// (a keyless command goes with the next command that has a key), concurrently.
    async fn split_pipeline(
        c: ClusterConnection,
        pipeline: &Pipeline,
        groups: Vec<(Option<Vec<u8>>, Vec<usize>)>,
    ) -> redis::RedisResult<Vec<Value>> {
        let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
        let sends = groups.iter().map(|(_, idx)| {
            let mut p = redis::pipe();
            for &i in idx {
                p.add_command(cmds[i].clone());
            }
            let c = c.clone();
            async move {
                let n = idx.len();
                Conn::one_slot_pipeline(c, &p, 0, n).await
            }
        });
        let replies = futures::future::try_join_all(sends).await?;
        let mut out = vec![Value::Nil; cmds.len()];
        for ((_, idx), vals) in groups.iter().zip(replies) {
            for (&i, v) in idx.iter().zip(vals) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// What decides the slot of a command: the hash tag (`{...}`) of its first key, or the
/// whole key without one; `None` for a keyless command. Commands with the same tag are in
/// one slot (different tags may share a slot too; they are merely sent apart).
fn slot_tag(cmd: &Cmd) -> Option<Vec<u8>> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVALSHA" | b"EVAL" | b"EVALSHA_RO" | b"EVAL_RO" => {
            let n: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if n == 0 {
                return None;
            }
            *args.get(3)?
        }
        b"PING" | b"SCRIPT" | b"INFO" | b"CONFIG" | b"CLUSTER" | b"WAIT" | b"SCAN"
        | b"FLUSHALL" | b"FLUSHDB" | b"DBSIZE" | b"TIME" => return None,
        _ => *args.get(1)?,
    };
    let tag = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    Some(tag.to_vec())
}

/// Every slot range's master and replicas (`host`, `port`), from `CLUSTER SLOTS`: each range
/// is `[start, end, [host, port, id, ...] of the master, [...] of each replica]`.
async fn cluster_nodes(
    c: &ClusterConnection,
) -> redis::RedisResult<Vec<((String, u16), Vec<(String, u16)>)>> {
    fn addr(v: &Value) -> Option<(String, u16)> {
        let fields = redis::from_redis_value::<Vec<Value>>(v.clone()).ok()?;
        let host = redis::from_redis_value::<String>(fields.first()?.clone()).ok()?;
        let port = redis::from_redis_value::<u16>(fields.get(1)?.clone()).ok()?;
        Some((host, port))
    }
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut c.clone())
        .await?;
    Ok(ranges
        .iter()
        .filter_map(|r| {
            let master = addr(r.get(2)?)?;
            Some((master, r.iter().skip(3).filter_map(addr).collect()))
        })
        .collect())
}

/// Commands a cluster runs on every master, never on a replica: `SCRIPT LOAD` (redis-rs
/// sends it to every node; a replica that holds the scripts would, once promoted, run them
/// on the writes it missed instead of answering `NOSCRIPT`, the switch's sign that a
/// recovery is due: see `Store::eval`), and a keyless `EVALSHA` (the probe of
/// `Store::ensure_ready`: every master must know the scripts).
fn on_every_master(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
    });
    let (Some(name), second, third) = (args.next(), args.next(), args.next()) else {
        return false;
    };
    match name.to_ascii_uppercase().as_slice() {
        b"SCRIPT" => second.is_some_and(|s| s.eq_ignore_ascii_case(b"LOAD")),
        b"EVALSHA" => third == Some(b"0".as_slice()),
        _ => false,
    }
}

/// Groups a pipeline's commands by slot, in order; `None` when it is all one slot (or
/// keyless), so it goes as it is.
fn slot_groups(pipeline: &Pipeline) -> Option<Vec<(Option<Vec<u8>>, Vec<usize>)>> {
    let mut groups: Vec<(Option<Vec<u8>>, Vec<usize>)> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for (i, cmd) in pipeline.cmd_iter().enumerate() {
        pending.push(i);
        if let Some(tag) = slot_tag(cmd) {
            match groups.iter_mut().find(|(t, _)| t.as_ref() == Some(&tag)) {
                Some((_, idx)) => idx.append(&mut pending),
                None => groups.push((Some(tag), std::mem::take(&mut pending))),
            }
        }
    }
    if groups.len() <= 1 {
        return None;
    }
    if !pending.is_empty() {
        groups.push((None, pending));
    }
    Some(groups)
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => {
                let mut conn = c.connection();
                let cmd = cmd.clone();
                let run = async move {
                    if on_every_master(&cmd) {
                        let all = RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllMasters,
                            Some(ResponsePolicy::AllSucceeded),
                        ));
                        conn.route_command(cmd, all).await
                    } else {
                        conn.req_packed_command(&cmd).await
                    }
                };
                Box::pin(c.clone().run(run))
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => {
                let conn = c.connection();
                let pipeline = pipeline.clone();
                let run = async move {
                    match slot_groups(&pipeline) {
                        // A plain pipeline (offset 0) over several slots; a transaction
                        // (MULTI/EXEC, offset > 0) over several slots is refused by Redis.
                        Some(groups) if offset == 0 => {
                            Conn::split_pipeline(conn, &pipeline, groups).await
                        }
                        Some(_) => {
                            let mut conn = conn;
                            conn.req_packed_commands(&pipeline, offset, count).await
                        }
                        // No command with a key (`TIME` behind the store's probe): redis-rs
                        // would send it to any node, a replica included, which never holds
                        // the scripts (answering `NOSCRIPT`, a recovery for nothing). Any
                        // master will do.
                        None if pipeline.cmd_iter().all(|c| slot_tag(c).is_none()) => {
                            let mut conn = conn;
                            conn.route_pipeline(
                                pipeline,
                                offset,
                                count,
                                SingleNodeRoutingInfo::RandomPrimary,
                            )
                            .await
                        }
                        None => Conn::one_slot_pipeline(conn, &pipeline, offset, count).await,
                    }
                };
                Box::pin(c.clone().run(run))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

/// The connection `settings` describe: its URL (and, on a cluster, `seed_urls`), TLS roots
/// and client certificate (`rediss://`), ACL user and password (from the environment),
/// command and connect timeouts. Lazy: made at the first command, re-made after failures,
/// so the daemon starts (not ready) while Redis is down. The one place a Redis connection
/// is set up (the store, the webhook gate).
///
/// # Errors
/// An invalid URL, a TLS file that cannot be read.
pub fn connect(settings: &RedisSettings) -> Result<Conn, StoreError> {
    use redis::IntoConnectionInfo;
    let password = settings.password_env.as_ref().map(|var| {
        settings
            .password_resolved
            .clone()
            .unwrap_or_else(|| std::env::var(var).unwrap_or_default())
    });
    let read = |key: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, StoreError> {
        path.as_ref()
            .map(|p| {
                std::fs::read(p).map_err(|e| StoreError::Corrupt {
                    key: key.to_owned(),
                    reason: format!("cannot read {p}: {e}"),
                })
            })
            .transpose()
    };
    let root_cert = read("redis.ca_file", &settings.ca_file)?;
    let client_cert = read("redis.client_cert_file", &settings.client_cert_file)?;
    let client_key = read("redis.client_key_file", &settings.client_key_file)?;
    let certificates =
        (settings.tls() && (root_cert.is_some() || client_cert.is_some())).then(|| {
            redis::TlsCertificates {
                client_tls: match (client_cert, client_key) {
                    (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }),
                    _ => None,
                },
                root_cert,
            }
        });
    let timeout = settings.command_timeout;

    if settings.cluster {
        let mut seeds = vec![settings.url.clone()];
        seeds.extend(settings.seed_urls.iter().cloned());
        let mut b = redis::cluster::ClusterClientBuilder::new(
            seeds
                .iter()
                .map(|u| u.as_str().into_connection_info())
                .collect::<redis::RedisResult<Vec<_>>>()?,
        )
        .connection_timeout(timeout)
        .response_timeout(timeout)
        // MOVED/ASK and a promoted replica are followed within these retries; beyond
        // them the caller gets the error and retries the request later.
        .retries(settings.cluster_retries)
        .min_retry_wait(50)
        .max_retry_wait(500);
        if let Some(u) = &settings.username {
            b = b.username(u);
        }
        if let Some(p) = &password {
            b = b.password(p);
        }
        if let Some(c) = certificates.clone() {
            b = b.certs(c);
        }
        let client = b.build()?;
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let current = client.get_pending_async_connection_with_config(config.clone());
        let (scheme, user) = (
            if settings.tls() { "rediss" } else { "redis" },
            settings.username.clone(),
        );
        let node = move |host: &str, port: u16| -> Result<redis::Client, StoreError> {
            single_client(
                &format!("{scheme}://{host}:{port}/0"),
                user.as_deref(),
                password.clone(),
                certificates.clone(),
            )
        };
        return Ok(Conn::Cluster(Arc::new(Cluster {
            client,
            node: Box::new(node),
            config,
            current: std::sync::RwLock::new(current),
            health: std::sync::Mutex::new((None, Instant::now())),
        })));
    }

    let client = single_client(
        &settings.url,
        settings.username.as_deref(),
        password,
        certificates,
    )?;
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
        client, cfg,
    )?))
}

/// A client of the one Redis at `url`, with the user, password and TLS certificates.
fn single_client(
    url: &str,
    username: Option<&str>,
    password: Option<String>,
    certificates: Option<redis::TlsCertificates>,
) -> Result<redis::Client, StoreError> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let mut who = info.redis_settings().clone();
    if let Some(u) = username {
        who = who.set_username(u);
    }
    if let Some(p) = password {
        who = who.set_password(p);
    }
    let info = info.set_redis_settings(who);
    Ok(match certificates {
        Some(c) => redis::Client::build_with_tls(info, c)?,
        None => redis::Client::open(info)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_split_by_slot_only_when_they_span_several() {
        let mut one = redis::pipe();
        one.cmd("EVALSHA").arg("x").arg(0);
        one.cmd("GET").arg("ipg:{A}:bill:1");
        one.cmd("GET").arg("ipg:{A}:va:2");
        assert!(slot_groups(&one).is_none());

        let mut many = redis::pipe();
        many.cmd("GET").arg("ipg:{A}:bill:1");
        many.cmd("GET").arg("ipg:{B}:bill:1");
        many.cmd("PING");
        many.cmd("GET").arg("ipg:{A}:bill:2");
        let g = slot_groups(&many).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].1, vec![0, 2, 3]);
        assert_eq!(g[1].1, vec![1]);
    }

    #[test]
    fn script_loads_and_keyless_probes_go_to_every_master() {
        assert!(on_every_master(
            redis::cmd("SCRIPT").arg("load").arg("return 1")
        ));
        assert!(on_every_master(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!on_every_master(
            redis::cmd("EVALSHA").arg("abc").arg(1).arg("k")
        ));
        assert!(!on_every_master(
            redis::cmd("SCRIPT").arg("EXISTS").arg("abc")
        ));
        assert!(!on_every_master(redis::cmd("GET").arg("k")));
    }
}
