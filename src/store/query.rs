//! Read-side queries for the HTTP API: windows of an institution's bill and payment
//! indexes (sorted sets scored by creation time in ms), a bill's payments, the ledger, and
//! the OAuth token records. Nothing here writes money; every key stays under the
//! institution's hash tag except the token records, which are single keys of their own.

use redis::AsyncCommands;
use serde_json::Value;

use super::{keys, parse, PaymentRecord, Store, StoreError, Versioned};
use crate::domain::Bill;

/// An OAuth access token record: `ipg:token:<sha256 hex of the token>`. The token itself is
/// never stored, so a dump of Redis cannot be replayed as credentials.
pub fn token_key(token_sha256_hex: &str) -> String {
    format!("ipg:token:{token_sha256_hex}")
}

/// A SNAP `X-EXTERNAL-ID` claim: `ipg:snapxid:{<channel>}:<day>:<service>:<id>` (docs/snap.md).
pub fn external_id_key(channel: &str, day: &str, xid: &str) -> String {
    format!("ipg:snapxid:{{{channel}}}:{day}:{xid}")
}

/// Which index a window reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    /// `bills`: members are bill hashes.
    Bills,
    /// `payments`: members are payment record keys.
    Payments,
}

impl Index {
    fn key(self, inst: &str) -> String {
        match self {
            Index::Bills => keys::bills(inst),
            Index::Payments => keys::payments(inst),
        }
    }
}

/// A creation-time window, inclusive, in ms since the epoch; `None` is open-ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl Window {
    fn min(&self) -> String {
        self.from_ms.map_or("-inf".into(), |v| v.to_string())
    }

    fn max(&self) -> String {
        self.to_ms.map_or("+inf".into(), |v| v.to_string())
    }
}

impl Store {
    /// Stores a token record for `ttl_secs`.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn put_token(
        &self,
        token_sha256_hex: &str,
        record: &str,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .set_ex(token_key(token_sha256_hex), record, ttl_secs)
            .await?;
        Ok(())
    }

    /// A token record, if the token exists and has not expired.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn token(&self, token_sha256_hex: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn().get(token_key(token_sha256_hex)).await?)
    }

    /// Claims SNAP's `X-EXTERNAL-ID` `xid` of `channel` for `day` (`YYYY-MM-DD:<service>`) with
    /// `what` (the service and the business reference), kept `ttl_ms`
    /// (`ipg:snapxid:{<channel>}:<day>:<xid>`, `SET NX GET`: one round trip, atomic).
    /// `None` when it was free (now claimed), else what it was claimed with.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn claim_external_id(
        &self,
        channel: &str,
        day: &str,
        xid: &str,
        what: &str,
        ttl_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let earlier: Option<String> = self
            .plain(
                redis::cmd("SET")
                    .arg(external_id_key(channel, day, xid))
                    .arg(what)
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .clone(),
            )
            .await?;
        Ok(earlier)
    }

    /// Gives back an `X-EXTERNAL-ID` this request claimed (`claim`: the value it set) when
    /// the switch could not serve it (an answer 5xx): the partner may send it again. Only
    /// the claim's own value is deleted (compare-and-delete), never another request's.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn release_external_id(
        &self,
        channel: &str,
        day: &str,
        xid: &str,
        claim: &str,
    ) -> Result<(), StoreError> {
        self.unlock(&external_id_key(channel, day, xid), claim)
            .await?;
        Ok(())
    }

    /// How many members of an index fall in `w`.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn index_count(&self, inst: &str, ix: Index, w: Window) -> Result<u64, StoreError> {
        Ok(self.conn().zcount(ix.key(inst), w.min(), w.max()).await?)
    }

    /// Members of an index in `w`, by creation time (newest first when `newest_first`),
    /// skipping `offset` and taking at most `count`.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn index_members(
        &self,
        inst: &str,
        ix: Index,
        w: Window,
        newest_first: bool,
        offset: u64,
        count: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = redis::cmd("ZRANGE");
        c.arg(ix.key(inst));
        if newest_first {
            c.arg(w.max()).arg(w.min()).arg("BYSCORE").arg("REV");
        } else {
            c.arg(w.min()).arg(w.max()).arg("BYSCORE");
        }
        c.arg("LIMIT").arg(offset).arg(count);
        Ok(c.query_async(&mut self.conn()).await?)
    }

    /// Bills by hash, in the order asked; hashes without a bill are skipped.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bills_by_hash(
        &self,
        inst: &str,
        hashes: &[String],
    ) -> Result<Vec<Versioned<Bill>>, StoreError> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for h in hashes {
            pipe.cmd("HMGET")
                .arg(keys::bill(inst, h))
                .arg("doc")
                .arg("ver");
        }
        let rows: Vec<(Option<String>, Option<String>)> =
            pipe.query_async(&mut self.conn()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (h, (doc, ver)) in hashes.iter().zip(rows) {
            if let Some(b) = Self::versioned_bill(&keys::bill(inst, h), doc, ver)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Payment records by key, in the order asked; missing ones are skipped. Keys come from
    /// the institution's own indexes, never from a request.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn payments_by_key(
        &self,
        pkeys: &[String],
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        if pkeys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in pkeys {
            pipe.cmd("HGETALL").arg(k);
        }
        let rows: Vec<Vec<String>> = pipe.query_async(&mut self.conn()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, fields) in pkeys.iter().zip(rows) {
            // A record retired since the index was read (docs/retention.md) is left out.
            match Self::payment_record(k, fields) {
                Ok(Some(r)) => out.push(r),
                Ok(None) | Err(StoreError::Retired(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every payment of a bill, oldest first.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill_payment_records(
        &self,
        inst: &str,
        hash: &str,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let (mut pkeys, newer): (Vec<String>, Vec<String>) = redis::pipe()
            .lrange(keys::legacy_bill_payments(inst, hash), 0, -1)
            .zrange(keys::bill_payments(inst, hash), 0, -1)
            .query_async(&mut self.conn())
            .await?;
        let newer: Vec<String> = newer.into_iter().filter(|k| !pkeys.contains(k)).collect();
        pkeys.extend(newer);
        self.payments_by_key(&pkeys).await
    }

    /// Number of ledger entries of an institution.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ledger_len(&self, inst: &str) -> Result<u64, StoreError> {
        Ok(self.conn().llen(keys::ledger(inst)).await?)
    }

    /// Ledger entries `start..=stop` (list indexes, oldest is 0; negative counts from the
    /// end as in `LRANGE`).
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn ledger_range(
        &self,
        inst: &str,
        start: isize,
        stop: isize,
    ) -> Result<Vec<Value>, StoreError> {
        let key = keys::ledger(inst);
        let raw: Vec<String> = self.conn().lrange(&key, start, stop).await?;
        // An empty entry holds the place of one the journal has not re-applied yet.
        raw.iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse(&key, s))
            .collect()
    }
}
