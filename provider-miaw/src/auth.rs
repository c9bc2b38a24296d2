//! Access tokens: guest, from a given identity token, or from a minted identity JWT
//! (`protocols/salesforce-miaw.md` §2, §5, §7); each session's own token, renewed ahead of
//! expiry and once on `401`.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use handover_core::{Error, Result};
use handover_transport::session::refresh_once_on_401;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::NAME;
use crate::client::Client;
use crate::config::{IdentityAlgorithm, MiawConfig};

/// How the end user is identified.
pub(crate) enum Identity {
    /// An unverified guest: a fresh subject per handover; tokens cannot be renewed.
    Guest,
    /// A fixed customer identity JWT.
    Token(SecretString),
    /// Mint a fresh identity JWT per authentication.
    Mint(Box<Minter>),
}

impl Identity {
    pub(crate) fn from_config(config: &MiawConfig) -> Result<Self> {
        match (&config.identity_token, &config.identity_private_key) {
            (Some(_), Some(_)) => {
                Err(Error::config(NAME, "[miaw] sets both `identity_token` and `identity_private_key`; keep one"))
            }
            (Some(token), None) => Ok(Identity::Token(token.clone())),
            (None, Some(key)) => Ok(Identity::Mint(Box::new(Minter::from_config(config, key)?))),
            (None, None) => Ok(Identity::Guest),
        }
    }

    /// Whether a new access token for the same subject can be obtained.
    pub(crate) fn renewable(&self) -> bool {
        !matches!(self, Identity::Guest)
    }

    /// The customer identity JWT to present, for user `user_id`.
    pub(crate) fn identity_jwt(&self, user_id: &str) -> Result<Option<SecretString>> {
        match self {
            Identity::Guest => Ok(None),
            Identity::Token(token) => Ok(Some(token.clone())),
            Identity::Mint(minter) => minter.mint(user_id).map(Some),
        }
    }
}

/// Mints RS256/RS512 identity JWTs.
pub(crate) struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: Option<String>,
    ttl: Duration,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    iat: u64,
    exp: u64,
}

impl Minter {
    fn from_config(config: &MiawConfig, key: &SecretString) -> Result<Self> {
        let issuer = config.identity_issuer.clone().ok_or_else(|| {
            Error::config(NAME, "[miaw] `identity_private_key` needs `identity_issuer` (the keyset's issuer)")
        })?;
        let key = EncodingKey::from_rsa_pem(key.expose_secret().as_bytes())
            .map_err(|_| Error::config(NAME, "[miaw] `identity_private_key` is not a PEM-encoded RSA private key"))?;
        let mut header = Header::new(match config.identity_algorithm {
            IdentityAlgorithm::RS256 => Algorithm::RS256,
            IdentityAlgorithm::RS512 => Algorithm::RS512,
        });
        header.kid = config.identity_key_id.clone();
        Ok(Self {
            key,
            header,
            issuer,
            audience: config.identity_audience.clone(),
            ttl: Duration::from_secs(config.identity_ttl_secs.max(30)),
        })
    }

