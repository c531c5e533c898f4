//! Examples are run by tests (see gguf_dump / axis_inspect).
