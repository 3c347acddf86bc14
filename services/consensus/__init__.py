"""The consensus service."""
