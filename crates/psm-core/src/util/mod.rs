//! The seed's utility functions, with RULES.md semantics.
