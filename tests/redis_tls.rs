//! TLS to Redis (`rediss://`): a node reaches a redis-server that listens on
//! a TLS port only and asks clients for a certificate, trusting the
//! throwaway certificate authority given in `REDIS_TLS_CA_FILE` and
//! presenting `REDIS_TLS_CERT_FILE`; without them it refuses to start and
//! says why.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chatstream::node::Node;
use common::*;

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throwaway certificate authority, and a server and a client certificate
/// it signed, in a new directory.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatstream-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=chatstream test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    // Version 3 certificates (rustls accepts no other): each has extensions.
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=chatstream test {name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        let mut sign = vec![
            "x509",
            "-req",
            "-days",
            "1",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
        ];
        let (csr, pem, ext) = (
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        sign.extend(["-in", &csr, "-out", &pem, "-extfile", &ext]);
        openssl(&dir, &sign);
    }
    dir
}

/// A redis-server with no plain port, TLS on a free one, requiring client
/// certificates signed by the test authority.
struct TlsRedis {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl TlsRedis {
    fn start() -> TlsRedis {
        let dir = certificates();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = |name: &str| dir.join(name).display().to_string();
        let log = std::fs::File::create(dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &file("server.pem")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem")])
            .args(["--tls-auth-clients", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        let server = TlsRedis { port, dir, child };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on its TLS port: {}",
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_streams_through_redis_over_tls() {
    let redis = TlsRedis::start();
    let node = TestNode::start(|s| {
        s.redis_url = Some(format!("rediss://127.0.0.1:{}", redis.port));
        s.redis_tls_ca_file = Some(redis.file("ca.pem"));
        s.redis_tls_cert_file = Some(redis.file("client.pem"));
        s.redis_tls_key_file = Some(redis.file("client.key"));
    })
    .await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = client.send_turn("over TLS").await;
    let frames = client.until(|f| ends(f, &reply_id)).await;
    let mut view = View::default();
    view.apply_all(&conversation, &frames);
    assert_eq!(view.messages()[1].content, demo_reply(30, "over TLS"));
    let (status, ready) = node.api(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_verify_redis_or_be_verified_does_not_start() {
    let redis = TlsRedis::start();
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let cases: [(&str, Option<&str>, bool); 2] = [
        // The system does not trust the throwaway authority.
        ("no certificate authority", None, true),
        // Redis asks for a client certificate that the node does not have.
        ("no client certificate", Some("ca.pem"), false),
    ];
    for (case, ca, client_certificate) in cases {
        let mut settings = test_settings();
        settings.redis_url = Some(url.clone());
        settings.redis_tls_ca_file = ca.map(|name| redis.file(name));
        if client_certificate {
            settings.redis_tls_cert_file = Some(redis.file("client.pem"));
            settings.redis_tls_key_file = Some(redis.file("client.key"));
        }
        let started = tokio::time::timeout(DEADLINE, Node::start(settings))
            .await
            .expect("a refused start ends before the deadline");
        let Err(error) = started else {
            panic!("{case}: the node started");
        };
        let error = format!("{error:#}");
        assert!(
            error.contains("connecting to Redis at rediss://127.0.0.1")
                && error.to_lowercase().contains("certificate"),
            "{case}: {error}"
        );
    }
}
