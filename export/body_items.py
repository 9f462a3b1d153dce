"""Stage-3 items with body tokens: motion-capture windows seen as the runtime sees a person.

RAVDESS has no body and the Bandai-Namco motion capture has no voice, so nothing is paired.
Stage 3 (export/llm_lora.py) still has to teach the adapter what a video window looks like:
body tokens (and voice tokens) between the prompt's text, with the body cue lines measured on
that body. This module makes the body half from real motion:

- a **body window** is 4 s of one take, projected through a random virtual camera with
  detector jitter and dropped joints (export/body_data.keypoints), turned into the
  `PoseSample`s the pose stage gives; the runtime's own `BodyEncoder` (the shipped ONNX model)
  makes its tokens and probabilities and `edge_app.cues` measures its body cue lines, so the
  reasoning target names only cues measured on that motion;
- a **formed pair** (`pair_with_body`) joins a voice clip and a body window whose label
  agrees: a voice clip of one of the four labels the motion data has (neutral, happy, sad,
  angry) gets a window of a take of the same emotion; a clip of the other four (calm,
  fearful, disgust, surprised) gets a window of a neutral take, a body that shows nothing
  in particular. The label is the voice clip's. These pairs are made up, not recorded
  together; they teach the adapter to read two blocks of tokens and to name both kinds of
  cue, not any link between a body and a voice.

Takes of the training contents give the training windows, the validation content (guide)
the validation windows; the held-out test contents are never used here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_app.cues import PoseSample, extract_cues
from edge_app.encoders.features import BODY_FPS
from edge_app.records import LABELS
from export import body_data


def pose_window(clip: body_data.Clip, rng: np.random.Generator, seconds: float = body_data.WINDOW_S,
                augment: bool = True) -> list[PoseSample]:
    """`seconds` of a take from a random camera as the pose stage would give them: landmarks at
    BODY_FPS (the runtime's pose rate), times from 0, with detector jitter when `augment`."""
    cam = body_data.random_camera(rng, clip.points)
    lm = body_data.keypoints(clip, cam, rng if augment else None)
    n = int(round(seconds * BODY_FPS))
    if len(lm) > n:
        s = int(rng.integers(0, len(lm) - n + 1))
        lm = lm[s : s + n]
    aspect = cam.width / cam.height
    return [PoseSample(t=i / BODY_FPS, landmarks=lm[i], aspect=aspect, frame_index=i) for i in range(len(lm))]


def body_items(clips: list[body_data.Clip], split: str, encoder, per_clip: int, max_cues: int, seed: int,
               seconds: float = body_data.WINDOW_S) -> list[dict]:
    """Body windows of the emotion takes of one split: {"stem", "y" (index into LABELS),
    "body_tokens", "body_probs", "body" (measured cue lines, tagged as the runtime tags them),
    "tokens": None, "cues": []} (no voice). `encoder` is an `edge_app.encoders.BodyEncoder`."""
    from edge_app.answer import llm_cue_lines

    rng = np.random.default_rng(seed)
    items = []
    for clip in clips:
        if clip.split != split or clip.emotion < 0:
            continue
        for k in range(per_clip):
            poses = pose_window(clip, rng, seconds)
            out = encoder.encode(poses)
            if out is None:
                continue
            cues = extract_cues(0.0, seconds, poses, None)
            items.append({
                "stem": f"{Path(clip.file).stem}-w{k}",
                "y": LABELS.index(body_data.EMOTIONS4[clip.emotion]),
                "body_tokens": out.tokens.astype(np.float32), "body_probs": np.asarray(out.probs, np.float64),
                "body": llm_cue_lines(cues.describe_body(), [], max_cues), "tokens": None, "cues": [],
            })  # fmt: skip
    return items


def by_label(items: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for it in items:
        out[it["y"]].append(it)
    return dict(out)


NEUTRAL = LABELS.index("neutral")


def pair_with_body(voice_item: dict, bodies: dict[int, list[dict]], rng: np.random.Generator) -> dict | None:
    """A formed pair (module docstring): the voice item with a body window of the same label, or
    of a neutral take for a label the motion data lacks; None when no such window exists."""
    pool = bodies.get(voice_item["y"]) or bodies.get(NEUTRAL)
    if not pool:
        return None
    b = pool[int(rng.integers(len(pool)))]
    return {**voice_item, "stem": f"{voice_item['stem']}+{b['stem']}", "body_tokens": b["body_tokens"],
            "body_probs": b["body_probs"], "body": b["body"]}  # fmt: skip
