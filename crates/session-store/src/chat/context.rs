//! What every connection of a chat server shares.

use std::sync::Arc;

use super::boundary::Boundary;
use super::config::ChatConfig;
use super::hub::Hub;
use crate::StoreError;
use crate::events::SessionEvents;
use crate::metrics::StoreMetrics;
use crate::model::{NewSession, Session, SessionId};
use crate::store::{SessionStore, expiry_in};

/// The single source of truth a connection works from (FINDINGS S-4): the store, not state
/// passed around by hand.
#[derive(Debug)]
pub(crate) struct ChatContext {
    pub(crate) config: ChatConfig,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) hub: Hub,
    pub(crate) boundary: Boundary,
    pub(crate) metrics: StoreMetrics,
    pub(crate) events: SessionEvents,
}

impl ChatContext {
    /// Continues `wanted` if it exists (now owned by this node, expiry refreshed), else creates
    /// a session for `user`. Returns the session and whether it was continued.
    pub(crate) async fn open_session(
        &self,
        wanted: Option<SessionId>,
        user: &str,
    ) -> Result<(Session, bool), StoreError> {
        let expires_at = expiry_in(self.config.session_ttl);
        if let Some(id) = wanted
            && let Some(mut session) = self.store.load(id).await?
        {
            session.node.clone_from(&self.config.node);
            session.expires_at = expires_at;
            let session = self.store.save(&session).await?;
            self.events.resumed(id);
            return Ok((session, true));
        }
        let session = self
            .store
            .create(NewSession {
                user: user.to_owned(),
                data: serde_json::json!({}),
                node: self.config.node.clone(),
                expires_at,
            })
            .await?;
        self.events.opened(session.id);
        Ok((session, false))
    }
}
