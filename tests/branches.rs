//! Versions and branches (contract 1.2) over the wire: `regenerate`,
//! `edit`, `continue` and `send` with `parent_id`, over WebSocket and HTTP,
//! against a node on 127.0.0.1:0 with its durable store.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use chatstream::protocol::Role;

/// The demo model's reply length in `test_settings`.
const TOKENS: usize = 30;

/// The ids of a JSON list of messages.
fn ids(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The message with `id` in a list of messages.
fn find<'a>(messages: &'a Value, id: &str) -> &'a Value {
    messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {messages}"))
}

async fn detail(node: &TestNode, token: &str, conversation: &str) -> Value {
    let (status, body) = node
        .api(
            Method::GET,
            &format!("/api/conversations/{conversation}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Sends a turn's frame and reads until its reply ends: (ack, frames).
async fn turn(client: &mut Client, frame: Value) -> (Value, Vec<Value>) {
    let ack = client.request(frame).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let reply = ack["assistant_message_id"].as_str().unwrap().to_owned();
    let frames = client.until(|f| ends(f, &reply)).await;
    (ack, frames)
}

fn str_of(value: &Value) -> &str {
    value.as_str().expect("a string")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_adds_a_version_beside_the_reply() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Tell me about rivers").await;
    client.until(|f| ends(f, &sent.reply_id)).await;
    let question = str_of(&sent.ack["user_message_id"]).to_owned();

    let (ack, frames) = turn(
        &mut client,
        json!({"type": "regenerate", "message_id": sent.reply_id}),
    )
    .await;
    assert_eq!(ack["conversation_id"], sent.conversation.as_str());
    assert_eq!(
        ack["user_message_id"],
        question.as_str(),
        "the question it answers"
    );
    let version = str_of(&ack["assistant_message_id"]).to_owned();
    assert_ne!(version, sent.reply_id);
    let message = frames
        .iter()
        .find(|f| f["type"] == "event" && f["event"]["kind"] == "message")
        .expect("the new version's message event");
    assert_eq!(message["event"]["message"]["id"], version.as_str());
    assert_eq!(message["event"]["message"]["parent_id"], question.as_str());
    assert_eq!(message["event"]["message"]["status"], "streaming");
    // The model saw the same conversation: the demo model answers alike.
    assert_eq!(
        delta_text(&frames, &version),
        demo_reply(TOKENS, "Tell me about rivers")
    );

    let body = detail(&node, &token, &sent.conversation).await;
    assert_eq!(ids(&body["messages"]), [question.clone(), version.clone()]);
    assert_eq!(ids(&body["branches"]), std::slice::from_ref(&sent.reply_id));
    assert_eq!(
        find(&body["branches"], &sent.reply_id)["status"],
        "complete"
    );

    // A client subscribing afresh gets the same split in its snapshot.
    let mut reader = node.connect(&token).await;
    reader
        .request(json!({"type": "subscribe", "conversation_id": sent.conversation}))
        .await;
    let snapshot = reader
        .until(|f| f["type"] == "snapshot")
        .await
        .pop()
        .unwrap();
    assert_eq!(snapshot["messages"], body["messages"]);
    assert_eq!(snapshot["branches"], body["branches"]);
    // Regenerating a user message answers it again too.
    let (again, _) = turn(
        &mut client,
        json!({"type": "regenerate", "message_id": question}),
    )
    .await;
    assert_eq!(again["user_message_id"], question.as_str());
    let body = detail(&node, &token, &sent.conversation).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(body["branches"].as_array().unwrap().len(), 2);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_branches_and_the_model_sees_only_its_branch() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let first = client.send_turn("What is a tree?").await;
    client.until(|f| ends(f, &first.reply_id)).await;
    let (second, _) = turn(
        &mut client,
        json!({"type": "send", "conversation_id": first.conversation, "content": "And a forest?"}),
    )
    .await;
    let first_answer = demo_reply(TOKENS, "What is a tree?");

    let (edited, frames) = turn(
        &mut client,
        json!({"type": "edit", "message_id": second["user_message_id"], "content": "And a graph?"}),
    )
    .await;
    let reply = str_of(&edited["assistant_message_id"]).to_owned();
    let user = str_of(&edited["user_message_id"]).to_owned();
    assert_ne!(user, str_of(&second["user_message_id"]));
    assert_eq!(
        delta_text(&frames, &reply),
        demo_conversation_reply(
            TOKENS,
            &[
                (Role::User, "What is a tree?"),
                (Role::Assistant, &first_answer),
                (Role::User, "And a graph?"),
            ]
        ),
        "the edited question follows the first answer, not the question it replaces"
    );
    let body = detail(&node, &token, &first.conversation).await;
    let question = str_of(&first.ack["user_message_id"]).to_owned();
    assert_eq!(
        ids(&body["messages"]),
        [
            question.clone(),
            first.reply_id.clone(),
            user.clone(),
            reply
        ]
    );
    assert_eq!(
        find(&body["messages"], &user)["parent_id"],
        first.reply_id.as_str()
    );
    assert_eq!(
        ids(&body["branches"]),
        [
            str_of(&second["user_message_id"]).to_owned(),
            str_of(&second["assistant_message_id"]).to_owned()
        ]
    );

    // Editing the first question starts over: a second first message.
    let (restart, frames) = turn(
        &mut client,
        json!({"type": "edit", "message_id": question, "content": "What is a river?"}),
    )
    .await;
    let restart_reply = str_of(&restart["assistant_message_id"]);
    assert_eq!(
        delta_text(&frames, restart_reply),
        demo_reply(TOKENS, "What is a river?")
    );
    let body = detail(&node, &token, &first.conversation).await;
    assert_eq!(
        ids(&body["messages"]),
        [str_of(&restart["user_message_id"]), restart_reply]
    );
    assert!(
        find(&body["messages"], str_of(&restart["user_message_id"]))
            .get("parent_id")
            .is_none_or(Value::is_null)
    );
    assert_eq!(body["branches"].as_array().unwrap().len(), 6);

    // Only a user message is edited; content follows the send rules.
    let refused = client
        .request(json!({"type": "edit", "message_id": first.reply_id, "content": "x"}))
        .await;
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("error"), &json!("conflict"))
    );
    let refused = client
        .request(json!({"type": "edit", "message_id": question, "content": ""}))
        .await;
    assert_eq!(refused["code"], "bad_request");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_after_stop_ends_with_the_undisturbed_text() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 40;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Write a long story").await;
    client
        .until(|f| f["type"] == "event" && f["event"]["kind"] == "delta")
        .await;
    let ack = client
        .request(json!({"type": "cancel", "message_id": sent.reply_id}))
        .await;
    assert_eq!(ack["type"], "ack");
    client.until(|f| ends(f, &sent.reply_id)).await;
    let stopped = find(
        &detail(&node, &token, &sent.conversation).await["messages"],
        &sent.reply_id,
    )
    .clone();
    assert_eq!(stopped["status"], "cancelled");
    let kept = str_of(&stopped["content"]).to_owned();

    let (ack, frames) = turn(
        &mut client,
        json!({"type": "continue", "message_id": sent.reply_id}),
    )
    .await;
    let version = str_of(&ack["assistant_message_id"]).to_owned();
    let deltas: Vec<&str> = frames
        .iter()
        .filter(|f| f["event"]["kind"] == "delta" && f["event"]["message_id"] == version.as_str())
        .map(|f| str_of(&f["event"]["text"]))
        .collect();
    assert_eq!(
        deltas.first().copied(),
        Some(kept.as_str()),
        "the old text first"
    );
    let full = demo_reply(TOKENS, "Write a long story");
    assert_eq!(
        delta_text(&frames, &version),
        full,
        "then the rest, as undisturbed"
    );
    let body = detail(&node, &token, &sent.conversation).await;
    assert_eq!(find(&body["messages"], &version)["content"], full.as_str());
    assert_eq!(
        find(&body["branches"], &sent.reply_id)["content"],
        kept.as_str()
    );

    // Only a reply that ended early is continued.
    for message in [&version, str_of(&sent.ack["user_message_id"])] {
        let refused = client
            .request(json!({"type": "continue", "message_id": message}))
            .await;
        assert_eq!(refused["code"], "conflict", "{message}: {refused}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_with_parent_id_continues_an_older_branch() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Name a colour").await;
    client.until(|f| ends(f, &sent.reply_id)).await;
    let (newer, _) = turn(
        &mut client,
        json!({"type": "regenerate", "message_id": sent.reply_id}),
    )
    .await;

    let (follow_up, _) = turn(
        &mut client,
        json!({"type": "send", "conversation_id": sent.conversation,
               "parent_id": sent.reply_id, "content": "And another?"}),
    )
    .await;
    let body = detail(&node, &token, &sent.conversation).await;
    assert_eq!(
        ids(&body["messages"]),
        [
            str_of(&sent.ack["user_message_id"]),
            sent.reply_id.as_str(),
            str_of(&follow_up["user_message_id"]),
            str_of(&follow_up["assistant_message_id"]),
        ]
    );
    assert_eq!(
        ids(&body["branches"]),
        [str_of(&newer["assistant_message_id"])]
    );

    // A parent must be a reply of that conversation.
    let refused = client
        .request(json!({"type": "send", "conversation_id": sent.conversation,
                        "parent_id": follow_up["user_message_id"], "content": "x"}))
        .await;
    assert_eq!(refused["code"], "conflict", "{refused}");
    let refused = client
        .request(json!({"type": "send", "parent_id": sent.reply_id, "content": "x"}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    let elsewhere = client.send_turn("Another conversation").await;
    client.until(|f| ends(f, &elsewhere.reply_id)).await;
    let refused = client
        .request(json!({"type": "send", "conversation_id": sent.conversation,
                        "parent_id": elsewhere.reply_id, "content": "x"}))
        .await;
    assert_eq!(refused["code"], "not_found", "{refused}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_idempotent_across_transports() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Once only").await;
    client.until(|f| ends(f, &sent.reply_id)).await;
    let client_msg_id = Uuid::new_v4();
    let frame = json!({"type": "regenerate", "message_id": sent.reply_id,
                       "client_msg_id": client_msg_id});
    let (first, _) = turn(&mut client, frame.clone()).await;
    let again = client.request(frame).await;
    assert_eq!(again["assistant_message_id"], first["assistant_message_id"]);
    let (status, body) = node
        .api(
            Method::POST,
            "/api/regenerate",
            Some(&token),
            Some(json!({"message_id": sent.reply_id, "client_msg_id": client_msg_id})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["message_id"], first["assistant_message_id"]);
    assert_eq!(body["user_message_id"], first["user_message_id"]);
    let conversation = detail(&node, &token, &sent.conversation).await;
    assert_eq!(
        conversation["branches"].as_array().unwrap().len(),
        1,
        "one new version, however often it was asked for"
    );
    // The same client_msg_id for another request is a conflict.
    let (status, body) = node
        .api(
            Method::POST,
            "/api/edit",
            Some(&token),
            Some(
                json!({"message_id": sent.ack["user_message_id"], "content": "Twice",
                        "client_msg_id": client_msg_id}),
            ),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));

    // An edit over HTTP, then its reply over the socket that follows it.
    let (status, edited) = node
        .api(
            Method::POST,
            "/api/edit",
            Some(&token),
            Some(json!({"message_id": sent.ack["user_message_id"], "content": "Twice"})),
        )
        .await;
    assert_eq!(status, 202, "{edited}");
    client
        .until(|f| ends(f, str_of(&edited["message_id"])))
        .await;
    let (status, continued) = node
        .api(
            Method::POST,
            "/api/continue",
            Some(&token),
            Some(json!({"message_id": edited["message_id"]})),
        )
        .await;
    assert_eq!(
        (status, &continued["error"]["code"]),
        (409, &json!("conflict"))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_makes_versions() {
    let node = TestNode::start(|_| {}).await;
    let (owner, _) = node.guest().await;
    let (intruder, _) = node.guest().await;
    let mut client = node.connect(&owner).await;
    let sent = client.send_turn("Private thoughts").await;
    client.until(|f| ends(f, &sent.reply_id)).await;
    let question = str_of(&sent.ack["user_message_id"]);
    let seq = detail(&node, &owner, &sent.conversation).await["seq"].clone();
    let mut other = node.connect(&intruder).await;
    let frames = [
        json!({"type": "regenerate", "message_id": sent.reply_id}),
        json!({"type": "continue", "message_id": sent.reply_id}),
        json!({"type": "edit", "message_id": question, "content": "mine now"}),
    ];
    for frame in &frames {
        let refused = other.request(frame.clone()).await;
        assert_eq!(refused["code"], "forbidden", "{frame}: {refused}");
        assert!(
            !refused.to_string().contains("Private"),
            "no hint of content"
        );
        let mut unknown = frame.clone();
        unknown["message_id"] = json!(Uuid::new_v4());
        let refused = client.request(unknown).await;
        assert_eq!(refused["code"], "not_found", "{frame}: {refused}");
    }
    for (path, body) in [
        ("/api/regenerate", json!({"message_id": sent.reply_id})),
        ("/api/continue", json!({"message_id": sent.reply_id})),
        (
            "/api/edit",
            json!({"message_id": question, "content": "mine"}),
        ),
    ] {
        let (status, answer) = node
            .api(Method::POST, path, Some(&intruder), Some(body))
            .await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (403, &json!("forbidden"))
        );
        let (status, _) = node
            .api(
                Method::POST,
                path,
                None,
                Some(json!({"message_id": sent.reply_id})),
            )
            .await;
        assert_eq!(status, 401);
    }
    let refused = client.request(json!({"type": "regenerate"})).await;
    assert_eq!(refused["code"], "bad_request");
    let body = detail(&node, &owner, &sent.conversation).await;
    assert_eq!(body["seq"], seq, "nothing appended by any refusal");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_count_toward_the_message_limit() {
    let node = TestNode::start(|s| s.max_messages_per_conversation = 3).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Short").await;
    client.until(|f| ends(f, &sent.reply_id)).await;
    turn(
        &mut client,
        json!({"type": "regenerate", "message_id": sent.reply_id}),
    )
    .await;
    let refused = client
        .request(json!({"type": "regenerate", "message_id": sent.reply_id}))
        .await;
    assert_eq!(refused["code"], "too_large", "{refused}");
    let body = detail(&node, &token, &sent.conversation).await;
    assert_eq!(
        body["messages"].as_array().unwrap().len() + body["branches"].as_array().unwrap().len(),
        3
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_outlives_a_restart() {
    let data_dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(Uuid::new_v4().simple().to_string());
    let start = || {
        let data_dir = data_dir.clone();
        TestNode::start(move |s| s.data_dir = data_dir)
    };
    let node = start().await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Remember this tree").await;
    client.until(|f| ends(f, &sent.reply_id)).await;
    turn(
        &mut client,
        json!({"type": "regenerate", "message_id": sent.reply_id}),
    )
    .await;
    turn(
        &mut client,
        json!({"type": "edit", "message_id": sent.ack["user_message_id"], "content": "Or this one"}),
    )
    .await;
    let before = detail(&node, &token, &sent.conversation).await;
    client.close().await;
    node.stop().await;

    let node = start().await;
    let after = detail(&node, &token, &sent.conversation).await;
    assert_ne!(
        after["epoch"], before["epoch"],
        "restored under a new epoch"
    );
    assert_eq!(after["messages"], before["messages"]);
    assert_eq!(after["branches"], before["branches"]);
    assert_eq!(before["branches"].as_array().unwrap().len(), 3);
    node.stop().await;
}
