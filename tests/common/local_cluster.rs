//! The local cluster of `scripts/cluster.sh` (redis-server, three node
//! processes, nginx), driven from tests: processes can be killed and started
//! again like a real deployment's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct LocalCluster {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh")
}

impl LocalCluster {
    /// Starts the cluster with the test build of the binary and `extra`
    /// environment for the nodes.
    pub fn up(extra: &[(&str, &str)]) -> LocalCluster {
        let dir = std::env::temp_dir().join(format!("chatstream-cluster-{}", uuid::Uuid::new_v4()));
        let status = Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(&dir)
            .env("CHATSTREAM_BIN", env!("CARGO_BIN_EXE_chatstream"))
            // Tests call quicker than people: their own limits are tested
            // in tests/limits.rs.
            .env("GUEST_TOKENS_PER_MINUTE", "1000000")
            .env("API_REQUESTS_PER_SECOND", "1000000")
            // One test user drives many replies at once to load the nodes.
            .env("MAX_GENERATIONS_PER_USER", "1000")
            .envs(extra.iter().copied())
            .status()
            .expect("bash runs scripts/cluster.sh");
        let mut cluster = LocalCluster {
            dir,
            env: HashMap::new(),
        };
        assert!(status.success(), "the local cluster starts");
        cluster.env = std::fs::read_to_string(cluster.dir.join("cluster.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        cluster
    }

    pub fn nginx(&self) -> String {
        format!("127.0.0.1:{}", self.env["NGINX_PORT"])
    }

    /// Node `n` (1-based), addressed directly.
    pub fn node(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.env[&format!("NODE{n}_PORT")])
    }

    pub fn admin_token(&self) -> &str {
        &self.env["ADMIN_TOKEN"]
    }

    fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn signal(&self, name: &str, signal: &str) -> i32 {
        let pid = self.pid(name);
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {name}");
        pid
    }

    /// Sends `signal` (`-KILL`, `-TERM`) to node `n` and waits until the
    /// process is gone; answers how long that took.
    pub fn stop_node(&self, n: usize, signal: &str) -> Duration {
        let started = std::time::Instant::now();
        let pid = self.signal(&format!("node-{n}"), signal);
        wait_gone(pid);
        started.elapsed()
    }

    pub fn start_node(&self, n: usize) {
        self.run(&["start-node", &n.to_string()]);
    }

    pub fn kill_redis(&self) {
        let pid = self.signal("redis", "-KILL");
        wait_gone(pid);
    }

    pub fn start_redis(&self) {
        self.run(&["start-redis"]);
    }

    fn run(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(script())
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(status.success(), "scripts/cluster.sh {args:?}");
    }
}

/// Waits for a process (a child of the script, so reaped by init) to exit.
fn wait_gone(pid: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not exit"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}
