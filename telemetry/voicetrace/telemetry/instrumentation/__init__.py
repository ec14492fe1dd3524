"""Drop-in tracing for apps that call a live model SDK directly.

- `events` — the SDK-independent live model events; `record` — events → `SessionTrace` calls
  (shared with the voicetrace service: one code path).
- `genai_live` — `GenAILiveInstrumentor` for google-genai's async Live API (needs the
  `genai` extra: google-genai and opentelemetry-instrumentation). `genai_mapping`,
  `genai_inputs`, `genai_session` are its parts.

Importing this package imports neither google-genai nor opentelemetry-instrumentation.
"""
