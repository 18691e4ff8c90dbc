//! An in-process proxbox-host server on an ephemeral loopback port, and a small client.

#![allow(dead_code)]

use std::net::SocketAddr;

use proxbox_host::server::{self, AppState};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The header carrying the API key.
pub const KEY_HEADER: &str = "X-Proxbox-API-Key";

/// A key long enough for `/auth/register-key`.
pub const BOOTSTRAP_KEY: &str = "bootstrap-key-0123456789-abcdefghijklmnop";

/// A running server; stopped (gracefully) on [`TestServer::stop`] or drop.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The state the server runs with.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
    /// Key sent with every request made through [`TestServer::call`], if any.
    pub key: Option<String>,
}

/// One answer: status, headers and parsed body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Raw body text.
    pub text: String,
    /// Parsed JSON body.
    pub json: Value,
}

impl TestServer {
    /// Start a server with `state`.
    pub async fn start(state: AppState) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve_on(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
            key: None,
        }
    }

    /// Start a server and register [`BOOTSTRAP_KEY`]; requests then carry it.
    pub async fn start_with_key(state: AppState) -> TestServer {
        let mut server = TestServer::start(state).await;
        let answer = server
            .call(
                Method::POST,
                "/auth/register-key",
                Some(serde_json::json!({ "api_key": BOOTSTRAP_KEY })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        server.key = Some(BOOTSTRAP_KEY.to_string());
        server
    }

    /// Make a request with the server's key (if set) and an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, self.key.as_deref(), &[])
            .await
    }

    /// Make a request with an explicit key and extra headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header(KEY_HEADER, key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// Send a raw body (for malformed JSON).
    pub async fn call_raw(&self, method: Method, path: &str, body: &'static str) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = &self.key {
            request = request.header(KEY_HEADER, key);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// Stop the server and wait until it has finished.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
