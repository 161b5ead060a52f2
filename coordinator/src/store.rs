//! Durable coordinator state in SQLite (WAL mode, `synchronous = FULL`).
//!
//! One writer thread owns the write connection. Writes are queued and applied in batches: everything
//! queued while the previous batch was committing goes into ONE transaction (group commit), each write in
//! its own savepoint so that one failing write does not undo the others. A caller that must not
//! acknowledge anything before it is durable (a task result) awaits [`Store::write`], which returns only
//! after the batch's COMMIT. Bookkeeping that may be lost on a crash (a lease being handed out) uses
//! [`Store::write_nowait`]. Reads use their own connections (WAL readers never block the writer).
//!
//! Tables: `experiments` (spec, plan, state), `tasks` (scheduling counters and state of each task key),
//! `attempts` (one row per lease: worker, outcome, error), `results` (the first valid result per task
//! key), `workers`, `artifacts` (index of the content-addressed store).
//!
//! This module is the only place that speaks SQL (the rule Quickwit keeps for its metastore): writes
//! are the typed operations of [`Tx`], reads are typed methods of [`Store`], and the states a row can
//! hold are the enums [`ExpState`], [`StoredTaskState`] and [`AttemptOutcome`], which refuse a value they
//! do not know instead of guessing. A schema change touches this file alone.

use crate::error::CoordError;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS experiments(
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, spec_hash TEXT NOT NULL,
    identity TEXT NOT NULL, spec_toml TEXT NOT NULL, plan_json TEXT NOT NULL, state TEXT NOT NULL,
    max_attempts INTEGER NOT NULL, lease_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER);
