"""The FaceChannel (Barros, Churamani & Sciutti, FG 2020): a light CNN that reads arousal/valence and a
categorical expression from a 64x64 grey face. Model: :mod:`.model`; training: :mod:`.train`; files:
:mod:`.checkpoint`; the run-time encoder: :mod:`affective_memory_ros.encoders.facechannel`."""
