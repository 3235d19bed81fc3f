//! Settings from flags, TOML files and the thesis's rsc.config format.
