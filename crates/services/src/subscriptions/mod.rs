//! The grant ledger of the Mini Program's subscribe messages: per app, Mini Program openid and
//! subscribe template, how many one-time grants the person gave and how many were used or
//! written off, whether a long-term grant is in force, and their latest choice (`mp_grants`).
//!
//! WeChat offers no API that says how many grants are left, so wxnotify counts them from the
//! sources it has, each acceptance exactly once ([`grants`], `docs/subscriptions.md`):
//!
//! - WeChat's `subscribe_msg_popup_event` / `subscribe_msg_change_event` on
//!   `/wechat/mp-callback` ([`Source::Event`]);
//! - the Mini Program's own report of `wx.requestSubscribeMessage`'s result on
//!   `POST /v1/miniprogram/subscriptions` ([`Source::Report`]);
//! - the sends themselves, which spend grants in the worker's claim (not here).

pub mod grants;

pub use grants::{
    Choice, GrantView, Recorded, Source, grants_of, prune_acceptances, record_choice,
};
