//! The fake WeChat, tested on the wire with raw HTTP (reqwest, not the crate's client): what a
//! real WeChat client would see, byte for byte.

mod control;
mod faults;
mod followers;
mod logins;
mod rules;
mod sends;
mod support;
mod tokens;
