//! WebSocket progress (contract §6): first-message auth with close code 4001, the
//! greeting, the command set, legacy payloads relayed as compact JSON, and the VM socket.

mod common;

use std::sync::Arc;

use common::server::{BOOTSTRAP_KEY, TestServer};
use futures::{SinkExt, StreamExt, stream};
use proxbox_host::events::{Complete, Dict, Event};
use proxbox_host::server::AppState;
use proxbox_host::server::ws::{FnRunner, VALID_COMMANDS, WsStage};
use proxbox_host::store::{NetBoxEndpointCreate, Store};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A runner whose stages send one legacy payload per object, then `end`, then `complete`.
fn scripted_state(store: Store) -> AppState {
    let runner = FnRunner(|_state: AppState, stage: WsStage| {
        let object = match stage {
            WsStage::Devices => "device",
            WsStage::VirtualMachines => "virtual_machine",
        };
        let mut events: Vec<Event> = ["pve1", "pve2 é"]
            .into_iter()
            .map(|name| {
                Event::legacy(
                    Dict::new()
                        .with("object", object)
                        .with("type", "create")
                        .with(
                            "data",
                            Dict::new()
                                .with("completed", true)
                                .with("rowid", name)
                                .with("name", name),
                        ),
                )
            })
            .collect();
        events.push(Event::legacy(
            Dict::new().with("object", object).with("end", true),
        ));
        events.push(Event::Complete(Complete::success("done", Dict::new())));
        stream::iter(events).boxed()
    });
    AppState::builder(store)
        .stage_runner(Arc::new(runner))
        .build()
}

async fn connect(server: &TestServer, path: &str) -> Socket {
    let url = format!("ws://{}{path}", server.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn next_text(socket: &mut Socket) -> String {
    loop {
        match socket.next().await.expect("message").expect("frame") {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn expect_close(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error: {e}"),
        }
    }
}

#[tokio::test]
async fn bad_keys_close_with_4001() {
    let server =
        TestServer::start_with_key(scripted_state(Store::open_in_memory().expect("store"))).await;
    for first in [
        r#"{"api_key": "wrong"}"#.to_string(),
        "not json".to_string(),
        r#"{"key": "x"}"#.to_string(),
    ] {
        let mut socket = connect(&server, "/ws").await;
        socket
            .send(Message::Text(first.into()))
            .await
            .expect("send");
        let (code, reason) = expect_close(&mut socket).await;
        assert_eq!(code, CloseCode::from(4001));
        assert!(
            reason.starts_with("Invalid API key") || reason.starts_with("API key required"),
            "{reason}"
        );
    }
    // Those three failures count toward the lockout like HTTP ones.
    let locked = server
        .call_with(reqwest::Method::GET, "/version", None, Some("wrong"), &[])
        .await;
    assert_eq!(
        locked.json["detail"],
        "Invalid API key. 1 attempts remaining."
    );
    let mut socket = connect(&server, "/ws").await;
    socket
        .send(Message::Text(
            format!(r#"{{"api_key": "{BOOTSTRAP_KEY}"}}"#).into(),
        ))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "Connected!");
    server.stop().await;
}

#[tokio::test]
async fn commands_relay_legacy_progress() {
    let server =
        TestServer::start_with_key(scripted_state(Store::open_in_memory().expect("store"))).await;
    let mut socket = connect(&server, "/ws").await;
    socket
        .send(Message::Text(
            format!(r#"{{"api_key": "{BOOTSTRAP_KEY}"}}"#).into(),
        ))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "Connected!");
    assert_eq!(next_text(&mut socket).await, "Connected 2!");

    socket
        .send(Message::Text("Sync Nodes".into()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "Sync Nodes");
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"object":"device","type":"create","data":{"completed":true,"rowid":"pve1","name":"pve1"}}"#
    );
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"object":"device","type":"create","data":{"completed":true,"rowid":"pve2 é","name":"pve2 é"}}"#,
        "compact separators, UTF-8 unescaped, as Starlette's send_json"
    );
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"object":"device","end":true}"#
    );

    socket
        .send(Message::Text("Full Update Sync".into()))
        .await
        .expect("send");
    let mut objects = Vec::new();
    for _ in 0..6 {
        let payload: serde_json::Value =
            serde_json::from_str(&next_text(&mut socket).await).expect("json");
        objects.push(payload["object"].as_str().expect("object").to_string());
    }
    assert_eq!(
        objects,
        [
            "device",
            "device",
            "device",
            "virtual_machine",
            "virtual_machine",
            "virtual_machine"
        ]
    );

    socket
        .send(Message::Text("Reboot Everything".into()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "Invalid sync command");
    assert_eq!(next_text(&mut socket).await, VALID_COMMANDS);
    socket.close(None).await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn the_vm_socket_needs_a_netbox_endpoint() {
    let store = Store::open_in_memory().expect("store");
    let server = TestServer::start_with_key(scripted_state(store.clone())).await;
    let mut socket = connect(&server, "/ws/virtual-machines").await;
    socket
        .send(Message::Text(
            format!(r#"{{"api_key": "{BOOTSTRAP_KEY}"}}"#).into(),
        ))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "Connected!");
    assert!(
        next_text(&mut socket)
            .await
            .starts_with("Error: NetBox session is not available.")
    );
    assert_eq!(expect_close(&mut socket).await.0, CloseCode::Error);

    store
        .create_netbox_endpoint(NetBoxEndpointCreate::new("nb", "127.0.0.1", "0123456789"))
        .expect("netbox endpoint");
    let mut socket = connect(&server, "/ws/virtual-machines").await;
    socket
        .send(Message::Text(
            format!(r#"{{"api_key": "{BOOTSTRAP_KEY}"}}"#).into(),
        ))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "Connected!");
    let first: serde_json::Value =
        serde_json::from_str(&next_text(&mut socket).await).expect("json");
    assert_eq!(first["object"], "virtual_machine");
    next_text(&mut socket).await;
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"object":"virtual_machine","end":true}"#
    );
    assert_eq!(expect_close(&mut socket).await.0, CloseCode::Normal);
    server.stop().await;
}
