"""ROS-free image decoding: sensor_msgs Image / CompressedImage payloads -> HxWx3 uint8 RGB arrays."""

from .decode import (
    SUPPORTED_COMPRESSED_FORMATS,
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    decode_message,
)
from .encode import encode_compressed, encode_image

__all__ = [
    "SUPPORTED_COMPRESSED_FORMATS",
    "SUPPORTED_ENCODINGS",
    "ImageDecodeError",
    "decode_compressed",
    "decode_image",
    "decode_message",
    "encode_compressed",
    "encode_image",
]
