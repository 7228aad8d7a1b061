//! An external identity provider: its RS256 and ES256 tokens, checked with
//! the public keys of its JWKS document (`JWT_JWKS_FILE`, read once at
//! start, or `JWT_JWKS_URL`, fetched).
//!
//! A token names its key by `kid`. From a URL, the keys are fetched in the
//! background at start and every [`REFRESH_EVERY`] (so that a key the
//! provider withdrew stops being accepted), and again when a token names a
//! `kid` the node does not know (the provider rotated its keys). A fetch that
//! fails, or does not bring the `kid` asked for, is not repeated for
//! [`FETCH_COOLDOWN`]: tokens with made-up `kid`s cannot make the node hammer
//! the provider. Requests that need a fetch wait for the one in progress
//! instead of starting their own. Until the provider has answered once, its
//! tokens are refused; guest tokens are unaffected.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Verified, not_valid, refusal};
use crate::config::Settings;
use crate::protocol::{ApiError, ErrorCode, UserId};

/// The most clock skew allowed on `exp` (and `nbf`), whatever
/// `JWT_LEEWAY_SECS` says.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// How long one fetch of the JWKS may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a fetch that failed or did not bring the `kid` a token asked for,
/// how long tokens naming unknown keys are refused without fetching again.
pub const FETCH_COOLDOWN: Duration = Duration::from_secs(5);
/// How often the JWKS is fetched again in the background.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// The largest JWKS document accepted (real ones are a few kilobytes).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The identity provider's settings and its current keys.
pub struct IdentityProvider {
    issuer: String,
    audience: String,
    leeway: u64,
    keys: RwLock<Arc<KeySet>>,
    /// `None` for keys read from a file.
    fetcher: Option<Fetcher>,
}

struct Fetcher {
    url: reqwest::Url,
    client: reqwest::Client,
    /// Held for the whole of a fetch, so that requests needing one wait for
    /// it rather than fetch again.
    state: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    /// Until when a token naming an unknown key triggers no fetch.
    cooling_until: Option<Instant>,
    /// Whether the last fetch failed (the provider did not answer, or
    /// answered no usable keys).
    last_failed: bool,
    /// When keys were last fetched successfully.
    fetched_at: Option<Instant>,
}

/// The claims the node reads from a provider's token; `iss`, `aud`, `exp`
/// and `nbf` are checked by the library as the `Validation` says.
#[derive(Deserialize)]
struct ProviderClaims {
    sub: String,
    exp: i64,
}

/// The refusal of a token whose key could not be fetched: the provider does
/// not answer. Still `unauthorized`, but it tells the user to try again.
fn unreachable() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "the token cannot be checked right now; try again shortly",
    )
}

