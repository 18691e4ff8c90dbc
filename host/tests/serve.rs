//! `proxbox-host serve` starts with the built-in mappers embedded and answers `/health`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn serve_answers_health_with_builtin_mappers() {
    let port = free_port();
    let cache = tempfile::tempdir().expect("tempdir");
    let mut server = Server(
        Command::new(common::host_binary())
            .args(["serve", "--port", &port.to_string()])
            .env("PROXBOX_MAPPER_CACHE_DIR", cache.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start serve"),
    );
    // Wait for the listener: poll readiness, bounded, failing fast if the process exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        if let Some(status) = server.0.try_wait().expect("poll child") {
            panic!("serve exited early with {status}");
        }
        match get(port, "/health") {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => {
                std::thread::park_timeout(Duration::from_millis(50))
            }
            Err(e) => panic!("serve never answered: {e}"),
        }
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ready\""), "{health}");

    let root = get(port, "/").expect("GET /");
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
}
