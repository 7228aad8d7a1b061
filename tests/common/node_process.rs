//! One embedded node as a real process (the test build of the binary), so
//! that it can be stopped with SIGTERM or killed with SIGKILL and started again
//! on the same `DATA_DIR`, as a user runs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::DEADLINE;

pub struct NodeProcess {
    pub data_dir: PathBuf,
    pub addr: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts a node with a new data directory and `env` on top of fast demo
    /// settings. No `AUTH_SECRET` or `ADMIN_TOKEN` unless `env` sets them: the
    /// node generates and keeps its own.
    pub async fn start(env: &[(&str, &str)]) -> NodeProcess {
        let data_dir = std::env::temp_dir()
            .join("chatstream-tests")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let mut node = NodeProcess {
            data_dir,
            addr: String::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        };
        node.restart().await;
        node
    }

    /// Starts the process again on the same data directory (and a new port).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let port = free_port();
        self.addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_chatstream"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND", &self.addr)
            .env("DATA_DIR", &self.data_dir)
            .env("DEMO_TOKEN_DELAY_MS", "15")
            .env("DEMO_REPLY_TOKENS", "60")
            .env("COALESCE_MS", "0")
            .env("GUEST_TOKENS_PER_MINUTE", "1000000")
            .env("API_REQUESTS_PER_SECOND", "1000000")
            .env("STATIC_DIR", self.data_dir.join("no-frontend"))
            .env("RUST_LOG", "warn,chatstream=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the chatstream binary starts");
        self.child = Some(child);
        let url = format!("http://{}/healthz", self.addr);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the node exited at start: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`-TERM`, `-KILL`) and waits until the process is gone.
    pub fn stop(&mut self, signal: &str) {
        let mut child = self.child.take().expect("the node runs");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
        let deadline = std::time::Instant::now() + DEADLINE;
        while child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the node did not exit"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws/chat?token={token}", self.addr)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