impl IdentityProvider {
    /// The provider the settings configure, if any. Errors name the variable
    /// at fault: both sources set, a source without `JWT_ISSUER` or
    /// `JWT_AUDIENCE` (or those without a source), an unreadable or unusable
    /// `JWT_JWKS_FILE`, a `JWT_JWKS_URL` that is not an http(s) URL.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Arc<IdentityProvider>>> {
        // An empty variable counts as unset, as deployment templates pass
        // them through empty.
        let file = settings
            .jwt_jwks_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty());
        let url = set(&settings.jwt_jwks_url);
        // The source first, so that an unreadable file or a bad URL is the
        // error reported rather than a missing companion setting.
        let (variable, keys, fetcher) = match (file, url) {
            (Some(_), Some(_)) => {
                bail!("JWT_JWKS_FILE and JWT_JWKS_URL are both set; set only one of them")
            }
            (None, None) => {
                for (variable, value) in [
                    ("JWT_ISSUER", &settings.jwt_issuer),
                    ("JWT_AUDIENCE", &settings.jwt_audience),
                ] {
                    if set(value).is_some() {
                        bail!(
                            "{variable} is set but neither JWT_JWKS_FILE nor JWT_JWKS_URL is: \
                             set one of them to accept the identity provider's tokens"
                        );
                    }
                }
                return Ok(None);
            }
            (Some(path), None) => {
                let document = std::fs::read(path)
                    .with_context(|| format!("JWT_JWKS_FILE: cannot read {}", path.display()))?;
                let keys = KeySet::parse(&document)
                    .map_err(|why| anyhow::anyhow!("JWT_JWKS_FILE: {} {why}", path.display()))?;
                tracing::info!(path = %path.display(), keys = keys.len(), "identity provider keys loaded");
                ("JWT_JWKS_FILE", keys, None)
            }
            (None, Some(url)) => {
                let url = reqwest::Url::parse(url)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https"))
                    .context("JWT_JWKS_URL is not an http:// or https:// URL")?;
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .context("JWT_JWKS_URL: cannot build an HTTP client")?;
                let fetcher = Fetcher {
                    url,
                    client,
                    state: tokio::sync::Mutex::new(FetchState::default()),
                };
                ("JWT_JWKS_URL", KeySet::default(), Some(fetcher))
            }
        };
        let issuer = required("JWT_ISSUER", &settings.jwt_issuer, variable)?;
        let audience = required("JWT_AUDIENCE", &settings.jwt_audience, variable)?;
        if settings.jwt_leeway_secs > MAX_LEEWAY_SECS {
            tracing::warn!(
                configured = settings.jwt_leeway_secs,
                "JWT_LEEWAY_SECS is above {MAX_LEEWAY_SECS}: using {MAX_LEEWAY_SECS}"
            );
        }
        Ok(Some(Arc::new(IdentityProvider {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: settings.jwt_leeway_secs.min(MAX_LEEWAY_SECS),
            keys: RwLock::new(Arc::new(keys)),
            fetcher,
        })))
    }

    /// With a JWKS URL: fetches the keys now and every [`REFRESH_EVERY`], in
    /// a task that ends once the provider is dropped. Must be called within
    /// a Tokio runtime.
    pub fn start_refreshing(self: &Arc<Self>) {
        if self.fetcher.is_none() {
            return;
        }
        let provider = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match provider.upgrade() {
                    Some(provider) => provider.refresh().await,
                    None => return,
                }
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
    }

    /// Fetches the keys, unless a request had them fetched lately (the
    /// first token may arrive before the first refresh runs).
    async fn refresh(&self) {
        if let Some(fetcher) = &self.fetcher {
            let mut state = fetcher.state.lock().await;
            if state
                .fetched_at
                .is_some_and(|at| at.elapsed() < REFRESH_EVERY / 2)
            {
                return;
            }
            let _ = self.fetch_into(fetcher, &mut state).await;
        }
    }

    /// The user a provider token names, if its key, signature, `exp`, `iss`,
    /// `aud` and `sub` are good.
    pub async fn verify(&self, token: &str, header: &Header) -> Result<Verified, ApiError> {
        let Some(kid) = header.kid.as_deref() else {
            tracing::debug!("token refused: a provider token without kid");
            return Err(not_valid());
        };
        let key = match self.key(kid) {
            Some(key) => key,
            None => self.key_after_fetch(kid).await?,
        };
        if key.algorithm != header.alg {
            tracing::debug!(kid, alg = ?header.alg, "token refused: not the algorithm of its key");
            return Err(not_valid());
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<ProviderClaims>(token, &key.decoding, &validation)
            .map_err(|e| refusal(&e))?;
        let Some(user_id) = UserId::parse(&data.claims.sub) else {
            tracing::debug!("token refused: sub is empty or longer than 256 characters");
            return Err(not_valid());
        };
        Ok(Verified {
            user_id,
            renewable_until: Some(data.claims.exp),
        })
    }

    fn key(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(kid)
    }

    /// The key `kid` after fetching the JWKS again, unless a fetch failed or
    /// came back without the key asked for less than [`FETCH_COOLDOWN`] ago.
    async fn key_after_fetch(&self, kid: &str) -> Result<Arc<Key>, ApiError> {
        let Some(fetcher) = &self.fetcher else {
            tracing::debug!(kid, "token refused: unknown kid");
            return Err(not_valid());
        };
        let mut state = fetcher.state.lock().await;
        // A fetch may have finished while this request waited for the lock.
        if let Some(key) = self.key(kid) {
            return Ok(key);
        }
        if state
            .cooling_until
            .is_some_and(|until| Instant::now() < until)
        {
            tracing::debug!(kid, "token refused: unknown kid, not fetching again yet");
            return Err(if state.last_failed {
                unreachable()
            } else {
                not_valid()
            });
        }
        if self.fetch_into(fetcher, &mut state).await.is_err() {
            return Err(unreachable());
        }
        match self.key(kid) {
            Some(key) => Ok(key),
            None => {
                tracing::debug!(
                    kid,
                    "token refused: unknown kid, also after fetching the keys"
                );
                state.cooling_until = Some(Instant::now() + FETCH_COOLDOWN);
                Err(not_valid())
            }
        }
    }

    /// One fetch: on success the keys replace the old ones; on failure the
    /// old ones stay (an outage of the provider does not lock out users whose
    /// keys are known) and fetches cool down.
    async fn fetch_into(&self, fetcher: &Fetcher, state: &mut FetchState) -> Result<(), ()> {
        match fetcher.fetch().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "identity provider keys fetched");
                metrics::counter!("chatstream_jwks_fetches_total", "outcome" => "ok").increment(1);
                *self
                    .keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
                state.last_failed = false;
                state.fetched_at = Some(Instant::now());
                Ok(())
            }
            Err(error) => {
                tracing::warn!(url = %fetcher.url, %error, "could not fetch the identity provider's keys (JWT_JWKS_URL)");
                metrics::counter!("chatstream_jwks_fetches_total", "outcome" => "failed")
                    .increment(1);
                state.last_failed = true;
                state.cooling_until = Some(Instant::now() + FETCH_COOLDOWN);
                Err(())
            }
        }
    }
}

