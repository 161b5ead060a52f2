//! Running a user method's command: an argv (no shell) in the task folder, in a process group of its own,
//! with the slot's device made visible and the thread count set, its progress lines read from stdout,
//! the tail of its stderr kept for the error, and its whole process group killed on a timeout or a
//! cancel and after it exits (so nothing it started lingers). A worker that dies takes the command with
//! it: the child asks the kernel for SIGKILL when its parent thread goes (`PR_SET_PDEATHSIG`).

use mer_shared::user_method::PROGRESS_PREFIX;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Lines of stderr kept for the error of a failed command.
pub const STDERR_TAIL_LINES: usize = 20;
/// How long a command gets after SIGTERM before its group gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How often the run is checked for exit, cancel and timeout.
const POLL: Duration = Duration::from_millis(50);

/// One progress line's fields (`MER-PROGRESS {json}`), all optional.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ProgressLine {
    /// Stage name (default `target`).
    pub stage: Option<String>,
    /// 0-based epoch.
    pub epoch: Option<u32>,
    /// Epochs of the stage.
    pub epochs: Option<u32>,
    /// Training loss.
    pub loss: Option<f64>,
    /// Throughput.
    pub samples_per_s: Option<f64>,
}

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// The command exited by itself.
    Exited(ExitStatus),
    /// It ran past its time and was killed.
    TimedOut,
    /// The cancel flag was raised and it was killed.
    Cancelled,
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct CommandSpec<'a> {
    /// The argv.
    pub argv: &'a [String],
    /// The working folder (the task folder).
    pub dir: &'a Path,
    /// Environment variables set on top of the worker's.
    pub env: Vec<(String, String)>,
    /// Time limit.
    pub timeout: Duration,
    /// Where the command's stdout and stderr are copied (`stdout.log`, `stderr.log`), outside the task
    /// folder.
    pub log_dir: &'a Path,
}

/// A finished run: how it ended and the last lines of its stderr.
#[derive(Debug)]
pub struct RunOutcome {
    /// How it ended.
    pub ended: Ended,
    /// The last [`STDERR_TAIL_LINES`] lines of stderr.
    pub stderr_tail: String,
    /// Wall time.
    pub seconds: f64,
}

/// The environment of a command in task folder `dir`: `PYTHONPATH` starts with the folder (so
/// `import mer_fold` works from a script anywhere in it), `CUDA_VISIBLE_DEVICES` lists the slot's GPUs
/// (empty for a CPU slot, so a command asking for `cuda` finds none), and the thread count, when set,
/// goes to the usual thread-pool variables.
pub fn command_env(dir: &Path, device: &str, threads: Option<usize>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut pythonpath = dir.display().to_string();
    if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        pythonpath = format!("{pythonpath}:{}", old.to_string_lossy());
    }
    env.push(("PYTHONPATH".into(), pythonpath));
    let gpus: Vec<&str> = device
        .split(',')
        .map(str::trim)
        .filter_map(|d| d.strip_prefix("cuda:"))
        .collect();
    let any_cuda = device.split(',').any(|d| d.trim().starts_with("cuda"));
    if !gpus.is_empty() {
        env.push(("CUDA_VISIBLE_DEVICES".into(), gpus.join(",")));
    } else if !any_cuda {
        env.push(("CUDA_VISIBLE_DEVICES".into(), String::new()));
    }
    if let Some(n) = threads {
        for k in [
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "NUMEXPR_NUM_THREADS",
        ] {
            env.push((k.into(), n.to_string()));
        }
    }
    env
}

/// Sends `sig` to every process of group `pgid` (no error when the group is gone).
fn kill_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH, which is ignored.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// Stops the command: SIGTERM to its group, SIGKILL after the grace, then reaps it.
fn stop(child: &mut Child) -> std::io::Result<()> {
    let pgid = child.id();
    kill_group(pgid, libc::SIGTERM);
    let until = Instant::now() + TERM_GRACE;
    while Instant::now() < until {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(POLL);
    }
    kill_group(pgid, libc::SIGKILL);
    child.wait().map(|_| ())
}

/// What the reader threads send.
enum Line {
    Progress(ProgressLine),
    Stderr(String),
    Done,
}

