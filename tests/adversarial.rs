//! Hostile input against a node: it stays up, its memory stays bounded,
//! and another user's reply streams on, every event once and in order
//! (`View`), while someone sends malformed, truncated and deeply nested
//! JSON, huge numbers, invalid UTF-8, binary frames, a flood of 60 KiB
//! frames, frames over the size limit, never reads while re-subscribing to
//! a busy conversation, walks out of the static directory, or forges
//! tokens. Each refusal is the contract's code with a message for people
//! (no library text, file path or address: `library_text_in`).
//!
//! Memory is measured on a node running as its own process
//! (`common::node_process`), from `VmRSS` in `/proc/<pid>/status`, sampled
//! through the attack; the bounds are generous on purpose (see
//! `MEMORY_BOUND`), and each attack sends several times the bound, so a
//! node that kept what it was sent would cross it.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::node_process::NodeProcess;
use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

// ---- another user, reading all along ----

/// Another user's replies, one after the other on one socket, until told
/// to stop: each must arrive complete, every event once, in seq order
/// (`View`), and be the demo model's reply. Replies keep coming for as long
/// as the attack lasts, so the check covers all of it whatever its pace.
struct Reader {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Reader {
    /// A reader on the socket at `url`, whose node's demo model answers
    /// `tokens` tokens. With `conversation`, every turn goes into it (then
    /// only the order is checked, the text depending on its history).
    async fn start(url: &str, tokens: usize, conversation: Option<String>) -> Reader {
        let mut client = Client::connect(url).await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut replies = 0;
                loop {
                    let question = format!("reader question {replies}, about queues");
                    let mut frame = json!({"type": "send", "content": question});
                    if let Some(conversation) = &conversation {
                        frame["conversation_id"] = json!(conversation);
                    }
                    let ack = client.request(frame).await;
                    assert_eq!(ack["type"], "ack", "the reader's send: {ack}");
                    let id = ack["conversation_id"].as_str().unwrap().to_owned();
                    let reply = ack["assistant_message_id"].as_str().unwrap().to_owned();
                    let frames = client.until(|f| ends(f, &reply)).await;
                    let mut view = View::default();
                    if conversation.is_some() {
                        // Followed from the event of its own message on.
                        let first = frames
                            .iter()
                            .find(|f| f["type"] == "event" && f["conversation_id"] == id)
                            .expect("the turn's events");
                        view.seq = first["seq"].as_u64().unwrap() - 1;
                    }
                    view.apply_all(&id, &frames);
                    let ending = frames.last().unwrap();
                    assert_eq!(
                        ending["event"]["kind"], "done",
                        "the reader's reply ended normally: {ending}"
                    );
                    let text = delta_text(&frames, &reply);
                    let folded = view
                        .messages()
                        .iter()
                        .find(|m| m.id.to_string() == reply)
                        .expect("the reply in the view");
                    assert_eq!(folded.content, text, "the view folds to the deltas");
                    if conversation.is_none() {
                        assert_eq!(view.applied.first(), Some(&1), "from seq 1");
                        assert_eq!(
                            text,
                            demo_reply(tokens, &question),
                            "the reader's reply, complete and in order"
                        );
                    }
                    client.discard_backlog();
                    replies += 1;
                    if stop.load(Ordering::SeqCst) {
                        client.close().await;
                        return replies;
                    }
                }
            }
        });
        Reader { stop, task }
    }

    /// Stops after the reply under way (which spans the end of the
    /// attack); answers how many arrived, each checked.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let replies = tokio::time::timeout(DEADLINE * 2, self.task)
            .await
            .expect("the reader's last reply ends in time")
            .expect("every reply of the reader arrived complete and in order");
        assert!(replies >= 1, "the reader got replies");
        replies
    }
}

/// The node answers and accepts a new socket that answers a ping.
async fn assert_serving(http: &reqwest::Client, base: &str, token: &str) {
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the node is up");
    let ws = format!("{}/ws/chat?token={token}", base.replacen("http", "ws", 1));
    let mut client = Client::connect(&ws).await;
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    client.close().await;
}

/// Asserts `message` is a sentence for people.
fn assert_for_people(message: &Value, what: &str) {
    let text = message
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message"));
    if let Some(telltale) = library_text_in(text) {
        panic!("{what}: the message {text:?} is not for people ({telltale})");
    }
}

