//! A websocket chat client for tests (tokio-tungstenite), and the chat server as a process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use surefoot_session_store::chat::protocol::{ClientMsg, ServerMsg};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::BOUND;

/// What a read from the server gave.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A protocol message.
    Msg(ServerMsg),
    /// A close frame.
    Closed(Option<CloseFrame>),
    /// The connection ended without a close frame (server killed).
    Gone,
}

pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub(crate) async fn connect(
        addr: SocketAddr,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (ws, _response) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
        Ok(Self { ws })
    }

    /// Connects, retrying while the server is down, for at most [`BOUND`].
    pub(crate) async fn connect_retrying(addr: SocketAddr) -> Self {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            match Self::connect(addr).await {
                Ok(client) => return client,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "server did not come back: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Sends `msg`; false if the connection is gone.
    pub(crate) async fn send(&mut self, msg: &ClientMsg) -> bool {
        let text = serde_json::to_string(msg).unwrap();
        self.ws.send(WsMessage::text(text)).await.is_ok()
    }

    pub(crate) async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(WsMessage::text(text.to_owned()))
            .await
            .unwrap();
    }

    /// The next frame, failing the test if none comes within [`BOUND`].
    pub(crate) async fn recv(&mut self) -> Frame {
        let next = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(WsMessage::Text(text))) => {
                        return Frame::Msg(serde_json::from_str(text.as_str()).unwrap());
                    }
                    Some(Ok(WsMessage::Close(frame))) => return Frame::Closed(frame),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Frame::Gone,
                }
            }
        };
        tokio::time::timeout(BOUND, next)
            .await
            .expect("no frame from the server within the bound")
    }

    /// The next protocol message, failing on a close.
    pub(crate) async fn msg(&mut self) -> ServerMsg {
        match self.recv().await {
            Frame::Msg(msg) => msg,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Says hello and returns (session, rooms, resumed).
    pub(crate) async fn hello(
        &mut self,
        session: Option<String>,
        user: &str,
    ) -> (String, Vec<String>, bool) {
        assert!(
            self.send(&ClientMsg::Hello {
                session,
                user: user.to_owned()
            })
            .await
        );
        match self.msg().await {
            ServerMsg::Welcome {
                session,
                rooms,
                resumed,
            } => (
                session,
                rooms.into_iter().map(String::from).collect(),
                resumed,
            ),
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

/// The chat server binary running as a child process.
pub(crate) struct ChatProcess {
    child: tokio::process::Child,
    pub(crate) addr: SocketAddr,
}

impl ChatProcess {
    /// Starts `surefoot-chat` on `addr` with `store` and waits until it accepts connections.
    pub(crate) async fn start(addr: SocketAddr, store: &str) -> Self {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_surefoot-chat"))
            .env("SUREFOOT_CHAT_LISTEN", addr.to_string())
            .env("SUREFOOT_CHAT_STORE", store)
            .env("SUREFOOT_CHAT_NODE", format!("chat-{}", std::process::id()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut process = Self { child, addr };
        let deadline = tokio::time::Instant::now() + BOUND;
        while TcpStream::connect(addr).await.is_err() {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("chat server exited at start: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chat server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    /// SIGTERM: ask for a graceful stop.
    pub(crate) fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits (bounded) for the process to exit.
    pub(crate) async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("chat server did not exit")
            .unwrap()
    }

    /// SIGKILL, and wait until it is gone.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}
