"""Renderers: each reads a Trace and makes one kind of output."""
