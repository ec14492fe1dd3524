"""Function responses from the client: completing a BLOCKING turn, or scheduling result turns.

NON_BLOCKING calls of one `toolCall` are answered as a group: WHEN_IDLE results wait until the
model is idle, INTERRUPT results barge in at once, SILENT results only join the context.
"""

from __future__ import annotations

import logging
from typing import Any

from voicetrace.emulator.generation import TurnEngine
from voicetrace.emulator.protocol import CloseError, pick
from voicetrace.emulator.usage import response_tokens

log = logging.getLogger(__name__)


class ToolResponses(TurnEngine):
    async def _tool_response(self, body: dict[str, Any]) -> None:
        responses = pick(body, "functionResponses") or []
        if not isinstance(responses, list):
            raise CloseError(1007, "Invalid argument: functionResponses must be a list.")
        speak_now: list[tuple[str, Any]] = []
        speak_now_tokens = 0
        for item in responses:
            call_id, name = pick(item, "id"), str(pick(item, "name") or "")
            response = pick(item, "response") or {}
            tokens = response_tokens(response)
            scheduling = str(pick(item, "scheduling") or "WHEN_IDLE").upper()
            if call_id in self._blocking and self.turn is not None:
                del self._blocking[call_id]
                self.turn.results.append((name, response))
                self.turn.usage.tool_use += tokens
                if not self._blocking:
                    self._blocking_done.set()
            elif call_id in self._groups:
                group = self._groups.pop(call_id)
                group.waiting.discard(call_id)
                if scheduling == "SILENT":
                    self.conv.context.text += tokens  # context only, no generation
                elif scheduling == "INTERRUPT":
                    speak_now.append((name, response))
                    speak_now_tokens += tokens
                else:
                    group.results.append((name, response))
                    group.tokens += tokens
                if not group.waiting and group.results:
                    self._queued.append(self._result_turn(group.results, group.tokens))
            else:
                log.debug("tool response for unknown or cancelled call %r ignored", call_id)
        if speak_now:
            await self._interrupt()
            self._begin(self._result_turn(speak_now, speak_now_tokens))
        self._kick()
