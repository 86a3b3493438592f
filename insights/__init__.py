"""Segmentation and scoring: set-based queries over the database, no Flask imports."""
