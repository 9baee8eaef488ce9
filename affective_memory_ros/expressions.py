"""Categorical expressions: one list of class names for every encoder, topic and file.

The names and their order are AffectNet's eight, as the FaceChannel's 8-class
model uses them (``../shared/docs/facechannel-facts.md``). Datasets with other
names map onto them here and nowhere else: DiffusionFER's seven cover every
class but ``contempt``; London FRL's ``happy`` smiles are ``happiness``.
"""

from __future__ import annotations

EXPRESSIONS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                "contempt")
NUM_EXPRESSIONS = len(EXPRESSIONS)

#: Dataset label -> expression name.
LABEL_ALIASES: dict[str, str] = {
    **{name: name for name in EXPRESSIONS},
    "happy": "happiness", "smiling": "happiness", "smile": "happiness",
    "sad": "sadness", "angry": "anger", "surprised": "surprise", "fearful": "fear", "disgusted": "disgust",
}


def expression_index(label: str | None) -> int:
    """Index into :data:`EXPRESSIONS` of a dataset label, or -1 when it is empty or unknown."""
    if not label:
        return -1
    name = LABEL_ALIASES.get(label.strip().lower())
    return EXPRESSIONS.index(name) if name is not None else -1
