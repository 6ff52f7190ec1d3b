"""The gateway's own state on disk (settings, usage history, learned model facts) behind one
small interface; SQLite files in the data directory. Imports only core."""
