//! Every limit of contract 1.1 at its edge, over the real transports: the
//! last request inside a limit passes, the first one over it gets the
//! contract's answer and changes nothing, and other users are unaffected.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn guest_from(node: &TestNode, forwarded_for: Option<&str>) -> u16 {
    let mut request = node.http.post(node.url("/api/auth/guest"));
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_tokens_per_ip_stop_at_the_limit() {
    let node = TestNode::start(|s| s.guest_tokens_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(guest_from(&node, None).await, 200);
    }
    let (status, body) = node.api(Method::POST, "/api/auth/guest", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // The peer is not a trusted proxy: its X-Forwarded-For is not believed.
    assert_eq!(guest_from(&node, Some("198.51.100.7")).await, 429);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance() {
    let node = TestNode::start(|s| {
        s.guest_tokens_per_minute = 2;
        s.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(guest_from(&node, Some("198.51.100.7")).await, 200);
    }
    assert_eq!(guest_from(&node, Some("198.51.100.7")).await, 429);
    // The last entry is the one the proxy added: earlier ones are the
    // client's own claims and change nothing.
    assert_eq!(
        guest_from(&node, Some("203.0.113.9, 198.51.100.7")).await,
        429
    );
    assert_eq!(guest_from(&node, Some("198.51.100.8")).await, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_per_user_allow_a_burst_of_twice_the_rate() {
    let node = TestNode::start(|s| s.api_requests_per_second = 1).await;
    let (token, _) = node.guest().await;
    let (other, _) = node.guest().await;
    // A burst of 2 at once: one second of refill at most happens meanwhile,
    // so the fourth call in a row is over the limit whatever the timing.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = node
            .api(Method::GET, "/api/conversations", Some(&token), None)
            .await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited");
        }
        statuses.push(status);
    }
    assert_eq!(
        &statuses[..2],
        &[200, 200],
        "the burst passes: {statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "then the limit holds: {statuses:?}"
    );
    let (status, _) = node
        .api(Method::GET, "/api/conversations", Some(&other), None)
        .await;
    assert_eq!(status, 200, "another user is unaffected");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user_over_the_limit_are_closed_with_4029() {
    let node = TestNode::start(|s| s.max_connections_per_user = 2).await;
    let (token, _) = node.guest().await;
    let first = node.connect(&token).await;
    let _second = node.connect(&token).await;

    let (frames, closed) = Client::connect_refused(&node.ws_url(&token)).await;
    let error = frames
        .iter()
        .find(|f| f["type"] == "error")
        .expect("an error before the close");
    assert_eq!(error["code"], "rate_limited");
    assert_eq!(closed.code, Some(4029));

    let (other, _) = node.guest().await;
    let _theirs = node.connect(&other).await;

    // Closing one frees its place.
    first.close().await;
    let url = node.ws_url(&token);
    // A socket over the limit gets no `welcome`: one that does is in.
    eventually("a place is free again", || async {
        Client::try_connect(&url).await.is_ok()
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_per_user_stop_at_the_limit_and_a_delete_frees_a_place() {
    let node = TestNode::start(|s| s.max_conversations_per_user = 2).await;
    let (token, _) = node.guest().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = node
            .api(Method::POST, "/api/conversations", Some(&token), None)
            .await;
        assert_eq!(status, 201);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = node
        .api(Method::POST, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    // A send that would create one is refused the same way, over HTTP…
    let (status, body) = node
        .api(
            Method::POST,
            "/api/chat",
            Some(&token),
            Some(json!({"content": "one more"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    // … and over the WebSocket; a send into an existing one still works.
    let mut client = node.connect(&token).await;
    let refused = client
        .request(json!({"type": "send", "content": "one more"}))
        .await;
    assert_eq!(refused["code"], "too_large", "{refused}");
    let accepted = client
        .request(
            json!({"type": "send", "conversation_id": ids[0], "content": "in an existing one"}),
        )
        .await;
    assert_eq!(accepted["type"], "ack", "{accepted}");

    let (listed, body) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(listed, 200);
    assert_eq!(
        body["conversations"].as_array().unwrap().len(),
        2,
        "nothing created"
    );

    let (status, _) = node
        .api(
            Method::DELETE,
            &format!("/api/conversations/{}", ids[1]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = node
        .api(Method::POST, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(status, 201, "a delete frees a place");

    let (other, _) = node.guest().await;
    let (status, _) = node
        .api(Method::POST, "/api/conversations", Some(&other), None)
        .await;
    assert_eq!(status, 201, "another user is unaffected");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_have_at_most_200_characters() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    // Vietnamese: several bytes a character; the limit counts characters.
    let title: String = "Ư".repeat(200);
    let (status, body) = node
        .api(
            Method::POST,
            "/api/conversations",
            Some(&token),
            Some(json!({ "title": title })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["title"], title);
    let (status, body) = node
        .api(
            Method::POST,
            "/api/conversations",
            Some(&token),
            Some(json!({ "title": format!("{title}ơ") })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_per_conversation_stop_before_the_turn_that_would_exceed_them() {
    let node = TestNode::start(|s| s.max_messages_per_conversation = 4).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let first = client.send_turn("first question").await;
    client.until(|f| ends(f, &first.reply_id)).await;
    let second = client
        .request(
            json!({"type": "send", "conversation_id": first.conversation, "content": "second"}),
        )
        .await;
    assert_eq!(second["type"], "ack", "4 messages fit: {second}");
    let second_reply = second["assistant_message_id"].as_str().unwrap().to_owned();
    client.until(|f| ends(f, &second_reply)).await;
    let third = client
        .request(json!({"type": "send", "conversation_id": first.conversation, "content": "third"}))
        .await;
    assert_eq!(third["code"], "too_large", "{third}");
    let (_, detail) = node
        .api(
            Method::GET,
            &format!("/api/conversations/{}", first.conversation),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        detail["messages"].as_array().unwrap().len(),
        4,
        "nothing appended"
    );
    node.stop().await;
}

/// A send while `limit` replies of the same user stream: refused with
/// `rate_limited`, whichever node the others run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_per_user_are_counted_across_nodes() {
    let redis = RedisServer::start();
    let configure = |s: &mut chatstream::config::Settings| {
        s.redis_url = Some(redis.url());
        s.max_generations_per_user = 2;
        // Long enough replies that all of them stream at once.
        s.demo_token_delay_ms = 50;
        s.demo_reply_tokens = 400;
    };
    let a = TestNode::start(configure).await;
    let b = TestNode::start(configure).await;
    let (token, _) = a.guest().await;
    let mut on_a = a.connect(&token).await;
    let mut on_b = b.connect(&token).await;
    let first = on_a.send_turn("first").await;
    let _second = on_b.send_turn("second").await;

    let third = on_a
        .request(json!({"type": "send", "content": "third"}))
        .await;
    assert_eq!(third["code"], "rate_limited", "{third}");
    let (status, body) = b
        .api(
            Method::POST,
            "/api/chat",
            Some(&token),
            Some(json!({"content": "third, over HTTP"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );

    // Another user is unaffected.
    let (other, _) = b.guest().await;
    let mut theirs = b.connect(&other).await;
    theirs.send_turn("mine").await;

    // When one ends, a new one may start.
    let cancelled = on_a
        .request(json!({"type": "cancel", "message_id": first.reply_id}))
        .await;
    assert_eq!(cancelled["type"], "ack", "{cancelled}");
    on_a.until(|f| ends(f, &first.reply_id)).await;
    let again = on_a
        .request(json!({"type": "send", "content": "now there is room"}))
        .await;
    assert_eq!(again["type"], "ack", "{again}");

    a.stop().await;
    b.stop().await;
}

/// A client flooding frames is answered `rate_limited` and closed with
/// 4029, while another user's reply streams on, complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flood_is_refused_and_closed_without_touching_other_streams() {
    let node = TestNode::start(|s| {
        s.frames_per_second = 5;
        s.demo_token_delay_ms = 10;
        s.demo_reply_tokens = 100;
    })
    .await;
    let (calm, _) = node.guest().await;
    let mut reader = node.connect(&calm).await;
    let sent = reader.send_turn("stream while someone floods").await;

    let (flooder, _) = node.guest().await;
    let mut flood = node.connect(&flooder).await;
    let big = json!({"type": "ping", "pad": "x".repeat(60 * 1024)}).to_string();
    // More than the burst (10) and the refusals within 5 seconds that close (40);
    // a send that cannot complete means the node stopped reading.
    for _ in 0..80 {
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            flood.send_raw(WsMessage::text(big.clone())),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    let mut limited = 0;
    let closed = loop {
        match flood.next().await {
            Ok(frame) if frame["type"] == "error" => {
                assert_eq!(frame["code"], "rate_limited");
                limited += 1;
            }
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    assert!(limited > 0, "refused frames are answered");
    assert_eq!(closed.code, Some(4029));

    let frames = reader.until(|f| ends(f, &sent.reply_id)).await;
    let mut view = View::default();
    view.apply_all(&sent.conversation, &frames);
    assert_eq!(
        delta_text(&frames, &sent.reply_id),
        demo_reply(100, "stream while someone floods"),
        "the other user's reply is complete and in order"
    );
    node.stop().await;
}

use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn readiness(node: &TestNode) -> (u16, Value) {
    node.api(Method::GET, "/readyz", None, None).await
}

/// A node-level actor that dies is started again, and live events reach
/// subscribers through its successor; a supervisor that cannot be replaced
/// takes the node out of readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_registry_is_restarted_and_a_dead_supervisor_shows_in_readiness() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 200;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("keep streaming through a restart").await;
    // The reply is streaming to this subscriber through the Registry.
    let mut frames = client
        .until(|f| f["type"] == "event" && f["event"]["kind"] == "delta")
        .await;

    let old = node.node.state.actors.registry.get_id();
    node.node.state.actors.registry.kill();
    eventually("a new registry runs", || async {
        let (status, body) = readiness(&node).await;
        status == 200
            && body["actors"]["registry"] == "up"
            && node
                .node
                .state
                .context
                .directory
                .list()
                .iter()
                .any(|r| r.key.as_deref() == Some("registry") && r.id != old.to_string())
    })
    .await;

    // Everything of the reply arrives, in order, nothing repeated.
    frames.extend(client.until(|f| ends(f, &sent.reply_id)).await);
    let mut view = View::default();
    view.apply_all(&sent.conversation, &frames);
    let (_, detail) = node
        .api(
            Method::GET,
            &format!("/api/conversations/{}", sent.conversation),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        detail["messages"][1]["content"],
        demo_reply(200, "keep streaming through a restart")
    );

    node.node.state.actors.conversations.kill();
    eventually("readiness reports the dead supervisor", || async {
        let (status, body) = readiness(&node).await;
        status == 503 && body["actors"]["conversations"] == "down"
    })
    .await;
    tokio::time::timeout(Duration::from_secs(30), node.stop())
        .await
        .expect("the node still stops");
}
