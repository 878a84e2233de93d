//! Writer thread (being written).
