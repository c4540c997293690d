"""`microturn serve`: the engine loop, the native WebSocket protocol, operations."""
