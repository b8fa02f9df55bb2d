//! The script runner and the recovery fence: every script call of the store goes through
//! [`Store::eval`] (or a pipeline of them), which loads the scripts a Redis lost and, when
//! Redis lost its data (an institution's journal mark gone), re-applies the journal before
//! anything runs there.

use super::*;

impl Store {
    /// Loads every request script into Redis's script cache: the end of a recovery (see
    /// [`Store::eval`]), never done on a mere `NOSCRIPT`.
    pub(super) async fn load_scripts(&self) -> Result<(), StoreError> {
        let s = &self.scripts;
        for script in [
            &s.read_va,
            &s.lock_read,
            &s.pay,
            &s.reverse,
            &s.create,
            &s.update_bill,
            &s.bind,
            &s.unlock,
            &s.unjournaled_claim,
            &s.lock,
            &s.passive_begin,
            &s.passive_save,
            &s.passive_claim,
            &s.probe,
            &s.mark,
        ] {
            script.prepare_invoke().load_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Runs a request script. A Redis that answers `NOSCRIPT` has lost its memory (it
    /// restarted, a replica took over, or its scripts were flushed) and may have lost the
    /// last writes with it: before anything else runs there, the journal is re-applied
    /// from the institutions' marks ([`journal::Recover`]), and only then are the scripts
    /// loaded again and the call retried. Requests that meet the same `NOSCRIPT` meanwhile
    /// wait for that one recovery. Without a journal the scripts are simply loaded.
    ///
    /// # Errors
    /// Redis unreachable; the journal unreadable during a recovery (`Journal`).
    pub async fn eval<T: redis::FromRedisValue>(&self, call: Eval<'_>) -> Result<T, StoreError> {
        let cmd = call.cmd();
        // Borrowed by each attempt: a payment's command holds its documents, copied
        // nowhere on the way out.
        let cmd = &cmd;
        self.fenced(|| {
            let mut conn = self.conn();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    /// A plain command (a read, or a write of one key), sent in one pipeline behind the
    /// probe script so that it never touches a Redis that lost its memory before the
    /// recovery (see [`Store::eval`]).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed.
    pub async fn plain<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let (v,): (T,) = self.plain_pipe(pipe).await?;
        Ok(v)
    }

    /// [`Store::plain`] for a pipeline of plain commands; the result is the pipeline's.
    ///
    /// # Errors
    /// As [`Store::plain`].
    pub async fn plain_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut probed = redis::pipe();
        probed
            .add_command(Eval::new(&self.scripts.probe).cmd())
            .ignore();
        for c in pipe.cmd_iter() {
            probed.add_command(c.clone());
        }
        let p = &probed;
        self.fenced(|| {
            let mut conn = self.conn();
            async move { p.query_async(&mut conn).await }
        })
        .await
    }

    pub(super) async fn fenced<T, F, Fut>(&self, run: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        use std::sync::atomic::Ordering;
        let mut attempts = 0;
        loop {
            let seen = self.recovery.generation.load(Ordering::Acquire);
            match run().await {
                Err(e) if is_noscript(&e) && attempts < 3 => {
                    attempts += 1;
                    self.recover(seen).await?;
                }
                r => return Ok(r?),
            }
        }
    }

    /// One recovery at a time; a caller that saw generation `seen` waits for a recovery
    /// already under way instead of starting another.
    pub(super) async fn recover(&self, seen: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let _one = self.recovery.running.lock().await;
        if self.recovery.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let done = async {
if let Some(r) = &self.journal.recover {
                // None of this process's events may land after the end the recovery reads.
                self.settle_journal(std::time::Duration::from_secs(30)).await;
                tracing::warn!("Redis does not hold the switch's scripts or journal marks (a first start, a restart, a failover or a flush): re-applying the journal from the marks before answering");
                r.catch_up(self).await.map_err(StoreError::Journal)?;
            }
            self.load_scripts().await
        }
        .await;
        if done.is_ok() {
            self.recovery.generation.fetch_add(1, Ordering::AcqRel);
        }
        done?;
        if self.journal.recover.is_some() {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "caught up with the journal; answering again"
            );
        }
        Ok(())
    }

    /// How many recoveries this store ran (see [`Store::eval`]).
    pub fn recoveries(&self) -> u64 {
        self.recovery
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Makes sure Redis knows the request scripts, recovering first if it does not (the
    /// daemon's start).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed.
    pub async fn ensure_ready(&self) -> Result<(), StoreError> {
        let _: i64 = self.eval(Eval::new(&self.scripts.probe)).await?;
        Ok(())
    }

    /// Runs a pipeline holding `EVALSHA`s, recovering first if Redis lost its scripts
    /// (see [`Store::eval`]).
    pub(super) async fn query_with_scripts<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.fenced(|| {
            let mut conn = self.conn();
            async move { pipe.query_async(&mut conn).await }
        })
        .await
    }
}
