//! The settings file (`CONFIG_FILE`) as the library reads it: every kind of
//! setting from TOML, flags over the file, and a refusal naming the file and
//! the key for an unknown key or a wrong value. Environment variables over
//! the file are checked on the binary (tests/cli.rs): setting one here would
//! race with the other tests of this process.

use std::path::PathBuf;

use chatstream::config::{LogFormat, Settings, SettingsFile, SettingsFileError};
use clap::FromArgMatches as _;

/// A settings file with `text`, in a directory of its own.
fn file(text: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chatstream.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read(text: &str) -> Result<SettingsFile, SettingsFileError> {
    SettingsFile::read(&file(text), &Settings::arguments())
}

/// The settings a node started with `flags` and the file `text` runs with.
fn settings(text: &str, flags: &[&str]) -> Settings {
    let command = read(text)
        .expect("the file is accepted")
        .apply(Settings::arguments());
    let matches = command
        .try_get_matches_from(std::iter::once("chatstream").chain(flags.iter().copied()))
        .expect("the command line is accepted");
    Settings::from_arg_matches(&matches).unwrap()
}

#[test]
fn every_kind_of_setting_comes_from_the_file() {
    let settings = settings(
        r#"
            bind = "0.0.0.0:9000"
            node_id = "chat-7"
            max_frame_bytes = 1024
            guest_access = false
            ai_service_prefill = true
            auth_secret = "a secret from the file, at least 32 bytes long"
            allowed_origins = ["https://a.example", "https://b.example"]
            trusted_proxies = "127.0.0.1,10.0.0.0/8"
            data_dir = "/var/lib/chatstream"
            log_format = "json"
            log_filter = "warn,chatstream=debug"
        "#,
        &[],
    );
    assert_eq!(settings.bind, "0.0.0.0:9000");
    assert_eq!(settings.node_id.as_deref(), Some("chat-7"));
    assert_eq!(settings.max_frame_bytes, 1024);
    assert!(!settings.guest_access);
    assert!(settings.ai_service_prefill);
    assert_eq!(
        settings.auth_secret.as_deref(),
        Some("a secret from the file, at least 32 bytes long")
    );
    assert_eq!(
        settings.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    // A list may also be spelt as its environment variable is.
    assert_eq!(settings.trusted_proxies, ["127.0.0.1", "10.0.0.0/8"]);
    assert_eq!(settings.data_dir, PathBuf::from("/var/lib/chatstream"));
    assert_eq!(settings.logging.log_format, LogFormat::Json);
    assert_eq!(settings.logging.log_filter, "warn,chatstream=debug");
    // What the file does not name keeps its default.
    assert_eq!(settings.heartbeat_ms, Settings::defaults().heartbeat_ms);
}

#[test]
fn a_flag_wins_over_the_file() {
    let text = r#"
        max_frame_bytes = 1024
        allowed_origins = ["https://a.example"]
        guest_access = false
    "#;
    let settings = settings(
        text,
        &[
            "--max-frame-bytes",
            "2048",
            "--allowed-origins",
            "https://c.example",
        ],
    );
    assert_eq!(settings.max_frame_bytes, 2048);
    assert_eq!(settings.allowed_origins, ["https://c.example"]);
    assert!(!settings.guest_access, "the file still gives the rest");
}

#[test]
fn unknown_keys_are_refused_naming_the_file_and_each_key() {
    let path = file(
        r#"
            REDIS_URL = "redis://127.0.0.1:6379"
            max-frame-bytes = 1024
            colour = "blue"
            [redis]
            url = "redis://127.0.0.1:6379"
        "#,
    );
    let error = SettingsFile::read(&path, &Settings::arguments()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(error.problems.len(), 4, "{message}");
    for expected in [
        "unknown setting `REDIS_URL` (did you mean `redis_url`?)",
        "unknown setting `max-frame-bytes` (did you mean `max_frame_bytes`?)",
        "unknown setting `colour`",
        "unknown setting `redis`",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
}

#[test]
fn a_wrong_value_is_refused_naming_its_key() {
    for (text, key) in [
        ("max_frame_bytes = \"lots\"", "max_frame_bytes"),
        ("max_frame_bytes = -1", "max_frame_bytes"),
        ("max_frame_bytes = 1.5", "max_frame_bytes"),
        ("guest_access = \"maybe\"", "guest_access"),
        ("log_format = \"xml\"", "log_format"),
        ("log_filter = \"chatstream=loud\"", "log_filter"),
        ("node_id = [\"a\", \"b\"]", "node_id"),
        ("bind = { host = \"0.0.0.0\" }", "bind"),
        (
            "allowed_origins = [[\"https://a.example\"]]",
            "allowed_origins",
        ),
    ] {
        let error = read(text).expect_err(text);
        assert_eq!(error.problems.len(), 1, "{text}: {error}");
        assert!(
            error.problems[0].starts_with(&format!("`{key}`: ")),
            "{text}: {error}"
        );
    }
    let error = read("log_format = \"xml\"").unwrap_err();
    assert!(
        error.to_string().contains("expected one of text, json"),
        "{error}"
    );
}

#[test]
fn a_file_that_cannot_be_read_or_parsed_is_named() {
    let missing = std::env::temp_dir().join("chatstream-tests/no-such-settings.toml");
    let error = SettingsFile::read(&missing, &Settings::arguments()).unwrap_err();
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
    let error = read("bind = ").unwrap_err();
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[test]
fn a_secret_from_the_file_does_not_show_in_help() {
    let secret = "a secret from the file, at least 32 bytes long";
    let text = format!("auth_secret = \"{secret}\"\nnode_id = \"chat-7\"");
    let help = read(&text)
        .unwrap()
        .apply(Settings::arguments())
        .render_long_help()
        .to_string();
    assert!(!help.contains(secret), "{help}");
    assert!(
        help.contains("[default: chat-7]"),
        "the other values show as defaults: {help}"
    );
}

#[test]
fn every_setting_has_a_help_heading() {
    let command = Settings::arguments();
    let without: Vec<_> = command
        .get_arguments()
        .filter(|arg| arg.get_help_heading().is_none())
        .map(|arg| arg.get_id().to_string())
        .collect();
    assert!(
        without.is_empty(),
        "settings without a heading: {without:?}"
    );
}