CREATE TABLE IF NOT EXISTS tasks(
    key TEXT PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0, errors_json TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS attempts(
    lease_id TEXT PRIMARY KEY, task_key TEXT NOT NULL, worker_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    started_ms INTEGER NOT NULL, ended_ms INTEGER, outcome TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task_key);
CREATE TABLE IF NOT EXISTS results(
    task_key TEXT PRIMARY KEY, kind TEXT NOT NULL, result_json TEXT, checkpoint TEXT,
    worker_id TEXT NOT NULL, lease_id TEXT NOT NULL, finished_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS workers(
    id TEXT PRIMARY KEY, name TEXT NOT NULL, devices TEXT NOT NULL, slots INTEGER NOT NULL,
    version TEXT NOT NULL, registered_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts(
    hash TEXT PRIMARY KEY, size INTEGER NOT NULL, kind TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS slurm_arrays(
    job_id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL, elements INTEGER NOT NULL,
    script TEXT NOT NULL, submitted_ms INTEGER NOT NULL);
";

type WriteFn = Box<dyn Fn(&Tx<'_>) -> rusqlite::Result<()> + Send>;

struct WriteOp {
    f: WriteFn,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// Handle to the state database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    tx: mpsc::Sender<WriteOp>,
}

/// Opens a connection with the settings every connection uses.
fn open_conn(path: &Path) -> Result<Connection, CoordError> {
    let conn = Connection::open(path).map_err(|e| CoordError::db(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| CoordError::db(path, e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;",
    )
    .map_err(|e| CoordError::db(path, e))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Store, CoordError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CoordError::io(dir, e))?;
        }
        let conn = open_conn(path)?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| CoordError::db(path, e))?;
        let (tx, rx) = mpsc::channel::<WriteOp>();
        let p = path.to_path_buf();
        std::thread::Builder::new()
            .name("mer-store-writer".into())
            .spawn(move || writer_loop(conn, rx, p))
            .map_err(|e| {
                CoordError::Runtime(format!("cannot start the store writer thread: {e}"))
            })?;
        Ok(Store {
            path: path.to_path_buf(),
            tx,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a write (a sequence of [`Tx`] operations, applied atomically) and waits until it is
    /// committed durably. The closure may run twice (once in a batch, again alone if the batch failed).
    pub async fn write<F>(&self, f: F) -> Result<(), CoordError>
    where
        F: Fn(&Tx<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(WriteOp {
                f: Box::new(f),
                ack: Some(ack),
            })
            .map_err(|_| CoordError::Runtime("the store writer has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CoordError::Runtime(format!(
                "state database {}: {e}",
                self.path.display()
            ))),
            Err(_) => Err(CoordError::Runtime("the store writer has stopped".into())),
        }
    }

    /// Queues a write without waiting for it (it is committed with the next batch).
    pub fn write_nowait<F>(&self, f: F)
    where
        F: Fn(&Tx<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        if self
            .tx
            .send(WriteOp {
                f: Box::new(f),
                ack: None,
            })
            .is_err()
        {
            tracing::error!("the store writer has stopped; a bookkeeping write was dropped");
        }
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> Result<(), CoordError> {
        self.write(|_| Ok(())).await
    }

    /// Opens a read connection (for loading state and reading results).
    fn reader(&self) -> Result<Connection, CoordError> {
        open_conn(&self.path)
    }

    /// Runs a read on a fresh connection in a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, CoordError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_conn(&path)?;
            f(&conn).map_err(|e| CoordError::db(&path, e))
        })
        .await
        .map_err(|e| CoordError::Runtime(format!("store read panicked: {e}")))?
    }

    /// Loads everything needed to rebuild the scheduler after a restart. Attempts that were in flight
    /// when the previous coordinator stopped are closed with outcome `interrupted`.
    pub fn load(&self) -> Result<Snapshot, CoordError> {
        let conn = self.reader()?;
        let db = |e| CoordError::db(&self.path, e);
        conn.execute(
            "UPDATE attempts SET outcome = ?1, ended_ms = ?2 WHERE outcome IS NULL",
            params![AttemptOutcome::Interrupted.key(), now_ms()],
        )
        .map_err(db)?;
        let mut experiments = Vec::new();
        {
            let mut st = conn
                .prepare("SELECT id, name, identity, plan_json, state, max_attempts, lease_ms FROM experiments ORDER BY seq")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    Ok(StoredExperiment {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        identity: r.get(2)?,
                        plan_json: r.get(3)?,
                        state: parse_column(r, 4)?,
                        max_attempts: r.get(5)?,
                        lease_ms: r.get::<_, i64>(6)? as u64,
                    })
                })
                .map_err(db)?;
            for r in rows {
                experiments.push(r.map_err(db)?);
            }
        }
        let mut tasks = Vec::new();
        {
            let mut st = conn
                .prepare("SELECT key, state, attempts, failures, lost, duplicates, errors_json FROM tasks")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    Ok(StoredTask {
                        key: r.get(0)?,
                        state: parse_column(r, 1)?,
                        attempts: r.get(2)?,
                        failures: r.get(3)?,
                        lost: r.get(4)?,
                        duplicates: r.get(5)?,
                        errors: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    })
                })
                .map_err(db)?;
            for r in rows {
                tasks.push(r.map_err(db)?);
            }
        }
        let mut results = Vec::new();
        {
            let mut st = conn
                .prepare("SELECT task_key, checkpoint FROM results")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(db)?;
            for r in rows {
                results.push(r.map_err(db)?);
            }
        }
        let seq: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM experiments", [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        Ok(Snapshot {
            experiments,
            tasks,
            results,
            next_seq: seq + 1,
        })
    }

    /// The stored result JSON of each of `keys` that has one.
    pub async fn results_of(&self, keys: Vec<String>) -> Result<Vec<(String, String)>, CoordError> {
        self.read(move |conn| {
            let rows = per_result(conn, "result_json", keys, |k, r| {
                Ok(r.get::<_, Option<String>>(0)?.map(|j| (k, j)))
            })?;
            Ok(rows.into_iter().flatten().collect())
        })
        .await
    }

    /// The stored checkpoint of each of `keys` that has a result (`None` inside: a target result, which
    /// has no checkpoint).
    pub async fn checkpoints_of(
        &self,
        keys: Vec<String>,
    ) -> Result<std::collections::HashMap<String, Option<String>>, CoordError> {
        self.read(move |conn| {
            let rows = per_result(conn, "checkpoint", keys, |k, r| Ok((k, r.get(0)?)))?;
            Ok(rows.into_iter().collect())
        })
        .await
    }

    /// For each of `keys` with a stored result: its result JSON (target tasks) and the worker that
    /// produced it.
    pub async fn result_rows(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<String>, String)>, CoordError> {
        self.read(move |conn| {
            per_result(conn, "result_json, worker_id", keys, |k, r| {
                Ok((k, r.get(0)?, r.get(1)?))
            })
        })
        .await
    }

    /// The spec text an experiment was submitted with (`None`: no such experiment).
    pub async fn experiment_spec(&self, id: &str) -> Result<Option<String>, CoordError> {
        let id = id.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT spec_toml FROM experiments WHERE id = ?1",
                [&id],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    /// The Slurm job arrays submitted for experiment `id`: `(job id, elements)` in submission order.
    pub async fn slurm_arrays(&self, id: &str) -> Result<Vec<(String, u32)>, CoordError> {
        let id = id.to_string();
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT job_id, elements FROM slurm_arrays WHERE experiment_id = ?1 ORDER BY submitted_ms, job_id",
            )?;
            let rows = st.query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Every registered worker, in registration order.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, CoordError> {
        self.read(|conn| {
            let mut st = conn.prepare(
                "SELECT id, name, devices, slots, version, registered_ms FROM workers ORDER BY registered_ms, id",
            )?;
            let rows = st.query_map([], |r| {
                let devices: String = r.get(2)?;
                Ok(WorkerRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    devices: devices
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(str::to_string)
                        .collect(),
                    slots: r.get(3)?,
                    version: r.get(4)?,
                    registered_ms: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Stored results per worker id.
    pub async fn results_per_worker(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, CoordError> {
        self.read(|conn| {
            let mut st =
                conn.prepare("SELECT worker_id, COUNT(*) FROM results GROUP BY worker_id")?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        })
        .await
    }

    /// The worker that produced each stored target result (task key -> worker id).
    pub async fn target_result_workers(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, CoordError> {
        self.read(|conn| {
            let mut st =
                conn.prepare("SELECT task_key, worker_id FROM results WHERE kind = 'target'")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// The artifact hash of every finished prior task's checkpoint, by task key.
    pub async fn prior_checkpoints(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, CoordError> {
        self.read(|conn| {
            let mut st = conn.prepare(
                "SELECT task_key, checkpoint FROM results WHERE kind = 'prior' AND checkpoint IS NOT NULL",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Whether the database answers a query on a fresh connection (readiness probe).
    pub fn ping(&self) -> Result<(), CoordError> {
        self.reader()?
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|e| CoordError::db(&self.path, e))
    }

    /// Outcome counts of all attempts (`outcome` -> count), for tests and status.
    pub async fn attempt_outcomes(&self) -> Result<Vec<(String, i64)>, CoordError> {
        self.read(|conn| {
            let mut st = conn.prepare(
                "SELECT COALESCE(outcome, 'running'), COUNT(*) FROM attempts GROUP BY 1 ORDER BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<WriteOp>, path: PathBuf) {
    const MAX_BATCH: usize = 4096;
    conn.set_prepared_statement_cache_capacity(64);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Fast path: the whole batch in one transaction. If any write fails, the batch is rolled back
        // and replayed with one savepoint per write, so that only the failing write is lost.
        let fast = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for op in &batch {
                (op.f)(&Tx { conn: &tx })?;
            }
            tx.commit()
        })();
        match fast {
            Ok(()) => {
                for op in batch {
                    if let Some(a) = op.ack {
                        let _ = a.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    "state database {}: a batched write failed ({e}); replaying one by one",
                    path.display()
                );
                slow_path(&mut conn, batch, &path);
            }
        }
    }
}

fn slow_path(conn: &mut Connection, batch: Vec<WriteOp>, path: &Path) {
    let mut acks = Vec::with_capacity(batch.len());
    let res = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        for op in batch {
            let mut sp = tx.savepoint()?;
            match (op.f)(&Tx { conn: &sp }) {
                Ok(()) => {
                    sp.commit()?;
                    acks.push((op.ack, Ok(())));
                }
                Err(e) => {
                    sp.rollback()?;
                    drop(sp);
                    tracing::error!("state database {}: write failed: {e}", path.display());
                    acks.push((op.ack, Err(e.to_string())));
                }
            }
        }
        tx.commit()
    })();
    for (ack, r) in acks {
        let r = match (&res, r) {
            (Err(e), _) => Err(format!("commit failed: {e}")),
            (Ok(()), r) => r,
        };
        if let Some(a) = ack {
            let _ = a.send(r);
        }
    }
}

/// An experiment row.
#[derive(Debug, Clone)]
pub struct StoredExperiment {
    /// Experiment id.
    pub id: String,
    /// Name from the spec.
    pub name: String,
    /// Identity used to make re-submission idempotent.
    pub identity: String,
    /// The expanded plan as JSON.
    pub plan_json: String,
    /// Its lifecycle state.
    pub state: ExpState,
    /// Attempts per task before it gives up.
    pub max_attempts: u32,
    /// Lease length in milliseconds.
    pub lease_ms: u64,
}

/// A task row.
#[derive(Debug, Clone)]
pub struct StoredTask {
    /// Task key.
    pub key: String,
    /// Its durable state.
    pub state: StoredTaskState,
    /// Leases handed out.
    pub attempts: u32,
    /// Failures reported by workers.
    pub failures: u32,
    /// Leases that expired.
    pub lost: u32,
    /// Results dropped because one was already stored.
    pub duplicates: u32,
    /// Errors of failed attempts.
    pub errors: Vec<String>,
}

/// Everything [`Store::load`] returns.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Experiments in submission order.
    pub experiments: Vec<StoredExperiment>,
    /// Task rows.
    pub tasks: Vec<StoredTask>,
    /// Task keys with a stored result, and the checkpoint hash of prior results.
    pub results: Vec<(String, Option<String>)>,
    /// Next experiment sequence number.
    pub next_seq: i64,
}

/// Reads column `i` as one of the state enums; a value the enum does not know is an error naming it
/// (a database written by a newer `mer`, or edited by hand), never a silent default.
fn parse_column<T: std::str::FromStr<Err = String>>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    s.parse().map_err(|m: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, m.into())
    })
}

/// Defines a persisted state enum: its database names, and parsing that refuses unknown names.
macro_rules! persisted_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The name stored in the database (and used on the wire and in metrics).
            pub fn key(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$v),)+
                    other => Err(format!(
                        "unknown {} '{other}' (known: {})",
                        stringify!($name),
                        [$($s),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.key())
            }
        }
    };
}

persisted_enum! {
    /// An experiment's lifecycle state.
    ExpState {
        /// Tasks remain.
        Running => "running",
        /// Every task is done.
        Done => "done",
        /// Every task is done or gave up, at least one gave up.
        Failed => "failed",
        /// Cancelled by a client.
        Cancelled => "cancelled",
    }
}

persisted_enum! {
    /// A task row's durable state (the scheduler's finer in-memory states are rebuilt from it).
    StoredTaskState {
        /// Not finished: blocked, queued or running.
        Pending => "pending",
        /// A result is stored.
        Done => "done",
        /// Failed too often, or a task it depends on did.
        GaveUp => "gave_up",
    }
}

persisted_enum! {
    /// How an attempt (one lease) ended.
    AttemptOutcome {
        /// Its result was stored.
        Ok => "ok",
        /// The worker reported a failure.
        Failed => "failed",
        /// A failure arrived after the lease had ended.
        FailedLate => "failed_late",
        /// The lease expired.
        Lost => "lost",
        /// Its result arrived after another attempt's had been stored.
        Duplicate => "duplicate",
        /// The coordinator stopped while it ran, or its worker was told to stop (a batch job's time
        /// limit or preemption) and released it unfinished; never counted as a failure.
        Interrupted => "interrupted",
    }
}

/// A registered worker as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    /// Worker id.
    pub id: String,
    /// The name it registered with.
    pub name: String,
    /// Its devices (`cpu`, `cuda:0`...).
    pub devices: Vec<String>,
    /// Concurrent task slots.
    pub slots: u32,
    /// Its `mer` version.
    pub version: String,
    /// When it registered (ms since the epoch).
    pub registered_ms: i64,
}

/// A result to store.
#[derive(Debug, Clone)]
pub struct NewResult {
    /// Task key.
    pub task_key: String,
    /// `prior` or `target`.
    pub kind: &'static str,
    /// The fold result as JSON (target tasks).
    pub result_json: Option<String>,
    /// The checkpoint's artifact hash (prior tasks).
    pub checkpoint: Option<String>,
    /// The worker that produced it.
    pub worker_id: String,
    /// The lease it came with.
    pub lease_id: String,
}

/// The write operations, inside one transaction of the writer thread (see [`Store::write`]).
pub struct Tx<'c> {
    conn: &'c Connection,
}

impl Tx<'_> {
    /// Runs one statement through the connection's prepared-statement cache.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute(params).map(|_| ())
    }

    /// Inserts an experiment (state `running`) and its task rows (existing task rows are kept).
    pub fn insert_experiment(&self, e: &NewExperiment) -> rusqlite::Result<()> {
        self.exec(
            "INSERT INTO experiments(id, seq, name, spec_hash, identity, spec_toml, plan_json, state, max_attempts, lease_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![e.id, e.seq, e.name, e.spec_hash, e.identity, e.spec_toml, e.plan_json, ExpState::Running.key(), e.max_attempts, e.lease_ms as i64, now_ms()],
        )?;
        for k in &e.task_keys {
            self.exec(
                "INSERT OR IGNORE INTO tasks(key, state) VALUES (?1, ?2)",
                params![k, StoredTaskState::Pending.key()],
            )?;
        }
        Ok(())
    }

    /// Puts a given-up task back: pending, with fresh failure and loss budgets (errors are kept).
    pub fn requeue_task(&self, key: &str) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE tasks SET state = ?2, failures = 0, lost = 0 WHERE key = ?1",
            params![key, StoredTaskState::Pending.key()],
        )
    }

    /// Sets an ended experiment running again.
    pub fn reopen_experiment(&self, id: &str) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE experiments SET state = ?2, finished_ms = NULL WHERE id = ?1",
            params![id, ExpState::Running.key()],
        )
    }

    /// Records that a running experiment ended in `state` (no-op when it is not running any more).
    pub fn end_experiment(&self, id: &str, state: ExpState) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE experiments SET state = ?2, finished_ms = ?3 WHERE id = ?1 AND state = ?4",
            params![id, state.key(), now_ms(), ExpState::Running.key()],
        )
    }

    /// Registers (or re-registers) a worker.
    pub fn upsert_worker(&self, w: &WorkerRow) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO workers(id, name, devices, slots, version, registered_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![w.id, w.name, w.devices.join(","), w.slots, w.version, w.registered_ms],
        )
    }

    /// Records a lease handed out: a new attempt row, and the task's attempt count.
    pub fn start_attempt(
        &self,
        lease_id: &str,
        task_key: &str,
        worker_id: &str,
        attempt: u32,
    ) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO attempts(lease_id, task_key, worker_id, attempt, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease_id, task_key, worker_id, attempt, now_ms()],
        )?;
        self.exec(
            "UPDATE tasks SET attempts = ?2 WHERE key = ?1",
            params![task_key, attempt],
        )
    }

    /// Ends an attempt with `outcome` (and the error, where there is one). A duplicate is appended to
    /// an outcome already there (`ok,duplicate`); any other outcome replaces it (a lost lease whose late
    /// result is then accepted ends `ok`).
    fn end_attempt(
        &self,
        lease_id: &str,
        outcome: AttemptOutcome,
        error: Option<&str>,
    ) -> rusqlite::Result<()> {
        let sql = if outcome == AttemptOutcome::Duplicate {
            "UPDATE attempts SET outcome = COALESCE(outcome || ',', '') || ?2, error = COALESCE(?3, error), ended_ms = ?4 WHERE lease_id = ?1"
        } else {
            "UPDATE attempts SET outcome = ?2, error = COALESCE(?3, error), ended_ms = ?4 WHERE lease_id = ?1"
        };
        self.exec(sql, params![lease_id, outcome.key(), error, now_ms()])
    }

    /// Stores a task's first result, marks it done and its attempt ok. A second result for the same key
    /// is ignored here (the scheduler counts it with [`Tx::count_duplicate`]).
    pub fn store_result(&self, r: &NewResult) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO results(task_key, kind, result_json, checkpoint, worker_id, lease_id, finished_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![r.task_key, r.kind, r.result_json, r.checkpoint, r.worker_id, r.lease_id, now_ms()],
        )?;
        self.set_task_state(&r.task_key, StoredTaskState::Done)?;
        self.end_attempt(&r.lease_id, AttemptOutcome::Ok, None)
    }

    /// Counts a result that arrived after the task's result had been stored.
    pub fn count_duplicate(&self, task_key: &str, lease_id: &str) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE tasks SET duplicates = duplicates + 1 WHERE key = ?1",
            [task_key],
        )?;
        self.end_attempt(lease_id, AttemptOutcome::Duplicate, None)
    }

    /// Records a reported failure: the task's failure count and error history, and the attempt.
    pub fn record_failure(
        &self,
        task_key: &str,
        failures: u32,
        errors: &[String],
        lease_id: &str,
        error: &str,
    ) -> rusqlite::Result<()> {
        let errors_json = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
        self.exec(
            "UPDATE tasks SET failures = ?2, errors_json = ?3 WHERE key = ?1",
            params![task_key, failures, errors_json],
        )?;
        self.end_attempt(lease_id, AttemptOutcome::Failed, Some(error))
    }

    /// Records an attempt released unfinished by a worker told to stop (no failure counted).
    pub fn record_interrupted(&self, lease_id: &str, reason: &str) -> rusqlite::Result<()> {
        self.end_attempt(lease_id, AttemptOutcome::Interrupted, Some(reason))
    }

    /// Records a failure reported on a lease that had already ended.
    pub fn record_late_failure(&self, lease_id: &str, error: &str) -> rusqlite::Result<()> {
        self.end_attempt(lease_id, AttemptOutcome::FailedLate, Some(error))
    }

    /// Records an expired lease: the task's loss count and the attempt.
    pub fn record_lost(&self, task_key: &str, lost: u32, lease_id: &str) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE tasks SET lost = ?2 WHERE key = ?1",
            params![task_key, lost],
        )?;
        self.end_attempt(lease_id, AttemptOutcome::Lost, None)
    }

    /// Sets a task row's state.
    pub fn set_task_state(&self, task_key: &str, state: StoredTaskState) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE tasks SET state = ?2 WHERE key = ?1",
            params![task_key, state.key()],
        )
    }

    /// Records a Slurm job array submitted for an experiment (its script's path kept for the record).
    pub fn record_slurm_array(
        &self,
        job_id: &str,
        experiment_id: &str,
        elements: u32,
        script: &str,
    ) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO slurm_arrays(job_id, experiment_id, elements, script, submitted_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job_id, experiment_id, elements, script, now_ms()],
        )
    }

    /// Indexes an artifact of the content-addressed store (kept when already there).
    pub fn record_artifact(&self, hash: &str, size: u64, kind: &str) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO artifacts(hash, size, kind, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![hash, size as i64, kind, now_ms()],
        )
    }
}

