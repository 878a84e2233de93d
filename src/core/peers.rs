//! Clients as peers: who said `client.hello` on which socket, what they run, when they were last
//! heard from, and how they leave (`client.goodbye`, silence past the timeout, or a socket that
//! says hello as someone else). Presence is not stored: after a restart clients say hello again.

use std::sync::Arc;

use time::OffsetDateTime;

use super::error::CoreError;
use super::policy::ASK_USER;
use super::state::Core;
use crate::protocol::clients::{
    Author, ClientInfo, ClientJoinedPayload, ClientLeftPayload, ClientListResult, ClientToolSpec,
    Hello, HelloResult, LeaveReason, ServerCapabilities, SUPPORTED_VERSIONS,
};
use crate::protocol::events::Event;
use crate::protocol::limits::MAX_CLIENTS;

/// One present client.
#[derive(Debug, Clone)]
pub struct Peer {
    pub info: ClientInfo,
    /// The socket (ROUTER routing id) its last hello came from; requests from it are its.
    pub route: Vec<u8>,
    pub tools: Vec<ClientToolSpec>,
}

/// The present clients, in the order they joined (a rejoin keeps its place).
#[derive(Debug, Default)]
pub struct Peers {
    list: Vec<Peer>,
    /// What the model is offered: every present client's tools, one per name (the earliest
    /// joined client's declaration wins). Shared with the turns that start while it holds.
    offered: Arc<[ClientToolSpec]>,
}

impl Peers {
    pub fn by_route(&self, route: &[u8]) -> Option<&Peer> {
        if self.list.is_empty() {
            return None;
        }
        self.list.iter().find(|p| p.route == route)
    }

    pub fn by_id(&self, client_id: &str) -> Option<&Peer> {
        self.list.iter().find(|p| p.info.client_id == client_id)
    }

