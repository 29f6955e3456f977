"""Access rule, authentication and audit."""
