#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod algorithm;
mod claims;
mod codec;
mod config;
mod keys;
mod service;

pub use algorithm::Algorithm;
pub use claims::{
    ACCESS_HEADER_TYP, ACCESS_TYP, AccessClaims, REFRESH_HEADER_TYP, REFRESH_TYP, RefreshClaims,
    TokenPair,
};
pub use codec::MAX_TOKEN_LEN;
pub use config::{MAX_ACCESS_TTL, MAX_LEEWAY, MAX_REFRESH_LIFETIME, TokenConfig};
pub use keys::{KeySet, SigningKey};
pub use service::TokenService;
