//! Security headers on every response of a node: the page, the JSON API, a
//! 404, the built frontend's files. (That the fallback page's inline script
//! and style run under the policy, and the built UI reports no violation, is
//! checked in a browser: `frontend/e2e/security.test.mjs`.)

mod common;

use std::collections::HashMap;

use common::*;

/// The policy's directives: name → sources.
fn directives(policy: &str) -> HashMap<String, Vec<String>> {
    policy
        .split(';')
        .filter_map(|directive| {
            let mut words = directive.split_whitespace().map(str::to_owned);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

/// Checks the headers of one response, and returns its policy's directives.
fn assert_secured(response: &reqwest::Response, host: &str) -> HashMap<String, Vec<String>> {
    let what = format!("{} {}", response.status(), response.url().path());
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    let policy = header("content-security-policy");
    let csp = directives(&policy);
    let sources = |name: &str| {
        csp.get(name)
            .unwrap_or_else(|| panic!("{what}: no {name} in {policy}"))
    };
    assert_eq!(sources("default-src"), &["'self'"], "{what}");
    assert_eq!(
        sources("img-src"),
        &["'self'", "data:"],
        "{what}: no remote image"
    );
    assert_eq!(
        sources("connect-src"),
        &[
            "'self'".to_owned(),
            format!("ws://{host}"),
            format!("wss://{host}")
        ],
        "{what}"
    );
    assert_eq!(sources("frame-ancestors"), &["'none'"], "{what}");
    assert_eq!(sources("base-uri"), &["'none'"], "{what}");
    assert_eq!(sources("object-src"), &["'none'"], "{what}");
    for name in ["script-src", "style-src"] {
        let list = sources(name);
        assert_eq!(list[0], "'self'", "{what}: {name}");
        // Inline code runs only by hash: no 'unsafe-inline', no other origin.
        assert!(
            list[1..].iter().all(|s| s.starts_with("'sha256-")),
            "{what}: {name} {list:?}"
        );
    }
    csp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_page_the_api_and_a_404_carry_the_security_headers() {
    // An empty directory: no built frontend, so `/` is the fallback page.
    let empty = tempdir();
    let node = TestNode::start(|s| s.static_dir = Some(empty.clone())).await;
    let host = node.node.addr.to_string();
    let (token, _) = node.guest().await;

    let page = node.http.get(node.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = assert_secured(&page, &host);
    let html = page.text().await.unwrap();
    assert!(html.contains("<script>"), "the fallback page is served");
    // Its inline script and style are allowed by hash, one each.
    assert_eq!(csp["script-src"].len(), 2);
    assert_eq!(csp["style-src"].len(), 2);

    let api = node
        .http
        .get(node.url("/api/conversations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert_secured(&api, &host);

    // Errors too: a refused token, an unknown route.
    let refused = node
        .http
        .get(node.url("/api/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_secured(&refused, &host);
    let missing = node
        .http
        .get(node.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_secured(&missing, &host);

    node.stop().await;
    std::fs::remove_dir_all(empty).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_frontend_and_its_files_carry_the_security_headers() {
    let dist = tempdir();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><script type=module src=/app.js></script>",
    )
    .unwrap();
    std::fs::write(dist.join("app.js"), "export {};").unwrap();
    let node = TestNode::start(|s| s.static_dir = Some(dist.clone())).await;
    let host = node.node.addr.to_string();

    for path in ["/", "/app.js", "/missing.js"] {
        let response = node.http.get(node.url(path)).send().await.unwrap();
        let expected = if path == "/missing.js" { 404 } else { 200 };
        assert_eq!(response.status(), expected, "{path}");
        assert_secured(&response, &host);
    }

    node.stop().await;
    std::fs::remove_dir_all(dist).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_source_is_the_host_the_browser_addressed() {
    let node = TestNode::start(|_| {}).await;
    let get = |host: Option<&'static str>, forwarded: Option<&'static str>| {
        let mut request = node.http.get(node.url("/healthz"));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-host", forwarded);
        }
        request.send()
    };

    // Behind a proxy, the host the browser used is in X-Forwarded-Host.
    let proxied = get(None, Some("chat.example:8443")).await.unwrap();
    assert_secured(&proxied, "chat.example:8443");

    // A host that is not a plain host name is not copied into the policy.
    let odd = get(Some("x; script-src *"), None).await.unwrap();
    let policy = odd.headers()["content-security-policy"].to_str().unwrap();
    let csp = directives(policy);
    assert_eq!(csp["connect-src"], ["'self'"]);
    assert_eq!(csp["script-src"][0], "'self'");
    assert!(!policy.contains('*'), "{policy}");

    node.stop().await;
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
