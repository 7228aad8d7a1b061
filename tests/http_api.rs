//! The HTTP API of the contract, and the operator endpoints, against a node
//! on 127.0.0.1:0.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_can_be_created_listed_read_and_deleted() {
    let node = TestNode::start(|_| {}).await;
    let (token, user) = node.guest().await;
    let guest: Value = node
        .http
        .post(node.url("/api/auth/guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(guest["expires_at"].as_str().unwrap().contains('T'));
    assert_ne!(
        guest["user_id"],
        user.to_string(),
        "every guest is a new user"
    );

    let (status, created) = node
        .api(
            Method::POST,
            "/api/conversations",
            Some(&token),
            Some(json!({"title": "Plans"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["title"], "Plans");
    assert_eq!(created["seq"], 0);
    assert_eq!(created["messages"], json!([]));
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, fetched) = node
        .api(
            Method::GET,
            &format!("/api/conversations/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created, "POST answers the same object as GET");

    let (status, untitled) = node
        .api(Method::POST, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!((status, untitled["title"].clone()), (201, Value::Null));
    let (status, body) = node
        .api(
            Method::POST,
            "/api/conversations",
            Some(&token),
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request"))
    );

    // The listing shows the caller's own, most recently updated first.
    let (status, accepted) = node
        .api(
            Method::POST,
            "/api/chat",
            Some(&token),
            Some(json!({"conversation_id": id, "content": "hello"})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(accepted["status"], "streaming");
    assert_eq!(accepted["conversation_id"], id.as_str());
    let (_, list) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    let ids: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), untitled["id"].as_str().unwrap()]);

    let (status, _) = node
        .api(
            Method::DELETE,
            &format!("/api/conversations/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = node
            .api(
                method,
                &format!("/api/conversations/{id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (404, json!("not_found"))
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_cancel_over_http() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 400;
    })
    .await;
    let (token, _) = node.guest().await;
    let (status, accepted) = node
        .api(
            Method::POST,
            "/api/chat",
            Some(&token),
            Some(json!({"content": "talk to me over HTTP"})),
        )
        .await;
    assert_eq!(status, 202);
    let conversation = accepted["conversation_id"].as_str().unwrap().to_owned();
    let reply = accepted["message_id"].as_str().unwrap().to_owned();
    let path = format!("/api/conversations/{conversation}");
    eventually("the reply streams", || async {
        let (_, body) = node.api(Method::GET, &path, Some(&token), None).await;
        !body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    let (status, body) = node
        .api(
            Method::POST,
            "/api/cancel",
            Some(&token),
            Some(json!({"message_id": reply})),
        )
        .await;
    assert_eq!(
        (status, body),
        (202, json!({"message_id": reply, "status": "cancelling"}))
    );
    let (_, stored) = node.api(Method::GET, &path, Some(&token), None).await;
    assert_eq!(stored["messages"][1]["status"], "cancelled");
    let (status, body) = node
        .api(
            Method::POST,
            "/api/cancel",
            Some(&token),
            Some(json!({"message_id": reply})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict"))
    );

    for (body, code, status) in [
        (json!({"content": ""}), "bad_request", 400),
        (json!({"content": "x".repeat(32_001)}), "too_large", 413),
        (
            json!({"content": "hi", "model": "nope"}),
            "bad_request",
            400,
        ),
        (json!({"nope": 1}), "bad_request", 400),
    ] {
        let (got, answer) = node
            .api(Method::POST, "/api/chat", Some(&token), Some(body))
            .await;
        assert_eq!(
            (got, answer["error"]["code"].clone()),
            (status, json!(code))
        );
    }
    let (status, models) = node
        .api(Method::GET, "/api/models", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "demo" && m["provider"] == "demo")
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_needs_a_valid_token_and_unknown_routes_are_404() {
    let node = TestNode::start(|_| {}).await;
    for (method, path) in [
        (Method::GET, "/api/conversations"),
        (Method::POST, "/api/conversations"),
        (Method::GET, "/api/models"),
        (Method::POST, "/api/chat"),
        (Method::POST, "/api/cancel"),
    ] {
        for token in [None, Some("not-a-token")] {
            let (status, body) = node.api(method.clone(), path, token, Some(json!({}))).await;
            assert_eq!(
                (status, body["error"]["code"].clone()),
                (401, json!("unauthorized")),
                "{method} {path}"
            );
        }
    }
    let (status, body) = node.api(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (token, _) = node.guest().await;
    let (status, _) = node
        .api(
            Method::GET,
            "/api/conversations/not-a-uuid",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer_without_a_token() {
    let node = TestNode::start(|_| {}).await;
    let (status, _) = node.api(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, ready) = node.api(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["dependencies"]["memory"], "up");

    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let ack = client
        .request(json!({"type": "send", "content": "count me"}))
        .await;
    let reply = ack["assistant_message_id"].as_str().unwrap().to_owned();
    client.until(|f| ends(f, &reply)).await;
    let text = node
        .http
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "chatstream_turns_total",
        "chatstream_frames_sent_total",
        "chatstream_generations_ended_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} in /metrics"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actors_lists_the_live_tree_and_forgets_what_ended() {
    let node = TestNode::start(|s| s.demo_token_delay_ms = 20).await;
    let (status, _) = node.api(Method::GET, "/admin/actors", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = node
        .api(Method::GET, "/admin/actors", Some("wrong"), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = node
        .api(
            Method::GET,
            "/admin/actors?scope=galaxy",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 400);

    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let connection_id = client.welcome["connection_id"].as_str().unwrap().to_owned();
    let Sent {
        conversation,
        reply_id: reply,
        ..
    } = client.send_turn("watch my actors").await;

    let (_, body) = node
        .api(Method::GET, "/admin/actors", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(body["node_id"], node.node.node_id());
    let actors = body["actors"].as_array().unwrap().clone();
    let find = |kind: &str, key: &str| {
        actors
            .iter()
            .find(|a| a["kind"] == kind && a["key"] == key)
            .cloned()
    };
    let root = actors
        .iter()
        .find(|a| a["parent"].is_null())
        .expect("one root");
    assert_eq!(root["kind"], "supervisor");
    for (kind, key, parent) in [
        ("connection", connection_id.as_str(), "connections"),
        ("conversation", conversation.as_str(), "conversations"),
        ("generation", reply.as_str(), "generations"),
    ] {
        let actor = find(kind, key).unwrap_or_else(|| panic!("a {kind} actor for {key}"));
        let supervisor = find("supervisor", parent).expect("its supervisor");
        assert_eq!(actor["parent"], supervisor["id"]);
        assert_eq!(supervisor["parent"], root["id"]);
    }
    for kind in ["registry", "failover"] {
        assert!(
            actors.iter().any(|a| a["kind"] == kind),
            "the {kind} is listed"
        );
    }
    let ids: std::collections::HashSet<&str> =
        actors.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), actors.len(), "ids are unique");

    client.until(|f| ends(f, &reply)).await;
    client.close().await;
    eventually(
        "the connection, conversation and generation leave the list",
        || async {
            let (_, body) = node
                .api(Method::GET, "/admin/actors", Some(ADMIN_TOKEN), None)
                .await;
            let actors = body["actors"].as_array().unwrap().clone();
            !actors.iter().any(|a| {
                ["connection", "conversation", "generation"].contains(&a["kind"].as_str().unwrap())
            })
        },
    )
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_renamed_by_its_owner_only() {
    let node = TestNode::start(|_| {}).await;
    let (token, _) = node.guest().await;
    let (intruder, _) = node.guest().await;
    let (_, older) = node
        .api(Method::POST, "/api/conversations", Some(&token), None)
        .await;
    let (_, newer) = node
        .api(Method::POST, "/api/conversations", Some(&token), None)
        .await;
    let path = format!("/api/conversations/{}", older["id"].as_str().unwrap());

    let (status, renamed) = node
        .api(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"title": "  Kế hoạch du lịch  "})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["title"], "Kế hoạch du lịch", "trimmed");
    assert_eq!(renamed["id"], older["id"]);
    assert!(renamed["messages"].is_array());
    let (_, listing) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    let listed: Vec<&Value> = listing["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        listed[0]["id"], older["id"],
        "the renamed one was updated last"
    );
    assert_eq!(listed[0]["title"], "Kế hoạch du lịch");
    assert_eq!(listed[1]["id"], newer["id"]);

    for (body, code, status) in [
        (json!({"title": "   "}), "bad_request", 400),
        (json!({"title": "ê".repeat(201)}), "too_large", 413),
        (json!({}), "bad_request", 400),
    ] {
        let (got, answer) = node
            .api(Method::PATCH, &path, Some(&token), Some(body))
            .await;
        assert_eq!((got, &answer["error"]["code"]), (status, &json!(code)));
    }
    let (status, answer) = node
        .api(
            Method::PATCH,
            &path,
            Some(&intruder),
            Some(json!({"title": "mine"})),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (403, &json!("forbidden"))
    );
    let unknown = format!("/api/conversations/{}", uuid::Uuid::new_v4());
    let (status, _) = node
        .api(
            Method::PATCH,
            &unknown,
            Some(&token),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = node
        .api(Method::PATCH, &path, None, Some(json!({"title": "x"})))
        .await;
    assert_eq!(status, 401);
    let (_, detail) = node.api(Method::GET, &path, Some(&token), None).await;
    assert_eq!(
        detail["title"], "Kế hoạch du lịch",
        "no refused rename changed it"
    );
    node.stop().await;
}