    fn mint(&self, subject: &str) -> Result<SecretString> {
        let now = unix_now();
        let claims = Claims {
            iss: &self.issuer,
            sub: subject,
            aud: self.audience.as_deref(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| Error::config(NAME, format!("could not sign the identity JWT: {e}")))
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The claims of a JWT we read without verifying (our own access token: the server
/// verifies it; we only need its expiry and subject).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UnverifiedClaims {
    pub(crate) exp: Option<u64>,
    pub(crate) sub: Option<String>,
}

pub(crate) fn read_claims(jwt: &str) -> UnverifiedClaims {
    jwt.split('.')
        .nth(1)
        .and_then(|payload| B64.decode(payload.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// A Messaging access token.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub(crate) token: SecretString,
    /// Unix seconds, when the token says.
    pub(crate) expires_at: Option<u64>,
}

impl AccessToken {
    pub(crate) fn new(token: SecretString) -> Self {
        let expires_at = read_claims(token.expose_secret()).exp;
        Self { token, expires_at }
    }

    /// When to renew proactively: five minutes before expiry, or at 80% of the remaining
    /// lifetime for short tokens.
    pub(crate) fn renew_in(&self) -> Option<Duration> {
        let expires_at = self.expires_at?;
        let remaining = expires_at.saturating_sub(unix_now());
        let lead = (remaining / 5).min(300);
        Some(Duration::from_secs(remaining.saturating_sub(lead)))
    }
}

/// Whether a token subject is a verified user (`v2/iamessage/AUTH/…`) rather than a guest
/// (`v2/iamessage/ANON/…`).
pub(crate) fn is_verified_subject(subject: &str) -> bool {
    subject.contains("/AUTH/") && !subject.contains("/ANON/")
}

/// Obtains an access token for `user_id`, refusing a silent guest fallback (§5); also the
/// token's `lastEventId`.
pub(crate) async fn authenticate(
    client: &Client,
    identity: &Identity,
    user_id: &str,
) -> Result<(AccessToken, Option<String>)> {
    let response = match identity.identity_jwt(user_id)? {
        None => client.guest_token().await?,
        Some(jwt) => {
            let response = client.authenticated_token(&jwt).await?;
            let subject = response.subject().unwrap_or_default();
            if !is_verified_subject(&subject) {
                return Err(Error::unauthenticated(
                    NAME,
                    "get authenticated access token",
                    "Salesforce rejected the identity token and answered with a guest token; check the keyset, \
                     issuer, audience, key id and expiry of the identity JWT. The handover does not go on as a guest.",
                ));
            }
            response
        }
    };
    let last_event_id = response.last_event_id();
    Ok((AccessToken::new(SecretString::from(response.access_token)), last_event_id))
}

/// One session's access token (a Messaging token belongs to one end user): renewed for
/// the same user when the identity allows it.
pub(crate) struct SessionToken {
    client: Arc<Client>,
    identity: Arc<Identity>,
    user_id: String,
    /// The session's conversation (for the logs).
    conversation_id: String,
    current: RwLock<AccessToken>,
}

impl SessionToken {
    pub(crate) fn new(
        (client, identity): (&Arc<Client>, &Arc<Identity>),
        user_id: String,
        conversation_id: String,
        token: AccessToken,
    ) -> Self {
        Self {
            client: client.clone(),
            identity: identity.clone(),
            user_id,
            conversation_id,
            current: RwLock::new(token),
        }
    }

    /// The user the token is for.
    pub(crate) fn user_id(&self) -> &str {
        &self.user_id
    }

    fn state(&self) -> AccessToken {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The current token.
    pub(crate) fn token(&self) -> SecretString {
        self.state().token
    }

    /// Whether the token has expired (a resumed session's may have).
    pub(crate) fn expired(&self) -> bool {
        self.state().expires_at.is_some_and(|exp| exp <= unix_now())
    }

    /// When to renew ahead of expiry (never for a guest).
    pub(crate) fn renew_in(&self) -> Option<Duration> {
        if self.identity.renewable() { self.state().renew_in() } else { None }
    }

    /// A new access token for the same user (verified users only: a guest's new token is a
    /// new subject that cannot see the conversation).
    pub(crate) async fn refresh(&self) -> Result<()> {
        if !self.identity.renewable() {
            return Err(Error::unauthenticated(
                NAME,
                "renew access token",
                "the guest access token expired or was rejected, and guest tokens cannot be renewed; \
                 configure an identity token for handovers that outlast the token lifetime",
            ));
        }
        let (token, _) = authenticate(&self.client, &self.identity, &self.user_id).await?;
        tracing::debug!(conversation = %self.conversation_id, "renewed the access token");
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = token;
        Ok(())
    }

    /// Runs `call` with the current token; on `401` renews once and runs it again.
    pub(crate) async fn authorized<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        refresh_once_on_401(self.token(), call, |_| async {
            self.refresh().await?;
            Ok(self.token())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_the_payload_segment() {
        let payload = B64.encode(br#"{"sub":"v2/iamessage/ANON/1","exp":1700000000}"#);
        let claims = read_claims(&format!("h.{payload}.s"));
        assert_eq!(claims.exp, Some(1_700_000_000));
        assert_eq!(claims.sub.as_deref(), Some("v2/iamessage/ANON/1"));
        assert!(read_claims("not a jwt").exp.is_none());
    }

    #[test]
    fn subjects_tell_verified_users_from_guests() {
        assert!(is_verified_subject("v2/iamessage/AUTH/keyset/uid:user-42"));
        assert!(!is_verified_subject("v2/iamessage/ANON/8c2f"));
        assert!(!is_verified_subject(""));
    }

    #[test]
    fn renewal_is_scheduled_before_expiry() {
        let token = AccessToken { token: SecretString::from("x"), expires_at: Some(unix_now() + 3600) };
        let renew = token.renew_in().unwrap();
        assert!(renew <= Duration::from_secs(3300) && renew >= Duration::from_secs(3290), "{renew:?}");
        let short = AccessToken { token: SecretString::from("x"), expires_at: Some(unix_now() + 100) };
        assert!(short.renew_in().unwrap() <= Duration::from_secs(80));
    }
}
