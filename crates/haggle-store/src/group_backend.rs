// Group commit on the server path (issue 18), written once for both databases: `include!`d by
// `lib.rs` next to `backend.rs`. Commands that arrive while a batch is open run in it, each in
// its own savepoint, and every one is answered only after the one commit that makes them durable.

/// How many times a batch's committer yields to commands still queueing to join it.
const GROUP_COMMIT_YIELDS: usize = 16;

/// The lanes of group commit. A batch holds one lane's commands: on PostgreSQL a lane is a
/// market (a batch then holds one market's row lock, so two batches never wait on each other in
/// a cycle); SQLite has one writer, so one lane.
#[derive(Default)]
struct Lanes {
    lanes: std::sync::Mutex<std::collections::HashMap<i64, Arc<Lane>>>,
    next_batch: std::sync::atomic::AtomicU64,
    commits: std::sync::atomic::AtomicU64,
    commands: std::sync::atomic::AtomicU64,
}

/// One lane: its open batch, and how many commands are queueing to join it.
#[derive(Default)]
struct Lane {
    open: tokio::sync::Mutex<Option<OpenBatch>>,
    joining: std::sync::atomic::AtomicUsize,
}

/// A transaction holding some commands' released savepoints, not committed yet.
struct OpenBatch {
    id: u64,
    tx: Tx,
    commands: usize,
    /// The markets whose listeners hear of the batch's new events at its commit (PostgreSQL
    /// delivers a notification at commit, so one per market per batch is enough).
    notify: Vec<i64>,
    /// SQLite's in-process writer lock, held from the batch's first command to its commit.
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// How the batch ended: `Ok` once committed, `Err` when it was rolled back.
    done: tokio::sync::watch::Sender<Option<Result<(), String>>>,
}

/// A command inside an open batch, between its savepoint and its release. Dropped before it is
/// done (the caller's future was cancelled mid-command), it rolls the whole batch back: the
/// command may be half-written, and a batch is committed whole or not at all.
struct Entered<'a> {
    open: tokio::sync::MutexGuard<'a, Option<OpenBatch>>,
    done: bool,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Some(batch) = self.open.take()
        {
            let _ = batch.done.send(Some(Err("a command of its batch was cancelled".into())));
        }
    }
}

impl Lanes {
    fn lane(&self, market_id: i64) -> Arc<Lane> {
        let key = if dialect::SERIALIZE_IN_PROCESS { 0 } else { market_id };
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(lanes.entry(key).or_default())
    }
}

impl Backend {
    /// Commits made by group commit so far and the commands they held (`None` for a batched
    /// store): what a benchmark reports as commands per commit.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.lanes.as_ref().map(|l| GroupCommitStats {
            commits: l.commits.load(std::sync::atomic::Ordering::Relaxed),
            commands: l.commands.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Runs a command in its lane's open batch (opening one if none is open, and then seeing it
    /// committed), and answers once that batch is committed.
    async fn run_grouped(&self, lanes: &Arc<Lanes>, market_id: i64, real_now: i64, cmd: Command, by: ActedBy, idem: Option<&Idempotency<'_>>) -> StoreResult<Ran> {
        let lane = lanes.lane(market_id);
        lane.joining.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut open = lane.open.lock().await;
        lane.joining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if open.as_ref().is_some_and(|b| b.commands >= GROUP_COMMIT_COMMANDS) {
            // Full: committed here; its committer finds it gone.
            let full = open.take().expect("checked");
            Self::end_batch(lanes, full).await;
        }
        let first = open.is_none();
        if first {
            *open = Some(self.open_batch(lanes).await?);
        }
        let mut entered = Entered { open, done: false };
        let batch = entered.open.as_mut().expect("opened above");
        let (id, mut done) = (batch.id, batch.done.subscribe());
        let attempt = Self::attempt_in(self, batch, market_id, real_now, cmd, by, idem).await;
        entered.done = true;
        if let Err(e) = &attempt
            && let Some(broken) = entered.open.take()
        {
            // Its savepoint could not be ended: the batch's transaction is unusable.
            let _ = broken.done.send(Some(Err(format!("a savepoint could not be ended: {e}"))));
        }
        drop(entered);
        if first {
            tokio::spawn(Self::commit_later(Arc::clone(lanes), lane, id));
        }
        let ran = attempt??;
        let ended = loop {
            if let Some(ended) = done.borrow_and_update().clone() {
                break ended;
            }
            if done.changed().await.is_err() {
                break Err("the batch was dropped".into());
            }
        };
        ended.map_err(StoreError::Batch)?;
        Ok(ran)
    }