    pub fn list(&self) -> Vec<ClientInfo> {
        self.list.iter().map(|p| p.info.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The client tools a turn starting now is offered.
    pub fn offered(&self) -> Arc<[ClientToolSpec]> {
        self.offered.clone()
    }

    /// Whether a present client declares `tool`.
    pub fn offers(&self, tool: &str) -> bool {
        self.offered.iter().any(|t| t.name == tool)
    }

    /// Whether `client_id` is present and declares `tool`.
    pub fn declares(&self, client_id: &str, tool: &str) -> bool {
        self.by_id(client_id)
            .is_some_and(|p| p.tools.iter().any(|t| t.name == tool))
    }

    fn refresh_offered(&mut self) {
        let mut offered: Vec<ClientToolSpec> = Vec::new();
        for tool in self.list.iter().flat_map(|p| &p.tools) {
            if !offered.iter().any(|t| t.name == tool.name) {
                offered.push(tool.clone());
            }
        }
        self.offered = offered.into();
    }

    fn remove(&mut self, client_id: &str) -> Option<Peer> {
        let i = self
            .list
            .iter()
            .position(|p| p.info.client_id == client_id)?;
        let peer = self.list.remove(i);
        self.refresh_offered();
        Some(peer)
    }
}

impl Core {
    /// `client.hello` from the socket `route`: agrees on a version, checks the tools against the
    /// built-in ones, and makes the client present (replacing an entry of the same id).
    pub(super) fn hello(
        &mut self,
        hello: Hello,
        route: &[u8],
        now: OffsetDateTime,
    ) -> Result<HelloResult, CoreError> {
        self.refuse_if_shutting_down()?;
        let Some(version) = SUPPORTED_VERSIONS
            .iter()
            .rev()
            .find(|v| hello.protocol_versions.contains(v))
            .copied()
        else {
            return Err(CoreError::VersionMismatch {
                offered: hello.protocol_versions,
            });
        };
        if let Some(clash) = hello
            .tools
            .iter()
            .find(|t| t.name == ASK_USER || self.config.known_tools.contains(&t.name))
        {
            return Err(CoreError::InvalidTool {
                name: clash.name.clone(),
                why: "a built-in tool has this name; pick another".into(),
            });
        }
        let existing = self.peers.by_id(&hello.client_id).is_some();
        if !existing && self.peers.len() >= MAX_CLIENTS {
            return Err(CoreError::TooManyClients { limit: MAX_CLIENTS });
        }
        // The socket spoke for another client before: that one is gone, replaced.
        if let Some(other) = self.peers.by_route(route) {
            if other.info.client_id != hello.client_id {
                let other = other.info.client_id.clone();
                self.leave(&other, LeaveReason::Replaced, now);
            }
        }
        let info = ClientInfo {
            client_id: hello.client_id.clone(),
            name: hello.name,
            version: hello.version,
            protocol_version: version,
            connected_at: now,
            last_seen_at: now,
            tools: hello.tools.iter().map(|t| t.name.clone()).collect(),
        };
        let peer = Peer {
            info: info.clone(),
            route: route.to_vec(),
            tools: hello.tools,
        };
        match self
            .peers
            .list
            .iter_mut()
            .find(|p| p.info.client_id == hello.client_id)
        {
            Some(slot) => *slot = peer,
            None => self.peers.list.push(peer),
        }
        self.peers.refresh_offered();
        self.publish(
            Event::ClientJoined(ClientJoinedPayload {
                client: info,
                rejoined: existing,
            }),
            now,
        );
        Ok(HelloResult {
            protocol_version: version,
            server_version: self.meta.version.clone(),
            instance_id: self.meta.instance_id,
            capabilities: ServerCapabilities {
                client_tools: true,
                hitl: true,
                replay: true,
                client_timeout_secs: self.config.client_timeout.whole_seconds().max(0) as u64,
                tool_claim_timeout_secs: self.config.claim_timeout.whole_seconds().max(0) as u64,
            },
        })
    }

    /// `client.goodbye`: the client on `route` leaves (a socket that never said hello: nothing).
    pub(super) fn goodbye(&mut self, route: &[u8], now: OffsetDateTime) {
        if let Some(id) = self.peers.by_route(route).map(|p| p.info.client_id.clone()) {
            self.leave(&id, LeaveReason::Goodbye, now);
        }
    }

    pub(super) fn client_list(&self) -> ClientListResult {
        ClientListResult {
            clients: self.peers.list(),
        }
    }

    /// Any request from a client keeps it present.
    pub(super) fn touch(&mut self, route: &[u8], now: OffsetDateTime) {
        if self.peers.list.is_empty() {
            return;
        }
        if let Some(p) = self.peers.list.iter_mut().find(|p| p.route == route) {
            p.info.last_seen_at = now;
        }
    }

    /// Who sent a request from `route`, when that socket said hello.
    pub(super) fn author(&self, route: &[u8]) -> Option<Author> {
        self.peers.by_route(route).map(|p| Author {
            client_id: p.info.client_id.clone(),
            name: p.info.name.clone(),
        })
    }

    /// What the clock makes happen: checkpoints of streaming replies, requests and client calls
    /// that waited too long, clients silent too long.
    pub fn tick(&mut self, now: OffsetDateTime) {
        self.checkpoint(now);
        self.expire_requests(now);
        self.expire_claims(now);
        self.expire_clients(now);
    }

    /// Clients silent for `client_timeout` leave.
    pub fn expire_clients(&mut self, now: OffsetDateTime) {
        let timeout = self.config.client_timeout;
        let silent: Vec<String> = self
            .peers
            .list
            .iter()
            .filter(|p| now - p.info.last_seen_at >= timeout)
            .map(|p| p.info.client_id.clone())
            .collect();
        for id in silent {
            self.leave(&id, LeaveReason::Timeout, now);
        }
    }

    /// Removes a client, publishes `client.left`, and ends what it was to run.
    fn leave(&mut self, client_id: &str, reason: LeaveReason, now: OffsetDateTime) {
        let Some(peer) = self.peers.remove(client_id) else {
            return;
        };
        if !self.shutting_down {
            self.publish(
                Event::ClientLeft(ClientLeftPayload {
                    client_id: peer.info.client_id.clone(),
                    name: peer.info.name.clone(),
                    reason,
                }),
                now,
            );
        }
        self.client_left(&peer.info.client_id, reason, now);
    }
}
