//! Network faults: partitions, one-way cuts and degraded links, through two backends behind
//! one API. `proxy`: per-link userspace TCP proxies (portable, no privileges).
pub mod netns;
pub mod proxy;
