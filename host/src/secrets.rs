//! The host's private secret files (a placeholder until the split moves `private_secret` here).

pub use crate::admin::private_secret;