    /// A new batch: SQLite's writer lock, then the transaction.
    async fn open_batch(&self, lanes: &Lanes) -> StoreResult<OpenBatch> {
        let writer = self.write_guard().await;
        let tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
        Ok(OpenBatch {
            id: lanes.next_batch.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tx,
            commands: 0,
            notify: Vec::new(),
            _writer: writer,
            done: tokio::sync::watch::channel(None).0,
        })
    }

    /// One command inside its own savepoint of the batch (the first command's taken here, the
    /// others' by the ending of the command before): released when its writes are kept, rolled
    /// back to otherwise (a refusal or a failure leaves the batch's other commands be).
    /// The outer error is the batch's (a savepoint not ended), the inner the command's.
    async fn attempt_in(&self, batch: &mut OpenBatch, market_id: i64, real_now: i64, cmd: Command, by: ActedBy, idem: Option<&Idempotency<'_>>) -> StoreResult<StoreResult<Ran>> {
        if batch.commands == 0 {
            sqlx::query("SAVEPOINT command").execute(&mut *batch.tx).await?;
        }
        // Boxed for the stack, as in `run_alone`.
        let attempt = Box::pin(self.attempt(&mut batch.tx, market_id, real_now, cmd, by, idem)).await;
        debug_assert!(attempt.as_ref().map_or(true, |a| a.kept.is_none()), "group commit runs only where no memory follows plans");
        // Each ending leaves the next command's savepoint open, in the same round trip: rolled
        // back to, a savepoint stays; released, a new one follows it (and an open savepoint
        // with nothing after it commits with the batch).
        if matches!(attempt, Ok(Attempt { keep: true, .. })) {
            sqlx::raw_sql("RELEASE SAVEPOINT command; SAVEPOINT command").execute(&mut *batch.tx).await?;
        } else {
            sqlx::query("ROLLBACK TO SAVEPOINT command").execute(&mut *batch.tx).await?;
        }
        batch.commands += 1;
        if let Ok(Attempt { notify: true, .. }) = &attempt
            && !batch.notify.contains(&market_id)
        {
            batch.notify.push(market_id);
        }
        Ok(attempt.map(|a| a.ran))
    }

    /// Commits batch `id` once the commands queueing for its lane have joined it. A task of its
    /// own, so no caller's cancelled future can leave a batch uncommitted.
    async fn commit_later(lanes: Arc<Lanes>, lane: Arc<Lane>, id: u64) {
        for _ in 0..GROUP_COMMIT_YIELDS {
            if lane.joining.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let batch = {
            let mut open = lane.open.lock().await;
            if open.as_ref().is_some_and(|b| b.id == id) { open.take() } else { None }
        };
        if let Some(batch) = batch {
            Self::end_batch(&lanes, batch).await;
        }
    }

    /// Commits a batch and tells its commands how it ended.
    async fn end_batch(lanes: &Lanes, batch: OpenBatch) {
        let OpenBatch { mut tx, commands, notify, _writer, done, .. } = batch;
        let ended = async {
            for market in notify {
                notify_events(&mut tx, market).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await
        .map_err(|e| e.to_string());
        drop(_writer);
        if ended.is_ok() {
            lanes.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            lanes.commands.fetch_add(commands as u64, std::sync::atomic::Ordering::Relaxed);
        } else {
            tracing::error!(commands, "a group commit failed; its commands were rolled back");
        }
        let _ = done.send(Some(ended));
    }
}
