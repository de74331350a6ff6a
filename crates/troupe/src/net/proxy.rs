//! Link proxies (being written).
