//! Embedded configuration store (SQLite): endpoints and API keys, secrets encrypted at rest.
