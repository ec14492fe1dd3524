"""voicetrace service: FastAPI app, WebSocket voice bridge, sessions, model adapter, emulator."""
