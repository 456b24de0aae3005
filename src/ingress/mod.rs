//! Ingress APIs other than the canonical Chat Completions: each translates its clients'
//! format to the canonical request and the canonical answer back (design.md §3).

pub mod responses;
