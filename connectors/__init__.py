"""The outside world: calendar sources and message channels, one interface each."""
