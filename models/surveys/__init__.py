"""Surveys: the builder, invitations and segments, answers, and their event handlers."""
