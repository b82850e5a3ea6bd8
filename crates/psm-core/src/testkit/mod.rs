//! The conformance suite every provider runs.
