"""The browser voice client: static files (plain ES modules, no build step) and their router."""
