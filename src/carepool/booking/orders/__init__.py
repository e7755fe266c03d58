"""Lab and exam orders run in the pool: routed to a member that offers them, tracked to a result."""
