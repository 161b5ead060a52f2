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

use crate::error::CoordError;
use rusqlite::{params, Connection, OptionalExtension};
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
";

type WriteFn = Box<dyn Fn(&Connection) -> rusqlite::Result<()> + Send>;

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

    /// Queues a write and waits until it is committed durably.
    pub async fn write<F>(&self, f: F) -> Result<(), CoordError>
    where
        F: Fn(&Connection) -> rusqlite::Result<()> + Send + 'static,
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
        F: Fn(&Connection) -> rusqlite::Result<()> + Send + 'static,
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
    pub fn reader(&self) -> Result<Connection, CoordError> {
        open_conn(&self.path)
    }

    /// Runs a read on a fresh connection in a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T, CoordError>
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
            "UPDATE attempts SET outcome = 'interrupted', ended_ms = ?1 WHERE outcome IS NULL",
            [now_ms()],
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
                        state: r.get(4)?,
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
                        state: r.get(1)?,
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
            let mut st =
                conn.prepare_cached("SELECT result_json FROM results WHERE task_key = ?1")?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(Some(j)) = st
                    .query_row([&k], |r| r.get::<_, Option<String>>(0))
                    .optional()?
                {
                    out.push((k, j));
                }
            }
            Ok(out)
        })
        .await
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
                (op.f)(&tx)?;
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
            match (op.f)(&sp) {
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
    /// `running`, `done`, `failed` or `cancelled`.
    pub state: String,
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
    /// `pending`, `done` or `gave_up`.
    pub state: String,
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

/// Inserts an experiment and its task rows (existing task rows are kept).
pub fn insert_experiment(tx: &Connection, e: &NewExperiment) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO experiments(id, seq, name, spec_hash, identity, spec_toml, plan_json, state, max_attempts, lease_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10)",
        params![e.id, e.seq, e.name, e.spec_hash, e.identity, e.spec_toml, e.plan_json, e.max_attempts, e.lease_ms as i64, now_ms()],
    )?;
    let mut st =
        tx.prepare_cached("INSERT OR IGNORE INTO tasks(key, state) VALUES (?1, 'pending')")?;
    for k in &e.task_keys {
        st.execute([k])?;
    }
    Ok(())
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
                    tx.execute(
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
                tx.execute("INSERT INTO workers(id, name, devices, slots, version, registered_ms) VALUES ('w1', 'w', 'cpu', 1, 'v', 0)", [])
                    .map(|_| ())
            })
            .await;
        assert!(dup.is_err());
        store.write_nowait(|tx| {
            tx.execute(
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
                insert_experiment(
                    tx,
                    &NewExperiment {
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
                tx.execute("INSERT INTO attempts(lease_id, task_key, worker_id, attempt, started_ms) VALUES ('l1', 'a', 'w', 1, 0)", [])?;
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
    }
}
