//! Prefix (BCN) → institution, and channel code → signing key: the tables every request is
//! routed and authenticated with. Built once from settings, read-only afterwards.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};

use crate::domain::InstitutionMode;
use crate::error::SwitchError;

pub mod config;

pub use config::{ChannelSettings, InstitutionSettings};

/// A token bucket (governor): `rate_per_second` refills, `burst` (default: one second's
/// worth, at least 1) is the most taken at once.
#[derive(Clone)]
pub struct Limiter(Arc<DefaultDirectRateLimiter>);

impl Limiter {
    fn new(rate: Option<f64>, burst: Option<u32>) -> Option<Limiter> {
        let rate = rate?;
        let period = Duration::from_secs_f64(1.0 / rate);
        let burst = burst.unwrap_or_else(|| rate.ceil().clamp(1.0, u32::MAX as f64) as u32);
        let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?);
        Some(Limiter(Arc::new(DefaultDirectRateLimiter::direct(quota))))
    }

    /// Takes one request's worth; `false` when over the limit.
    pub fn allow(&self) -> bool {
        self.0.check().is_ok()
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

/// An institution as the switch routes to it.
#[derive(Clone, Debug)]
pub struct Institution {
    pub code: String,
    pub name: String,
    pub mode: InstitutionMode,
    pub prefixes: Vec<String>,
    pub api_key: String,
    pub webhook_url: Option<String>,
    pub base_url: Option<String>,
    pub limiter: Option<Limiter>,
    /// The institution as a SNAP partner (`[institutions.snap]`), if it is one.
    pub snap: Option<SnapPartner>,
}

/// Who a SNAP client id names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapParty {
    /// A channel (bank): services 24, 25, 26.
    Channel(String),
    /// An institution: services 27, 30, 31, 35.
    Institution(String),
}

/// A channel (bank) allowed to send requests.
#[derive(Clone, Debug)]
pub struct Channel {
    /// The channel's API key, keyed into HMAC-SHA256 once: checks its request signatures
    /// (its `Debug` shows nothing of the key).
    pub verifier: crate::signature::Verifier,
    pub limiter: Option<Limiter>,
    /// The channel as a SNAP partner (`[channels.snap]`), if it is one.
    pub snap: Option<SnapPartner>,
}

/// A SNAP partner's identity, keyed (docs/snap.md, "Partners").
#[derive(Clone, Debug)]
pub struct SnapPartner {
    /// `X-CLIENT-KEY` / `X-PARTNER-ID`.
    pub client_id: String,
    /// Verifies its access token requests (SHA256withRSA).
    pub public_key: crate::signature::snap::RsaPublicKey,
    /// Its client secret keyed into HMAC-SHA512: verifies its calls.
    pub mac: crate::signature::snap::Hmac512,
    /// Names the secret without revealing it: a token issued under another secret dies
    /// with it.
    pub secret_fingerprint: String,
    /// The service codes it may call (`None`: every one of its side's).
    pub services: Option<Vec<u8>>,
}

impl SnapPartner {
    /// From its settings (their secret and key read at load; read here if not).
    fn of(p: &config::SnapPartnerSettings) -> Option<SnapPartner> {
        let pem = (p.resolved_public_key.clone())
            .or_else(|| std::fs::read_to_string(&p.public_key_file).ok())?;
        let secret =
            (p.resolved_secret.clone()).or_else(|| std::env::var(&p.client_secret_env).ok())?;
        Some(SnapPartner {
            client_id: p.client_id.clone(),
            public_key: crate::signature::snap::RsaPublicKey::from_pem(&pem).ok()?,
            mac: crate::signature::snap::Hmac512::new(secret.as_bytes()),
            secret_fingerprint: crate::signature::sign(secret.as_bytes(), b"ipg-switch snap token")
                [..32]
                .to_owned(),
            services: p.services.clone(),
        })
    }

