//! An example websocket chat server built on the store: rooms, presence and history that
//! survive a restart of the server (SIGKILL included), errors reported to clients as typed
//! events, and a graceful stop that tells clients to reconnect.

mod boundary;
mod config;
mod connection;
mod context;
mod delivery;
mod hub;
pub mod protocol;
mod requests;
mod server;

pub use boundary::{Boundary, refused};
pub use config::ChatConfig;
pub use connection::ConnectionError;
pub use hub::Hub;
pub use server::{ChatError, ChatServer, ChatStopReport};
