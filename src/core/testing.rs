//! Test helpers for the core: calls answered without the store, and the store a test keeps
//! beside a core (the changes it was asked to persist) to answer reads as the server does.

use super::answer::{Outcome, SessionsReply};
use super::effects::{Effect, HistoryEntry, TurnEffect};
use super::error::CoreError;
use super::ids;
use super::read::ReadError;
use super::state::{CallContext, Core, CoreConfig, InstanceMeta};
use crate::protocol::ids::InstanceId;
use crate::protocol::methods::{Call, DropCounters, Endpoints, Reply};
use crate::store::memory::MemoryStore;
use crate::store::{Rows, Store};
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

impl Core {
    /// A call answered by the core alone. Panics on one that reads the history: use [`Stored`].
    pub fn reply(&mut self, call: Call, ctx: &CallContext) -> Result<Reply, CoreError> {
        match self.call(call, ctx)? {
            Outcome::Reply(r) => Ok(r),
            Outcome::Sessions(s) => Ok(self.checked_sessions(s)),
            Outcome::Read(r) => panic!("{r:?} reads the store: use testing::Stored"),
        }
    }

    /// The typed answer to a [`SessionsReply`], after checking that the encoded answer a client
    /// gets (the session list from the cache) says exactly the same.
    pub fn checked_sessions(&mut self, s: SessionsReply) -> Reply {
        let typed = self.typed_sessions(s.clone());
        let id = crate::protocol::jsonrpc::Id::from(1);
        let encoded: serde_json::Value =
            serde_json::from_slice(&self.encode_sessions(&id, s)).expect("an encoded answer");
        let want = serde_json::to_value(&typed).expect("a typed answer");
        assert_eq!(encoded["result"], want, "the cached session list is stale");
        typed
    }
}

/// The moment a core under test starts.
pub const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

/// `secs` seconds after [`T0`].
pub fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

/// A core as the tests know it: instance `…feed`, sequential ids, two idempotency keys.
pub fn core() -> Core {
    let meta = InstanceMeta {
        instance_id: InstanceId(Uuid::from_u128(0xfeed)),
        started_at: T0,
        version: "test".into(),
        pid: 1,
        endpoints: Endpoints {
            rpc: "ipc://r".into(),
            pub_: "ipc://p".into(),
        },
        model: "echo".into(),
        store: "memory".into(),
    };
    Core::new(
        meta,
        CoreConfig {
            idempotency_capacity: 2,
            ..CoreConfig::default()
        },
        Box::new(ids::Sequential::default()),
    )
}

/// A call's context at [`at`]`(secs)`, from an anonymous peer.
pub fn ctx(secs: i64) -> CallContext {
    CallContext {
        peer: Vec::new(),
        now: at(secs),
        drops: DropCounters::default(),
        transport: Default::default(),
    }
}

/// The store behind a core under test: every change the core asked for, committed.
#[derive(Default)]
pub struct Stored {
    pub store: MemoryStore,
    /// Histories the turns started since the last look were given, in order.
    pub started: Vec<Vec<HistoryEntry>>,
}

impl Stored {
    /// Commits the changes among `effects` and reads the histories of the turns they start.
    pub fn apply(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Persist { change, .. } => self
                    .store
                    .commit(std::slice::from_ref(change))
                    .expect("memory store commits"),
                Effect::Turn(TurnEffect::Start { context, .. }) => {
                    let history = context
                        .execute(&mut Rows(&mut self.store))
                        .expect("history reads");
                    self.started.push(history);
                }
                _ => {}
            }
        }
    }

    /// Takes the core's effects, applies them, and returns them.
    pub fn sync(&mut self, core: &mut Core) -> Vec<Effect> {
        let effects = core.take_effects();
        self.apply(&effects);
        effects
    }

    /// Any call, the reads ones answered from the store after what the core decided so far is
    /// applied (the effects are taken).
    pub fn call(
        &mut self,
        core: &mut Core,
        call: Call,
        ctx: &CallContext,
    ) -> Result<Reply, CoreError> {
        let outcome = core.call(call, ctx);
        self.sync(core);
        match outcome? {
            Outcome::Reply(r) => Ok(r),
            Outcome::Sessions(s) => Ok(core.checked_sessions(s)),
            Outcome::Read(read) => match read.execute(&mut Rows(&mut self.store)) {
                Ok(r) => Ok(r),
                Err(ReadError::Core(e)) => Err(e),
                Err(ReadError::Rows(e)) => panic!("memory store read failed: {e}"),
            },
        }
    }
}
