//! Guest identities: HS256 JWTs signed with the cluster's shared secret, so
//! that every node accepts every other node's tokens.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::{ApiError, ErrorCode, UserId};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    /// Makes every token distinct, also two issued for one user in the same
    /// second (a renewal right after sign-in). Older tokens have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
}

/// A freshly issued guest identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestToken {
    pub token: String,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Auth {
    pub fn new(secret: &[u8], ttl: std::time::Duration) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: Duration::from_std(ttl).unwrap_or(Duration::days(7)),
        }
    }

    /// A token for a new guest.
    pub fn issue_guest(&self) -> GuestToken {
        self.issue_for(UserId::new_guest())
    }

    /// A new token for `user_id`, valid for the full lifetime from now: what
    /// `POST /api/auth/refresh` answers. Tokens issued before stay valid
    /// until they expire.
    pub fn issue_for(&self, user_id: UserId) -> GuestToken {
        let now = Utc::now();
        // Whole seconds, so that `expires_at` is exactly the instant of `exp`.
        let expires_at =
            DateTime::from_timestamp((now + self.ttl).timestamp(), 0).expect("in range");
        let claims = Claims {
            sub: user_id.to_string(),
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            jti: Some(Uuid::new_v4()),
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
    /// a sentence for people; the library's reason goes to the log.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "token refused");
                let message = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    _ => "the token is not valid",
                };
                ApiError::new(ErrorCode::Unauthorized, message)
            })
            .and_then(|data| {
                UserId::parse(&data.claims.sub)
                    .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the token is not valid"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_its_own_tokens_and_refuses_others() {
        let auth = Auth::new(b"secret-one", std::time::Duration::from_secs(60));
        let guest = auth.issue_guest();
        assert_eq!(auth.verify(&guest.token).unwrap(), guest.user_id);
        let same_secret = Auth::new(b"secret-one", std::time::Duration::from_secs(60));
        assert_eq!(same_secret.verify(&guest.token).unwrap(), guest.user_id);
        let other = Auth::new(b"secret-two", std::time::Duration::from_secs(60));
        assert_eq!(
            other.verify(&guest.token).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            auth.verify("not.a.jwt").unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn refuses_expired_tokens_and_tokens_without_exp() {
        let secret = b"s";
        let auth = Auth::new(secret, std::time::Duration::from_secs(60));
        let key = EncodingKey::from_secret(secret);
        let expired = Claims {
            sub: Uuid::new_v4().to_string(),
            exp: Utc::now().timestamp() - 10,
            iat: 0,
            jti: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &key).unwrap();
        assert_eq!(
            auth.verify(&token).unwrap_err().code,
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
            auth.verify(&token).unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }
    #[test]
    fn refusals_are_sentences_for_people() {
        let auth = Auth::new(b"secret-one", std::time::Duration::from_secs(60));
        let other = Auth::new(b"secret-two", std::time::Duration::from_secs(60));
        let error = other.verify(&auth.issue_guest().token).unwrap_err();
        assert_eq!(error.message, "the token is not valid");
        let key = EncodingKey::from_secret(b"secret-one");
        let expired = Claims {
            sub: Uuid::new_v4().to_string(),
            exp: Utc::now().timestamp() - 10,
            iat: 0,
            jti: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &key).unwrap();
        assert_eq!(
            auth.verify(&token).unwrap_err().message,
            "the token has expired"
        );
    }

    #[test]
    fn a_renewal_is_a_new_token_for_the_same_user() {
        let auth = Auth::new(b"secret", std::time::Duration::from_secs(3600));
        let guest = auth.issue_guest();
        let renewed = auth.issue_for(guest.user_id.clone());
        assert_eq!(renewed.user_id, guest.user_id);
        assert_ne!(
            renewed.token, guest.token,
            "distinct even within one second"
        );
        assert!(renewed.expires_at >= guest.expires_at);
        assert_eq!(auth.verify(&renewed.token).unwrap(), guest.user_id);
        assert_eq!(
            auth.verify(&guest.token).unwrap(),
            guest.user_id,
            "the old one stays valid"
        );
    }

    #[test]
    fn accepts_tokens_issued_before_tokens_had_an_id() {
        let secret = b"secret";
        let auth = Auth::new(secret, std::time::Duration::from_secs(60));
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
        assert_eq!(auth.verify(&token).unwrap(), UserId::from(user));
    }
}