/// Reads `columns` of the stored result of each of `keys` (one cached statement, one lookup per key) and
/// returns what `row` makes of each key that has a result, in key order.
fn per_result<T>(
    conn: &Connection,
    columns: &str,
    keys: Vec<String>,
    row: impl Fn(String, &rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {columns} FROM results WHERE task_key = ?1"
    ))?;
    let mut out = Vec::new();
    for k in keys {
        let mut rows = st.query([k.as_str()])?;
        if let Some(r) = rows.next()? {
            out.push(row(k, r)?);
        }
    }
    Ok(out)
}

/// The task keys with a stored result in the state database at `path`, read directly from the file
/// (for checks on a coordinator that has stopped, e.g. after it was killed).
pub fn finished_task_keys(path: &Path) -> Result<Vec<String>, CoordError> {
    let conn = open_conn(path)?;
    let mut st = conn
        .prepare("SELECT task_key FROM results ORDER BY task_key")
        .map_err(|e| CoordError::db(path, e))?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| CoordError::db(path, e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| CoordError::db(path, e))
}

/// What a state database at `path` knows of finished tasks, read directly from the file (for `mer plan`):
/// each finished task's key with the seconds of the attempt that produced it, and every stored
/// experiment's plan JSON (which says each key's kind and method).
pub fn finished_task_seconds(
    path: &Path,
) -> Result<(BTreeMap<String, f64>, Vec<String>), CoordError> {
    let conn = open_conn(path)?;
    let db = |e| CoordError::db(path, e);
    let mut st = conn
        .prepare(
            "SELECT r.task_key, COALESCE(a.ended_ms - a.started_ms, 0) FROM results r \
             LEFT JOIN attempts a ON a.lease_id = r.lease_id",
        )
        .map_err(db)?;
    let times = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as f64 / 1000.0))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()
        .map_err(db)?;
    let mut st = conn
        .prepare("SELECT plan_json FROM experiments ORDER BY seq")
        .map_err(db)?;
    let plans = st
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok((times, plans))
}

