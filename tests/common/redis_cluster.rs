//! A real Redis Cluster per test: six `redis-server` processes in cluster
//! mode (three masters, each with a replica) on free ports in a temporary
//! directory, joined by `redis-cli --cluster create`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    servers: Vec<Server>,
}

/// One server's process and the ports it keeps across restarts.
struct Server {
    port: u16,
    bus_port: u16,
    child: Child,
}

const SERVERS: usize = 6;

/// Distinct free ports: all are bound before any is released, so that none
/// is answered twice.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One line of `CLUSTER NODES`: a server's port, role and, for a
/// replica, its master's id.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub master_id: Option<String>,
    /// The slot ranges a master serves.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir =
            std::env::temp_dir().join(format!("chatstream-redis-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            dir,
            servers: Vec::new(),
        };
        for _ in 0..SERVERS {
            let server = cluster.spawn_on_free_ports();
            cluster.ports.push(server.port);
            cluster.servers.push(server);
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_until_settled();
        cluster
    }

    /// Seed node URLs for `REDIS_CLUSTER_NODES` (two of them, as an operator
    /// would give a few).
    pub fn seeds(&self) -> Vec<String> {
        self.ports[..2]
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Starts one server on a free client port and a free cluster-bus
    /// port. A port found free may be taken by another test before the
    /// server binds it; then the server exits, and another pair is tried.
    fn spawn_on_free_ports(&self) -> Server {
        for _ in 0..5 {
            let ports = free_ports(2);
            if let Some(server) = self.spawn(ports[0], ports[1]) {
                return server;
            }
        }
        panic!("no redis-server of the cluster could bind its ports");
    }

    /// Starts the server of `port` (its data directory keeps only its
    /// `nodes.conf`, so it rejoins as the same node); `None` if it exits.
    fn spawn(&self, port: u16, bus_port: u16) -> Option<Server> {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("redis.log"))
            .unwrap();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        if self.wait_answering(port, &mut child) {
            return Some(Server {
                port,
                bus_port,
                child,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the server on `port` and starts it again at once, with no data
    /// (the cluster runs without persistence), before the cluster counts it
    /// as failed: a master comes back empty, and its replica, syncing from
    /// it, empties too. Waits until the cluster is settled again.
    pub fn restart_empty(&mut self, port: u16) {
        let index = self.servers.iter().position(|s| s.port == port).unwrap();
        let mut server = self.servers.remove(index);
        let _ = server.child.kill();
        let _ = server.child.wait();
        let restarted = self
            .spawn(server.port, server.bus_port)
            .expect("the server starts again on its ports");
        self.servers.insert(index, restarted);
        self.wait_until_settled();
    }

    fn connection(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    /// Waits until the server on `port` answers (true) or exits (false).
    fn wait_answering(&self, port: u16, child: &mut Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        loop {
            // Another test's server may answer on a port this one lost.
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(mut connection) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut connection).is_ok()
            {
                return child.try_wait().unwrap().is_none();
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every server reports the cluster `ok` and agrees on
    /// three masters covering every slot, each with a replica in sync.
    pub fn wait_until_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let settled = self.ports.iter().all(|&port| {
                let mut connection = self.connection(port);
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut connection)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            }) && {
                let nodes = self.nodes();
                let masters: Vec<_> = nodes.iter().filter(|n| n.master).collect();
                let covered: u32 = masters
                    .iter()
                    .flat_map(|m| &m.slots)
                    .map(|(a, b)| u32::from(b - a) + 1)
                    .sum();
                masters.len() == 3
                    && covered == 16_384
                    && masters.iter().all(|m| {
                        nodes
                            .iter()
                            .any(|r| r.master_id.as_deref() == Some(&m.id) && self.in_sync(r.port))
                    })
            };
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not settle"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the replica on `port` is connected to its master.
    fn in_sync(&self, port: u16) -> bool {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut self.connection(port))
            .unwrap_or_default();
        info.contains("master_link_status:up")
    }

    /// The cluster as its first answering server sees it.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let text: String = self
            .ports
            .iter()
            .find_map(|&port| {
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut self.connection(port))
                    .ok()
            })
            .expect("a server answers CLUSTER NODES");
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                let flags = fields.get(2)?;
                let master = flags.contains("master") && !flags.contains("fail");
                let slots = fields
                    .iter()
                    .skip(8)
                    .filter_map(|range| {
                        let (a, b) = range.split_once('-').unwrap_or((range, range));
                        Some((a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect();
                Some(ClusterNode {
                    id: fields[0].to_owned(),
                    port,
                    master,
                    master_id: (fields.get(3) != Some(&"-")).then(|| fields[3].to_owned()),
                    slots,
                })
            })
            .collect()
    }

    /// The master serving `slot`.
    pub fn master_of(&self, slot: u16) -> ClusterNode {
        self.nodes()
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .expect("every slot has a master")
    }

    /// A manual failover of the master on `master_port`: its replica runs
    /// `CLUSTER FAILOVER` (the master stops taking writes, the replica
    /// catches up, then takes its slots over) and this waits until it
    /// serves them and the old master follows it. Answers the new master's
    /// port.
    pub fn fail_over(&self, master_port: u16) -> u16 {
        let nodes = self.nodes();
        let master = nodes.iter().find(|n| n.port == master_port).unwrap();
        let replica = nodes
            .iter()
            .find(|n| n.master_id.as_deref() == Some(&master.id))
            .expect("the master has a replica");
        let answer: String = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.connection(replica.port))
            .unwrap();
        assert_eq!(answer, "OK");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .nodes()
            .iter()
            .any(|n| n.port == replica.port && n.master && !n.slots.is_empty())
        {
            assert!(Instant::now() < deadline, "the failover did not complete");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_settled();
        replica.port
    }

    /// Moves `slot` to the master on `to_port` as `redis-cli --cluster
    /// reshard` does, one slot at a time: the slot is marked importing on
    /// the target and migrating on its owner, its keys are moved a batch at
    /// a time (`MIGRATE`) while clients keep writing (they are sent on with
    /// `ASK`, or told `TRYAGAIN` by a command whose keys are split), then
    /// every master is told the slot's new owner.
    pub fn move_slot(&self, slot: u16, to_port: u16) {
        let from = self.master_of(slot);
        let nodes = self.nodes();
        let to = nodes.iter().find(|n| n.port == to_port).unwrap();
        assert!(
            to.master && to.port != from.port,
            "a move to another master"
        );
        let setslot = |port: u16, state: &str, id: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .query(&mut self.connection(port))
                .unwrap();
        };
        setslot(to.port, "IMPORTING", &from.id);
        setslot(from.port, "MIGRATING", &to.id);
        let mut source = self.connection(from.port);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to.port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut source)
                .unwrap();
        }
        for master in nodes.iter().filter(|n| n.master) {
            setslot(master.port, "NODE", &to.id);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.master_of(slot).port != to.port {
            assert!(Instant::now() < deadline, "the slot did not move");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_settled();
    }

    /// Keys a server holds (`DBSIZE`).
    pub fn keys_on(&self, port: u16) -> u64 {
        redis::cmd("DBSIZE")
            .query(&mut self.connection(port))
            .unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
