//! psm's end-to-end tests live in `it/`; this library is empty (a package needs a target).
#![forbid(unsafe_code)]
