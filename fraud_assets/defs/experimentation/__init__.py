"""Experimentation group: tuning experiments and their promotion to production."""