// ---- hostile JSON over the WebSocket ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_frames_are_bad_requests_and_harm_nobody() {
    let node = TestNode::start(|s| {
        // Limits out of the way: every frame here must reach the parser.
        s.frames_per_second = 10_000;
        s.demo_token_delay_ms = 2;
        s.demo_reply_tokens = 150;
    })
    .await;
    let base = format!("http://{}", node.node.addr);
    let (calm, _) = node.guest().await;
    let reader = Reader::start(&node.ws_url(&calm), 150, None).await;

    let (token, _) = node.guest().await;
    let mut attacker = node.connect(&token).await;
    let own = attacker.send_turn("mine").await;
    attacker.until(|f| ends(f, &own.reply_id)).await;
    let left = attacker
        .request(json!({"type": "unsubscribe", "conversation_id": own.conversation}))
        .await;
    assert_eq!(left["type"], "unsubscribed");
    attacker.discard_backlog();

    let deep_array = "[".repeat(65_000);
    let deep_object = format!("{}1", r#"{"a":"#.repeat(13_000));
    let deep_valid = format!(
        r#"{{"type":"ping","x":{}{}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    let digits = "9".repeat(60_000);
    let conversation = &own.conversation;
    // (what, frame, the answers allowed: `error:<code>` or a reply type)
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("not JSON", "not json at all".into(), &["error:bad_request"]),
        ("empty text", String::new(), &["error:bad_request"]),
        ("JSON null", "null".into(), &["error:bad_request"]),
        ("a JSON string", r#""ping""#.into(), &["error:bad_request"]),
        ("an array", "[]".into(), &["error:bad_request"]),
        (
            "trailing comma",
            r#"{"type":"ping",}"#.into(),
            &["error:bad_request"],
        ),
        (
            "unquoted keys",
            "{type: ping}".into(),
            &["error:bad_request"],
        ),
        (
            "truncated object",
            r#"{"type":"send","content":"hi""#.into(),
            &["error:bad_request"],
        ),
        (
            "truncated string",
            format!(
                r#"{{"type":"subscribe","conversation_id":"{}"#,
                &conversation[..8]
            ),
            &["error:bad_request"],
        ),
        ("truncated key", r#"{"ty"#.into(), &["error:bad_request"]),
        (
            "a lone surrogate escape",
            r#"{"type":"send","content":"\ud800"}"#.into(),
            &["error:bad_request"],
        ),
        ("65,000 [", deep_array, &["error:bad_request"]),
        ("13,000 nested objects", deep_object, &["error:bad_request"]),
        // Well-formed but deeper than any parser should follow: refused,
        // or (a node whose parser follows it) answered; never a crash.
        (
            "a ping holding 30,000 nested arrays",
            deep_valid,
            &["error:bad_request", "pong"],
        ),
        (
            "since.seq 1e400",
            format!(
                r#"{{"type":"subscribe","conversation_id":"{conversation}","since":{{"epoch":"e","seq":1e400}}}}"#
            ),
            &["error:bad_request"],
        ),
        (
            "since.seq 2^64",
            format!(
                r#"{{"type":"subscribe","conversation_id":"{conversation}","since":{{"epoch":"e","seq":18446744073709551616}}}}"#
            ),
            &["error:bad_request"],
        ),
        (
            "since.seq negative",
            format!(
                r#"{{"type":"subscribe","conversation_id":"{conversation}","since":{{"epoch":"e","seq":-1}}}}"#
            ),
            &["error:bad_request"],
        ),
        (
            "since.seq of 60,000 digits",
            format!(
                r#"{{"type":"subscribe","conversation_id":"{conversation}","since":{{"epoch":"e","seq":{digits}}}}}"#
            ),
            &["error:bad_request"],
        ),
        (
            "id 1e999",
            r#"{"id":1e999,"type":"ping"}"#.into(),
            &["error:bad_request"],
        ),
        (
            "content a huge number",
            r#"{"type":"send","content":1e400}"#.into(),
            &["error:bad_request"],
        ),
        (
            "client_msg_id a huge number",
            r#"{"type":"send","content":"hi","client_msg_id":123456789012345678901234567890}"#
                .into(),
            &["error:bad_request"],
        ),
        (
            "conversation_id a number",
            r#"{"type":"send","content":"hi","conversation_id":1e308}"#.into(),
            &["error:bad_request"],
        ),
        (
            "message_id a float",
            r#"{"type":"cancel","message_id":-0.0e-99999}"#.into(),
            &["error:bad_request"],
        ),
    ];
    for (what, text, allowed) in &cases {
        attacker.send_text(text).await;
        let reply = attacker
            .next()
            .await
            .unwrap_or_else(|closed| panic!("{what}: the socket closed: {closed:?}"));
        let answer = match reply["type"].as_str() {
            Some("error") => format!("error:{}", reply["code"].as_str().unwrap_or("?")),
            other => other.unwrap_or("?").to_owned(),
        };
        assert!(
            allowed.contains(&answer.as_str()),
            "{what}: expected one of {allowed:?}, got {reply:.300}"
        );
        if reply["type"] == "error" {
            assert_for_people(&reply["message"], what);
            assert!(
                reply.get("id").is_none(),
                "{what}: an unreadable frame's error has no id: {reply}"
            );
        }
    }

    // Binary frames, whatever they hold: `bad_request`, the socket open.
    for (what, bytes) in [
        ("an empty binary frame", Vec::new()),
        ("random bytes", (0..=255u8).cycle().take(4096).collect()),
        ("a ping as binary", br#"{"id":"b","type":"ping"}"#.to_vec()),
        ("60 KiB of zeros", vec![0u8; 60 * 1024]),
    ] {
        attacker.send_raw(WsMessage::binary(bytes)).await.unwrap();
        let reply = attacker
            .next()
            .await
            .unwrap_or_else(|closed| panic!("{what}: the socket closed: {closed:?}"));
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{what}: {reply}"
        );
        assert!(reply.get("id").is_none(), "{what}: {reply}");
        assert_for_people(&reply["message"], what);
    }

    // The largest seq a client can name: above the newest, so a snapshot.
    let subscribed = attacker
        .request(json!({"type": "subscribe", "conversation_id": conversation, "since": {"epoch": "e", "seq": u64::MAX}}))
        .await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["recovered"], false);
    let snapshot = attacker.next().await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["messages"].as_array().unwrap().len(), 2);

    // The same socket still works, and so does the node.
    assert_eq!(
        attacker.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    assert_serving(&node.http, &base, &token).await;
    reader.finish().await;
    node.stop().await;
}

/// A text frame whose bytes are not UTF-8 breaks the WebSocket protocol
/// (RFC 6455 §8.1): the node may answer `bad_request` and keep the socket,
/// or close it as a protocol error (1007 invalid payload, or 1002 as
/// docs/protocol.md says for protocol violations). It is not "over the
/// size limit": 1009 names that, and a client told 1009 would shrink a
/// message that is 5 bytes long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_is_refused_as_such() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 2;
        s.demo_reply_tokens = 150;
    })
    .await;
    let base = format!("http://{}", node.node.addr);
    let (calm, _) = node.guest().await;
    let reader = Reader::start(&node.ws_url(&calm), 150, None).await;
    let (token, _) = node.guest().await;

    let invalid: [(&str, Vec<Frame>); 3] = [
        (
            "0xff 0xfe in one frame",
            vec![Frame::message(
                b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}".to_vec(),
                OpCode::Data(Data::Text),
                true,
            )],
        ),
        (
            "an overlong encoding of '/'",
            vec![Frame::message(
                b"{\"type\":\"ping\",\"x\":\"\xc0\xaf\"}".to_vec(),
                OpCode::Data(Data::Text),
                true,
            )],
        ),
        (
            "a character cut between continuation frames, then broken",
            vec![
                Frame::message(
                    b"{\"type\":\"ping\",\"x\":\"\xe1\x88".to_vec(),
                    OpCode::Data(Data::Text),
                    false,
                ),
                Frame::message(b"\x28\"}".to_vec(), OpCode::Data(Data::Continue), true),
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, frames) in invalid {
        let mut client = node.connect(&token).await;
        for frame in frames {
            client.send_raw(WsMessage::Frame(frame)).await.unwrap();
        }
        match client.next().await {
            Ok(reply) => {
                if (reply["type"].as_str(), reply["code"].as_str())
                    != (Some("error"), Some("bad_request"))
                {
                    wrong.push(format!("{what}: expected `bad_request`, got {reply}"));
                    continue;
                }
                assert_for_people(&reply["message"], what);
                assert_eq!(
                    client.request(json!({"type": "ping"})).await["type"],
                    "pong"
                );
            }
            Err(closed) if matches!(closed.code, Some(1007 | 1002)) => {}
            Err(closed) => wrong.push(format!(
                "{what}: expected close 1007 or 1002 (or `bad_request`), got {:?}",
                closed.code
            )),
        }
    }
    // A valid multi-byte character split across continuation frames is
    // fine: UTF-8 is checked on the joined message.
    let whole = "{\"id\":\"u\",\"type\":\"ping\",\"x\":\"\u{1F600}\"}".as_bytes();
    let cut = whole.len() - 4; // two bytes into the four of U+1F600
    let mut client = node.connect(&token).await;
    for frame in [
        Frame::message(whole[..cut].to_vec(), OpCode::Data(Data::Text), false),
        Frame::message(whole[cut..].to_vec(), OpCode::Data(Data::Continue), true),
    ] {
        client.send_raw(WsMessage::Frame(frame)).await.unwrap();
    }
    let pong = client.next().await.expect("the socket stays open");
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("u"))
    );

    assert_serving(&node.http, &base, &token).await;
    reader.finish().await;
    node.stop().await;
    assert!(wrong.is_empty(), "invalid UTF-8:\n  {}", wrong.join("\n  "));
}

