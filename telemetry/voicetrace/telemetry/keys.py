"""Every attribute key voicetrace writes, defined exactly once.

Keys that exist in `opentelemetry-semantic-conventions` are imported from it, so a rename there
shows up here and nowhere else. Newer GenAI keys (per-modality usage, cache_write) that the
Python constants package does not carry yet are spelled out once below. Our own keys live under
`voice.`; Langfuse's mapping keys under `langfuse.` (see docs/telemetry.md for each key's span,
type, unit and whether it is content).
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _g
from opentelemetry.semconv._incubating.attributes.session_attributes import SESSION_ID
from opentelemetry.semconv._incubating.attributes.user_attributes import USER_ID
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from voicetrace.telemetry.records import ERROR_END_REASONS as _ERROR_END_REASONS
from voicetrace.telemetry.records import EndReason

__all__ = ["ERROR_TYPE", "SERVER_ADDRESS", "SERVER_PORT", "SESSION_ID", "USER_ID"]

# -- GenAI semantic conventions (imported) -------------------------------------------------------
OPERATION_NAME: Final = _g.GEN_AI_OPERATION_NAME
PROVIDER_NAME: Final = _g.GEN_AI_PROVIDER_NAME
REQUEST_MODEL: Final = _g.GEN_AI_REQUEST_MODEL
RESPONSE_MODEL: Final = _g.GEN_AI_RESPONSE_MODEL
RESPONSE_FINISH_REASONS: Final = _g.GEN_AI_RESPONSE_FINISH_REASONS
RESPONSE_TIME_TO_FIRST_CHUNK: Final = _g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
REQUEST_STREAM: Final = _g.GEN_AI_REQUEST_STREAM
OUTPUT_TYPE: Final = _g.GEN_AI_OUTPUT_TYPE
CONVERSATION_ID: Final = _g.GEN_AI_CONVERSATION_ID
AGENT_NAME: Final = _g.GEN_AI_AGENT_NAME
TOOL_NAME: Final = _g.GEN_AI_TOOL_NAME
TOOL_CALL_ID: Final = _g.GEN_AI_TOOL_CALL_ID
TOOL_TYPE: Final = _g.GEN_AI_TOOL_TYPE
TOKEN_TYPE: Final = _g.GEN_AI_TOKEN_TYPE
USAGE_INPUT_TOKENS: Final = _g.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS: Final = _g.GEN_AI_USAGE_OUTPUT_TOKENS
USAGE_CACHE_READ_INPUT_TOKENS: Final = _g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
USAGE_REASONING_OUTPUT_TOKENS: Final = _g.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
# content (opt-in only, see voicetrace.telemetry.content)
SYSTEM_INSTRUCTIONS: Final = _g.GEN_AI_SYSTEM_INSTRUCTIONS
INPUT_MESSAGES: Final = _g.GEN_AI_INPUT_MESSAGES
OUTPUT_MESSAGES: Final = _g.GEN_AI_OUTPUT_MESSAGES
TOOL_CALL_ARGUMENTS: Final = _g.GEN_AI_TOOL_CALL_ARGUMENTS
TOOL_CALL_RESULT: Final = _g.GEN_AI_TOOL_CALL_RESULT

OP_CHAT: Final = _g.GenAiOperationNameValues.CHAT.value
OP_INVOKE_AGENT: Final = _g.GenAiOperationNameValues.INVOKE_AGENT.value
OP_EXECUTE_TOOL: Final = _g.GenAiOperationNameValues.EXECUTE_TOOL.value
OUTPUT_SPEECH: Final = _g.GenAiOutputTypeValues.SPEECH.value
OUTPUT_TEXT: Final = _g.GenAiOutputTypeValues.TEXT.value

# -- GenAI keys newer than the constants package (semantic-conventions-genai) ----------------
USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"


def usage_modality_key(modality: str, direction: str) -> str:
    """`gen_ai.usage.{text,audio,image}.{input,output}_tokens` (direction: input | output)."""
    return f"gen_ai.usage.{modality}.{direction}_tokens"


def usage_modality_cache_read_key(modality: str) -> str:
    return f"gen_ai.usage.{modality}.cache_read.input_tokens"


# -- Langfuse mapping keys (read by Langfuse's OTel ingestion) ---------------------------------
LF_OBSERVATION_TYPE: Final = "langfuse.observation.type"
LF_LEVEL: Final = "langfuse.observation.level"
LF_STATUS_MESSAGE: Final = "langfuse.observation.status_message"
LF_USAGE_DETAILS: Final = "langfuse.observation.usage_details"
LF_COST_DETAILS: Final = "langfuse.observation.cost_details"
LF_COMPLETION_START_TIME: Final = "langfuse.observation.completion_start_time"
LF_INPUT: Final = "langfuse.observation.input"
LF_OUTPUT: Final = "langfuse.observation.output"
LF_OBS_METADATA: Final = "langfuse.observation.metadata"  # + ".<key>" (filterable in the UI)
LF_TRACE_NAME: Final = "langfuse.trace.name"
LF_TRACE_TAGS: Final = "langfuse.trace.tags"
LF_TRACE_METADATA: Final = "langfuse.trace.metadata"  # + ".<key>"
LF_TRACE_INPUT: Final = "langfuse.trace.input"  # content: first user utterance
LF_TRACE_OUTPUT: Final = "langfuse.trace.output"  # content: last model reply
LF_ENVIRONMENT: Final = "langfuse.environment"
# Resource attribute (never a span attribute: a child's trace update would null it).
LF_RELEASE: Final = "langfuse.release"

# Langfuse levels: exact upper case, anything else drops the observation in Langfuse v3.
LEVEL_DEBUG: Final = "DEBUG"
LEVEL_DEFAULT: Final = "DEFAULT"
LEVEL_WARNING: Final = "WARNING"
LEVEL_ERROR: Final = "ERROR"
LEVELS: Final = frozenset({LEVEL_DEBUG, LEVEL_DEFAULT, LEVEL_WARNING, LEVEL_ERROR})

# Langfuse observation types we emit.
OBS_SPAN: Final = "span"
OBS_AGENT: Final = "agent"
OBS_GENERATION: Final = "generation"
OBS_TOOL: Final = "tool"
OBS_EVENT: Final = "event"


def obs_metadata(key: str) -> str:
    return f"{LF_OBS_METADATA}.{key}"


def trace_metadata(key: str) -> str:
    return f"{LF_TRACE_METADATA}.{key}"


# -- voicetrace's own keys ----------------------------------------------------------------------
# session (root span)
SESSION_END_REASON: Final = "voice.session.end_reason"
SESSION_TURNS: Final = "voice.session.turns"
SESSION_TOOL_CALLS: Final = "voice.session.tool_calls"
SESSION_TOOL_ERRORS: Final = "voice.session.tool_errors"
SESSION_INTERRUPTIONS: Final = "voice.session.interruptions"
SESSION_DURATION_S: Final = "voice.session.duration_s"
SESSION_INPUT_TOKENS: Final = "voice.session.input_tokens"
SESSION_OUTPUT_TOKENS: Final = "voice.session.output_tokens"
SESSION_COST_USD: Final = "voice.session.cost_usd"
SESSION_AUDIO_IN_S: Final = "voice.session.audio_in_s"
SESSION_AUDIO_OUT_S: Final = "voice.session.audio_out_s"
SESSION_RECONNECTS: Final = "voice.session.reconnects"
SESSION_RECORDING_CONSENT: Final = "voice.session.recording_consent"
SESSION_CAMERA_TOKENS: Final = "voice.session.camera_tokens"
SESSION_SCREEN_TOKENS: Final = "voice.session.screen_tokens"
SESSION_CAMERA_FRAMES: Final = "voice.session.camera_frames"
SESSION_SCREEN_FRAMES: Final = "voice.session.screen_frames"
# connect
CONNECT_RESUMED: Final = "voice.connect.resumed"
CONNECT_RECONNECT_REASON: Final = "voice.connect.reconnect_reason"
# turn (invoke_agent span)
TURN_NUMBER: Final = "voice.turn.number"
TURN_END_REASON: Final = "voice.turn.end_reason"
TURN_TRIGGER: Final = "voice.turn.trigger"
TURN_INTERRUPTED: Final = "voice.turn.interrupted"
TURN_USER_SPEECH_MS: Final = "voice.turn.user_speech_ms"
TURN_ENDPOINTING_MS: Final = "voice.turn.endpointing_ms"
TURN_RESPONSE_MS: Final = "voice.turn.response_ms"
TURN_TOTAL_MS: Final = "voice.turn.total_ms"
TURN_TTFA_MS: Final = "voice.turn.ttfa_ms"
TURN_TOOL_MS: Final = "voice.turn.tool_ms"
TURN_PERCEIVED_LATENCY_MS: Final = "voice.turn.perceived_latency_ms"
# audio (turn and chat spans)
AUDIO_IN_MS: Final = "voice.audio.input_ms"
AUDIO_OUT_MS: Final = "voice.audio.output_ms"
AUDIO_HEARD_MS: Final = "voice.audio.heard_ms"
AUDIO_HEARD_SOURCE: Final = "voice.audio.heard_source"  # playback | estimate
AUDIO_UNHEARD_MS: Final = "voice.audio.unheard_ms"
AUDIO_UNHEARD_COST_USD: Final = "voice.audio.unheard_cost_usd"
# usage & cost (chat span only)
USAGE_TOOL_USE_PROMPT_TOKENS: Final = "voice.usage.tool_use_prompt_tokens"
USAGE_REPORTED_TOTAL_TOKENS: Final = "voice.usage.reported_total_tokens"
USAGE_LATE: Final = "voice.usage.late"
USAGE_MISSING: Final = "voice.usage.missing"  # Gemini reported no usage for the turn
USAGE_ESTIMATED: Final = "voice.usage.estimated"  # ...so its tokens were estimated (estimates)
COST_ESTIMATED: Final = "voice.cost.estimated"  # no price entry: the table's fallback priced it
# image input tokens by source (telemetry.frames), and the frames forwarded during the turn
USAGE_CAMERA_TOKENS: Final = "voice.usage.camera_tokens"
USAGE_SCREEN_TOKENS: Final = "voice.usage.screen_tokens"
VIDEO_CAMERA_FRAMES: Final = "voice.video.camera_frames"
VIDEO_SCREEN_FRAMES: Final = "voice.video.screen_frames"
COST_USD: Final = "voice.cost.usd"
COST_USD_DECIMAL: Final = "voice.cost.usd_decimal"
COST_PRICE_KEY: Final = "voice.cost.price_model"
# tools
TOOL_STATUS: Final = "voice.tool.status"  # ok | error | cancelled | abandoned
TOOL_DURATION_MS: Final = "voice.tool.duration_ms"
TOOL_NON_BLOCKING: Final = "voice.tool.non_blocking"

# content under our namespace (only with capture + consent)
TURN_THOUGHTS: Final = "voice.content.thoughts"

# Keys whose value is user/model content. None of them may exist without capture + consent.
CONTENT_KEYS: Final = frozenset(
    {
        SYSTEM_INSTRUCTIONS,
        INPUT_MESSAGES,
        OUTPUT_MESSAGES,
        TOOL_CALL_ARGUMENTS,
        TOOL_CALL_RESULT,
        LF_INPUT,
        LF_OUTPUT,
        LF_TRACE_INPUT,
        LF_TRACE_OUTPUT,
        TURN_THOUGHTS,
    }
)

# Span names (low cardinality; numbers go in attributes).
SPAN_SESSION: Final = "voice_session"
SPAN_CONNECT: Final = "model.connect"

# Span event names.
EV_SPEECH_STARTED: Final = "user.speech.started"
EV_SPEECH_ENDED: Final = "user.speech.ended"
EV_INTERRUPTED: Final = "model.interrupted"
EV_BARGE_IN: Final = "user.barge_in"
EV_GO_AWAY: Final = "model.go_away"
EV_RESUMPTION: Final = "model.resumption_update"
EV_RECONNECT: Final = "model.reconnected"
EV_PLAYBACK_STARTED: Final = "client.playback.started"
EV_PLAYBACK_STOPPED: Final = "client.playback.stopped"
EV_MODEL_ERROR: Final = "model.error"
EV_BUDGET_WARNING: Final = "voice.budget.warning"
EV_BUDGET_PAUSED: Final = "voice.budget.paused"

# Span events that are also zero-length EVENT observations (Langfuse drops span events): what
# must be visible in its timeline. Resumption updates stay span events only (one per turn).
OBSERVED_EVENTS: Final = frozenset(
    {
        EV_BARGE_IN,
        EV_INTERRUPTED,
        EV_GO_AWAY,
        EV_RECONNECT,
        EV_MODEL_ERROR,
        EV_BUDGET_WARNING,
        EV_BUDGET_PAUSED,
    }
)

# Turn and session end reasons: `records.EndReason` (one StrEnum); these are its values.
END_REASONS: Final = frozenset(r.value for r in EndReason)
ERROR_END_REASONS: Final = frozenset(r.value for r in _ERROR_END_REASONS)
