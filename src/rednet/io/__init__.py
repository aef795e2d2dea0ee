"""Read images into tensors and write tensors back as images, keeping what the user had.

The package: :mod:`rednet.io.formats` (formats, errors, conversions), :mod:`rednet.io.read`,
:mod:`rednet.io.write` and :mod:`rednet.io.atomic` (files written atomically, never over an input); the
names below are its public API. It is the only part of rednet that sees Pillow or uint8. Everything else
works on (N, C, H, W) float32 tensors in [0, 1] (C = 1 for gray, 3 for RGB).

Reading (:func:`read_image`) accepts PNG, JPEG, TIFF, BMP and WebP (other formats, GIF say, are
refused, whatever their suffix) and follows explicit rules, never guessing from content:

* 8-bit samples are divided by 255, 16-bit samples by 65535.
* Bilevel ("1") images give 0.0 / 1.0.
* Palette ("P", "PA") images are expanded to RGB, or RGB + alpha when they have transparency.
  "L" and "RGB" images with a transparent colour key (PNG ``tRNS``) get an alpha channel.
* CMYK images (CMYK JPEG/TIFF) are converted to RGB through their embedded ICC profile when they
  have one (the result is sRGB, so no profile is kept), else with Pillow's naive ``convert("RGB")``.
  No other colour management is done: RGB pixels are returned as stored and their ICC profile is
  kept for writing back.
* 32-bit integer ("I") images are divided by 65535 (the range of the 16-bit files Pillow reports
  as "I") and clipped to [0, 1]; float ("F") images are taken as already on [0, 1] and clipped.
  Both log a warning when clipping changed values, and both are written back as 16-bit.
* 16-bit colour PNG and TIFF files (RGB, RGBA and gray + alpha, which Pillow 13 still reduces
  to 8 bits) are decoded with OpenCV (``opencv-python-headless``) so their full precision is kept.
* The EXIF (or TIFF) orientation is applied, so the tensor is upright; the returned EXIF block
  then says orientation 1 (or, for TIFF sources, has no orientation tag).
* Multi-frame files (multi-page TIFF, animated WebP) give their first frame.
* Alpha is never mixed into the colour channels: it is returned separately in
  :attr:`ImageInfo.alpha` and re-attached by :func:`write_image`.

Size limit: an image whose header declares more than :data:`DEFAULT_MAX_PIXELS` (100 million)
pixels is refused *before* any pixel is decoded, so a decompression bomb (a tiny file declaring,
say, 30000 x 30000 pixels) costs nothing. Raise the limit with the ``max_pixels=`` argument of
:func:`read_image` or the ``REDNET_MAX_PIXELS`` environment variable (the argument wins; see
:func:`max_pixels`). Pillow keeps its own hard limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``, about
179 million pixels), which rednet neither relies on nor changes; an image above it is refused
with the same :class:`ImageError` even when ``max_pixels`` is larger.

Writing (:func:`write_image`) picks the format from the file suffix, keeps 16 bits where the
format allows it (PNG, TIFF), re-attaches alpha (PNG, TIFF, WebP), the ICC profile and EXIF, and
writes atomically: the file appears complete or not at all, and an existing file is replaced only
with ``overwrite=True``; a file listed in ``protect=`` (the inputs) never is. The temporary file is
``.NAME.XXXXXXXX.rednet-tmp`` beside the output: no image suffix, so no lister of images takes one
that a killed process left behind for an input, and :func:`remove_stale_temps` clears them.

Native decoders (libpng inside OpenCV, libtiff inside Pillow) print their complaints on the process's
standard error; :func:`read_image` sends them, and Pillow's warnings, to this module's debug log instead, so
that a bad file gives only the one-line error below.

Every expected failure on bad input raises :class:`ImageError` (a ``ValueError``) whose message
is one line naming the file, e.g. ``"photo.png: truncated or corrupt image file (image file is
truncated)"``.
"""

from __future__ import annotations

from rednet.io.atomic import input_message, remove_stale_temps, replace_atomically, same_file
from rednet.io.formats import (
    DEFAULT_MAX_PIXELS,
    GRAY_WEIGHTS,
    IMAGE_SUFFIXES,
    MAX_PIXELS_ENV,
    ImageError,
    ImageInfo,
    array_to_tensor,
    is_image_file,
    max_pixels,
    tensor_to_array,
    tensor_to_uint8,
    tensor_to_uint16,
)
from rednet.io.read import read_image, read_mask
from rednet.io.write import write_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GRAY_WEIGHTS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS_ENV",
    "ImageError",
    "ImageInfo",
    "array_to_tensor",
    "is_image_file",
    "max_pixels",
    "input_message",
    "read_image",
    "read_mask",
    "remove_stale_temps",
    "replace_atomically",
    "same_file",
    "tensor_to_array",
    "tensor_to_uint8",
    "tensor_to_uint16",
    "write_image",
]
