//! Progress events and their wire formats (SSE frames as the reference writes them).
