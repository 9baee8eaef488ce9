"""The FaceChannel's readings with the PK's generator for edits (``facechannel_pk``): CLIFER's measured form.

CLIFER's memories reach their remembering target when they learn the FaceChannel's codes while the PK's
generator G renders the imagined faces, which the FaceChannel then reads (docs/clifer.md). This encoder is
that pair, for the node (``encoder: facechannel_pk``, ``memory_mode: clifer``):

* :meth:`~RenderedEditsEncoder.encode`: the FaceChannel's :class:`~.base.Encoding` (code, arousal/valence,
  expression probabilities: what the memories learn and the outputs read), exactly, plus the PK's latent z
  of the same crops as :attr:`~.base.Encoding.edit_codes`;
* :meth:`~RenderedEditsEncoder.edit_and_encode` (z, targets): the FaceChannel's codes of the uint8 faces
  that G renders from z at the targets (:meth:`~.pk.PKEncoder.render`), as a camera would give them.

Its edits are not labelled samples (:attr:`~.base.FaceEncoder.labelled_edits` False): G's change, read by
the FaceChannel, is much shorter than a real expression's, so it serves CLIFER's offset imagination
(z + s (FC(G(z, c)) - FC(G(z, own)))), and the modes that learn edits as samples labelled with their
targets (``personal``, ``self_affective``) run as with the FaceChannel alone (``paper`` refuses it).

:class:`RenderedEditsEncoder` is the pairing for any reader and any editor with a generator;
``bench-clifer --imagine-with`` builds it from its flags.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import Encoding, FaceEncoder


class RenderedEditsEncoder(FaceEncoder):
    """``reader``'s encoding of faces; edits rendered by ``editor``'s generator and read by ``reader``."""

    can_edit = True
    labelled_edits = False

    def __init__(self, reader: FaceEncoder, editor: FaceEncoder) -> None:
        if not editor.can_edit:
            raise ValueError(f"the {editor.name} encoder has no generator to render edits with")
        self.reader, self.editor = reader, editor
        self.name = f"{reader.name}_{editor.name}"  # type: ignore[misc]
        self.input_spec = reader.input_spec
        self.code_dim = reader.code_dim
        self.device, self.precision = reader.device, reader.precision
        self.path = getattr(reader, "path", None)
        self.provenance: dict[str, Any] = {**reader.provenance, "editor": {
            "encoder": editor.name, "weights": str(getattr(editor, "path", "")), "provenance": editor.provenance}}

    def encode(self, crops: np.ndarray) -> Encoding:
        enc = self.reader.encode(crops)
        return Encoding(enc.code, enc.av, enc.probs, self.editor.encode(crops).code)

    def edit_and_encode(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``reader``'s codes of the faces ``editor`` renders from its codes ``codes[i]`` (the encoding's
        :attr:`~.base.Encoding.edit_codes`) at ``targets[i]``."""
        if len(codes) == 0:
            return np.zeros((0, self.code_dim), np.float32)
        return self.reader.encode(self.editor.render(codes, targets)).code

    def render(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return self.editor.render(codes, targets)


class FaceChannelPKEncoder(RenderedEditsEncoder):
    """The shipped FaceChannel reads, the shipped PK's G renders. ``path`` (the ``encoder_weights`` setting)
    is the FaceChannel's file, ``pk_path`` the PK's (None: each one's shipped default)."""

    name = "facechannel_pk"

    def __init__(self, path: str | os.PathLike[str] | None = None, device: str = "auto", precision: str = "fp32",
                 pk_path: str | os.PathLike[str] | None = None) -> None:
        from .facechannel import FaceChannelEncoder
        from .pk import PKEncoder

        super().__init__(FaceChannelEncoder(path, device, precision), PKEncoder(pk_path, device, precision))
