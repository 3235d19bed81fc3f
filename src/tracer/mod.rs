//! The ptrace front end.