/// A setting's value unless it is unset or empty.
fn set(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// A setting the identity provider needs.
fn required<'a>(variable: &str, value: &'a Option<String>, with: &str) -> anyhow::Result<&'a str> {
    set(value).with_context(|| format!("{variable} must be set with {with}"))
}

impl Fetcher {
    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::parse(&body)
    }
}

/// One public key and the one algorithm it verifies.
struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// The usable keys of a JWKS document, by `kid`.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
}

/// One entry of a JWKS document, as far as the node reads it.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The RS256 and ES256 signing keys of a JWKS document. Other entries
    /// (encryption keys, other curves and types, symmetric `oct` keys, keys
    /// without `kid`) are skipped: a symmetric key published in a JWKS
    /// would let anyone who can read it sign tokens. A document with no
    /// usable key is an error.
    fn parse(document: &[u8]) -> Result<KeySet, String> {
        let document: Document = serde_json::from_slice(document)
            .map_err(|_| "is not a JWKS document (a JSON object with \"keys\")".to_owned())?;
        let mut set = KeySet::default();
        for entry in document.keys {
            match serde_json::from_value::<RawJwk>(entry)
                .map_err(|e| e.to_string())
                .and_then(Key::from_jwk)
            {
                Ok((kid, key)) => {
                    if set.by_kid.contains_key(&kid) {
                        tracing::warn!(kid, "the JWKS names a key twice: using the first");
                        continue;
                    }
                    set.by_kid.insert(kid, Arc::new(key));
                }
                Err(why) => tracing::debug!(why, "JWKS entry skipped"),
            }
        }
        if set.by_kid.is_empty() {
            return Err("holds no RS256 or ES256 signing key with a kid".to_owned());
        }
        Ok(set)
    }

    fn get(&self, kid: &str) -> Option<Arc<Key>> {
        self.by_kid.get(kid).cloned()
    }

    fn len(&self) -> usize {
        self.by_kid.len()
    }
}

