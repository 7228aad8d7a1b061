//! Request limits of the HTTP API, each enforced in one place: guest
//! identities per client IP (in `POST /api/auth/guest`) and requests per user
//! (where a bearer token is checked, so every authenticated `/api/` route).
//!
//! Keyed token buckets (`governor`); keys idle long enough to be full again
//! are dropped every minute, so the maps hold only recent callers.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Settings;
use crate::protocol::{ApiError, ErrorCode, UserId};

/// How often keys whose buckets are full again are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

pub struct RequestLimits {
    /// `GUEST_TOKENS_PER_MINUTE` per client IP.
    guests: DefaultKeyedRateLimiter<IpAddr>,
    /// `API_REQUESTS_PER_SECOND` per user, bursts of twice as many.
    api: DefaultKeyedRateLimiter<UserId>,
}

impl RequestLimits {
    pub fn new(settings: &Settings) -> Arc<RequestLimits> {
        let per_minute = NonZeroU32::new(settings.guest_tokens_per_minute.max(1)).expect(">= 1");
        let per_second = NonZeroU32::new(settings.api_requests_per_second.max(1)).expect(">= 1");
        let burst = per_second.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
        Arc::new(RequestLimits {
            guests: RateLimiter::keyed(Quota::per_minute(per_minute)),
            api: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        })
    }

    /// Whether `ip` may have another guest identity now.
    pub fn guest(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.guests.check_key(&ip).map_err(|_| {
            refused(
                "guests",
                "Too many new guest sessions from your network; wait a minute and try again.",
            )
        })
    }

    /// Whether `user` may make another API request now.
    pub fn api(&self, user: &UserId) -> Result<(), ApiError> {
        self.api.check_key(user).map_err(|_| {
            refused(
                "api",
                "Too many requests at once; slow down and try again in a moment.",
            )
        })
    }

    /// Forgets idle callers every minute, for as long as the limits live.
    pub fn spawn_forgetting(self: &Arc<RequestLimits>) -> tokio::task::JoinHandle<()> {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                limits.guests.retain_recent();
                limits.api.retain_recent();
                limits.guests.shrink_to_fit();
                limits.api.shrink_to_fit();
            }
        })
    }
}

fn refused(limit: &'static str, sentence: &str) -> ApiError {
    metrics::counter!("chatstream_limit_refusals_total", "limit" => limit).increment(1);
    ApiError::new(ErrorCode::RateLimited, sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(guests: u32, api: u32) -> Settings {
        let mut settings = Settings::defaults();
        settings.guest_tokens_per_minute = guests;
        settings.api_requests_per_second = api;
        settings
    }

    #[test]
    fn guests_per_ip_stop_at_the_limit_and_other_ips_are_unaffected() {
        let limits = RequestLimits::new(&settings(3, 20));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limits.guest(one).unwrap();
        }
        assert_eq!(limits.guest(one).unwrap_err().code, ErrorCode::RateLimited);
        limits.guest(other).unwrap();
    }

    #[test]
    fn api_requests_per_user_allow_a_burst_of_twice_the_rate() {
        let limits = RequestLimits::new(&settings(20, 5));
        let user = UserId::new_guest();
        for _ in 0..10 {
            limits.api(&user).unwrap();
        }
        assert_eq!(limits.api(&user).unwrap_err().code, ErrorCode::RateLimited);
        limits.api(&UserId::new_guest()).unwrap();
    }
}
