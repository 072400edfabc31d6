"""livediff bridge: wire protocol, ZeroMQ server, shared-memory timeline store."""
