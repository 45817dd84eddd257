//! The inspection commands.
