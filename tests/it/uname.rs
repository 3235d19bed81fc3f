//! uname
