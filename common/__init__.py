"""What every app's outer layer shares: API pagination, error shapes and the exception handler,
admin list helpers for large tables, one-line messages for commands. Imports no app."""
