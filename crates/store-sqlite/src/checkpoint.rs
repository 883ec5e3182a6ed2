//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs
//! inside the commit that crosses 1,000 WAL frames, on the writer thread: it
//! copies those pages into the database file and fsyncs both files while
//! every queued write waits (measured under the intake benchmark: writer
//! batches of 5-25 ms several times a second, against 50 us otherwise).
//! Instead the writer's connection only notes its WAL size after each
//! commit ([`watch_wal`]), and a [`Checkpointer`] thread with its own
//! connection runs PASSIVE checkpoints, which never take the write lock, so
//! commits go on meanwhile.
//!
//! Durability is unchanged: a commit is in the WAL before it is answered,
//! whoever copies it into the database file later, and the checkpoints
//! sync as SQLite's own do. A WAL starts over from its beginning only once
//! all of it is in the database file; under sustained writes a checkpoint
//! running beside the writer never quite catches up, so once the WAL holds
//! [`Thresholds::writer`] frames the checkpointer runs after every commit,
//! and as soon as it has left at most [`Thresholds::tail`] frames to copy,
//! the writer copies those itself (after answering its batch), and the WAL
//! starts over. That bounds the WAL's size, and costs the writer one short
//! checkpoint once per that many frames instead of a long one per thousand.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};
use store::StoreError;

use crate::error::sql_error;
use crate::schema::BUSY_TIMEOUT;

/// When checkpoints run, in WAL frames (one page, 4 KiB, each).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Frames not yet in the database file that wake the checkpointer:
    /// SQLite's own autocheckpoint threshold.
    pub background: i32,
    /// Frames in the WAL from which the writer checkpoints itself, so that
    /// the WAL can start over (64,000 frames: 250 MiB). Reached only under
    /// sustained writes; the larger, the rarer the writer's pause.
    pub writer: i32,
    /// Frames the checkpointer may leave for the writer to copy: the
    /// writer's pause. Past `writer` by a quarter, the writer copies
    /// whatever is left.
    pub tail: i32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            background: 1_000,
            writer: 64_000,
            tail: 256,
        }
    }
}

thread_local! {
    /// The WAL's frame count after this thread's last commit (the hook gets
    /// no context of its own, and runs on the committing thread).
    static WAL_FRAMES: Cell<i32> = const { Cell::new(0) };
}

/// Makes the connection note its WAL size after each commit (see
/// [`wal_frames`]); this replaces SQLite's autocheckpoint on it.
pub(crate) fn watch_wal(conn: &Connection) {
    conn.wal_hook(Some(note_wal_frames));
}

