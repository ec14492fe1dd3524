"""Image tokens by source: camera vs screen share, attributed by the frames the app forwarded.

Gemini reports a turn's image input only by modality (`IMAGE`, or `VIDEO`), never by where the
frames came from. Prompt tokens are the whole context re-billed each turn (frames stay in it),
so a turn's image tokens are split in proportion to the frames of each source forwarded in the
session up to the moment its usage arrived. The split is in exact integers: camera gets
`floor(image * camera / (camera + screen))`, screen the rest (so the remainder, under one token,
goes to screen and the two always add up to the image tokens). With no frame forwarded at all
both are 0 (the image tokens stay unattributed: `input_image` only).
"""

from __future__ import annotations

from typing import Final, Literal

FrameSource = Literal["camera", "screen"]
FRAME_SOURCES: Final = ("camera", "screen")


def split_image_tokens(
    image_tokens: int, camera_frames: int, screen_frames: int
) -> tuple[int, int]:
    """(camera tokens, screen tokens) of `image_tokens`, by forwarded frames."""
    frames = max(camera_frames, 0) + max(screen_frames, 0)
    if image_tokens <= 0 or frames == 0:
        return 0, 0
    camera = image_tokens * max(camera_frames, 0) // frames
    return camera, image_tokens - camera
