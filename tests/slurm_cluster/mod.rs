//! A real one-node Slurm for tests: `munged`, `slurmctld -D` and `slurmd -D` from Debian's `munge` and
//! `slurm-wlm` (scripts/bootstrap.sh installs them), configured in a temporary folder so that it never
//! meets a Slurm or munge already on the machine: its own munge key and socket (`munged --key-file
//! --socket`, `AuthInfo=socket=` in slurm.conf), free ports for slurmctld and slurmd, state and spool
//! folders in the temporary folder. The daemons run as root without systemd (`proctrack/linuxproc`,
//! `task/none`, `IgnoreSystemd=yes`) and are stopped by their process ids when the harness drops, pass
//! or fail. Commands reach this cluster through `SLURM_CONF` ([`SlurmCluster::env`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The programs the harness needs.
const PROGRAMS: &[&str] = &[
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "scontrol",
    "scancel",
    "squeue",
    "sinfo",
];

/// A running one-node cluster; dropping it stops the daemons.
pub struct SlurmCluster {
    /// The temporary folder holding everything (removed on drop).
    pub dir: tempfile::TempDir,
    /// Its slurm.conf.
    pub conf: PathBuf,
    children: Vec<(String, Child)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

impl SlurmCluster {
    /// Why this machine cannot run the cluster (not root, a program missing), if it cannot.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not running as root (slurmd needs root)".into());
        }
        let missing: Vec<&str> = PROGRAMS
            .iter()
            .copied()
            .filter(|p| find(p).is_none())
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "{} not installed (scripts/bootstrap.sh installs slurm-wlm and munge)",
                missing.join(", ")
            )
        })
    }

    /// Starts munged, slurmctld and slurmd with `cpus` CPUs on the node and waits until the node is idle.
    pub fn start(cpus: u32) -> Result<SlurmCluster, String> {
        if let Some(why) = Self::unavailable() {
            return Err(why);
        }
        let dir = tempfile::Builder::new()
            .prefix("mer-slurm-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path().to_path_buf();
        let mut me = SlurmCluster {
            conf: d.join("slurm.conf"),
            dir,
            children: Vec::new(),
        };
        for sub in ["state", "spool", "log", "munge", "key"] {
            std::fs::create_dir_all(d.join(sub)).map_err(|e| e.to_string())?;
        }
        set_mode(&d.join("key"), 0o700)?;
        set_mode(&d.join("munge"), 0o755)?;
        let key = d.join("key/munge.key");
        let mut bytes = vec![0u8; 1024];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?,
            &mut bytes,
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(&key, bytes).map_err(|e| e.to_string())?;
        set_mode(&key, 0o400)?;
        let sock = d.join("munge/sock");
        me.spawn(
            "munged",
            Command::new(find("munged").unwrap_or_default())
                .arg("--foreground")
                .arg("--force")
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--socket={}", sock.display()))
                .arg(format!("--pid-file={}", d.join("munge/pid").display()))
                .arg(format!("--seed-file={}", d.join("munge/seed").display()))
                .arg(format!("--log-file={}", d.join("log/munged.log").display())),
        )?;
        wait_until("the munge socket", Duration::from_secs(20), || {
            sock.exists()
        })?;
        let host = hostname();
        let (cport, dport) = (free_port(), free_port());
        let conf = format!(
            "ClusterName=mertest\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={cport}\n\
             SlurmdPort={dport}\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={sock}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             SchedulerType=sched/backfill\n\
             SlurmdParameters=config_overrides\n\
             ReturnToService=2\n\
             MinJobAge=600\n\
             KillWait=10\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            sock = sock.display(),
            d = d.display(),
        );
        std::fs::write(&me.conf, conf).map_err(|e| e.to_string())?;
        std::fs::write(d.join("cgroup.conf"), "IgnoreSystemd=yes\n").map_err(|e| e.to_string())?;
        let conf_path = me.conf.clone();
        me.spawn(
            "slurmctld",
            Command::new(find("slurmctld").unwrap_or_default())
                .arg("-D")
                .arg("-f")
                .arg(&conf_path),
        )?;
        me.spawn(
            "slurmd",
            Command::new(find("slurmd").unwrap_or_default())
                .arg("-D")
                .arg("-f")
                .arg(&conf_path)
                .arg("-N")
                .arg(&host),
        )?;
        let ready = wait_until("the node to be idle", Duration::from_secs(60), || {
            me.run("sinfo", &["-h", "-o", "%T"])
                .is_ok_and(|o| o.trim() == "idle")
        });
        if let Err(e) = ready {
            return Err(format!("{e}; logs in {}:\n{}", d.display(), me.logs()));
        }
        Ok(me)
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join(format!("log/{name}.out")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// The environment a Slurm command needs to reach this cluster.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SLURM_CONF", &self.conf)
    }

    /// Runs a Slurm client command against this cluster; stdout, or the error with stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `(job id, state)` of every job or element named `name` that squeue still lists (any state but
    /// finished ones).
    pub fn queued(&self, name: &str) -> Vec<(String, String)> {
        self.run("squeue", &["-h", "-r", "-n", name, "-o", "%i %T"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect()
    }

    /// The tails of the daemons' logs (for a failure message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in [
            "slurmctld.out",
            "slurmd.out",
            "munged.out",
            "slurmctld.log",
            "slurmd.log",
        ] {
            let p = self.dir.path().join("log").join(f);
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out += &format!("--- {f}\n");
            for l in tail.into_iter().rev() {
                out += l;
                out += "\n";
            }
        }
        out
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // Jobs first (their workers would otherwise outlive the daemons), then the daemons by pid.
        let _ = self.run("scancel", &["--user=root"]);
        for (_, c) in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        let t0 = Instant::now();
        for (_, c) in self.children.iter_mut().rev() {
            while c.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn hostname() -> String {
    Command::new("hostname")
        .arg("-s")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Polls `f` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), String> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
