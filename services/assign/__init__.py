"""The assign service."""
