"""Embedded demo: local services, generated graph and traffic, live view."""
