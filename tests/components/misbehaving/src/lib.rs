//! A virtual-machine mapper that misbehaves on purpose, chosen by the guest's name:
//!
//! - `loop`: spins forever; `sleep`: sleeps for an hour
//! - `bomb`: allocates until memory runs out
//! - `panic`: panics
//! - `huge`: returns a 4 MiB description
//! - `file`: reads `/etc/hostname`; `env`: reads `HOME`; `net`: connects to 127.0.0.1:22
//! - `clock`: reports the wall clock it sees
//! - anything else: maps normally (name and status).

wit_bindgen::generate!({ world: "virtual-machine-mapper", path: "../../../wit" });

use exports::proxbox::mapper::virtual_machine::{DesiredVirtualMachine, Guest};
use proxbox::mapper::types::{Context, GuestInput, MapperError};

struct Misbehaving;

fn denied(what: &str, e: impl std::fmt::Display) -> MapperError {
    MapperError {
        code: "denied".into(),
        message: format!("{what}: {e}"),
    }
}

impl Guest for Misbehaving {
    fn map_guest(
        ctx: Context,
        guest: GuestInput,
    ) -> Result<Option<DesiredVirtualMachine>, MapperError> {
        let mut description = format!("mapped {}", guest.vmid);
        match guest.name.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("mapper bug on guest {}", guest.vmid),
            "huge" => description = "x".repeat(4 << 20),
            "file" => {
                let text =
                    std::fs::read_to_string("/etc/hostname").map_err(|e| denied("file", e))?;
                description = format!("LEAK file: {text}");
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                if !vars.is_empty() {
                    description = format!("LEAK env: {}", vars.join(","));
                } else {
                    let home = std::env::var("HOME").map_err(|e| denied("env", e))?;
                    description = format!("LEAK env HOME: {home}");
                }
            }
            "net" => {
                let stream =
                    std::net::TcpStream::connect("127.0.0.1:22").map_err(|e| denied("net", e))?;
                description = format!("LEAK net: {:?}", stream.peer_addr());
            }
            "clock" => {
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(u64::MAX);
                description = format!("clock {since}");
            }
            _ => {}
        }
        Ok(Some(DesiredVirtualMachine {
            name: guest.name,
            status: guest.status,
            cluster: ctx.cluster_name,
            device: None,
            site: None,
            role: None,
            virtual_machine_type: None,
            platform: None,
            tenant: None,
            vcpus: guest.vcpus,
            memory_mib: None,
            disk_mib: None,
            description,
            comments: None,
            custom_fields: Vec::new(),
            tags: Vec::new(),
        }))
    }
}

export!(Misbehaving);
