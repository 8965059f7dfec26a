//! Dashboard sign-ins: a random id kept server-side with its account, CSRF
//! token and expiry, sent as an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! the dashboard. A session ends at sign-out, at expiry, and when the account's
//! API key is rotated (it remembers which key it was opened with).

use dashmap::DashMap;
use gpubridge_protocol::AccountId;
use gpubridge_scheduler::now_ms;
use hyper::header::{HeaderValue, COOKIE};
use hyper::HeaderMap;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// The session cookie.
pub const SESSION: &str = "gpub_session";
/// Before sign-in: the token the sign-in form must echo (double submit).
pub const SIGN_IN: &str = "gpub_signin";
/// Sessions last this long.
const TTL_MS: u64 = 12 * 3_600_000;

#[derive(Clone, Debug)]
pub struct Session {
    pub account: AccountId,
    /// Every form of this session carries it.
    pub csrf: String,
    expires_ms: u64,
    /// The account's key rotation time when the session opened.
    key_rotated_ms: u64,
}

#[derive(Default)]
pub struct Sessions {
    open: DashMap<String, Session>,
}

impl Sessions {
    /// A new session; its id (the cookie's value). `None` if the system's
    /// random source failed.
    pub fn open(&self, account: AccountId, key_rotated_ms: u64) -> Option<String> {
        let id = random_token()?;
        let session = Session {
            account,
            csrf: random_token()?,
            expires_ms: now_ms() + TTL_MS,
            key_rotated_ms,
        };
        self.sweep();
        self.open.insert(id.clone(), session);
        Some(id)
    }

    /// The session of `id`, unless it expired or its key was rotated since.
    pub fn get(
        &self,
        id: &str,
        key_rotated_ms: impl Fn(AccountId) -> Option<u64>,
    ) -> Option<Session> {
        let session = self.open.get(id)?.clone();
        let current = key_rotated_ms(session.account);
        if session.expires_ms <= now_ms() || current != Some(session.key_rotated_ms) {
            self.open.remove(id);
            return None;
        }
        Some(session)
    }

    pub fn close(&self, id: &str) {
        self.open.remove(id);
    }

    /// Ends every session of the account (its key was rotated).
    pub fn close_all(&self, account: AccountId) {
        self.open.retain(|_, s| s.account != account);
    }

    fn sweep(&self) {
        let now = now_ms();
        self.open.retain(|_, s| s.expires_ms > now);
    }
}

/// 32 random bytes in base58.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bs58::encode(bytes).into_string())
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for the dashboard: `HttpOnly`, `SameSite=Strict`, its path
/// only, `Secure` when served over TLS. `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_seconds: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/account/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn session_max_age() -> u64 {
    TTL_MS / 1000
}

/// Compares two tokens in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_on_rotation_close_and_cookies_parse() {
        let sessions = Sessions::default();
        let account = AccountId([4; 16]);
        let id = sessions.open(account, 10).unwrap();
        assert_eq!(sessions.get(&id, |_| Some(10)).unwrap().account, account);
        assert!(sessions.get(&id, |_| Some(11)).is_none(), "rotated key");
        assert!(
            sessions.get(&id, |_| Some(10)).is_none(),
            "and gone for good"
        );
        let id = sessions.open(account, 10).unwrap();
        sessions.close_all(account);
        assert!(sessions.get(&id, |_| Some(10)).is_none());
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; gpub_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION), Some("xyz"));
        assert_eq!(cookie(&headers, SIGN_IN), None);
        let set = set_cookie(SESSION, "v", 60, true);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("Secure")
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
