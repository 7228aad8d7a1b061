//! Who is calling. Three kinds of credentials:
//!
//! - guest tokens: HS256 JWTs signed with the cluster's shared secret
//!   (`AUTH_SECRET`), so that every node accepts every other node's tokens;
//! - an external identity provider's RS256 and ES256 tokens, checked against
//!   its published keys (`jwks`), when `JWT_JWKS_FILE` or `JWT_JWKS_URL` is set;
//! - single-use WebSocket tickets (`tickets`), kept in the engine.
//!
//! The algorithm in a token's header picks the check, and each algorithm has
//! exactly one kind of key: HS256 is only ever verified with `AUTH_SECRET`,
//! RS256 and ES256 only with the provider's public keys, anything else is
//! refused. So a token "signed" with a public key as an HMAC secret, or with
//! `alg: none`, never meets a key that would accept it.

pub mod jwks;
pub mod tickets;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Settings;
use crate::protocol::{ApiError, ErrorCode, UserId};
use jwks::IdentityProvider;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    /// Makes every token distinct, also two issued for one user in the same
    /// second (a renewal right after sign-in). Older tokens have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
    /// The last instant a renewal of this token may reach (Unix seconds).
    /// Set on tokens renewed from an identity provider's token, so that
    /// renewing never outlasts the session the provider granted; guests
    /// have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

/// A freshly issued token: what `POST /api/auth/guest` and
/// `POST /api/auth/refresh` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestToken {
    pub token: String,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: UserId,
    /// The latest instant a renewal may reach (Unix seconds): none for a
    /// guest, the provider token's `exp` for a user of the identity provider.
    pub renewable_until: Option<i64>,
}

/// The token checks of a node.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    provider: Option<Arc<IdentityProvider>>,
    guest_access: bool,
}

/// The refusal of a token that is not valid, whatever the reason: the
/// reason goes to the log, not to whoever presented it.
pub(crate) fn not_valid() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "the token is not valid")
}

pub(crate) fn expired() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "the token has expired")
}

/// A library's refusal as a sentence for people; the detail is logged.
pub(crate) fn refusal(error: &jsonwebtoken::errors::Error) -> ApiError {
    tracing::debug!(error = %error, "token refused");
    match error.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => expired(),
        _ => not_valid(),
    }
}