fn note_wal_frames(_wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// The WAL's frame count after the calling thread's last commit on a
/// connection [`watch_wal`] set up.
pub(crate) fn wal_frames() -> i32 {
    WAL_FRAMES.get()
}

/// The checkpointing thread. Dropping it lets the thread finish the
/// checkpoint it may be running and waits for it, so that its connection is
/// closed before the writer's.
pub(crate) struct Checkpointer {
    thresholds: Thresholds,
    wake: Option<SyncSender<()>>,
    wal: Arc<WalFrames>,
    /// Held while checkpointing, by the thread or by the writer: the thread
    /// waits for the writer's checkpoint to end, the writer never waits.
    turn: Arc<Mutex<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer and the checkpointer know of the WAL.
#[derive(Debug, Default)]
struct WalFrames {
    /// Frames in the WAL after the writer's last commit.
    written: AtomicI32,
    /// Frames in the WAL at the last checkpoint, all of them copied.
    checkpointed: AtomicI32,
}

impl WalFrames {
    /// Frames in the WAL that are not in the database file, as far as known.
    fn pending(&self) -> i32 {
        let written = self.written.load(Ordering::Relaxed);
        let checkpointed = self.checkpointed.load(Ordering::Relaxed);
        // Fewer frames than were checkpointed: the WAL has started over.
        if written >= checkpointed {
            written - checkpointed
        } else {
            written
        }
    }
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        Self::with_thresholds(path, Thresholds::default())
    }

    pub(crate) fn with_thresholds(path: &Path, thresholds: Thresholds) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error("open database for checkpoints", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql_error("set busy timeout", e))?;
        // One pending wake-up is enough: the checkpoint it causes copies
        // whatever is in the WAL by then.
        let (wake, woken) = mpsc::sync_channel(1);
        let wal = Arc::new(WalFrames::default());
        let turn = Arc::new(Mutex::new(()));
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn({
                let wal = Arc::clone(&wal);
                let turn = Arc::clone(&turn);
                move || run(&conn, &woken, &wal, &turn, thresholds)
            })
            .map_err(|e| StoreError::Unavailable(format!("start the SQLite checkpoint thread: {e}")))?;
        Ok(Self {
            thresholds,
            wake: Some(wake),
            wal,
            turn,
            thread: Some(thread),
        })
    }

    /// Called by the writer, on its connection, after a commit that left
    /// `frames` in the WAL: wakes the thread once enough of them are not
    /// checkpointed yet, or checkpoints right here once the WAL is at its
    /// bound and little is left to copy.
    pub(crate) fn committed(&self, writer: &Connection, frames: i32) {
        self.wal.written.store(frames, Ordering::Relaxed);
        let pending = self.wal.pending();
        let thresholds = self.thresholds;
        let hard_bound = thresholds.writer.saturating_add(thresholds.writer / 4);
        if frames >= thresholds.writer && (pending <= thresholds.tail || frames >= hard_bound) {
            // Not while the thread checkpoints (waiting for it would pause
            // every write): the next commit tries again. Past the hard
            // bound, though, the writer waits its turn: a thread that keeps
            // the turn (a fast disk, a busy writer) would otherwise let the
            // WAL grow without end.
            let _turn = if frames >= hard_bound {
                self.turn.lock().unwrap_or_else(PoisonError::into_inner)
            } else {
                match self.turn.try_lock() {
                    Ok(turn) => turn,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) => return,
                }
            };
            match checkpoint(writer) {
                Ok((_, copied)) => self.wal.checkpointed.store(copied, Ordering::Relaxed),
                // Another process is at it; the next commit tries again.
                Err(err) if is_busy(&err) => {}
                Err(err) => tracing::warn!(error = %err, "checkpointing the SQLite WAL on the writer"),
            }
        } else if (pending >= thresholds.background || (frames >= thresholds.writer && pending > 0))
            && let Some(wake) = &self.wake
            && let Err(TrySendError::Disconnected(())) = wake.try_send(())
        {
            tracing::error!("the SQLite checkpoint thread has stopped");
        }
    }

    #[cfg(test)]
    fn checkpointed(&self) -> i32 {
        self.wal.checkpointed.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite checkpoint thread panicked");
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, wal: &WalFrames, turn: &Mutex<()>, thresholds: Thresholds) {
    while woken.recv().is_ok() {
        // A wake-up sent while the last checkpoint ran may find it done; at
        // the WAL's bound, every frame counts.
        let pending = wal.pending();
        let at_bound = wal.written.load(Ordering::Relaxed) >= thresholds.writer;
        if pending < thresholds.background && !(at_bound && pending > 0) {
            continue;
        }
        let _turn = turn.lock().unwrap_or_else(PoisonError::into_inner);
        match checkpoint(conn) {
            Ok((_, copied)) => wal.checkpointed.store(copied, Ordering::Relaxed),
            // Another connection (the writer at the WAL's bound, another
            // process) is checkpointing: the next wake-up tries again.
            Err(err) if is_busy(&err) => {}
            Err(err) => tracing::warn!(error = %err, "checkpointing the SQLite WAL"),
        }
    }
}

