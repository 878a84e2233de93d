//! The instance's own life in the core: heartbeats, promotion, shutdown, the store's health as
//! clients see it (`instance.status`, `store_unavailable`), and `instance.info`.

use time::OffsetDateTime;

use super::effects::{Effect, TurnEffect};
use super::error::CoreError;
use super::state::{CallContext, Core, Degraded};
use crate::protocol::duration::go_duration;
use crate::protocol::events::{
    EndReason, Event, Health, HeartbeatPayload, PromotedPayload, ShutdownPayload, StatusPayload,
};
use crate::protocol::ids::{InstanceId, TurnId};
use crate::protocol::methods::{DegradedInfo, InfoResult, ReplayInfo};
use crate::protocol::PROTOCOL_VERSION;

impl Core {
    /// Publishes `instance.heartbeat`.
    pub fn heartbeat(&mut self, now: OffsetDateTime) {
        let payload = HeartbeatPayload {
            instance_id: self.meta.instance_id,
            active_session_id: self.active,
            session_count: self.sessions.len() as u64,
            uptime: self.uptime(now),
            started_at: self.meta.started_at,
            promoted_from: self.promoted_from,
            status: self.health(),
            reason: self.degraded.as_ref().map(|d| d.reason.clone()),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
        };
        self.publish(Event::InstanceHeartbeat(payload), now);
    }

    /// Publishes `instance.promoted`: this instance took over from a primary that is gone.
    pub fn promoted(&mut self, previous_instance_id: Option<InstanceId>, now: OffsetDateTime) {
        self.promoted_from = previous_instance_id;
        let payload = PromotedPayload {
            instance_id: self.meta.instance_id,
            previous_instance_id,
        };
        self.publish(Event::InstancePromoted(payload), now);
    }

    /// Ends every running turn with `reason: "shutdown"`, then publishes `instance.shutdown`.
    /// After this every call that would change state is refused, so `instance.shutdown` is the
    /// last event; reads still answer.
    pub fn shutdown(&mut self, reason: &str, now: OffsetDateTime) {
        self.shutting_down = true;
        let mut running: Vec<TurnId> = self.turns.keys().copied().collect();
        running.sort();
        for turn_id in running {
            self.effects.push(Effect::Turn(TurnEffect::Cancel(turn_id)));
            self.end_turn(turn_id, EndReason::Shutdown, None, now);
        }
        self.publish(
            Event::InstanceShutdown(ShutdownPayload {
                instance_id: self.meta.instance_id,
                reason: reason.to_owned(),
            }),
            now,
        );
    }

    pub(super) fn refuse_if_degraded(&self) -> Result<(), CoreError> {
        match &self.degraded {
            Some(d) => Err(CoreError::StoreUnavailable(d.reason.clone())),
            None => Ok(()),
        }
    }

    pub fn health(&self) -> Health {
        if self.degraded.is_some() {
            Health::Degraded
        } else {
            Health::Ok
        }
    }

    /// The store's health changed: `Some(reason)` while it cannot commit. While degraded, calls
    /// that change state are refused with `store_unavailable`; reads, pings and events go on.
    /// Publishes `instance.status` when the health changes (not when only the reason does).
    pub fn store_health(&mut self, failing: Option<String>, now: OffsetDateTime) {
        let was = self.health();
        self.degraded = failing.map(|reason| Degraded {
            since: self.degraded.as_ref().map_or(now, |d| d.since),
            reason,
        });
        if self.health() == was {
            return;
        }
        let payload = StatusPayload {
            instance_id: self.meta.instance_id,
            status: self.health(),
            reason: self.degraded.as_ref().map(|d| d.reason.clone()),
            since: self.degraded.as_ref().map(|d| d.since),
        };
        self.publish(Event::InstanceStatus(payload), now);
    }

    pub(super) fn refuse_if_shutting_down(&self) -> Result<(), CoreError> {
        if self.shutting_down {
            Err(CoreError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    pub(super) fn uptime(&self, now: OffsetDateTime) -> String {
        let elapsed = (now - self.meta.started_at).max(time::Duration::ZERO);
        go_duration(elapsed.unsigned_abs())
    }

    pub(super) fn info(&self, ctx: &CallContext) -> InfoResult {
        InfoResult {
            instance_id: self.meta.instance_id,
            version: self.meta.version.clone(),
            protocol_version: PROTOCOL_VERSION,
            pid: self.meta.pid,
            started_at: self.meta.started_at,
            uptime: self.uptime(ctx.now),
            endpoints: self.meta.endpoints.clone(),
            session_count: self.sessions.len() as u64,
            max_sessions: self.config.max_sessions as u64,
            active_session_id: self.active,
            model: self.meta.model.clone(),
            models: self.config.models.list().models,
            seq: self.seq,
            running_turns: self.turns.len() as u64,
            drops: ctx.drops.clone(),
            transport: ctx.transport.clone(),
            store: self.meta.store.clone(),
            recovered_turns: self.recovered_turns,
            promoted_from: self.promoted_from,
            replay: ReplayInfo {
                events: self.ring.len() as u64,
                bytes: self.ring.bytes() as u64,
                oldest_seq: self.ring.oldest(),
                max_events: self.config.replay.max_events as u64,
                max_bytes: self.config.replay.max_bytes as u64,
            },
            status: self.health(),
            degraded: self.degraded.as_ref().map(|d| DegradedInfo {
                reason: d.reason.clone(),
                since: d.since,
            }),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
        }
    }
}
