//! QUIC transport: TLS identities, pinning, client link and server listener.
