"""Routes by area; each module exposes ``routes``."""
