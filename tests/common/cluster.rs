//! A private Redis Cluster for the tests: `masters` masters with `replicas` replicas each,
//! from Debian's `redis-server` (`--cluster-enabled yes`) on free ports, created with
//! `redis-cli --cluster create`. Quick failover (`cluster-node-timeout` 1 s, any replica may
//! take over) and `cluster-require-full-coverage no`, so a dead master stops only its slots.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Redis};

fn cli() -> String {
    // Beside the redis-server the harness runs (Debian's redis-tools, a dependency).
    let server = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    match std::path::Path::new(&server).parent() {
        Some(dir) if dir.join("redis-cli").exists() => {
            dir.join("redis-cli").to_string_lossy().into_owned()
        }
        _ => "redis-cli".into(),
    }
}

/// `redis-cli -p port args...`, its output (empty when the node does not answer).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(cli())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => String::new(),
    }
}

/// A node of `CLUSTER NODES`: port, whether it is a master (and alive), its slot ranges.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub id: String,
    /// A replica's master's id (`-` for a master).
    pub master_id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

pub fn nodes_of(port: u16) -> Vec<NodeLine> {
    redis_cli(port, &["CLUSTER", "NODES"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f.get(1)?;
            let port: u16 = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = f.get(2)?;
            let slots = f
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(NodeLine {
                id: f.first()?.to_string(),
                master_id: f.get(3)?.to_string(),
                port,
                master: flags.contains("master"),
                failed: flags.contains("fail"),
                slots,
            })
        })
        .collect()
}

impl Redis {
    /// A cluster of `masters` x (1 + `replicas`) nodes; this is its first node (a master).
    pub fn cluster(masters: usize, replicas: usize) -> Redis {
        let n = masters * (1 + replicas);
        let mut nodes: Vec<Redis> = (0..n)
            .map(|_| {
                let port = free_port();
                let bus = free_port();
                let extra: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                    "--cluster-require-full-coverage",
                    "no",
                    "--cluster-allow-reads-when-down",
                    "no",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Redis::start_with(port, &extra)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port))
            .collect();
        let out = Command::new(cli())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli (Debian's redis-tools) runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let first = nodes.remove(0);
        let mut r = first;
        r.peers = nodes;
        r.wait_healthy(masters, Duration::from_secs(60));
        r
    }

    /// Every node's port, the first's included.
    pub fn ports(&self) -> Vec<u16> {
        std::iter::once(self.port)
            .chain(self.peers.iter().map(|p| p.port))
            .collect()
    }

    /// Waits until every live node sees `masters` healthy masters covering all 16384
    /// slots and each of them has its replicas online.
    pub fn wait_healthy(&self, masters: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.healthy(masters) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test Redis Cluster did not become healthy: {:?}",
                nodes_of(self.live_port())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn healthy(&self, masters: usize) -> bool {
        let live = self.live_ports();
        live.iter().all(|&p| {
            let info = redis_cli(p, &["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok")
        }) && {
            let nodes = nodes_of(live[0]);
            let ms: Vec<&NodeLine> = nodes.iter().filter(|n| n.master && !n.failed).collect();
            let covered: u32 = ms
                .iter()
                .flat_map(|n| n.slots.iter())
                .map(|(a, b)| u32::from(b - a) + 1)
                .sum();
            ms.len() == masters
                && covered == 16384
                && ms.iter().all(|m| {
                    let r = redis_cli(m.port, &["INFO", "replication"]);
                    let want = (live.len() / masters).saturating_sub(1);
                    r.matches("state=online").count() >= want.min(1) || want == 0
                })
        }
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|&p| redis_cli(p, &["PING"]).trim() == "PONG")
            .collect()
    }

    fn live_port(&self) -> u16 {
        self.live_ports().first().copied().unwrap_or(self.port)
    }

    /// The port of the master that holds `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        let p = self.live_port();
        let slot: u16 = redis_cli(p, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        nodes_of(p)
            .into_iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|n| n.port)
            .expect("a master holds the slot")
    }

    /// The port of a replica of the master on `master_port`.
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let nodes = nodes_of(self.live_port());
        let id = &nodes
            .iter()
            .find(|n| n.port == master_port)
            .expect("the master is known")
            .id;
        nodes
            .iter()
            .find(|n| !n.master && &n.master_id == id)
            .map(|n| n.port)
            .expect("the master has a replica")
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &Redis {
        std::iter::once(self)
            .chain(self.peers.iter())
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on {port}"))
    }

    /// Sends `signal` (`STOP`, `CONT`) to the node on `port`.
    pub fn signal(&self, port: u16, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.node(port).pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} the node on {port}");
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill_node(&mut self, port: u16) {
        if self.port == port {
            self.stop();
        } else if let Some(n) = self.peers.iter_mut().find(|n| n.port == port) {
            n.stop();
        } else {
            panic!("no node on {port}");
        }
    }

    /// Runs `args` on every live master (e.g. `FLUSHALL`).
    pub fn on_masters(&self, args: &[&str]) {
        let p = self.live_port();
        for n in nodes_of(p).into_iter().filter(|n| n.master && !n.failed) {
            redis_cli(n.port, args);
        }
    }
}