// ---- frames over the size limit ----

/// The connection actors a node lists.
async fn connection_actors(http: &reqwest::Client, base: &str) -> usize {
    let body: Value = http
        .get(format!("{base}/admin/actors"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "connection")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_64_kib_closes_with_1009_once_and_the_node_moves_on() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 2;
        s.demo_reply_tokens = 150;
    })
    .await;
    let base = format!("http://{}", node.node.addr);
    let (calm, _) = node.guest().await;
    let reader = Reader::start(&node.ws_url(&calm), 150, None).await;
    let (token, _) = node.guest().await;
    let before = connection_actors(&node.http, &base).await;

    let one_over = format!(r#"{{"type":"ping","pad":"{}"}}"#, "p".repeat(65_537 - 24));
    assert_eq!(one_over.len(), 65_537);
    let cases: Vec<(&str, Vec<Frame>)> = vec![
        (
            "65,537 bytes in one frame",
            vec![Frame::message(
                one_over.into_bytes(),
                OpCode::Data(Data::Text),
                true,
            )],
        ),
        (
            "100,000 [ in one frame",
            vec![Frame::message(
                "[".repeat(100_000).into_bytes(),
                OpCode::Data(Data::Text),
                true,
            )],
        ),
        (
            "two continuation frames of 40,000 bytes",
            vec![
                Frame::message(vec![b' '; 40_000], OpCode::Data(Data::Text), false),
                Frame::message(vec![b' '; 40_000], OpCode::Data(Data::Continue), true),
            ],
        ),
        (
            "a binary frame of 1 MiB",
            vec![Frame::message(
                vec![0u8; 1 << 20],
                OpCode::Data(Data::Binary),
                true,
            )],
        ),
    ];
    for (what, frames) in cases {
        let mut client = node.connect(&token).await;
        for frame in frames {
            // The node may close while a large frame is still going out.
            if client.send_raw(WsMessage::Frame(frame)).await.is_err() {
                break;
            }
        }
        let closed = client.closed().await;
        assert_eq!(closed.code, Some(1009), "{what}");
        // One close, then nothing: the stream ends.
        assert!(
            client.next().await.is_err(),
            "{what}: nothing after the close"
        );
        eventually(
            &format!("{what}: its connection leaves the node"),
            || async { connection_actors(&node.http, &base).await == before },
        )
        .await;
    }
    assert_serving(&node.http, &base, &token).await;
    reader.finish().await;
    node.stop().await;
}

