//! WebSocket progress (contract §6): `/ws` takes sync commands, `/ws/virtual-machines`
//! runs the VM stage once. Both authenticate with their first message
//! (`{"api_key": "..."}`) and close with 4001 on failure; the HTTP key middleware does
//! not apply to them.
//!
//! Progress is the stage's legacy payloads (`{"object", "type", "data", "end"}`), sent
//! as compact JSON text like Starlette's `send_json` — the same payloads the SSE
//! streams carry inside their legacy `step` frames. Stages come from the
//! [`StageRunner`] installed in the state (by default the sync stages themselves, for
//! every enabled endpoint).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::AppState;
use super::auth;
use crate::events::{Event, json};

/// How long a client has to send its key.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for a failed authentication.
pub const CLOSE_AUTH_FAILED: u16 = 4001;
/// The commands `/ws` accepts, as the plugin sends them.
pub const VALID_COMMANDS: &str =
    "Valid commands: 'Sync Nodes', 'Sync Virtual Machines', 'Full Update Sync'";

/// A sync stage a WebSocket command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsStage {
    /// Proxmox nodes to NetBox devices.
    Devices,
    /// Guests to NetBox virtual machines.
    VirtualMachines,
}

/// Runs a stage for a WebSocket client: the same event stream the SSE route sends.
pub trait StageRunner: Send + Sync {
    /// The stage's events, ending with `complete`. Dropping the stream cancels the work.
    fn run(&self, state: AppState, stage: WsStage) -> BoxStream<'static, Event>;
}

/// What a client's text frame asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    FullUpdate,
    Nodes,
    VirtualMachines,
    Invalid,
}

fn parse_command(text: &str) -> Command {
    match text.trim() {
        "Full Update Sync" | "Full Update" => Command::FullUpdate,
        "Sync Nodes" => Command::Nodes,
        "Sync Virtual Machines" => Command::VirtualMachines,
        _ => Command::Invalid,
    }
}

fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    state.trusted_proxies().client_ip(peer.ip(), headers)
}

/// `WS /ws`: sync commands.
pub async fn commands(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = client_ip(&state, peer, &headers);
    ws.on_upgrade(move |socket| command_session(socket, state, client))
}

/// `WS /ws/virtual-machines`: one VM sync.
pub async fn virtual_machines(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = client_ip(&state, peer, &headers);
    ws.on_upgrade(move |socket| vm_session(socket, state, client))
}

/// Read the first message and check its key; on failure the socket is closed (4001).
async fn authenticate(socket: &mut WebSocket, state: &AppState, client: IpAddr) -> bool {
    let first = tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await;
    let key = match first {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("api_key").and_then(|k| k.as_str()).map(str::to_owned)),
        _ => None,
    };
    match auth::authenticate(state, client, key.as_deref()) {
        Ok(()) => true,
        Err(refusal) => {
            tracing::warn!(%client, "WebSocket authentication failed");
            close(socket, CLOSE_AUTH_FAILED, &refusal.message).await;
            false
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        })))
        .await;
}

async fn send_text(socket: &mut WebSocket, text: &str) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn command_session(mut socket: WebSocket, state: AppState, client: IpAddr) {
    if !authenticate(&mut socket, &state, client).await {
        return;
    }
    if !send_text(&mut socket, "Connected!").await || !send_text(&mut socket, "Connected 2!").await
    {
        return;
    }
    let mut pending: VecDeque<String> = VecDeque::new();
    loop {
        let text = match pending.pop_front() {
            Some(text) => text,
            None => match socket.recv().await {
                Some(Ok(Message::Text(text))) => text.to_string(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
        };
        let stages: &[WsStage] = match parse_command(&text) {
            Command::FullUpdate => &[WsStage::Devices, WsStage::VirtualMachines],
            Command::Nodes => {
                if !send_text(&mut socket, "Sync Nodes").await {
                    break;
                }
                &[WsStage::Devices]
            }
            Command::VirtualMachines => &[WsStage::VirtualMachines],
            Command::Invalid => {
                if !send_text(&mut socket, "Invalid sync command").await
                    || !send_text(&mut socket, VALID_COMMANDS).await
                {
                    break;
                }
                continue;
            }
        };
        for stage in stages {
            match relay(&mut socket, &state, *stage, &mut pending).await {
                Relay::Done { ok } if ok || *stage != WsStage::Devices => {}
                Relay::Done { .. } => break,
                Relay::Disconnected => return,
            }
        }
    }
    close(&mut socket, 1000, "").await;
}

async fn vm_session(mut socket: WebSocket, state: AppState, client: IpAddr) {
    if !authenticate(&mut socket, &state, client).await {
        return;
    }
    if !send_text(&mut socket, "Connected!").await {
        return;
    }
    let netbox_ready = state
        .store()
        .netbox_singleton()
        .ok()
        .flatten()
        .is_some_and(|e| e.enabled);
    if !netbox_ready {
        let _ = send_text(
            &mut socket,
            "Error: NetBox session is not available. Check database connectivity and NetBox \
             endpoint configuration.",
        )
        .await;
        close(&mut socket, 1011, "").await;
        return;
    }
    let mut ignored = VecDeque::new();
    if let Relay::Done { .. } =
        relay(&mut socket, &state, WsStage::VirtualMachines, &mut ignored).await
    {
        close(&mut socket, 1000, "").await;
    }
}

enum Relay {
    /// The stage ended; `ok` is its `complete.ok`.
    Done { ok: bool },
    /// The client went away; the stage was cancelled.
    Disconnected,
}

/// Run one stage, sending its legacy payloads; text arriving meanwhile is queued.
async fn relay(
    socket: &mut WebSocket,
    state: &AppState,
    stage: WsStage,
    pending: &mut VecDeque<String>,
) -> Relay {
    let runner: SharedRunner = state
        .stage_runner()
        .cloned()
        .unwrap_or_else(|| Arc::new(crate::server::routes::sync::SyncStageRunner));
    let mut events = runner.run(state.clone(), stage);
    loop {
        tokio::select! {
            event = events.next() => match event {
                None => return Relay::Done { ok: false },
                Some(Event::LegacyStep(step)) => {
                    let text = json::to_string(&step.payload, json::Style::CompactUtf8)
                        .unwrap_or_default();
                    if !send_text(socket, &text).await {
                        return Relay::Disconnected;
                    }
                }
                Some(Event::Complete(complete)) => return Relay::Done { ok: complete.ok },
                Some(_) => {}
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => pending.push_back(text.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Relay::Disconnected,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A runner built from a closure (for wiring and tests).
pub struct FnRunner<F>(pub F);

impl<F> StageRunner for FnRunner<F>
where
    F: Fn(AppState, WsStage) -> BoxStream<'static, Event> + Send + Sync,
{
    fn run(&self, state: AppState, stage: WsStage) -> BoxStream<'static, Event> {
        (self.0)(state, stage)
    }
}

/// Shared runner handle.
pub type SharedRunner = Arc<dyn StageRunner>;
