"""Accounts: registration, login, JWT access tokens, the login rate limit."""
