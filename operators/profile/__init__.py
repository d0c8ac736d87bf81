"""Per-user profile: live session, decayed interests and engagement, recent items, dedupe."""
