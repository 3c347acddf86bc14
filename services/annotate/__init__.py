"""The annotate service."""