// ---- memory, on a node process ----

/// How much a node's resident memory may grow under an attack, over what it
/// held before. Generous on purpose: the node legitimately keeps per socket
/// up to `OUTBOX_BYTES` (4 MiB) of frames plus its read queue (8 frames of
/// up to 64 KiB) and codec buffers, SQLite its page cache, and the
/// allocator keeps freed memory in per-thread arenas instead of returning
/// it (measured here: a 60 KiB flood of 450 MiB grew it by about 5 MiB;
/// clients that never read, by 25 to 55 MiB, levelling off). Each attack
/// below sends at least four times this much, so a node that buffered
/// what it was sent would cross it.
const MEMORY_BOUND: u64 = 96 * 1024 * 1024;

/// The process id of a node process, found by the `BIND` it was given.
fn pid_of(node: &NodeProcess) -> u32 {
    let wanted = format!("BIND={}", node.addr);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let is_node = std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("chatstream"));
        if is_node && environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            return pid;
        }
    }
    panic!("no process runs with {wanted}");
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    try_rss(pid).expect("the node process runs")
}

fn try_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(kib * 1024)
}

/// The highest resident memory of a process while it is watched.
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn watch(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let task = tokio::spawn({
            let peak = peak.clone();
            async move {
                // Until stopped, or the process is gone (the test failed).
                while let Some(now) = try_rss(pid) {
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        PeakRss { peak, task }
    }

    fn stop(self, pid: u32) -> u64 {
        self.task.abort();
        self.peak.fetch_max(rss(pid), Ordering::SeqCst);
        self.peak.load(Ordering::SeqCst)
    }
}

async fn guest_of(http: &reqwest::Client, node: &NodeProcess) -> String {
    let body: Value = http
        .post(node.url("/api/auth/guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// What one flooding socket saw.
struct Flood {
    /// Bytes it sent.
    sent: usize,
    /// `rate_limited` answers it got.
    limited: usize,
    /// The close code, if the node closed it (rather than the flooder).
    closed_by_node: Option<u16>,
}

/// One flooding socket: sends `frame` as fast as the node reads, up to
/// `most` times or until the node closes it (then it closes itself).
async fn flood_once(url: &str, frame: &str, most: usize) -> Flood {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the flooder connects");
    let (mut sink, mut stream) = socket.split();
    let we_closed = Arc::new(AtomicBool::new(false));
    let reading = tokio::spawn({
        let we_closed = we_closed.clone();
        async move {
            let mut limited = 0;
            loop {
                match tokio::time::timeout(DEADLINE, stream.next())
                    .await
                    .expect("the flooder hears from the node in time")
                {
                    Some(Ok(WsMessage::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        if frame["type"] == "error" {
                            assert_eq!(frame["code"], "rate_limited", "{frame}");
                            assert_for_people(&frame["message"], "a refused frame");
                            limited += 1;
                        }
                    }
                    Some(Ok(WsMessage::Close(close))) => {
                        // After the flooder's own close, this is the answer to it.
                        let ours = we_closed.load(Ordering::SeqCst);
                        return (limited, close.filter(|_| !ours).map(|c| u16::from(c.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return (limited, None),
                }
            }
        }
    });
    let mut sent = 0;
    for _ in 0..most {
        if reading.is_finished() {
            break;
        }
        match tokio::time::timeout(
            Duration::from_secs(5),
            sink.send(WsMessage::text(frame.to_owned())),
        )
        .await
        {
            Ok(Ok(())) => sent += frame.len(),
            _ => break,
        }
    }
    if !reading.is_finished() {
        we_closed.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(5), sink.close()).await;
    }
    let (limited, closed_by_node) = tokio::time::timeout(DEADLINE, reading)
        .await
        .expect("the flooder's socket ends in time")
        .unwrap();
    Flood {
        sent,
        limited,
        closed_by_node,
    }
}

/// Checks one flooding socket: answered `rate_limited`, and closed (if the
/// node closed it) with 4029.
fn assert_refused_flood(flood: &Flood, what: &str) {
    assert!(flood.limited > 0, "{what}: refused frames are answered");
    assert!(
        matches!(flood.closed_by_node, None | Some(4029)),
        "{what}: a flooder is closed with 4029, got {:?}",
        flood.closed_by_node
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_60_kib_frames_is_refused_with_memory_bounded() {
    const TOKENS: &str = "150";
    // FRAMES_PER_SECOND keeps its default: the contract's limit.
    let node = NodeProcess::start(&[
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("DEMO_TOKEN_DELAY_MS", "3"),
        ("DEMO_REPLY_TOKENS", TOKENS),
    ])
    .await;
    let pid = pid_of(&node);
    let http = http_client();
    let calm = guest_of(&http, &node).await;
    let frame = json!({"type": "ping", "pad": "x".repeat(60 * 1024)}).to_string();
    // Up to 60 MiB a socket, if the node does not close it first.
    const MOST: usize = 1_000;
    let mut flooders = Vec::new();
    for _ in 0..4 {
        flooders.push(node.ws_url(&guest_of(&http, &node).await));
    }

    // One round first, so that buffers and arenas the node keeps anyway
    // are in the baseline.
    let warm_up = flood_once(&flooders[0], &frame, MOST).await;
    assert_refused_flood(&warm_up, "the first flooder");
    let reader = Reader::start(&node.ws_url(&calm), TOKENS.parse().unwrap(), None).await;
    let baseline = rss(pid);
    let peak = PeakRss::watch(pid);
    let mut total = 0;
    let mut sockets = 0;
    let mut closed = 0;
    while total < 4 * MEMORY_BOUND as usize {
        // Four flooders at once, each on a new socket every round.
        let floods = futures_util::future::join_all(
            flooders.iter().map(|url| flood_once(url, &frame, MOST)),
        )
        .await;
        for flood in &floods {
            sockets += 1;
            assert_refused_flood(flood, &format!("flooding socket {sockets}"));
            total += flood.sent;
            closed += usize::from(flood.closed_by_node.is_some());
        }
        assert!(sockets < 400, "the flood made no progress: {total} bytes");
    }
    let peak = peak.stop(pid);
    let grown = peak.saturating_sub(baseline);
    assert!(
        grown < MEMORY_BOUND,
        "memory grew by {} MiB (from {} MiB) under {} MiB of flood on {sockets} sockets",
        grown >> 20,
        baseline >> 20,
        total >> 20
    );
    eprintln!(
        "flood: {} MiB on {sockets} sockets ({closed} closed by the node with 4029), \
         memory {} MiB, peak {} MiB",
        total >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert_serving(&http, &format!("http://{}", node.addr), &calm).await;
    reader.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_and_resubscribes_is_closed_with_4001_and_memory_stays_bounded() {
    const TOKENS: &str = "200";
    let node = NodeProcess::start(&[
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("DEMO_TOKEN_DELAY_MS", "3"),
        ("DEMO_REPLY_TOKENS", TOKENS),
        // Every re-subscribe must reach the node: the frame limit is
        // tested on its own.
        ("FRAMES_PER_SECOND", "10000"),
    ])
    .await;
    let pid = pid_of(&node);
    let http = http_client();
    let base = format!("http://{}", node.addr);
    let owner = guest_of(&http, &node).await;
    let calm = guest_of(&http, &node).await;

    // A large conversation: 20 turns of 30,000 characters, so that every
    // subscribe answers a snapshot of more than 600 KB.
    let call = |method: Method, path: String, body: Option<Value>| {
        let (http, owner, base) = (&http, &owner, &base);
        async move {
            let mut request = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(owner);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let mut conversation: Option<String> = None;
    for turn in 0..20 {
        let mut body = json!({"content": format!("{turn} {}", "long question ".repeat(2_140))});
        if let Some(id) = &conversation {
            body["conversation_id"] = json!(id);
        }
        let (status, accepted) = call(Method::POST, "/api/chat".into(), Some(body)).await;
        assert_eq!(status, 202, "{accepted}");
        conversation = Some(accepted["conversation_id"].as_str().unwrap().to_owned());
        let (status, _) = call(
            Method::POST,
            "/api/cancel".into(),
            Some(json!({"message_id": accepted["message_id"]})),
        )
        .await;
        assert_eq!(status, 202);
        let path = format!("/api/conversations/{}", conversation.as_ref().unwrap());
        eventually("the turn ends", || async {
            let (_, detail) = call(Method::GET, path.clone(), None).await;
            detail["messages"]
                .as_array()
                .is_some_and(|m| m.iter().all(|m| m["status"] != "streaming"))
        })
        .await;
    }
    let conversation = conversation.unwrap();

    // Busy: its owner keeps a reply streaming in it, turn after turn.
    let busy = Reader::start(
        &node.ws_url(&owner),
        TOKENS.parse().unwrap(),
        Some(conversation.clone()),
    )
    .await;
    let reader = Reader::start(&node.ws_url(&calm), TOKENS.parse().unwrap(), None).await;
    let subscribe = json!({"type": "subscribe", "conversation_id": conversation}).to_string();

    // A socket of the owner that subscribes again and again and never
    // reads; answers the bytes of snapshots it asked for.
    let never_read = || {
        let (url, subscribe, http, base) = (node.ws_url(&owner), subscribe.clone(), &http, &base);
        async move {
            let others = connection_actors(http, base).await;
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            eventually("the node lists the new socket", || async {
                connection_actors(http, base).await == others + 1
            })
            .await;
            let mut asked = 0;
            for _ in 0..100 {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    socket.send(WsMessage::text(subscribe.clone())),
                )
                .await
                {
                    Ok(Ok(())) => asked += 1,
                    _ => break,
                }
            }
            eventually("the node drops the client that never reads", || async {
                connection_actors(http, base).await < others + 1
            })
            .await;
            // Reading now, it finds what was on the way, then the close.
            let code = loop {
                match tokio::time::timeout(DEADLINE, socket.next())
                    .await
                    .expect("the close arrives in time")
                {
                    Some(Ok(WsMessage::Close(close))) => break close.map(|c| u16::from(c.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break None,
                }
            };
            (asked, code)
        }
    };
    // Three rounds first, so that buffers and arenas the node keeps anyway
    // (measured: it levels off after a few) are in the baseline.
    for round in 0..3 {
        let (_, code) = never_read().await;
        assert_eq!(
            code,
            Some(4001),
            "warm-up round {round}: closed as too slow"
        );
    }
    let baseline = rss(pid);
    let peak = PeakRss::watch(pid);
    let snapshot_bytes = 20 * 30_000;
    let mut asked_bytes = 0;
    let mut rounds = 0;
    while asked_bytes < 4 * MEMORY_BOUND as usize {
        let (asked, code) = never_read().await;
        rounds += 1;
        assert_eq!(code, Some(4001), "round {rounds}: closed as too slow");
        asked_bytes += asked * snapshot_bytes;
        assert!(rounds < 50, "the slow client made no progress");
    }
    let peak = peak.stop(pid);
    let grown = peak.saturating_sub(baseline);
    assert!(
        grown < MEMORY_BOUND,
        "memory grew by {} MiB (from {} MiB) while {rounds} clients asked for {} MiB of snapshots",
        grown >> 20,
        baseline >> 20,
        asked_bytes >> 20
    );
    eprintln!(
        "never reading: {rounds} sockets asked for {} MiB of snapshots, memory {} MiB, peak {} MiB",
        asked_bytes >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert_serving(&http, &base, &calm).await;
    let replies = reader.finish().await;
    let turns = busy.finish().await;
    eprintln!("meanwhile: {replies} replies to the reader, {turns} turns in the busy conversation");
}

// ---- the static directory ----

/// One request sent as written (a client library would normalize the
/// path): its status and whole response.
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("the node answers in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: not an HTTP response: {response:.200}"));
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_out_of_the_static_directory_are_404_and_show_nothing() {
    // root/{secret.txt, Cargo.toml}, served: root/www (with index.html).
    let root = std::env::temp_dir()
        .join("chatstream-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    let www = root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><title>chat</title>").unwrap();
    let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(root.join("secret.txt"), &secret).unwrap();
    std::fs::write(root.join("Cargo.toml"), format!("[package]\n# {secret}\n")).unwrap();
    let node = TestNode::start(|s| s.static_dir = Some(www.clone())).await;
    let addr = node.node.addr;

    let (status, index) = raw_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        index.contains("<title>chat</title>"),
        "the directory is served"
    );

    let deep = "../".repeat(12);
    let deep_encoded = "%2e%2e/".repeat(12);
    let targets = [
        "/../../etc/passwd".to_owned(),
        "/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/..%2f..%2fCargo.toml".to_owned(),
        "/..%2fCargo.toml".to_owned(),
        format!("/{deep}etc/passwd"),
        format!("/{deep_encoded}etc/passwd"),
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_owned(),
        "/../secret.txt".to_owned(),
        "/%2e%2e/secret.txt".to_owned(),
        "/%2E%2E/secret.txt".to_owned(),
        "/..%2fsecret.txt".to_owned(),
        "/%2e%2e%2fsecret.txt".to_owned(),
        "/..%5csecret.txt".to_owned(),
        "/%252e%252e/secret.txt".to_owned(),
        "/www/../../secret.txt".to_owned(),
        "/x/../../secret.txt".to_owned(),
        "/.%2e/secret.txt".to_owned(),
        "/..;/secret.txt".to_owned(),
        "//etc/passwd".to_owned(),
        "/%2fetc%2fpasswd".to_owned(),
        format!("/{}", root.join("secret.txt").display()),
        format!("/{}/Cargo.toml", env!("CARGO_MANIFEST_DIR")),
        "/Cargo.toml".to_owned(),
        "/secret.txt".to_owned(),
    ];
    let mut wrong = Vec::new();
    for target in &targets {
        let (status, response) = raw_get(addr, target).await;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let leaked = response.contains(&secret)
            || response.contains("root:")
            || response.contains("[package]");
        if leaked {
            wrong.push(format!(
                "{target}: a file outside the directory was served: {body:.200}"
            ));
            continue;
        }
        if status != 404 {
            wrong.push(format!("{target}: expected 404, got {status} {body:.200}"));
            continue;
        }
        let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if parsed["error"]["code"] != "not_found" {
            wrong.push(format!(
                "{target}: expected the JSON `not_found`, got {body:.200}"
            ));
        } else if let Some(telltale) = parsed["error"]["message"]
            .as_str()
            .and_then(library_text_in)
        {
            wrong.push(format!(
                "{target}: the message is not for people ({telltale}): {body:.200}"
            ));
        }
    }
    // The node still serves its page.
    assert_eq!(raw_get(addr, "/index.html").await.0, 200);
    node.stop().await;
    let _ = std::fs::remove_dir_all(root);
    assert!(
        wrong.is_empty(),
        "{} of {} paths answered otherwise than 404 `not_found`:\n  {}",
        wrong.len(),
        targets.len(),
        wrong.join("\n  ")
    );
}

// ---- forged tokens ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_with_401_or_1008_and_a_plain_message() {
    let node = TestNode::start(|s| {
        idp::trust(s, &["rsa-1", "ec-1"]);
        s.demo_token_delay_ms = 2;
        s.demo_reply_tokens = 150;
    })
    .await;
    let base = format!("http://{}", node.node.addr);
    let (calm, _) = node.guest().await;
    let reader = Reader::start(&node.ws_url(&calm), 150, None).await;
    let (victim, victim_id) = node.guest().await;
    let victim_id = victim_id.to_string();

    let rsa = idp::key("rsa-1");
    let ec = idp::key("ec-1");
    let attacker = idp::key("rsa-2");
    let provider = idp::claims("auth0|victim");
    let guest = json!({"sub": victim_id, "iat": idp::now(), "exp": idp::now() + 600});
    let hmac_with = |secret: &[u8], claims: &Value| idp::hs256_as(secret, Some("rsa-1"), claims);
    let public_pem = idp::fixture("idp-rsa-1.pub.pem");
    let public_jwk = idp::fixture("jwk-rsa-1.json");
    let modulus = {
        let jwk: Value = serde_json::from_slice(&public_jwk).unwrap();
        jwk["n"].as_str().unwrap().as_bytes().to_vec()
    };
    let embedded_key = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        header.jwk = Some(serde_json::from_slice(&idp::fixture("jwk-rsa-2.json")).unwrap());
        header.jku = Some("http://127.0.0.1:9/jwks.json".into());
        jsonwebtoken::encode(&header, &provider, &attacker.key).unwrap()
    };
    let tampered_guest = {
        let parts: Vec<&str> = victim.split('.').collect();
        let mut claims: Value = serde_json::from_slice(&idp::b64url_decode(parts[1])).unwrap();
        claims["exp"] = json!(idp::now() + 10 * 365 * 86_400);
        format!(
            "{}.{}.{}",
            parts[0],
            idp::b64url(claims.to_string().as_bytes()),
            parts[2]
        )
    };
    let long_sub = idp::claims(&"é".repeat(257));
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none, a guest's claims",
            idp::raw_token(&json!({"alg": "none", "typ": "JWT"}), &guest, b""),
        ),
        (
            "alg none, the provider's claims and kid",
            idp::raw_token(
                &json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
                &provider,
                b"",
            ),
        ),
        (
            "alg None",
            idp::raw_token(&json!({"alg": "None"}), &guest, b""),
        ),
        (
            "alg none with a signature",
            idp::raw_token(&json!({"alg": "none"}), &guest, b"signature"),
        ),
        (
            "HS256 keyed with the provider's public key (PEM)",
            hmac_with(&public_pem, &provider),
        ),
        (
            "HS256 keyed with the provider's public key (PEM), a guest's claims",
            hmac_with(&public_pem, &guest),
        ),
        (
            "HS256 keyed with the provider's public key (JWK)",
            hmac_with(&public_jwk, &provider),
        ),
        (
            "HS256 keyed with the provider's modulus",
            hmac_with(&modulus, &provider),
        ),
        (
            "a wrong kid",
            idp::sign_as(
                &rsa,
                jsonwebtoken::Algorithm::RS256,
                Some("rsa-9"),
                &provider,
            ),
        ),
        (
            "a kid naming a file",
            idp::sign_as(
                &rsa,
                jsonwebtoken::Algorithm::RS256,
                Some("../../../../etc/passwd"),
                &provider,
            ),
        ),
        (
            "the attacker's key under the provider's kid",
            idp::sign_as(
                &attacker,
                jsonwebtoken::Algorithm::RS256,
                Some("rsa-1"),
                &provider,
            ),
        ),
        (
            "the attacker's key embedded in the header (jwk, jku)",
            embedded_key,
        ),
        (
            "ES256 under the RSA key's kid",
            idp::sign_as(
                &ec,
                jsonwebtoken::Algorithm::ES256,
                Some("rsa-1"),
                &provider,
            ),
        ),
        ("a sub of 257 characters", idp::sign(&rsa, &long_sub)),
        ("a guest token with its exp pushed out", tampered_guest),
        ("two segments", "eyJhbGciOiJIUzI1NiJ9.e30".into()),
        ("four segments", format!("{victim}.AAAA")),
        ("empty segments", "..".into()),
        ("not base64", "@@@.###.$$$".into()),
    ];
    for (what, token) in &cases {
        let (status, body) = node
            .api(Method::GET, "/api/conversations", Some(token), None)
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {body}"
        );
        assert_for_people(&body["error"]["message"], what);
        assert!(
            !body.to_string().contains(token.as_str()),
            "{what}: the token is not repeated"
        );
        let url = format!(
            "ws://{addr}/ws/chat?token={}",
            token
                .replace('@', "%40")
                .replace('#', "%23")
                .replace('$', "%24"),
            addr = node.node.addr
        );
        let (frames, closed) = Client::connect_refused(&url).await;
        assert_eq!(closed.code, Some(1008), "{what}: {frames:?}");
        assert!(frames.len() <= 1, "{what}: {frames:?}");
        for frame in &frames {
            assert_eq!(
                (frame["type"].as_str(), frame["code"].as_str()),
                (Some("error"), Some("unauthorized")),
                "{what}"
            );
            assert_for_people(&frame["message"], what);
        }
    }
    // The real credentials still work: each forgery failed for its flaw.
    let (status, _) = node
        .api(Method::GET, "/api/conversations", Some(&victim), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = node
        .api(
            Method::GET,
            "/api/conversations",
            Some(&idp::sign(&rsa, &provider)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_serving(&node.http, &base, &calm).await;
    reader.finish().await;
    node.stop().await;
}

// ---- hostile HTTP ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_bodies_and_queries_are_refused_with_a_plain_message() {
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 2;
        s.demo_reply_tokens = 150;
    })
    .await;
    let base = format!("http://{}", node.node.addr);
    let (calm, _) = node.guest().await;
    let reader = Reader::start(&node.ws_url(&calm), 150, None).await;
    let (token, _) = node.guest().await;

    let nested = "[".repeat(100_000);
    let nested_objects = r#"{"content":"#.repeat(20_000);
    let huge = format!(
        r#"{{"content":"hi","client_msg_id":{}}}"#,
        "9".repeat(100_000)
    );
    let over = json!({"content": "x".repeat(300 * 1024)}).to_string();
    let json_bodies: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed",
            "/api/chat",
            b"{content: hi}".to_vec(),
            400,
            "bad_request",
        ),
        (
            "truncated",
            "/api/chat",
            br#"{"content":"hi"#.to_vec(),
            400,
            "bad_request",
        ),
        ("empty", "/api/chat", Vec::new(), 400, "bad_request"),
        ("null", "/api/chat", b"null".to_vec(), 400, "bad_request"),
        (
            "100,000 [",
            "/api/chat",
            nested.clone().into_bytes(),
            400,
            "bad_request",
        ),
        (
            "20,000 nested objects",
            "/api/chat",
            nested_objects.into_bytes(),
            400,
            "bad_request",
        ),
        (
            "content 1e400",
            "/api/chat",
            br#"{"content":1e400}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "a 100,000-digit number",
            "/api/chat",
            huge.into_bytes(),
            400,
            "bad_request",
        ),
        (
            "conversation_id a number",
            "/api/chat",
            br#"{"content":"hi","conversation_id":123456789012345678901234567890}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "invalid UTF-8",
            "/api/chat",
            b"{\"content\":\"\xff\xfe\xfd\"}".to_vec(),
            400,
            "bad_request",
        ),
        (
            "a lone surrogate",
            "/api/chat",
            br#"{"content":"\udc00"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "over 256 KiB",
            "/api/chat",
            over.into_bytes(),
            413,
            "too_large",
        ),
        (
            "cancel: message_id 1e400",
            "/api/cancel",
            br#"{"message_id":1e400}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "cancel: 100,000 [",
            "/api/cancel",
            nested.into_bytes(),
            400,
            "bad_request",
        ),
        (
            "create: title 1e400",
            "/api/conversations",
            br#"{"title":1e400}"#.to_vec(),
            400,
            "bad_request",
        ),
    ];
    for (what, path, body, status, code) in json_bodies {
        let response = node
            .http
            .post(node.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{what} to {path}: {body:.300}"
        );
        assert_for_people(&body["error"]["message"], what);
    }
    for path in [
        "/api/conversations?limit=1e400",
        "/api/conversations?limit=184467440737095516160000",
        "/api/conversations?limit=-1",
        "/api/conversations?before=%ff%fe",
        "/api/search?q=x&limit=99999999999999999999999999",
        "/api/search?q=x&limit=1e400",
    ] {
        let (status, body) = node.api(Method::GET, path, Some(&token), None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{path}: {body}"
        );
        assert_for_people(&body["error"]["message"], path);
    }
    // Nothing was created by any of it.
    let (_, listed) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(listed["conversations"], json!([]), "nothing created");
    assert_serving(&node.http, &base, &token).await;
    reader.finish().await;
    node.stop().await;
}
