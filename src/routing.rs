//! Prefix (BCN) → institution, and channel code → signing key: the tables every request is
//! routed and authenticated with. Built once from settings, read-only afterwards.

use std::collections::HashMap;
use std::sync::Arc;

use crate::settings::{InstitutionMode, Settings};

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
}

#[derive(Clone, Debug, Default)]
pub struct Routing {
    by_prefix: HashMap<String, Arc<Institution>>,
    by_code: HashMap<String, Arc<Institution>>,
    channel_keys: HashMap<String, Vec<u8>>,
}

impl Routing {
    pub fn from_settings(s: &Settings) -> Routing {
        let mut r = Routing::default();
        for i in &s.institutions {
            let inst = Arc::new(Institution {
                code: i.code.clone(),
                name: i.name.clone(),
                mode: i.mode,
                prefixes: i.prefixes.clone(),
                api_key: Settings::institution_key(i),
                webhook_url: i.webhook_url.clone(),
                base_url: i.base_url.clone(),
            });
            for p in &i.prefixes {
                r.by_prefix.insert(p.clone(), inst.clone());
            }
            r.by_code.insert(i.code.clone(), inst);
        }
        r.channel_keys = s
            .channel_keys()
            .into_iter()
            .map(|(c, k)| (c, k.into_bytes()))
            .collect();
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

    pub fn channel_key(&self, channel: &str) -> Option<&[u8]> {
        self.channel_keys.get(channel).map(Vec::as_slice)
    }
}