/// A new experiment to store.
#[derive(Debug, Clone)]
pub struct NewExperiment {
    /// Experiment id.
    pub id: String,
    /// Submission sequence number.
    pub seq: i64,
    /// Name.
    pub name: String,
    /// Spec hash.
    pub spec_hash: String,
    /// Identity (spec hash + dataset hashes).
    pub identity: String,
    /// The spec text.
    pub spec_toml: String,
    /// The plan JSON.
    pub plan_json: String,
    /// Attempts per task.
    pub max_attempts: u32,
    /// Lease length in milliseconds.
    pub lease_ms: u64,
    /// Every task key of the plan.
    pub task_keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_durable_and_batched_and_a_failing_write_does_not_undo_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let mut waits = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            waits.push(tokio::spawn(async move {
                s.write(move |tx| {
                    tx.conn.execute(
                        "INSERT INTO workers(id, name, devices, slots, version, registered_ms) VALUES (?1, 'w', 'cpu', 1, 'v', 0)",
                        [format!("w{i}")],
                    )
                    .map(|_| ())
                })
                .await
            }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        // A duplicate primary key fails alone.
        let dup = store
            .write(|tx| {
                tx.conn.execute("INSERT INTO workers(id, name, devices, slots, version, registered_ms) VALUES ('w1', 'w', 'cpu', 1, 'v', 0)", [])
                    .map(|_| ())
            })
            .await;
        assert!(dup.is_err());
        store.write_nowait(|tx| {
            tx.conn
                .execute(
                    "INSERT INTO artifacts(hash, size, kind, created_ms) VALUES ('h', 1, 'k', 0)",
                    [],
                )
                .map(|_| ())
        });
        store.flush().await.unwrap();
        // A fresh connection (as after a restart) sees everything.
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM workers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
        let a: i64 = conn
            .query_row("SELECT COUNT(*) FROM artifacts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(a, 1);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn load_closes_interrupted_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .write(|tx| {
                tx.insert_experiment(&NewExperiment {
                        id: "e".into(),
                        seq: 1,
                        name: "e".into(),
                        spec_hash: "h".into(),
                        identity: "i".into(),
                        spec_toml: String::new(),
                        plan_json: "{}".into(),
                        max_attempts: 3,
                        lease_ms: 1000,
                        task_keys: vec!["a".into(), "b".into()],
                    },
                )?;
                tx.conn.execute("INSERT INTO attempts(lease_id, task_key, worker_id, attempt, started_ms) VALUES ('l1', 'a', 'w', 1, 0)", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.experiments.len(), 1);
        assert_eq!(snap.tasks.len(), 2);
        assert_eq!(snap.next_seq, 2);
        let outcomes = store.attempt_outcomes().await.unwrap();
        assert_eq!(outcomes, vec![("interrupted".to_string(), 1)]);
        assert_eq!(snap.experiments[0].state, ExpState::Running);
        assert!(snap
            .tasks
            .iter()
            .all(|t| t.state == StoredTaskState::Pending));
    }

    #[tokio::test]
    async fn a_state_the_enums_do_not_know_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        store
            .write(|tx| {
                tx.conn
                    .execute("INSERT INTO tasks(key, state) VALUES ('k', 'paused')", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("paused") && e.contains("gave_up"), "{e}");
        for s in StoredTaskState::ALL {
            assert_eq!(s.key().parse::<StoredTaskState>(), Ok(*s));
        }
        for s in ExpState::ALL {
            assert_eq!(s.key().parse::<ExpState>(), Ok(*s));
        }
        assert!("Done".parse::<ExpState>().is_err());
    }

    #[tokio::test]
    async fn typed_operations_keep_the_attempt_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let exp = NewExperiment {
            id: "e".into(),
            seq: 1,
            name: "e".into(),
            spec_hash: "h".into(),
            identity: "i".into(),
            spec_toml: "name = \"e\"".into(),
            plan_json: "{}".into(),
            max_attempts: 3,
            lease_ms: 1000,
            task_keys: vec!["a".into(), "b".into()],
        };
        store
            .write(move |tx| {
                tx.insert_experiment(&exp)?;
                tx.start_attempt("l1", "a", "w1", 1)?;
                tx.record_lost("a", 1, "l1")?;
                tx.start_attempt("l2", "a", "w2", 2)?;
                tx.store_result(&NewResult {
                    task_key: "a".into(),
                    kind: "target",
                    result_json: Some("{}".into()),
                    checkpoint: None,
                    worker_id: "w2".into(),
                    lease_id: "l2".into(),
                })?;
                tx.count_duplicate("a", "l2")?;
                tx.start_attempt("l3", "b", "w1", 1)?;
                tx.record_failure("b", 1, &["boom".into()], "l3", "boom")?;
                tx.set_task_state("b", StoredTaskState::GaveUp)?;
                tx.end_experiment("e", ExpState::Failed)?;
                tx.upsert_worker(&WorkerRow {
                    id: "w1".into(),
                    name: "n".into(),
                    devices: vec!["cpu".into(), "cuda:0".into()],
                    slots: 2,
                    version: "v".into(),
                    registered_ms: 5,
                })
            })
            .await
            .unwrap();
        let outcomes = store.attempt_outcomes().await.unwrap();
        assert_eq!(
            outcomes,
            vec![
                ("failed".to_string(), 1),
                ("lost".to_string(), 1),
                ("ok,duplicate".to_string(), 1)
            ]
        );
        let snap = store.load().unwrap();
        assert_eq!(snap.experiments[0].state, ExpState::Failed);
        let b = snap.tasks.iter().find(|t| t.key == "b").unwrap();
        assert_eq!(
            (b.state, b.failures, b.errors.clone()),
            (StoredTaskState::GaveUp, 1, vec!["boom".to_string()])
        );
        let a = snap.tasks.iter().find(|t| t.key == "a").unwrap();
        assert_eq!(
            (a.state, a.attempts, a.lost, a.duplicates),
            (StoredTaskState::Done, 2, 1, 1)
        );
        assert_eq!(finished_task_keys(&path).unwrap(), vec!["a".to_string()]);
        assert_eq!(
            store.experiment_spec("e").await.unwrap().as_deref(),
            Some("name = \"e\"")
        );
        assert_eq!(store.experiment_spec("x").await.unwrap(), None);
        let w = store.workers().await.unwrap();
        assert_eq!(w[0].devices, vec!["cpu", "cuda:0"]);
        assert_eq!(store.results_per_worker().await.unwrap()["w2"], 1);
        assert_eq!(store.target_result_workers().await.unwrap()["a"], "w2");
        assert!(store.ping().is_ok());
    }
}
