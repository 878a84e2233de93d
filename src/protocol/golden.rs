//! Golden JSON for every wire shape, both ways.