impl Auth {
    /// Guest tokens only, signed with `secret` and valid for `ttl`.
    pub fn new(secret: &[u8], ttl: std::time::Duration) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: Duration::from_std(ttl).unwrap_or(Duration::days(7)),
            provider: None,
            guest_access: true,
        }
    }

    /// The checks a node's settings ask for: guest tokens signed with
    /// `secret`, and the identity provider's tokens when one is configured.
    /// A misconfiguration is an error naming the variable at fault. With
    /// `JWT_JWKS_URL`, the keys are fetched in the background (it must run
    /// within a Tokio runtime); the node starts even if the provider does
    /// not answer yet.
    pub fn from_settings(settings: &Settings, secret: &[u8]) -> anyhow::Result<Auth> {
        let mut auth = Auth::new(
            secret,
            std::time::Duration::from_secs(settings.token_ttl_secs),
        );
        auth.guest_access = settings.guest_access;
        auth.provider = IdentityProvider::from_settings(settings)?;
        if let Some(provider) = &auth.provider {
            provider.start_refreshing();
        }
        if !auth.guest_access && auth.provider.is_none() {
            tracing::warn!(
                "GUEST_ACCESS is false and no identity provider is configured (JWT_JWKS_FILE or JWT_JWKS_URL): only tokens already issued are accepted"
            );
        }
        Ok(auth)
    }

    /// Whether `POST /api/auth/guest` issues new guest identities.
    pub fn guest_access(&self) -> bool {
        self.guest_access
    }

    /// A token for a new guest.
    pub fn issue_guest(&self) -> GuestToken {
        self.issue_for(UserId::new_guest())
    }

    /// A new token for `user_id`, valid for the full lifetime from now.
    /// Tokens issued before stay valid until they expire.
    pub fn issue_for(&self, user_id: UserId) -> GuestToken {
        self.issue_until(user_id, None)
    }

    /// What `POST /api/auth/refresh` answers to the holder of a valid token:
    /// a new HS256 token for the same user, valid for the full lifetime
    /// from now but never past `renewable_until`. A user of the identity
    /// provider thus gets a token of this node that ends when the provider's
    /// token does (renewing it again keeps that end), so that renewals cannot
    /// stretch a session the provider bounded; guests renew without end.
    pub fn renew(&self, verified: &Verified) -> Result<GuestToken, ApiError> {
        let renewed = self.issue_until(verified.user_id.clone(), verified.renewable_until);
        if renewed.expires_at <= Utc::now() {
            // Accepted only within the provider token's leeway: a renewal
            // would be born expired.
            return Err(expired());
        }
        Ok(renewed)
    }

    fn issue_until(&self, user_id: UserId, until: Option<i64>) -> GuestToken {
        let now = Utc::now();
        // Whole seconds, so that `expires_at` is exactly the instant of `exp`.
        let mut exp = (now + self.ttl).timestamp();
        if let Some(until) = until {
            exp = exp.min(until);
        }
        let expires_at = DateTime::from_timestamp(exp, 0).expect("in range");
        let claims = Claims {
            sub: user_id.to_string(),
            exp,
            iat: now.timestamp(),
            jti: Some(Uuid::new_v4()),
            until,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a byte key cannot fail");
        GuestToken {
            token,
            user_id,
            expires_at,
        }
    }

    /// The user a token names, if it is valid and unexpired. The refusal is
    /// a sentence for people; the library's reason goes to the log. May wait
    /// for the identity provider's keys to be fetched.
    pub async fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        self.verify_token(token)
            .await
            .map(|verified| verified.user_id)
    }

    /// Like `verify`, with what a renewal needs to know.
    pub async fn verify_token(&self, token: &str) -> Result<Verified, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| refusal(&e))?;
        match header.alg {
            Algorithm::HS256 => self.verify_guest(token),
            Algorithm::RS256 | Algorithm::ES256 => match &self.provider {
                Some(provider) => provider.verify(token, &header).await,
                None => {
                    tracing::debug!(alg = ?header.alg, "token refused: no identity provider is configured");
                    Err(not_valid())
                }
            },
            other => {
                tracing::debug!(alg = ?other, "token refused: algorithm not accepted");
                Err(not_valid())
            }
        }
    }

    /// An HS256 token, checked with `AUTH_SECRET` and nothing else.
    fn verify_guest(&self, token: &str) -> Result<Verified, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| refusal(&e))?;
        let user_id = UserId::parse(&data.claims.sub).ok_or_else(not_valid)?;
        Ok(Verified {
            user_id,
            renewable_until: data.claims.until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &[u8]) -> Auth {
        Auth::new(secret, std::time::Duration::from_secs(60))
    }

    #[tokio::test]
    async fn accepts_its_own_tokens_and_refuses_others() {
        let auth = auth(b"secret-one");
        let guest = auth.issue_guest();
        assert_eq!(auth.verify(&guest.token).await.unwrap(), guest.user_id);
        let same_secret = super::tests::auth(b"secret-one");
        assert_eq!(
            same_secret.verify(&guest.token).await.unwrap(),
            guest.user_id
        );
        let other = super::tests::auth(b"secret-two");
        assert_eq!(
            other.verify(&guest.token).await.unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            auth.verify("not.a.jwt").await.unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[tokio::test]
    async fn refuses_expired_tokens_and_tokens_without_exp() {
        let secret = b"s";
        let auth = auth(secret);
        let key = EncodingKey::from_secret(secret);
        let expired = Claims {
            sub: Uuid::new_v4().to_string(),
            exp: Utc::now().timestamp() - 10,
            iat: 0,
            jti: None,
            until: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &key).unwrap();
        assert_eq!(
            auth.verify(&token).await.unwrap_err().code,
            ErrorCode::Unauthorized
        );
        #[derive(Serialize)]
        struct NoExp {
            sub: Uuid,
        }
        let token = jsonwebtoken::encode(
            &Header::default(),
            &NoExp {
                sub: Uuid::new_v4(),
            },
            &key,
        )
        .unwrap();
        assert_eq!(
            auth.verify(&token).await.unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[tokio::test]
    async fn refusals_are_sentences_for_people() {
        let auth = auth(b"secret-one");
        let other = super::tests::auth(b"secret-two");
        let error = other.verify(&auth.issue_guest().token).await.unwrap_err();
        assert_eq!(error.message, "the token is not valid");
        let key = EncodingKey::from_secret(b"secret-one");
        let expired = Claims {
            sub: Uuid::new_v4().to_string(),
            exp: Utc::now().timestamp() - 10,
            iat: 0,
            jti: None,
            until: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &key).unwrap();
        assert_eq!(
            auth.verify(&token).await.unwrap_err().message,
            "the token has expired"
        );
    }

    #[tokio::test]
    async fn other_algorithms_are_refused_even_with_the_right_secret() {
        let secret = b"secret";
        let auth = auth(secret);
        let claims = Claims {
            sub: Uuid::new_v4().to_string(),
            exp: Utc::now().timestamp() + 60,
            iat: 0,
            jti: None,
            until: None,
        };
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &Header::new(alg),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            assert_eq!(
                auth.verify(&token).await.unwrap_err(),
                not_valid(),
                "{alg:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_renewal_is_a_new_token_for_the_same_user() {
        let auth = Auth::new(b"secret", std::time::Duration::from_secs(3600));
        let guest = auth.issue_guest();
        let verified = auth.verify_token(&guest.token).await.unwrap();
        assert_eq!(verified.renewable_until, None);
        let renewed = auth.renew(&verified).unwrap();
        assert_eq!(renewed.user_id, guest.user_id);
        assert_ne!(
            renewed.token, guest.token,
            "distinct even within one second"
        );
        assert!(renewed.expires_at >= guest.expires_at);
        assert_eq!(auth.verify(&renewed.token).await.unwrap(), guest.user_id);
        assert_eq!(
            auth.verify(&guest.token).await.unwrap(),
            guest.user_id,
            "the old one stays valid"
        );
    }

    #[tokio::test]
    async fn a_renewal_never_passes_the_end_it_was_given() {
        let auth = Auth::new(b"secret", std::time::Duration::from_secs(3600));
        let end = Utc::now().timestamp() + 120;
        let user = UserId::parse("idp|someone").unwrap();
        let verified = Verified {
            user_id: user.clone(),
            renewable_until: Some(end),
        };
        let renewed = auth.renew(&verified).unwrap();
        assert_eq!(renewed.expires_at.timestamp(), end);
        // Renewing the renewal keeps the end.
        let again = auth
            .renew(&auth.verify_token(&renewed.token).await.unwrap())
            .unwrap();
        assert_eq!(again.expires_at.timestamp(), end);
        assert_eq!(again.user_id, user);
        // An end already passed gives nothing.
        let late = Verified {
            user_id: user,
            renewable_until: Some(Utc::now().timestamp() - 1),
        };
        assert_eq!(auth.renew(&late).unwrap_err(), expired());
    }

    #[tokio::test]
    async fn accepts_tokens_issued_before_tokens_had_an_id() {
        let secret = b"secret";
        let auth = auth(secret);
        #[derive(Serialize)]
        struct Old {
            sub: Uuid,
            exp: i64,
            iat: i64,
        }
        let user = Uuid::new_v4();
        let old = Old {
            sub: user,
            exp: Utc::now().timestamp() + 60,
            iat: Utc::now().timestamp(),
        };
        let token =
            jsonwebtoken::encode(&Header::default(), &old, &EncodingKey::from_secret(secret))
                .unwrap();
        assert_eq!(auth.verify(&token).await.unwrap(), UserId::from(user));
    }
}
