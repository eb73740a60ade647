"""The consent service."""
