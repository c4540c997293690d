"""runtime: conversations that join sessions, background tasks and media, turn by turn."""