    /// Whether it may call service `code` (24, 25, ...).
    pub fn allows(&self, code: u8) -> bool {
        self.services.as_ref().is_none_or(|s| s.contains(&code))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Routing {
    by_prefix: HashMap<String, Arc<Institution>>,
    by_code: HashMap<String, Arc<Institution>>,
    channels: HashMap<String, Channel>,
    /// SNAP client id → the channel or institution presenting it.
    snap_clients: HashMap<String, SnapParty>,
}

impl Routing {
    /// The tables for these channels and institutions (validated at load).
    pub fn new(channels: &[ChannelSettings], institutions: &[InstitutionSettings]) -> Routing {
        let mut r = Routing::default();
        for i in institutions {
            let inst = Arc::new(Institution {
                code: i.code.clone(),
                name: i.name.clone(),
                mode: i.mode,
                prefixes: i.prefixes.clone(),
                api_key: i.key(),
                webhook_url: i.webhook_url.clone(),
                base_url: i.base_url.clone(),
                limiter: Limiter::new(i.rate_per_second, i.burst),
                snap: i.snap.as_ref().and_then(SnapPartner::of),
            });
            if let Some(p) = &inst.snap {
                r.snap_clients
                    .insert(p.client_id.clone(), SnapParty::Institution(i.code.clone()));
            }
            for p in &i.prefixes {
                r.by_prefix.insert(p.clone(), inst.clone());
            }
            r.by_code.insert(i.code.clone(), inst);
        }
        for c in channels {
            let snap = c.snap.as_ref().and_then(SnapPartner::of);
            if let Some(p) = &snap {
                r.snap_clients
                    .insert(p.client_id.clone(), SnapParty::Channel(c.code.clone()));
            }
            let channel = Channel {
                verifier: crate::signature::Verifier::new(c.key().as_bytes()),
                limiter: Limiter::new(c.rate_per_second, c.burst),
                snap,
            };
            r.channels.insert(c.code.clone(), channel);
        }
        r
    }

    pub fn by_prefix(&self, prefix: &str) -> Option<&Arc<Institution>> {
        self.by_prefix.get(prefix)
    }

    pub fn by_code(&self, code: &str) -> Option<&Arc<Institution>> {
        self.by_code.get(code)
    }

    pub fn institutions(&self) -> impl Iterator<Item = &Arc<Institution>> {
        self.by_code.values()
    }

    /// Whether `channel` is a configured channel.
    pub fn has_channel(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    pub fn channel(&self, channel: &str) -> Option<&Channel> {
        self.channels.get(channel)
    }

    /// Who presents `client_id`, and its SNAP identity.
    pub fn snap_partner(&self, client_id: &str) -> Option<(&SnapParty, &SnapPartner)> {
        let party = self.snap_clients.get(client_id)?;
        let p = match party {
            SnapParty::Channel(code) => self.channels.get(code)?.snap.as_ref()?,
            SnapParty::Institution(code) => self.by_code.get(code)?.snap.as_ref()?,
        };
        Some((party, p))
    }

    /// Authenticates `payload` as sent by `channel`: a configured channel, and `signature`
    /// (hex, either case) the HMAC-SHA256 of the exact bytes with its key.
    ///
    /// # Errors
    /// `Authentication` naming what failed, with a bounded reason label for dead letters
    /// (`unknown_channel`, `bad_signature`).
    pub fn authenticate(
        &self,
        channel: &str,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<(), (SwitchError, &'static str)> {
        let Some(c) = self.channels.get(channel) else {
            return Err((SwitchError::unknown_channel(channel), "unknown_channel"));
        };
        let Some(sig) = signature else {
            return Err((
                SwitchError::Authentication("missing signature header".into()),
                "bad_signature",
            ));
        };
        if !c.verifier.verify(payload, sig) {
            return Err((
                SwitchError::Authentication("signature does not match".into()),
                "bad_signature",
            ));
        }
        Ok(())
    }
}
