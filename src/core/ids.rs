//! Where the core gets fresh ids: injected, so tests are deterministic and the core reads no clock.

use uuid::Uuid;

/// A source of unique ids.
pub trait IdGen: Send {
    fn next_id(&mut self) -> Uuid;
}

/// Production ids: UUID v7, which sort by creation time.
#[derive(Debug, Default)]
pub struct UuidV7;

impl IdGen for UuidV7 {
    fn next_id(&mut self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Test ids: 00000000-0000-0000-0000-000000000001, …002, … in order.
#[derive(Debug, Default)]
pub struct Sequential(u128);

impl IdGen for Sequential {
    fn next_id(&mut self) -> Uuid {
        self.0 += 1;
        Uuid::from_u128(self.0)
    }
}