/// One PASSIVE checkpoint: copies what it can without waiting for anyone;
/// returns the WAL's frames and how many of them are in the database file.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i32, i32)> {
    let (busy, frames, copied): (i32, i32, i32) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if busy != 0 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
    }
    Ok((frames, copied))
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(failure, _)
        if matches!(failure.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    use super::*;
    use crate::writer::{self, Request, Row, Write};

    fn create(i: usize) -> Write {
        Write::Create(Row {
            id: format!("job-{i:05}"),
            tenant: "acme".to_owned(),
            status: "pending",
            created_at: 0,
            body: format!("{{\"id\":\"job-{i:05}\",\"pad\":\"{}\"}}", "x".repeat(500)),
            due_at: Some(1),
            expires_at: None,
        })
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .and_then(|conn| conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)))
            .expect("count")
    }

    #[test]
    fn the_checkpointer_copies_commits_into_the_database_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.db");
        let conn = crate::schema::open_writer(&path).expect("open");
        watch_wal(&conn);
        let checkpointer = Checkpointer::with_thresholds(
            &path,
            Thresholds {
                background: 20,
                writer: i32::MAX,
                tail: 0,
            },
        )
        .expect("checkpointer");
        let mut written = 0;
        while wal_frames() < 40 {
            let outcomes = writer::commit_batch(&conn, [create(written)].iter());
            assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
            written += 1;
            checkpointer.committed(&conn, wal_frames());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpointer.checkpointed() == 0 {
            assert!(Instant::now() < deadline, "no checkpoint within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(checkpointer);
        // The database file alone, as if the WAL were lost: what was
        // checkpointed is in it.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).expect("copy the database file");
        assert!(count(&copy) > 0, "nothing was copied into the database file");
        drop(conn);
        assert_eq!(count(&path), written as i64, "every commit is kept");
    }

    /// Writes 400 jobs one batch each (about five WAL frames a batch, 2,000
    /// in all) through the writer thread; returns the WAL's size after them
    /// and the jobs in the file after the store closed.
    fn write_one_by_one(thresholds: Thresholds) -> (u64, i64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.db");
        let conn = crate::schema::open_writer(&path).expect("open");
        let checkpointer = Checkpointer::with_thresholds(&path, thresholds).expect("checkpointer");
        let (sender, receiver) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || writer::run(conn, receiver, checkpointer));
        for i in 0..400 {
            let (reply, outcome) = oneshot::channel();
            sender
                .send(Request {
                    write: create(i),
                    reply,
                })
                .expect("queued");
            assert!(matches!(outcome.blocking_recv(), Ok(Ok(_))));
        }
        let wal = std::fs::metadata(dir.path().join("w.db-wal"))
            .expect("the WAL")
            .len();
        drop(sender);
        writer.join().expect("writer");
        (wal, count(&path))
    }

    /// Twice a bound of 100 frames (4 KiB pages, 24-byte headers); without
    /// one, the WAL would hold 2,000.
    const TWICE_100_FRAMES: u64 = 200 * (4096 + 24);

    #[test]
    fn the_writer_alone_keeps_the_wal_within_its_bound_and_nothing_is_lost() {
        let (wal, jobs) = write_one_by_one(Thresholds {
            // The checkpointer runs only once the WAL is at its bound, and
            // the writer does not wait for it.
            background: i32::MAX,
            writer: 100,
            tail: i32::MAX,
        });
        assert!(wal < TWICE_100_FRAMES, "the WAL grew to {wal} bytes");
        assert_eq!(jobs, 400);
    }

    #[test]
    fn at_its_bound_the_checkpointer_catches_the_wal_up_and_nothing_is_lost() {
        let (wal, jobs) = write_one_by_one(Thresholds {
            background: i32::MAX,
            writer: 100,
            // The writer copies nothing itself unless the WAL passes 125
            // frames.
            tail: 0,
        });
        assert!(wal < TWICE_100_FRAMES, "the WAL grew to {wal} bytes");
        assert_eq!(jobs, 400);
    }
}