impl Key {
    fn from_jwk(jwk: RawJwk) -> Result<(String, Key), String> {
        let kid = jwk.kid.filter(|kid| !kid.is_empty()).ok_or("no kid")?;
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(format!("{kid}: not a signing key"));
        }
        if jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err(format!("{kid}: not a verification key"));
        }
        let expect = |algorithm: &str| match jwk.alg.as_deref() {
            None => Ok(()),
            Some(alg) if alg == algorithm => Ok(()),
            Some(alg) => Err(format!("{kid}: algorithm {alg} is not accepted")),
        };
        let (algorithm, decoding) = match jwk.kty.as_str() {
            "RSA" => {
                expect("RS256")?;
                let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                    return Err(format!("{kid}: an RSA key without n or e"));
                };
                let key = DecodingKey::from_rsa_components(n, e)
                    .map_err(|_| format!("{kid}: n or e is not base64url"))?;
                (Algorithm::RS256, key)
            }
            "EC" => {
                expect("ES256")?;
                if jwk.crv.as_deref() != Some("P-256") {
                    return Err(format!("{kid}: not a P-256 key"));
                }
                let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
                    return Err(format!("{kid}: an EC key without x or y"));
                };
                // A P-256 coordinate is 32 bytes: 43 base64url characters.
                if x.len() != 43 || y.len() != 43 {
                    return Err(format!("{kid}: x or y is not a P-256 coordinate"));
                }
                let key = DecodingKey::from_ec_components(x, y)
                    .map_err(|_| format!("{kid}: x or y is not base64url"))?;
                (Algorithm::ES256, key)
            }
            other => return Err(format!("{kid}: key type {other} is not accepted")),
        };
        Ok((
            kid,
            Key {
                algorithm,
                decoding,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","kid":"r","n":"pisFgHqy","e":"AQAB"}"#;
    const EC: &str = r#"{"kty":"EC","kid":"e","crv":"P-256","x":"GxnU-6KfU-FSyezikudNfBkLWVntaWlY-WN8Iq6fTu8","y":"IoLbrggdOWe1LZX1GxSuocZNork8GD39XB4vFip52fA"}"#;

    fn kids(document: &str) -> Result<Vec<String>, String> {
        let set = KeySet::parse(document.as_bytes())?;
        let mut kids: Vec<_> = set.by_kid.keys().cloned().collect();
        kids.sort();
        Ok(kids)
    }

    #[test]
    fn keeps_rs256_and_es256_signing_keys() {
        assert_eq!(
            kids(&format!(r#"{{"keys":[{RSA},{EC}]}}"#)).unwrap(),
            ["e", "r"]
        );
        let set = KeySet::parse(format!(r#"{{"keys":[{RSA},{EC}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.get("r").unwrap().algorithm, Algorithm::RS256);
        assert_eq!(set.get("e").unwrap().algorithm, Algorithm::ES256);
    }

    #[test]
    fn skips_every_other_kind_of_key() {
        let skipped = [
            // Symmetric: whoever reads the JWKS could sign with it.
            r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#,
            r#"{"kty":"RSA","kid":"enc","use":"enc","n":"pisFgHqy","e":"AQAB"}"#,
            r#"{"kty":"RSA","kid":"ops","key_ops":["encrypt"],"n":"pisFgHqy","e":"AQAB"}"#,
            r#"{"kty":"RSA","kid":"ps","alg":"PS256","n":"pisFgHqy","e":"AQAB"}"#,
            r#"{"kty":"RSA","kid":"hs","alg":"HS256","n":"pisFgHqy","e":"AQAB"}"#,
            r#"{"kty":"RSA","n":"pisFgHqy","e":"AQAB"}"#,
            r#"{"kty":"RSA","kid":"","n":"pisFgHqy","e":"AQAB"}"#,
            r#"{"kty":"RSA","kid":"no-e","n":"pisFgHqy"}"#,
            r#"{"kty":"EC","kid":"p384","crv":"P-384","x":"AAAA","y":"AAAA"}"#,
            r#"{"kty":"EC","kid":"short","crv":"P-256","x":"AAAA","y":"AAAA"}"#,
            r#"{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            r#"{"kid":"no-kty"}"#,
            r#""not an object""#,
        ];
        for entry in skipped {
            assert_eq!(
                kids(&format!(r#"{{"keys":[{entry},{RSA}]}}"#)).unwrap(),
                ["r"],
                "{entry}"
            );
        }
        assert!(kids(&format!(r#"{{"keys":[{}]}}"#, skipped[0])).is_err());
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        for document in ["", "{}", "[]", r#"{"keys":[]}"#, r#"{"keys":"no"}"#] {
            assert!(kids(document).is_err(), "{document:?}");
        }
    }

    #[test]
    fn the_first_of_two_keys_with_one_kid_wins() {
        let other = r#"{"kty":"EC","kid":"r","crv":"P-256","x":"GxnU-6KfU-FSyezikudNfBkLWVntaWlY-WN8Iq6fTu8","y":"IoLbrggdOWe1LZX1GxSuocZNork8GD39XB4vFip52fA"}"#;
        let set = KeySet::parse(format!(r#"{{"keys":[{RSA},{other}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.get("r").unwrap().algorithm, Algorithm::RS256);
    }
}
