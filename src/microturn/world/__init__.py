"""world: synthetic duplex scenarios: real speech, rendered video, timed events."""
