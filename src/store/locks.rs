//! VA locks in Redis: `SET NX PX` taken (or taken back by its owner) and released by
//! compare-and-delete (`lua/lock.lua`, `lua/unlock.lua`). The wait for a held lock is
//! the rules layer's (`lock::take`).

use super::*;

impl Store {
    /// Takes the VA lock if free (`SET NX PX`), or takes it back if `token` already owns
    /// it (a retried message). Returns whether it is ours.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let call = calls::Lock {
            lock: key,
            token,
            ttl_ms: ttl.as_millis() as u64,
        };
        let n: i64 = self.eval(call.eval(&self.scripts.lock)).await?;
        Ok(n == 1)
    }

    /// Releases a lock if `token` still owns it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unlock(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .eval(calls::Unlock { lock: key, token }.eval(&self.scripts.unlock))
            .await?;
        Ok(n == 1)
    }
}
