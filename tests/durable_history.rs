//! Durable history on the embedded node: the real binary stopped (SIGTERM)
//! or killed (SIGKILL) mid-reply and right after a client received an ending,
//! then started again on the same `DATA_DIR`. Everything acknowledged and
//! ended is there byte for byte, the interrupted reply is continued to the
//! text an undisturbed run gives, and old tokens still work. Plus the
//! history routes (listing pages, search, delete) on a node with a store.

mod common;

use common::node_process::NodeProcess;
use common::{Client, TestNode, View, demo_reply, ends, reply_over};
use reqwest::Method;
use serde_json::{Value, json};

/// Tokens of a demo reply in `NodeProcess`.
const TOKENS: usize = 60;

async fn guest(node: &NodeProcess) -> String {
    let body: Value = reqwest::Client::new()
        .post(node.url("/api/auth/guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn get(node: &NodeProcess, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(node.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn is_delta_of(frame: &Value, message_id: &str) -> bool {
    frame["type"] == "event"
        && frame["event"]["kind"] == "delta"
        && frame["event"]["message_id"] == message_id
}

/// The whole scenario, ended by `signal`.
async fn a_restart_keeps_history(signal: &str) {
    let mut node = NodeProcess::start(&[]).await;
    let token = guest(&node).await;
    let mut client = Client::connect(&node.ws_url(&token)).await;

    // A: the reply that ends just before the stop. B: started while A
    // streams, so that it is mid-reply when A ends.
    let question_a = "How does a durable log keep every reply?";
    let question_b = "Xin chào! Hãy kể cho tôi về lịch sử của Hà Nội.";
    let a = client.send_turn(question_a).await;
    let mut a_deltas = 0;
    let mut frames = client
        .until(|f| {
            a_deltas += usize::from(is_delta_of(f, &a.reply_id));
            a_deltas >= TOKENS / 2
        })
        .await;
    let b = client.send_turn(question_b).await;
    frames.extend(client.until(|f| ends(f, &a.reply_id)).await);
    // Stop at once: the ending was just received.
    node.stop(signal);

    let mut a_view = View::default();
    a_view.apply_all(&a.conversation, &frames);
    let mut b_view = View::default();
    b_view.apply_all(&b.conversation, &frames);
    assert_eq!(a_view.messages()[1].content, demo_reply(TOKENS, question_a));
    let b_seen = b_view.messages()[1].content.clone();

    node.restart().await;

    // The old token is still valid: the node kept its secret.
    let (status, listing) = get(&node, "/api/conversations", &token).await;
    assert_eq!(
        status, 200,
        "the token issued before the restart works: {listing}"
    );
    let mut listed: Vec<&str> = listing["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut expected = [b.conversation.as_str(), a.conversation.as_str()];
    expected.sort();
    assert_eq!(listed, expected, "both conversations are listed");

    // A is there byte for byte: every field the client saw.
    let (status, detail) = get(
        &node,
        &format!("/api/conversations/{}", a.conversation),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let stored: Vec<chatstream::protocol::Message> =
        serde_json::from_value(detail["messages"].clone()).unwrap();
    assert_eq!(
        stored,
        a_view.messages(),
        "the ended conversation is unchanged"
    );

    // B is continued to the text an undisturbed run gives, from a new epoch.
    let mut client = Client::connect(&node.ws_url(&token)).await;
    let subscribed = client
        .request(json!({
            "type": "subscribe",
            "conversation_id": b.conversation,
            "since": {"epoch": b_view.epoch, "seq": b_view.seq},
        }))
        .await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(
        subscribed["recovered"], false,
        "a restored log has a new epoch"
    );
    assert_ne!(subscribed["epoch"], json!(b_view.epoch));
    let frames = client.until(|f| reply_over(f, &b.reply_id)).await;
    let mut restored = View::default();
    restored.apply_all(&b.conversation, &frames);
    let reply = &restored.messages()[1];
    assert_eq!(
        reply.content,
        demo_reply(TOKENS, question_b),
        "continued to the same text"
    );
    assert!(!b_seen.is_empty(), "B was mid-reply when the node stopped");
    assert_eq!(restored.messages()[0].content, question_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_start_keeps_every_conversation() {
    a_restart_keeps_history("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_start_keeps_every_conversation() {
    a_restart_keeps_history("-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_conversation_stays_deleted_after_restarts() {
    let mut node = NodeProcess::start(&[]).await;
    let token = guest(&node).await;
    let mut client = Client::connect(&node.ws_url(&token)).await;
    let kept = client.send_turn("keep me").await;
    client.until(|f| ends(f, &kept.reply_id)).await;
    let gone = client.send_turn("delete me").await;
    client.until(|f| ends(f, &gone.reply_id)).await;
    let response = reqwest::Client::new()
        .delete(node.url(&format!("/api/conversations/{}", gone.conversation)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    for signal in ["-KILL", "-TERM"] {
        node.stop(signal);
        node.restart().await;
        let path = format!("/api/conversations/{}", gone.conversation);
        assert_eq!(get(&node, &path, &token).await.0, 404, "after {signal}");
        let path = format!("/api/conversations/{}", kept.conversation);
        assert_eq!(get(&node, &path, &token).await.0, 200, "after {signal}");
        let (_, listing) = get(&node, "/api/conversations", &token).await;
        assert_eq!(listing["conversations"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_give_each_conversation_once_newest_first() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let (other, _) = node.guest().await;
    let mut created = Vec::new();
    for i in 0..120 {
        let (status, body) = node
            .api(
                Method::POST,
                "/api/conversations",
                Some(&token),
                Some(json!({"title": format!("n{i}")})),
            )
            .await;
        assert_eq!(status, 201);
        created.push(body["id"].as_str().unwrap().to_owned());
    }
    node.api(Method::POST, "/api/conversations", Some(&other), None)
        .await;

    let mut seen: Vec<Value> = Vec::new();
    let mut path = "/api/conversations?limit=50".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = node.api(Method::GET, &path, Some(&token), None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let conversations = page["conversations"].as_array().unwrap();
        assert!(conversations.len() <= 50);
        seen.extend(conversations.iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/api/conversations?limit=50&before={next}"),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(pages, 3);
    let ids: Vec<&str> = seen.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = created.iter().map(String::as_str).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(
        sorted, expected,
        "each of the caller's conversations exactly once"
    );
    let times: Vec<&str> = seen
        .iter()
        .map(|c| c["updated_at"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> =
        times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let (_, all) = node
        .api(
            Method::GET,
            "/api/conversations?limit=100000",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(all["conversations"].as_array().unwrap().len(), 120);
    let (_, default) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(default["conversations"].as_array().unwrap().len(), 50);
    let (status, body) = node
        .api(
            Method::GET,
            "/api/conversations?before=garbage",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_the_callers_own_messages_only() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let (other, _) = node.guest().await;
    let mut mine = node.connect(&token).await;
    let sent = mine.send_turn("Tôi muốn học tiếng Việt ở Huế").await;
    mine.until(|f| ends(f, &sent.reply_id)).await;
    let mut theirs = node.connect(&other).await;
    let foreign = theirs.send_turn("Tiếng Việt của người khác").await;
    theirs.until(|f| ends(f, &foreign.reply_id)).await;

    let (status, body) = node
        .api(
            Method::GET,
            "/api/search?q=ti%E1%BA%BFng%20vi%E1%BB%87t",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert!(!results.is_empty(), "the caller's message is found: {body}");
    for result in results {
        assert_eq!(
            result["conversation_id"],
            json!(sent.conversation),
            "never another user's"
        );
    }
    let hit = results
        .iter()
        .find(|r| r["message_id"] == sent.ack["user_message_id"])
        .expect("the user message itself is found");
    assert!(hit["snippet"].as_str().unwrap().contains("[["), "{hit}");
    assert_eq!(hit["role"], "user");

    for hostile in [
        "%22",
        "*",
        "NEAR(",
        "%27%3B%20drop%20table%20messages",
        ")(",
    ] {
        let (status, _) = node
            .api(
                Method::GET,
                &format!("/api/search?q={hostile}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "any text is a valid query: {hostile}");
    }
    let (status, _) = node.api(Method::GET, "/api/search?q=x", None, None).await;
    assert_eq!(status, 401);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_when_draining() {
    let node = TestNode::start(|_| {}).await;
    let (status, body) = node.api(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["store"]["sqlite"], "up");
    node.node
        .state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = node.api(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body["ready"].as_bool()), (503, Some(false)));
    node.stop().await;
}
