"""Thin entry points of each command, built from Settings."""
