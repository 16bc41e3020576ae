"""Inference group, one partition per UTC day: parse -> score -> store / alert / monitor drift."""
