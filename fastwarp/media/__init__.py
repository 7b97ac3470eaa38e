"""Media files in and out, kept whole (docs/design.md, "Media in and out").

- :mod:`~fastwarp.media.video`: video files through FFmpeg's libraries (PyAV): every frame
  with its timestamp, rotation honoured, audio (and subtitle) streams carried over, H.264
  by default so browsers play the result.
- :mod:`~fastwarp.media.carry`: the audio and subtitle streams a video output carries over.
- :mod:`~fastwarp.media.image`: image files through Pillow: alpha, bit depth, grey, ICC
  profile and EXIF kept; outside the edited faces the output equals the input bit for bit.

OpenCV stays for cameras and image processing.
"""