/// Copies a stream to `log` line by line, sending progress lines (stdout) or every line (stderr) on `tx`.
fn spawn_reader(
    stream: impl std::io::Read + Send + 'static,
    log: PathBuf,
    is_stdout: bool,
    tx: mpsc::Sender<Line>,
) {
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&log).ok();
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(&buf);
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            let msg = if is_stdout {
                match line.strip_prefix(PROGRESS_PREFIX) {
                    Some(json) => match serde_json::from_str::<ProgressLine>(json.trim()) {
                        Ok(p) => Line::Progress(p),
                        Err(e) => Line::Stderr(format!("(mer: unreadable progress line: {e})")),
                    },
                    None => continue,
                }
            } else {
                Line::Stderr(line.to_string())
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
        let _ = tx.send(Line::Done);
    });
}

/// Whether a process with this pid exists and is not a zombie (Linux `/proc`): how a supervisor, or a test,
/// sees that a killed process or group is really gone. A zombie counts as gone: it runs nothing more and
/// only waits for its parent to reap it.
pub fn is_running(pid: u32) -> bool {
    // /proc/<pid>/stat is "pid (comm) state ppid ..."; comm may hold spaces or ')', so split after the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Runs the command to its end, its time limit or `cancel`, calling `on_progress` for each progress line
/// (on this thread). An error means it could not be started.
pub fn run_command(
    spec: &CommandSpec<'_>,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(&ProgressLine),
) -> std::io::Result<RunOutcome> {
    let started = Instant::now();
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    // A relative program path with a folder in it (`./run.sh`, `bin/train`) means the task folder's.
    let program = if program.contains('/') && !program.starts_with('/') {
        spec.dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .current_dir(spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display()))
    })?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, spec.log_dir.join("stdout.log"), true, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, spec.log_dir.join("stderr.log"), false, tx.clone());
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut handle = |line: Line, tail: &mut VecDeque<String>| match line {
        Line::Progress(p) => on_progress(&p),
        Line::Stderr(s) => {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(s);
        }
        Line::Done => {}
    };
    let deadline = started + spec.timeout;
    let ended = loop {
        while let Ok(line) = rx.try_recv() {
            handle(line, &mut tail);
        }
        if let Some(status) = child.try_wait()? {
            break Ended::Exited(status);
        }
        if cancel.load(Ordering::Relaxed) {
            stop(&mut child)?;
            break Ended::Cancelled;
        }
        if Instant::now() >= deadline {
            stop(&mut child)?;
            break Ended::TimedOut;
        }
        std::thread::sleep(POLL);
    };
    // Whatever the command left running in its group goes with it.
    kill_group(child.id(), libc::SIGKILL);
    // Drain the readers: both end once every writer of the pipes is gone (a process that left the group
    // could keep one open, so the wait is bounded).
    let mut done = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while done < 2 {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Line::Done) => done += 1,
            Ok(line) => handle(line, &mut tail),
            Err(_) => break,
        }
    }
    Ok(RunOutcome {
        ended,
        stderr_tail: Vec::from(tail).join("\n"),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, dir: &Path, timeout: Duration, cancel: &AtomicBool) -> RunOutcome {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let spec = CommandSpec {
            argv: &argv,
            dir,
            env: vec![("MER_TEST_VAR".into(), "x".into())],
            timeout,
            log_dir: dir,
        };
        run_command(&spec, cancel, &mut |_| {}).unwrap()
    }

    #[test]
    fn progress_lines_are_parsed_and_stderr_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo 'MER-PROGRESS {\"epoch\": 2, \"loss\": 0.5}'; echo hello; echo oops >&2; echo \"$MER_TEST_VAR\" >&2; exit 3".to_string(),
        ];
        let spec = CommandSpec {
            argv: &argv,
            dir: dir.path(),
            env: vec![("MER_TEST_VAR".into(), "from-env".into())],
            timeout: Duration::from_secs(30),
            log_dir: dir.path(),
        };
        let mut seen = Vec::new();
        let out = run_command(&spec, &AtomicBool::new(false), &mut |p| {
            seen.push(p.clone())
        })
        .unwrap();
        assert!(matches!(out.ended, Ended::Exited(s) if s.code() == Some(3)));
        assert_eq!(out.stderr_tail, "oops\nfrom-env");
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].epoch, seen[0].loss), (Some(2), Some(0.5)));
        let log = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
        assert!(log.contains("hello"));
    }

    #[test]
    fn the_env_finds_the_helper_and_hides_or_names_gpus() {
        let get = |env: &[(String, String)], k: &str| {
            env.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone())
        };
        let e = command_env(Path::new("/t"), "cpu", Some(3));
        assert!(get(&e, "PYTHONPATH").unwrap().starts_with("/t"));
        assert_eq!(get(&e, "CUDA_VISIBLE_DEVICES").as_deref(), Some(""));
        assert_eq!(get(&e, "OMP_NUM_THREADS").as_deref(), Some("3"));
        let e = command_env(Path::new("/t"), "cuda:2", None);
        assert_eq!(get(&e, "CUDA_VISIBLE_DEVICES").as_deref(), Some("2"));
        assert_eq!(get(&e, "OMP_NUM_THREADS"), None);
        assert_eq!(
            get(
                &command_env(Path::new("/t"), "cuda:0,cuda:1", None),
                "CUDA_VISIBLE_DEVICES"
            )
            .as_deref(),
            Some("0,1")
        );
        assert_eq!(
            get(
                &command_env(Path::new("/t"), "cuda", None),
                "CUDA_VISIBLE_DEVICES"
            ),
            None
        );
    }

    /// Whether the process is gone within a few seconds. A SIGKILL takes effect when the process next
    /// runs, and its pipes close before the kernel marks it dead, so on a busy machine a process can
    /// still show as running for a moment after the run returned.
    fn gone_soon(pid: u32) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while is_running(pid) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// A live process is running; one that has exited is not, whether a zombie not yet reaped or reaped
    /// and gone; a pid that names nothing is not.
    #[test]
    fn is_running_tells_live_from_exited_and_zombie() {
        assert!(is_running(std::process::id()));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(is_running(sleeper.id()));
        sleeper.kill().unwrap();
        let zombie = std::process::Command::new("true").spawn().unwrap();
        let zpid = zombie.id();
        // Not waited for: once it exits it stays a zombie until reaped.
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{zpid}/stat"))
            .is_ok_and(|s| !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
        {
            assert!(Instant::now() < until, "`true` did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_running(zpid), "a zombie is not running");
        let pid = sleeper.id();
        sleeper.wait().unwrap();
        assert!(!is_running(pid), "a reaped process is gone");
        drop(zombie);
        assert!(!is_running(u32::MAX));
    }

    /// A command that sleeps past its timeout, with a grandchild in the background: both are gone when
    /// the run returns.
    #[test]
    fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 300 & echo $! > {p}; echo $$ >> {p}; sleep 300",
            p = pids.display()
        );
        let t0 = Instant::now();
        let out = sh(
            &script,
            dir.path(),
            Duration::from_millis(700),
            &AtomicBool::new(false),
        );
        assert!(matches!(out.ended, Ended::TimedOut), "{:?}", out.ended);
        assert!(t0.elapsed() < Duration::from_secs(20));
        let text = std::fs::read_to_string(&pids).unwrap();
        let pids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(pids.len(), 2);
        for p in pids {
            assert!(gone_soon(p), "process {p} is still running");
        }
    }

    /// Cancelling a running command, and a command that exits leaving a background process: nothing
    /// stays behind either way.
    #[test]
    fn a_cancel_and_a_normal_exit_leave_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let cancel = AtomicBool::new(false);
        let script = format!(
            "sleep 300 & echo $! > {p}; echo $$ >> {p}; sleep 300",
            p = pids.display()
        );
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                while !pids.exists() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(100));
                cancel.store(true, Ordering::Relaxed);
            });
            sh(&script, dir.path(), Duration::from_secs(120), &cancel)
        });
        assert!(matches!(out.ended, Ended::Cancelled), "{:?}", out.ended);
        for p in std::fs::read_to_string(&pids).unwrap().lines() {
            assert!(
                gone_soon(p.trim().parse().unwrap()),
                "process {p} survived the cancel"
            );
        }
        let bg = dir.path().join("bg");
        let script = format!("sleep 300 & echo $! > {}; exit 0", bg.display());
        let out = sh(
            &script,
            dir.path(),
            Duration::from_secs(60),
            &AtomicBool::new(false),
        );
        assert!(matches!(out.ended, Ended::Exited(s) if s.success()));
        let p: u32 = std::fs::read_to_string(&bg)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            gone_soon(p),
            "the background process {p} outlived its command"
        );
    }
}
