//! `proxbox-host serve` as a process: built-in mappers embedded, `/health`, the database
//! from `PROXBOX_DATABASE_PATH`, JSON logs, graceful shutdown on SIGTERM, and a restart
//! that keeps the registered key.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEY: &str = "serve-test-key-0123456789-abcdefghijklmnop";

struct Server {
    child: Child,
    port: u16,
    logs: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn request(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let key_header = key.map_or(String::new(), |k| format!("X-Proxbox-API-Key: {k}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{key_header}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn start(db: &Path, cache: &Path, json_logs: bool) -> Server {
    let port = free_port();
    let mut command = Command::new(common::host_binary());
    command
        .args(["serve", "--port", &port.to_string()])
        .env("PROXBOX_DATABASE_PATH", db)
        .env("PROXBOX_MAPPER_CACHE_DIR", cache)
        .env_remove("PROXBOX_ENCRYPTION_KEY")
        .env_remove("PROXBOX_ENCRYPTION_KEY_FILE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if json_logs {
        command.env("PROXBOX_LOG_FORMAT", "json");
    }
    let mut child = command.spawn().expect("start serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, logs) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server { child, port, logs };
    // Wait for the listener: poll readiness, bounded, failing fast if the process exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().expect("poll child") {
            panic!("serve exited early with {status}");
        }
        match request(port, "GET", "/health", None, "") {
            Ok(response) if response.starts_with("HTTP/1.1 200") => break,
            _ if Instant::now() < deadline => std::thread::park_timeout(Duration::from_millis(50)),
            other => panic!("serve never answered: {other:?}"),
        }
    }
    server.port = port;
    server
}

/// SIGTERM, then wait (bounded) for a clean exit.
fn terminate(mut server: Server) -> Vec<String> {
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("poll") {
            break exit;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::park_timeout(Duration::from_millis(20));
    };
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
    let mut lines = Vec::new();
    while let Ok(line) = server.logs.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    lines
}

#[test]
fn serve_runs_with_builtin_mappers_and_its_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state").join("proxbox.db");
    std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
    let cache = dir.path().join("cache");

    let server = start(&db, &cache, false);
    let health = request(server.port, "GET", "/health", None, "").expect("health");
    assert!(health.contains("\"status\":\"ready\""), "{health}");
    let root = request(server.port, "GET", "/", None, "").expect("GET /");
    for kind in [
        "device",
        "virtual-machine",
        "virtual-disk",
        "storage",
        "backup",
        "snapshot",
    ] {
        assert!(
            root.contains(&format!("\"{kind}\":\"builtin:")),
            "{kind} missing in {root}"
        );
    }
    let registered = request(
        server.port,
        "POST",
        "/auth/register-key",
        None,
        &format!(r#"{{"api_key":"{KEY}"}}"#),
    )
    .expect("register");
    assert!(registered.starts_with("HTTP/1.1 201"), "{registered}");
    let logs = terminate(server);
    assert!(
        logs.iter().any(|l| l.contains("stopped")),
        "graceful shutdown logged: {logs:?}"
    );
    assert!(db.exists(), "database at PROXBOX_DATABASE_PATH");
    assert!(
        dir.path().join("state").join("proxbox.db.key").exists(),
        "generated key file next to the database"
    );

    // Restart with JSON logs: the key registered before still works.
    let server = start(&db, &cache, true);
    let keys = request(server.port, "GET", "/auth/keys", Some(KEY), "").expect("keys");
    assert!(keys.starts_with("HTTP/1.1 200"), "{keys}");
    let refused = request(server.port, "GET", "/auth/keys", Some("nope"), "").expect("keys");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let logs = terminate(server);
    let request_line = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request" && v["path"] == "/auth/keys")
        .unwrap_or_else(|| panic!("a JSON request log line: {logs:?}"));
    assert_eq!(request_line["method"], "GET");
    assert!(request_line["level"].is_string());
    assert!(
        logs.iter().all(|l| !l.contains(KEY)),
        "the key is never logged"
    );
}
