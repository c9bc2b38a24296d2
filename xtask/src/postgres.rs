//! A PostgreSQL for the store's tests: the one in `DATABASE_URL`, else a server on
//! 127.0.0.1:5432, else a throwaway cluster started here (initdb + pg_ctl on a free port,
//! removed afterwards), else an error that says how to get one. Each test creates and drops
//! its own database, so a shared server is left as it was.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A PostgreSQL to test against; a cluster started here stops when this is dropped.
#[derive(Debug)]
pub(crate) struct Postgres {
    /// The URL of a database the tests may create databases from.
    pub(crate) url: String,
    cluster: Option<Cluster>,
}

#[derive(Debug)]
struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    user: Option<String>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            let mut stop = as_user(cluster.user.as_deref(), &cluster.pg_ctl);
            stop.args(["stop", "-m", "fast", "-w", "-D"]).arg(&cluster.data);
            let _ = stop.status();
            let _ = std::fs::remove_dir_all(&cluster.data);
        }
    }
}

const INSTALL: &str = "PostgreSQL is needed by the store's tests and none was found: set DATABASE_URL \
     (postgres://user@host/db), run a server on 127.0.0.1:5432 with trust auth for `postgres`, or install \
     PostgreSQL so that initdb and pg_ctl are on PATH (Debian/Ubuntu: apt-get install postgresql; \
     macOS: brew install postgresql) and cargo xtask starts a throwaway one";

/// `cargo xtask postgres [--throwaway]`: says which PostgreSQL the tests would use; with
/// `--throwaway`, starts a throwaway cluster whatever else there is, checks that it answers,
/// and removes it.
pub(crate) fn command(root: &Path, args: &[String]) -> Result<(), String> {
    let postgres = if args.iter().any(|a| a == "--throwaway") {
        start_cluster(root, &find_bin().ok_or_else(|| INSTALL.to_owned())?)?
    } else {
        ensure(root)?
    };
    let port = postgres.url.rsplit(':').next().and_then(|rest| rest.split('/').next()).unwrap_or("5432");
    let ready = port.parse().is_ok_and(|port| answers(SocketAddr::from(([127, 0, 0, 1], port))));
    println!("postgres: {} ({})", postgres.url, if ready { "answers" } else { "does not answer" });
    if ready { Ok(()) } else { Err(format!("{} does not answer", postgres.url)) }
}

/// A throwaway cluster whatever else there is: one the fleet matrix may restart.
pub(crate) fn throwaway(root: &Path) -> Result<Postgres, String> {
    start_cluster(root, &find_bin().ok_or_else(|| INSTALL.to_owned())?)
}

impl Postgres {
    /// A shell command that restarts this cluster (fast shutdown, waits until it is up), if
    /// it is one started here.
    pub(crate) fn restart_command(&self) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        let prefix = cluster.user.as_ref().map(|user| format!("runuser -u {user} -- ")).unwrap_or_default();
        Some(format!(
            "{prefix}{} restart -m fast -w -t 60 -D {} -l {}",
            cluster.pg_ctl.display(),
            cluster.data.display(),
            cluster.data.join("server.log").display()
        ))
    }
}

/// Finds or starts a PostgreSQL.
pub(crate) fn ensure(root: &Path) -> Result<Postgres, String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        println!("postgres: DATABASE_URL");
        return Ok(Postgres { url, cluster: None });
    }
    if answers(SocketAddr::from(([127, 0, 0, 1], 5432))) {
        println!("postgres: the server on 127.0.0.1:5432");
        return Ok(Postgres { url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(), cluster: None });
    }
    let bin = find_bin().ok_or_else(|| INSTALL.to_owned())?;
    start_cluster(root, &bin)
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The directory holding initdb and pg_ctl: PATH first, then the Debian layout.
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// Runs `program` as `user` (initdb and postgres refuse to run as root).
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn start_cluster(root: &Path, bin: &Path) -> Result<Postgres, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for PostgreSQL: {e}"))?
        .port();
    let user = if is_root() { Some("postgres".to_owned()) } else { None };
    // Under root the cluster belongs to `postgres`, which must be able to reach it.
    let data = if user.is_some() {
        std::env::temp_dir().join(format!("handover-xtask-pg-{}", std::process::id()))
    } else {
        root.join(format!("target/xtask-pg-{}", std::process::id()))
    };
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    if let Some(user) = &user {
        let status = Command::new("chown").arg(user).arg(&data).status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(format!("running as root, the cluster must belong to `{user}`, and chown failed; {INSTALL}"));
        }
    }
    println!("postgres: starting a throwaway cluster in {} on port {port}", data.display());
    let cluster = Cluster { pg_ctl: bin.join("pg_ctl"), data: data.clone(), user: user.clone() };
    let mut initdb = as_user(user.as_deref(), &bin.join("initdb"));
    initdb.args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "-D"]).arg(&data);
    let output = initdb.output().map_err(|e| format!("could not run initdb: {e}; {INSTALL}"))?;
    if !output.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let postgres = Postgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), cluster: Some(cluster) };
    let mut start = as_user(user.as_deref(), &bin.join("pg_ctl"));
    start.args(["start", "-w", "-t", "60", "-D"]).arg(&data).arg("-l").arg(data.join("server.log")).arg("-o").arg(
        format!("-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=300", data.display()),
    );
    let status = start.status().map_err(|e| format!("could not run pg_ctl: {e}"))?;
    if !status.success() {
        let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
        return Err(format!("pg_ctl start failed:\n{log}"));
    }
    Ok(postgres)
}
