//! Wiring of the rscq client: tracer thread, engine and transport.
