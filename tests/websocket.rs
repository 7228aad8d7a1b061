//! The wire contract over a real WebSocket against a node on 127.0.0.1:0.

mod common;

use std::time::Duration;

use chatstream::protocol::{MessageStatus, Role};
use common::*;
use rand::Rng;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Sends `content` into a new conversation; returns the ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_streams_in_order_and_matches_the_stored_conversation() {
    let node = TestNode::start(|_| {}).await;
    let (token, user) = node.guest().await;
    let mut client = node.connect(&token).await;
    assert_eq!(client.welcome["protocol"], 1);
    assert_eq!(client.welcome["user_id"], user.to_string());

    let Sent {
        ack,
        conversation,
        reply_id,
    } = client.send_turn("How do actors stream tokens?").await;
    let frames = client.until(|f| ends(f, &reply_id)).await;

    let mut view = View::default();
    view.apply_all(&conversation, &frames);
    assert_eq!(
        view.applied.first(),
        Some(&1),
        "a new conversation is followed from seq 1"
    );
    let deltas = frames
        .iter()
        .filter(|f| f["event"]["kind"] == "delta")
        .count();
    assert!(deltas > 5, "the reply arrives in many pieces, got {deltas}");
    let expected = demo_reply(30, "How do actors stream tokens?");
    let reply = &view.messages()[1];
    assert_eq!(reply.content, expected);
    assert_eq!(reply.status, MessageStatus::Complete);
    assert_eq!(
        view.messages()[0].id.to_string(),
        ack["user_message_id"].as_str().unwrap()
    );

    let (status, stored) = node
        .api(
            reqwest::Method::GET,
            &format!("/api/conversations/{conversation}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["seq"], view.seq);
    assert_eq!(stored["epoch"], view.epoch.clone().unwrap());
    let stored: Vec<chatstream::protocol::Message> =
        serde_json::from_value(stored["messages"].clone()).unwrap();
    assert_eq!(
        stored,
        view.messages(),
        "folding the events gives the snapshot"
    );

    // A second turn sees the whole conversation, so its reply differs.
    let ack = client
        .request(json!({"type": "send", "conversation_id": conversation, "content": "And then?"}))
        .await;
    let second = ack["assistant_message_id"].as_str().unwrap().to_owned();
    let frames = client.until(|f| ends(f, &second)).await;
    view.apply_all(&conversation, &frames);
    let expected = demo_conversation_reply(
        30,
        &[
            (Role::User, "How do actors stream tokens?"),
            (Role::Assistant, &expected),
            (Role::User, "And then?"),
        ],
    );
    assert_eq!(view.messages()[3].content, expected);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_joining_mid_reply_get_every_event_once_in_order() {
    let node = TestNode::start(|s| s.demo_token_delay_ms = 10).await;
    let (token, _) = node.guest().await;
    let mut sender = node.connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("Tell me about logs").await;
    let mut sender_view = View::default();
    // Let a few deltas pass before the others join.
    let early = sender
        .until(|f| f["event"]["kind"] == "delta" && f["seq"] == 5)
        .await;
    sender_view.apply_all(&conversation, &early);

    // Without `since`: subscribed (not recovered), a snapshot, then live events.
    let mut fresh = node.connect(&token).await;
    let subscribed = fresh
        .request(json!({"type": "subscribe", "conversation_id": conversation}))
        .await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["recovered"], false);
    let mut fresh_view = View::default();
    let frames = fresh.until(|f| ends(f, &reply_id)).await;
    assert_eq!(frames[0]["type"], "snapshot");
    assert!(frames[0]["seq"].as_u64().unwrap() >= subscribed["seq"].as_u64().unwrap());
    fresh_view.apply_all(&conversation, &frames);

    // With `since` at seq 3: recovered, events 4.. exactly once.
    let mut resumer = node.connect(&token).await;
    let epoch = sender_view.epoch.clone().unwrap();
    let subscribed = resumer
        .request(json!({"type": "subscribe", "conversation_id": conversation, "since": {"epoch": epoch, "seq": 3}}))
        .await;
    assert_eq!(subscribed["recovered"], true);
    let frames = resumer.until(|f| ends(f, &reply_id)).await;
    let seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "event")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&4));
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap or repeat: {seqs:?}"
    );

    let rest = sender.until(|f| ends(f, &reply_id)).await;
    sender_view.apply_all(&conversation, &rest);
    assert_eq!(fresh_view.messages(), sender_view.messages());
    assert_eq!(*seqs.last().unwrap(), sender_view.seq);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_since_resumes_with_no_gap_and_the_reply_keeps_going() {
    let node = TestNode::start(|s| s.demo_token_delay_ms = 10).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = client.send_turn("Resume me").await;
    let mut view = View::default();
    let before = client
        .until(|f| f["event"]["kind"] == "delta" && f["seq"] == 6)
        .await;
    view.apply_all(&conversation, &before);
    client.close().await;

    let mut again = node.connect(&token).await;
    let subscribed = again
        .request(json!({"type": "subscribe", "conversation_id": conversation,
                        "since": {"epoch": view.epoch.clone().unwrap(), "seq": view.seq}}))
        .await;
    assert_eq!(subscribed["recovered"], true);
    let after = again.until(|f| ends(f, &reply_id)).await;
    view.apply_all(&conversation, &after);
    assert_eq!(view.messages()[1].content, demo_reply(30, "Resume me"));
    assert_eq!(view.messages()[1].status, MessageStatus::Complete);

    // A since above the newest seq, or of another epoch, gets a snapshot.
    for since in [
        json!({"epoch": view.epoch.clone().unwrap(), "seq": view.seq + 10}),
        json!({"epoch": "other", "seq": 1}),
    ] {
        let subscribed = again
            .request(json!({"type": "subscribe", "conversation_id": conversation, "since": since}))
            .await;
        assert_eq!(subscribed["recovered"], false);
        let snapshot = again.next().await.unwrap();
        assert_eq!(snapshot["type"], "snapshot");
        assert_eq!(snapshot["seq"], view.seq);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_reply_and_keeps_its_text() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 500;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let Sent {
        ack,
        conversation,
        reply_id,
    } = client.send_turn("A long answer please").await;
    let mut view = View::default();
    let before = client
        .until(|f| f["event"]["kind"] == "delta" && f["seq"] == 5)
        .await;
    view.apply_all(&conversation, &before);

    let cancelled = client
        .request(json!({"type": "cancel", "message_id": reply_id}))
        .await;
    assert_eq!(cancelled["type"], "ack");
    assert_eq!(cancelled["message_id"], reply_id.as_str());
    let rest = client.until(|f| ends(f, &reply_id)).await;
    view.apply_all(&conversation, &rest);
    assert_eq!(rest.last().unwrap()["event"]["kind"], "cancelled");
    let reply = &view.messages()[1];
    assert_eq!(reply.status, MessageStatus::Cancelled);
    assert!(!reply.content.is_empty());

    let again = client
        .request(json!({"type": "cancel", "message_id": reply_id}))
        .await;
    assert_eq!(again["code"], "conflict");
    let user_message = ack["user_message_id"].as_str().unwrap();
    let wrong = client
        .request(json!({"type": "cancel", "message_id": user_message}))
        .await;
    assert_eq!(wrong["code"], "conflict");

    let (status, stored) = node
        .api(
            reqwest::Method::GET,
            &format!("/api/conversations/{conversation}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        stored["seq"], view.seq,
        "nothing was appended after cancelled"
    );
    assert_eq!(stored["messages"][1]["status"], "cancelled");
    assert_eq!(stored["messages"][1]["content"], reply.content.as_str());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_everything() {
    let node = TestNode::start(|s| s.demo_token_delay_ms = 20).await;
    let (owner_token, _) = node.guest().await;
    let (other_token, _) = node.guest().await;
    let mut owner = node.connect(&owner_token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = owner.send_turn("private thoughts").await;

    let mut other = node.connect(&other_token).await;
    for frame in [
        json!({"type": "subscribe", "conversation_id": conversation}),
        json!({"type": "send", "conversation_id": conversation, "content": "let me in"}),
        json!({"type": "cancel", "message_id": reply_id}),
    ] {
        let reply = other.request(frame).await;
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], "forbidden");
        assert!(!reply["message"].as_str().unwrap().contains("private"));
    }
    let unknown = uuid::Uuid::new_v4();
    let reply = other
        .request(json!({"type": "subscribe", "conversation_id": unknown}))
        .await;
    assert_eq!(reply["code"], "not_found");
    let reply = other
        .request(json!({"type": "cancel", "message_id": unknown}))
        .await;
    assert_eq!(reply["code"], "not_found");

    let path = format!("/api/conversations/{conversation}");
    let (status, body) = node
        .api(reqwest::Method::GET, &path, Some(&other_token), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    let (status, _) = node
        .api(reqwest::Method::DELETE, &path, Some(&other_token), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = node
        .api(
            reqwest::Method::POST,
            "/api/cancel",
            Some(&other_token),
            Some(json!({"message_id": reply_id})),
        )
        .await;
    assert_eq!(status, 403);
    let (_, list) = node
        .api(
            reqwest::Method::GET,
            "/api/conversations",
            Some(&other_token),
            None,
        )
        .await;
    assert_eq!(list["conversations"], json!([]));
    // Nothing leaked into the other user's socket meanwhile.
    let pong = other.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_error_and_the_connection_keeps_working() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;

    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("{not json".into(), None, "bad_request"),
        ("[1,2,3]".into(), None, "bad_request"),
        (r#"{"id":"a","type":"dance"}"#.into(), Some("a"), "bad_request"),
        (r#"{"id":"b"}"#.into(), Some("b"), "bad_request"),
        (r#"{"id":"c","type":"subscribe"}"#.into(), Some("c"), "bad_request"),
        (r#"{"id":"d","type":"cancel","message_id":"nope"}"#.into(), Some("d"), "bad_request"),
        (r#"{"id":"e","type":"send","content":""}"#.into(), Some("e"), "bad_request"),
        (r#"{"id":"f","type":"send","content":42}"#.into(), Some("f"), "bad_request"),
        (json!({"id": "g", "type": "send", "content": "x".repeat(40_000)}).to_string(), Some("g"), "too_large"),
        (r#"{"id":"h","type":"send","content":"hi","model":"no-such-model"}"#.into(), Some("h"), "bad_request"),
        (r#"{"id":12,"type":"ping"}"#.into(), None, "bad_request"),
        (json!({"id": "x".repeat(65), "type": "ping"}).to_string(), None, "bad_request"),
        (
            r#"{"id":"i","type":"subscribe","conversation_id":"6f1c1d2e-52a4-4a8e-9f57-3b6c1b7e2a10","since":{"seq":"x"}}"#.into(),
            Some("i"),
            "bad_request",
        ),
        (r#"{"id":"j","type":"send","content":"hi","conversation_id":"not-a-uuid"}"#.into(), Some("j"), "bad_request"),
    ];
    for (text, id, code) in cases {
        client.send_text(&text).await;
        let reply = client.next().await.expect("the connection stays open");
        assert_eq!(reply["type"], "error", "for {text:.80}");
        assert_eq!(reply["code"], code, "for {text:.80}");
        match id {
            Some(id) => assert_eq!(reply["id"], id),
            None => assert!(reply.get("id").is_none()),
        }
    }
    client
        .send_raw(WsMessage::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.next().await.unwrap()["code"], "bad_request");
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );

    // 64 KiB exactly is allowed; one byte more closes with 1009.
    let padding = 65_536 - r#"{"type":"ping","pad":""}"#.len();
    let at_limit = format!(r#"{{"type":"ping","pad":"{}"}}"#, "p".repeat(padding));
    assert_eq!(at_limit.len(), 65_536);
    client.send_text(&at_limit).await;
    assert_eq!(client.next().await.unwrap()["type"], "pong");
    let over = format!(r#"{{"type":"ping","pad":"{}"}}"#, "p".repeat(padding + 1));
    client.send_text(&over).await;
    assert_eq!(client.closed().await.code, Some(1009));

    // The node keeps serving.
    let mut next = node.connect(&token).await;
    assert_eq!(next.request(json!({"type": "ping"})).await["type"], "pong");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_with_1008_and_no_welcome() {
    let node = TestNode::start(|_| {}).await;
    for url in [
        node.ws_url("not-a-token"),
        format!("ws://{}/ws/chat", node.node.addr),
    ] {
        let (frames, closed) = Client::connect_refused(&url).await;
        assert_eq!(closed.code, Some(1008));
        assert!(frames.len() <= 1);
        assert!(
            frames
                .iter()
                .all(|f| f["type"] == "error" && f["code"] == "unauthorized")
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_with_the_same_client_msg_id_creates_nothing_new() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let client_msg_id = uuid::Uuid::new_v4();
    let first = client
        .request(json!({"type": "send", "content": "only once", "client_msg_id": client_msg_id}))
        .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let reply_id = first["assistant_message_id"].as_str().unwrap().to_owned();
    client.until(|f| ends(f, &reply_id)).await;

    // From another connection, and over HTTP: the same ids, nothing appended.
    let mut other = node.connect(&token).await;
    let again = other
        .request(json!({"type": "send", "content": "only once", "client_msg_id": client_msg_id}))
        .await;
    assert_eq!(again["type"], "ack");
    for field in ["conversation_id", "user_message_id", "assistant_message_id"] {
        assert_eq!(again[field], first[field]);
    }
    // The resender is subscribed from the event carrying its message.
    let frames = other.until(|f| ends(f, &reply_id)).await;
    let mut view = View::default();
    view.apply_all(&conversation, &frames);
    assert_eq!(view.applied.first(), Some(&1));

    let (status, body) = node
        .api(
            reqwest::Method::POST,
            "/api/chat",
            Some(&token),
            Some(json!({"content": "only once", "client_msg_id": client_msg_id})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["message_id"], first["assistant_message_id"]);
    let (_, stored) = node
        .api(
            reqwest::Method::GET,
            &format!("/api/conversations/{conversation}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(stored["messages"].as_array().unwrap().len(), 2);

    let changed = other
        .request(
            json!({"type": "send", "content": "something else", "client_msg_id": client_msg_id}),
        )
        .await;
    assert_eq!(changed["code"], "conflict");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_while_a_reply_streams_is_a_conflict() {
    let node = TestNode::start(|s| s.demo_token_delay_ms = 30).await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let Sent { conversation, .. } = client.send_turn("first").await;
    let reply = client
        .request(json!({"type": "send", "conversation_id": conversation, "content": "second"}))
        .await;
    assert_eq!(reply["code"], "conflict");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery_and_delete_unsubscribes_everyone() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 15;
        s.demo_reply_tokens = 200;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut sender = node.connect(&token).await;
    let Sent { conversation, .. } = sender.send_turn("delete me later").await;

    let mut watcher = node.connect(&token).await;
    watcher
        .request(json!({"type": "subscribe", "conversation_id": conversation}))
        .await;
    let reply = watcher
        .request(json!({"type": "unsubscribe", "conversation_id": conversation}))
        .await;
    assert_eq!(reply["type"], "unsubscribed");
    // Frames before `unsubscribed` are fine; after it, the next frame is the
    // pong: no event slipped through.
    watcher.discard_backlog();
    watcher.send(json!({"type": "ping", "id": "after"})).await;
    let next = watcher.next().await.unwrap();
    assert_eq!(next["type"], "pong", "no event after unsubscribed: {next}");

    let (status, _) = node
        .api(
            reqwest::Method::DELETE,
            &format!("/api/conversations/{conversation}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let frames = sender.until(|f| f["type"] == "unsubscribed").await;
    let unsubscribed = frames.last().unwrap();
    assert_eq!(unsubscribed["conversation_id"], conversation.as_str());
    assert!(unsubscribed.get("id").is_none());
    let (status, body) = node
        .api(
            reqwest::Method::GET,
            &format!("/api/conversations/{conversation}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let again = sender
        .request(json!({"type": "subscribe", "conversation_id": conversation}))
        .await;
    assert_eq!(again["code"], "not_found");
    node.stop().await;
}

/// The seed lost "chunk 7" between reading history and subscribing. Here many
/// subscribers join at random moments during many replies, and each must see
/// every event exactly once in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_joining_at_random_moments_never_miss_an_event() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 2;
        s.demo_reply_tokens = 40;
        s.frames_per_second = 1000;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut sender = node.connect(&token).await;
    let mut joins = 0;
    for round in 0..20 {
        let Sent {
            conversation,
            reply_id,
            ..
        } = sender.send_turn(&format!("question number {round}")).await;
        let mut tasks = Vec::new();
        for _ in 0..25 {
            let url = node.ws_url(&token);
            let conversation = conversation.clone();
            let reply_id = reply_id.clone();
            let delay = rand::rng().random_range(0..60);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let mut client = Client::connect(&url).await;
                let subscribed = client
                    .request(json!({"type": "subscribe", "conversation_id": conversation}))
                    .await;
                assert_eq!(subscribed["type"], "subscribed");
                // A late joiner may find the reply already ended in its snapshot.
                let frames = client.until(|f| reply_over(f, &reply_id)).await;
                let mut view = View::default();
                view.apply_all(&conversation, &frames);
                view.messages()[1].content.clone()
            }));
        }
        let frames = sender.until(|f| ends(f, &reply_id)).await;
        let mut view = View::default();
        view.apply_all(&conversation, &frames);
        for task in tasks {
            assert_eq!(task.await.unwrap(), view.messages()[1].content);
            joins += 1;
        }
    }
    assert_eq!(joins, 500);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_subscribes_are_each_answered() {
    let node = TestNode::start(|s| {
        s.frames_per_second = 10_000;
        s.demo_token_delay_ms = 10;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = client.send_turn("subscribe to me often").await;
    let mut watcher = node.connect(&token).await;
    for i in 0..100 {
        watcher
            .send(json!({"type": "subscribe", "id": format!("s{i}"), "conversation_id": conversation}))
            .await;
    }
    // Every subscribe gets its own `subscribed`, in order; the last one's
    // events then run to the reply's end with no gap.
    let mut answered = 0;
    let mut view = View::default();
    loop {
        let frame = watcher.next().await.unwrap();
        if frame["type"] == "subscribed" {
            assert_eq!(frame["id"], format!("s{answered}"));
            answered += 1;
            view = View::default();
        }
        view.apply(&conversation, &frame);
        if answered == 100 && reply_over(&frame, &reply_id) {
            break;
        }
    }
    assert_eq!(
        view.messages()[1].content,
        demo_reply(30, "subscribe to me often")
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4001() {
    let node = TestNode::start(|s| {
        s.outbox_frames = 16;
        s.demo_token_delay_ms = 0;
        s.demo_reply_tokens = 200_000;
    })
    .await;
    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    client
        .send(json!({"type": "send", "content": "flood me"}))
        .await;
    // Stop reading: the socket's buffers fill, then the node's queue for it.
    eventually("the node drops the connection", || async {
        let (_, body) = node
            .api(
                reqwest::Method::GET,
                "/admin/actors",
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        !body["actors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "connection")
    })
    .await;
    assert_eq!(client.closed().await.code, Some(4001));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_closes_every_socket_with_the_code_it_is_given() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let mut first = node.connect(&token).await;
    let mut second = node.connect(&token).await;
    node.node.stop(1012).await;
    assert_eq!(first.closed().await.code, Some(1012));
    assert_eq!(second.closed().await.code, Some(1012));
}
